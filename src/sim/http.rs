//! The simulators over real HTTP, speaking the upstream contracts byte for byte (hosting
//! service, subscription service, VPN manager), plus a `/_sim/*` control surface for tests
//! and operators (set subscriptions, script faults, read what was received).

use std::future::Future;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{Fault, Knobs, NodeTiming, Op, Sim};
use crate::ports::{
    CreateNode, CreateVpnUser, FulfillmentCallback, SubscriptionSnapshot, VpnUserUpdate,
};

/// Credentials the simulated services demand, when set.
#[derive(Clone, Default)]
pub struct SimAuth {
    pub admin_key: Option<String>,
    pub internal_secret: Option<String>,
}

#[derive(Clone)]
struct SimState {
    sim: Sim,
    auth: SimAuth,
}

/// All simulated upstreams on one router (their paths do not overlap). Each service
/// demands its own credential, when one is set, as the real ones do.
pub fn router(sim: Sim, auth: SimAuth) -> Router {
    let state = SimState { sim, auth };
    let hosting = Router::new()
        .route("/api/admin/nodes", post(create_node).get(list_nodes))
        .route(
            "/api/admin/nodes/{node_id}",
            get(get_node).delete(delete_node),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_admin_key,
        ));
    let internal = Router::new()
        .route(
            "/api/internal/users/{user_id}/active/{app}/{service_type}",
            get(active_subscription),
        )
        .route("/api/internal/fulfillment/callback", post(receive_callback))
        .route("/api/users", post(vpn_create))
        .route(
            "/api/users/{uuid}",
            get(vpn_get).put(vpn_update).delete(vpn_delete),
        )
        .route("/api/users/{uuid}/sync", get(vpn_sync))
        .route("/api/subscribe", post(vpn_subscribe))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_internal_secret,
        ));
    let control = Router::new()
        .route("/_sim/faults", post(set_faults).delete(clear_faults))
        .route("/_sim/hosting/nodes", get(sim_nodes))
        .route("/_sim/hosting/creates", get(sim_creates))
        .route("/_sim/hosting/deletes", get(sim_deletes))
        .route("/_sim/hosting/timing", put(set_timing))
        .route("/_sim/hosting/foreign", post(add_foreign))
        .route("/_sim/subscriptions", put(set_subscription))
        .route("/_sim/callbacks", get(sim_callbacks))
        .route("/_sim/vpn/users", get(sim_vpn_users))
        .route("/_sim/vpn/creates", get(sim_vpn_creates))
        .route("/_sim/vpn/usage", put(sim_vpn_usage));
    Router::new()
        .merge(hosting)
        .merge(internal)
        .merge(control)
        .with_state(state)
}

async fn require_admin_key(State(st): State<SimState>, req: Request, next: Next) -> Response {
    if authorized(req.headers(), "x-admin-key", &st.auth.admin_key) {
        next.run(req).await
    } else {
        unauthorized()
    }
}

async fn require_internal_secret(State(st): State<SimState>, req: Request, next: Next) -> Response {
    if authorized(req.headers(), "x-internal-secret", &st.auth.internal_secret) {
        next.run(req).await
    } else {
        unauthorized()
    }
}

/// Serves the simulators until the listener fails or the task is dropped.
pub async fn serve(
    sim: Sim,
    auth: SimAuth,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    axum::serve(listener, router(sim, auth)).await
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({"error": msg}))).into_response()
}

/// Whether the request carries the credential the simulated service demands (if any).
fn authorized(headers: &HeaderMap, name: &str, want: &Option<String>) -> bool {
    want.as_deref()
        .is_none_or(|want| headers.get(name).and_then(|v| v.to_str().ok()) == Some(want))
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "unauthorized")
}

/// Applies the fault plan around a handler's effect, the way a misbehaving service would.
async fn faulty<F>(st: &SimState, op: Op, effect: impl FnOnce() -> F) -> Response
where
    F: Future<Output = Response>,
{
    let faults = &st.sim.faults;
    let latency = faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match faults.next(op) {
        None => effect().await,
        Some(Fault::Error(status)) => error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "simulated failure",
        ),
        Some(Fault::Hang) => {
            tokio::time::sleep(faults.hang()).await;
            error(StatusCode::SERVICE_UNAVAILABLE, "simulated hang")
        }
        Some(Fault::Garbage) => {
            effect().await;
            (StatusCode::OK, "<html>502 Bad Gateway</html>").into_response()
        }
        Some(Fault::LostResponse) => {
            let resp = effect().await;
            tokio::time::sleep(faults.hang()).await;
            resp
        }
    }
}

async fn create_node(State(st): State<SimState>, body: String) -> Response {
    let req: CreateNode = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if [
        &req.cloud_provider,
        &req.region,
        &req.bundle_id,
        &req.subscription_id,
        &req.user_id,
    ]
    .iter()
    .any(|f| f.is_empty())
    {
        return error(StatusCode::BAD_REQUEST, "missing required field");
    }
    let hosting = st.sim.hosting.clone();
    faulty(&st, Op::CreateNode, || async move {
        let node = hosting.create(&req);
        (
            StatusCode::CREATED,
            Json(json!({"node_id": node.node_id, "status": "creating", "message": "node creation started"})),
        )
            .into_response()
    })
    .await
}

async fn get_node(State(st): State<SimState>, Path(id): Path<String>) -> Response {
    let echo = st.sim.hosting.timing().echo_resource_id;
    faulty(&st, Op::GetNode, || async {
        match st.sim.hosting.node(&id) {
            Some(n) => Json(n.view(chrono::Utc::now(), echo)).into_response(),
            None => error(StatusCode::NOT_FOUND, "node not found"),
        }
    })
    .await
}

async fn delete_node(State(st): State<SimState>, Path(id): Path<String>) -> Response {
    faulty(&st, Op::DeleteNode, || async {
        if st.sim.hosting.delete(&id) {
            Json(json!({"message": "node deleted"})).into_response()
        } else {
            error(StatusCode::NOT_FOUND, "node not found")
        }
    })
    .await
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    purpose: Option<String>,
}

async fn list_nodes(State(st): State<SimState>, Query(q): Query<ListQuery>) -> Response {
    faulty(&st, Op::ListNodes, || async {
        let nodes = st
            .sim
            .hosting
            .views(q.purpose.as_deref(), q.status.as_deref());
        Json(json!({"total": nodes.len(), "nodes": nodes})).into_response()
    })
    .await
}

async fn active_subscription(
    State(st): State<SimState>,
    Path((user_id, app, service_type)): Path<(String, String, String)>,
) -> Response {
    faulty(&st, Op::ActiveSubscription, || async {
        match st.sim.subscriptions.get(&user_id, &app, &service_type) {
            Some(s) => Json(s).into_response(),
            None => error(StatusCode::NOT_FOUND, "no active subscription"),
        }
    })
    .await
}

async fn receive_callback(State(st): State<SimState>, body: String) -> Response {
    let cb: FulfillmentCallback = match serde_json::from_str(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if !matches!(cb.app.as_str(), "obox" | "otun")
        || !matches!(cb.status.as_str(), "active" | "failed" | "deleted")
    {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "bad app or status");
    }
    faulty(&st, Op::Callback, || async {
        st.sim.subscriptions.receive(cb);
        Json(json!({"message": "ok"})).into_response()
    })
    .await
}

#[derive(Deserialize)]
struct ScriptEntry {
    op: Op,
    faults: Vec<Fault>,
}

#[derive(Deserialize)]
struct FaultPlan {
    knobs: Option<Knobs>,
    #[serde(default)]
    script: Vec<ScriptEntry>,
}

async fn set_faults(State(st): State<SimState>, Json(plan): Json<FaultPlan>) -> StatusCode {
    if let Some(k) = plan.knobs {
        st.sim.faults.set_knobs(k);
    }
    for entry in plan.script {
        st.sim.faults.script(entry.op, entry.faults);
    }
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(st): State<SimState>) -> StatusCode {
    st.sim.faults.clear();
    StatusCode::NO_CONTENT
}

async fn sim_nodes(State(st): State<SimState>) -> impl IntoResponse {
    Json(st.sim.hosting.nodes())
}

async fn sim_creates(State(st): State<SimState>) -> impl IntoResponse {
    Json(st.sim.hosting.creates())
}

async fn sim_deletes(State(st): State<SimState>) -> impl IntoResponse {
    Json(st.sim.hosting.deletes())
}

async fn set_timing(State(st): State<SimState>, Json(t): Json<NodeTiming>) -> StatusCode {
    st.sim.hosting.set_timing(t);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Foreign {
    purpose: String,
}

async fn add_foreign(State(st): State<SimState>, Json(f): Json<Foreign>) -> impl IntoResponse {
    Json(json!({"node_id": st.sim.hosting.add_foreign_node(&f.purpose)}))
}

#[derive(Deserialize)]
struct SetSubscription {
    user_id: String,
    app: String,
    service_type: String,
    subscription: Option<SubscriptionSnapshot>,
}

async fn set_subscription(
    State(st): State<SimState>,
    Json(s): Json<SetSubscription>,
) -> StatusCode {
    st.sim
        .subscriptions
        .set(&s.user_id, &s.app, &s.service_type, s.subscription);
    StatusCode::NO_CONTENT
}

async fn sim_callbacks(State(st): State<SimState>) -> impl IntoResponse {
    Json(st.sim.subscriptions.callbacks())
}

async fn vpn_create(State(st): State<SimState>, body: String) -> Response {
    let req: CreateVpnUser = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if req.auth_user_id.is_empty() {
        return error(StatusCode::BAD_REQUEST, "auth_user_id is required");
    }
    faulty(&st, Op::VpnCreate, || async {
        let (user, created) = st.sim.vpn.create(&req);
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        (status, Json(user.view())).into_response()
    })
    .await
}

async fn vpn_get(State(st): State<SimState>, Path(uuid): Path<String>) -> Response {
    faulty(&st, Op::VpnGet, || async {
        match st.sim.vpn.user(&uuid) {
            Some(u) => Json(u.view()).into_response(),
            None => error(StatusCode::NOT_FOUND, "user not found"),
        }
    })
    .await
}

async fn vpn_update(
    State(st): State<SimState>,
    Path(uuid): Path<String>,
    body: String,
) -> Response {
    let update: VpnUserUpdate = match serde_json::from_str(&body) {
        Ok(u) => u,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    faulty(&st, Op::VpnUpdate, || async {
        if st.sim.vpn.update(&uuid, &update) {
            Json(json!({"message": "updated"})).into_response()
        } else {
            error(StatusCode::NOT_FOUND, "user not found")
        }
    })
    .await
}

async fn vpn_delete(State(st): State<SimState>, Path(uuid): Path<String>) -> Response {
    faulty(&st, Op::VpnDelete, || async {
        if st.sim.vpn.delete(&uuid) {
            StatusCode::NO_CONTENT.into_response()
        } else {
            error(StatusCode::NOT_FOUND, "user not found")
        }
    })
    .await
}

#[derive(Deserialize)]
struct SubscribeBody {
    device_id: String,
}

async fn vpn_subscribe(State(st): State<SimState>, body: String) -> Response {
    let req: SubscribeBody = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    faulty(&st, Op::VpnSubscribe, || async {
        match st.sim.vpn.user_by_auth(&req.device_id) {
            Some(u) => Json(u.subscription_view()).into_response(),
            None => error(StatusCode::NOT_FOUND, "user not found"),
        }
    })
    .await
}

async fn vpn_sync(State(st): State<SimState>, Path(uuid): Path<String>) -> Response {
    faulty(&st, Op::VpnSync, || async {
        match st.sim.vpn.user(&uuid) {
            Some(u) => Json(u.subscription_view()).into_response(),
            None => error(StatusCode::NOT_FOUND, "user not found"),
        }
    })
    .await
}

async fn sim_vpn_users(State(st): State<SimState>) -> impl IntoResponse {
    Json(st.sim.vpn.users())
}

async fn sim_vpn_creates(State(st): State<SimState>) -> impl IntoResponse {
    Json(st.sim.vpn.creates())
}

#[derive(Deserialize)]
struct Usage {
    uuid: String,
    traffic_used: i64,
}

async fn sim_vpn_usage(State(st): State<SimState>, Json(u): Json<Usage>) -> StatusCode {
    if st.sim.vpn.set_traffic_used(&u.uuid, u.traffic_used) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

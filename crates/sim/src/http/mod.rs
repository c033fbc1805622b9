//! The simulators over real HTTP, speaking the upstream contracts byte for byte, one file
//! per service (hosting service, subscription service, VPN manager), each with its part
//! of the `/_sim/*` control surface for tests and operators (set subscriptions, read what
//! was received); the fault plan, the credentials and the router are shared here.

mod hosting;
mod subscriptions;
mod vpn;

use std::future::Future;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{Fault, Knobs, Op, Sim};

/// Credentials the simulated services demand, when set.
#[derive(Clone, Default)]
pub struct SimAuth {
    pub admin_key: Option<String>,
    pub internal_secret: Option<String>,
}

#[derive(Clone)]
pub(super) struct SimState {
    pub(super) sim: Sim,
    auth: SimAuth,
}

/// All simulated upstreams on one router (their paths do not overlap). Each service
/// demands its own credential, when one is set, as the real ones do.
pub fn router(sim: Sim, auth: SimAuth) -> Router {
    let state = SimState { sim, auth };
    let hosting = hosting::routes().route_layer(middleware::from_fn_with_state(
        state.clone(),
        require_admin_key,
    ));
    let internal =
        subscriptions::routes()
            .merge(vpn::routes())
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                require_internal_secret,
            ));
    let control = Router::new()
        .route("/_sim/faults", post(set_faults).delete(clear_faults))
        .merge(hosting::controls())
        .merge(subscriptions::controls())
        .merge(vpn::controls());
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

pub(super) fn error(status: StatusCode, msg: &str) -> Response {
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
pub(super) async fn faulty<F>(st: &SimState, op: Op, effect: impl FnOnce() -> F) -> Response
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

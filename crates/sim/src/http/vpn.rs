//! The simulated VPN manager, otun-manager (CONTRACTS.md §2.3), and its controls.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;

use super::{SimState, error, faulty};
use crate::Op;
use ports::{CreateVpnUser, VpnUserUpdate};

/// The VPN manager's contract.
pub(super) fn routes() -> Router<SimState> {
    Router::new()
        .route("/api/users", post(vpn_create))
        .route(
            "/api/users/{uuid}",
            get(vpn_get).put(vpn_update).delete(vpn_delete),
        )
        .route("/api/users/{uuid}/sync", get(vpn_sync))
        .route("/api/subscribe", post(vpn_subscribe))
}

/// What tests and operators see and set.
pub(super) fn controls() -> Router<SimState> {
    Router::new()
        .route("/_sim/vpn/users", get(sim_vpn_users))
        .route("/_sim/vpn/creates", get(sim_vpn_creates))
        .route("/_sim/vpn/usage", put(sim_vpn_usage))
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

//! The simulated subscription service (CONTRACTS.md §2.2) and its controls.

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
use ports::{FulfillmentCallback, SubscriptionSnapshot};

/// The subscription service's contract.
pub(super) fn routes() -> Router<SimState> {
    Router::new()
        .route(
            "/api/internal/users/{user_id}/active/{app}/{service_type}",
            get(active_subscription),
        )
        .route("/api/internal/fulfillment/callback", post(receive_callback))
}

/// What tests and operators see and set.
pub(super) fn controls() -> Router<SimState> {
    Router::new()
        .route("/_sim/subscriptions", put(set_subscription))
        .route("/_sim/callbacks", get(sim_callbacks))
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

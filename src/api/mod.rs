//! The HTTP API: every route in one place, the middleware in one function, and handlers
//! that extract, authorise, make one call into `app`, and map the answer.

mod auth;
mod callbacks;
pub mod error;
mod events;
pub mod extract;
mod feed;
mod internal;
pub mod limits;
pub mod metrics;
mod nodes;
mod operator;
pub mod tickets;
mod user;
pub mod views;
mod vpn;
pub mod vpn_views;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::app::App;
pub use auth::Session;
use error::ApiError;
use extract::Auth;

/// Largest request body accepted (orders and reports are a few hundred bytes); see
/// `extract::RawBody`.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every handler can reach.
pub struct ApiState {
    pub app: App,
    pub auth: Auth,
    pub limits: limits::RateLimits,
    /// Longest a request may take before it is answered 503 (`REQUEST_TIMEOUT_SECS`).
    pub request_timeout: Duration,
    /// The metrics of this instance and the cache of the gauges a scrape derives.
    pub scrape: metrics::Scrape,
}

/// Every route of the service.
pub fn router(state: Arc<ApiState>) -> Router {
    let user = Router::new()
        .route(
            "/my/node",
            get(user::my_node)
                .post(user::create_my_node)
                .delete(user::delete_my_node),
        )
        .route(
            "/my/node/migrate",
            post(nodes::migrate_shown).delete(nodes::cancel_shown),
        )
        .route("/my/nodes", get(nodes::list).post(nodes::create))
        .route(
            "/my/nodes/{resource_id}",
            get(nodes::one).delete(nodes::delete),
        )
        .route(
            "/my/nodes/{resource_id}/migrate",
            post(nodes::migrate_one).delete(nodes::cancel_one),
        )
        .route("/my/events", get(events::sse))
        .route("/my/events/ws", get(events::ws))
        .route("/my/events/ticket", post(events::ticket))
        .route("/my/vpn", get(vpn::my_vpn))
        .route("/my/vpn/subscribe", get(vpn::my_vpn_subscribe))
        .route("/regions", get(user::regions))
        .route("/public/regions", get(user::public_regions));
    let internal = Router::new()
        .route("/provision", post(internal::provision))
        .route("/deprovision", post(internal::deprovision))
        .route("/resources/{id}", get(internal::resource))
        .route(
            "/subscriptions/{subscription_id}/resources",
            get(internal::subscription_resources),
        )
        .route("/users/{user_id}/resources", get(internal::user_resources))
        .route("/users/{user_id}/email", put(vpn::set_email))
        .route("/resources/{id}/vpn", put(vpn::change_vpn))
        .route("/vpn/user/{user_id}/subscribe", get(vpn::user_subscribe))
        .route("/vpn/user/{user_id}/status", get(vpn::user_status))
        .route("/entitlements", get(vpn::entitlements))
        .route("/entitlements/gift", post(vpn::gift))
        .route(
            "/resources/{id}/migrate",
            post(nodes::migrate_internal).delete(nodes::cancel_internal),
        )
        .route("/resources/{id}/events", get(operator::events))
        .route("/operator/queue", get(operator::queue))
        .route("/operator/resources/{id}/retry", post(operator::retry))
        .route("/operator/resources/{id}/fail", post(operator::fail))
        .route("/nodes/load", get(metrics::nodes_load));
    let node_callbacks = Router::new()
        .route(
            "/ready",
            get(callbacks::ready_get).post(callbacks::ready_post),
        )
        .route(
            "/failed",
            get(callbacks::failed_get).post(callbacks::failed_post),
        )
        .route("/stats", post(callbacks::stats));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(readiness))
        .nest("/api/v1", user)
        .nest("/api/internal", internal)
        .nest("/api/callback/node", node_callbacks)
        .route_layer(middleware::from_fn_with_state(state.clone(), metrics::record))
        .fallback(unmatched)
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed")
        })
        .layer(
            // Request ids, tracing, panics as JSON 500s, and a timeout. The body limit
            // is enforced where bodies are read (`extract::RawBody`).
            ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<axum::body::Body>| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error").into_response()
        }))
        .layer(middleware::from_fn_with_state(state.request_timeout, deadline)),
        )
        .with_state(state)
}

/// Request ids: random UUIDs from the thread's own generator (tower-http's `MakeRequestUuid`
/// asks the kernel for randomness on every request, a system call on the hot path).
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let text = id
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .to_owned();
        axum::http::HeaderValue::from_str(&text)
            .ok()
            .map(RequestId::new)
    }
}

/// Answers a request still running after `limit` with a JSON 503 and `Retry-After`, like
/// every other refusal. The handler is dropped: its open transaction rolls back, and what
/// it had committed is a recorded intent the engine carries on (every write path is safe
/// to repeat).
async fn deadline(
    State(limit): State<Duration>,
    req: Request<axum::body::Body>,
    next: middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(limit_ms = limit.as_millis() as u64, "request timed out");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took too long; try again shortly",
            )
            .into_response()
        }
    }
}

/// No route has this path: 404, counted as `unmatched`.
async fn unmatched(State(st): State<Arc<ApiState>>, method: axum::http::Method) -> ApiError {
    metrics::unmatched(&st.scrape.metrics, &method, 404);
    ApiError::not_found()
}

async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok", "service": "fulfillment-service"}))
}

/// Ready to serve: the engine's loops run and the database answers.
async fn readiness(State(st): State<Arc<ApiState>>) -> Result<impl IntoResponse, ApiError> {
    if let Some(name) = st.app.engine.dead_loop() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine_stopped",
            format!("the engine's {name} loop has stopped; restart the process"),
        ));
    }
    st.app.ports.store.ping().await?;
    Ok(Json(
        json!({"status": "ready", "database": st.app.ports.store.backend()}),
    ))
}

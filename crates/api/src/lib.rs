//! The HTTP API: every route in one place, the middleware in one function, and handlers
//! that extract, authorise, make one call into `app`, and map the answer.

mod auth;
mod callbacks;
pub mod error;
mod events;
pub mod extract;
mod feed;
pub mod http;
pub mod internal;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod tickets;
pub mod user;
pub mod views;
pub mod vpn_views;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::middleware;
use axum::response::IntoResponse;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use app::App;
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
    /// Demo mode: a sign-in link signs in without asking.
    pub demo: bool,
    /// The product's name on the user's pages (`PRODUCT_NAME`).
    pub product_name: String,
}

/// Every route of the API, each with its description (`openapi`): an API route is added
/// here, through `routes!`, or it does not exist. The pages are routed apart
/// (`pages::routes`): they are HTML for people, not an API a client codes against.
fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(readiness))
        .routes(routes!(openapi_json))
        .routes(routes!(
            user::node::my_node,
            user::node::create_my_node,
            user::node::delete_my_node
        ))
        .routes(routes!(
            user::nodes::migrate_shown,
            user::nodes::cancel_shown
        ))
        .routes(routes!(user::nodes::list, user::nodes::create))
        .routes(routes!(user::nodes::one, user::nodes::delete))
        .routes(routes!(user::nodes::my_node_usage))
        .routes(routes!(user::nodes::migrate_one, user::nodes::cancel_one))
        .routes(routes!(events::sse))
        .routes(routes!(events::ws))
        .routes(routes!(events::ticket))
        .routes(routes!(user::vpn::my_vpn))
        .routes(routes!(user::vpn::my_vpn_subscribe))
        .routes(routes!(user::regions::regions))
        .routes(routes!(user::regions::public_regions))
        .routes(routes!(internal::orders::provision))
        .routes(routes!(internal::orders::deprovision))
        .routes(routes!(internal::resources::resource))
        .routes(routes!(internal::resources::resource_usage))
        .routes(routes!(internal::resources::subscription_resources))
        .routes(routes!(internal::resources::user_resources))
        .routes(routes!(internal::vpn::set_email))
        .routes(routes!(internal::vpn::change_vpn))
        .routes(routes!(internal::vpn::user_subscribe))
        .routes(routes!(internal::vpn::user_status))
        .routes(routes!(internal::vpn::entitlements))
        .routes(routes!(internal::vpn::gift))
        .routes(routes!(
            internal::resources::migrate_internal,
            internal::resources::cancel_internal
        ))
        .routes(routes!(internal::operator::events))
        .routes(routes!(internal::operator::queue))
        .routes(routes!(internal::operator::retry))
        .routes(routes!(internal::operator::fail))
        .routes(routes!(metrics::nodes_load))
        .routes(routes!(callbacks::ready_get, callbacks::ready_post))
        .routes(routes!(callbacks::failed_get, callbacks::failed_post))
        .routes(routes!(callbacks::stats))
}

/// The OpenAPI document of every route (CONTRACTS.md §4.3).
pub fn openapi() -> serde_json::Value {
    openapi::document(routes().into_openapi())
}

/// Every route of the service (the API's and the pages'), with the middleware.
pub fn router(state: Arc<ApiState>) -> Router {
    let (routes, _) = routes().split_for_parts();
    routes
        .merge(pages::routes())
        // The pages' forms: no larger than a request to the API (which reads its bodies
        // itself, `extract::RawBody`).
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
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

/// `GET /health`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Health {
    status: &'static str,
    service: &'static str,
}

#[utoipa::path(get, path = "/health", summary = "Liveness", tag = "public",
    responses((status = 200, description = "The process answers", body = Health)))]
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        service: "fulfillment-service",
    })
}

/// `GET /ready`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Ready {
    status: &'static str,
    /// `postgres` or `sqlite`.
    database: &'static str,
}

/// Ready to serve: the engine's loops run and the database answers.
#[utoipa::path(get, path = "/ready", summary = "Readiness", tag = "public",
    responses((status = 200, description = "Ready to serve", body = Ready),
        (status = 503, description = "The database does not answer, or a loop of the engine stopped",
            body = openapi::refusals::ErrorBody)))]
async fn readiness(State(st): State<Arc<ApiState>>) -> Result<Json<Ready>, ApiError> {
    if let Some(name) = st.app.engine.dead_loop() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine_stopped",
            format!("the engine's {name} loop has stopped; restart the process"),
        ));
    }
    st.app.ports.store.ping().await?;
    Ok(Json(Ready {
        status: "ready",
        database: st.app.ports.store.backend(),
    }))
}

/// `GET /api/openapi.json`: this document.
#[utoipa::path(get, path = "/api/openapi.json", summary = "This document", tag = "public",
    responses((status = 200, description = "The OpenAPI 3.1 document of this service",
        content_type = "application/json", body = Object)))]
async fn openapi_json() -> axum::response::Response {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    openapi::serve(TEXT.get_or_init(|| openapi::to_json(&openapi())))
}

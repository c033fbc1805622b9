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
pub mod openapi;
mod operator;
pub mod pages;
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
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// Demo mode: a sign-in link signs in without asking.
    pub demo: bool,
    /// The product's name on the user's pages (`PRODUCT_NAME`).
    pub product_name: String,
}

/// Every route of the service, each with its description (`openapi`): a route is added
/// here, through `routes!`, or it does not exist.
fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(readiness))
        .routes(routes!(openapi_json))
        .routes(routes!(
            user::my_node,
            user::create_my_node,
            user::delete_my_node
        ))
        .routes(routes!(nodes::migrate_shown, nodes::cancel_shown))
        .routes(routes!(nodes::list, nodes::create))
        .routes(routes!(nodes::one, nodes::delete))
        .routes(routes!(nodes::migrate_one, nodes::cancel_one))
        .routes(routes!(events::sse))
        .routes(routes!(events::ws))
        .routes(routes!(events::ticket))
        .routes(routes!(vpn::my_vpn))
        .routes(routes!(vpn::my_vpn_subscribe))
        .routes(routes!(user::regions))
        .routes(routes!(user::public_regions))
        .routes(routes!(internal::provision))
        .routes(routes!(internal::deprovision))
        .routes(routes!(internal::resource))
        .routes(routes!(internal::subscription_resources))
        .routes(routes!(internal::user_resources))
        .routes(routes!(vpn::set_email))
        .routes(routes!(vpn::change_vpn))
        .routes(routes!(vpn::user_subscribe))
        .routes(routes!(vpn::user_status))
        .routes(routes!(vpn::entitlements))
        .routes(routes!(vpn::gift))
        .routes(routes!(nodes::migrate_internal, nodes::cancel_internal))
        .routes(routes!(operator::events))
        .routes(routes!(operator::queue))
        .routes(routes!(operator::retry))
        .routes(routes!(operator::fail))
        .routes(routes!(metrics::nodes_load))
        .routes(routes!(callbacks::ready_get, callbacks::ready_post))
        .routes(routes!(callbacks::failed_get, callbacks::failed_post))
        .routes(routes!(callbacks::stats))
        .routes(routes!(pages::docs::docs))
        .routes(routes!(pages::assets::asset))
        .routes(routes!(pages::user::home))
        .routes(routes!(pages::user::signin))
        .routes(routes!(pages::user::signout))
        .routes(routes!(pages::user::app_nodes, pages::user::app_create))
        .routes(routes!(pages::user::app_delete))
        .routes(routes!(pages::user::app_migrate))
        .routes(routes!(pages::user::app_vpn))
        .routes(routes!(pages::user::app_ticket))
        .routes(routes!(pages::console::console))
        .routes(routes!(pages::console::console_signin))
        .routes(routes!(pages::console::console_signout))
        .routes(routes!(
            pages::console::console_queue,
            pages::console::console_action
        ))
        .routes(routes!(pages::console_search::console_search))
        .routes(routes!(pages::console_search::console_resource))
        .routes(routes!(pages::console::console_load))
}

/// The OpenAPI document of every route (CONTRACTS.md §4.3).
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::document(routes().into_openapi())
}

/// Every route of the service, with the middleware.
pub fn router(state: Arc<ApiState>) -> Router {
    let (routes, _) = routes().split_for_parts();
    routes
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

#[utoipa::path(get, path = "/health", tag = "public",
    responses((status = 200, description = "The process answers", body = openapi::schemas::Health)))]
async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok", "service": "fulfillment-service"}))
}

/// Ready to serve: the engine's loops run and the database answers.
#[utoipa::path(get, path = "/ready", tag = "public",
    responses((status = 200, description = "Ready to serve", body = openapi::schemas::Ready),
        (status = 503, description = "The database does not answer, or a loop of the engine stopped",
            body = openapi::schemas::Error)))]
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

/// `GET /api/openapi.json`: this document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "public",
    responses((status = 200, description = "The OpenAPI 3.1 document of this service",
        content_type = "application/json", body = Object)))]
async fn openapi_json() -> axum::response::Response {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    openapi::serve(TEXT.get_or_init(|| openapi::to_json(&openapi())))
}

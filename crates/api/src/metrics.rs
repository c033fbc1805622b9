//! The metrics surface: the HTTP families recorded per route template, the `/metrics`
//! router served on its own listener (`METRICS_ADDR`), and the internal node load view.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::error::ApiError;
use super::extract::{ApiQuery, Staff};
use super::openapi::refusals as doc;
use super::views::Num;
use app::live::Transport;
use domain::units::{gib, percent, rfc3339_opt};
use ports::store::{LoadSort, NodeLoadRow};
use prometheus::{HttpLabels, Metrics, RouteLabels};

/// Routes whose requests are streams: counted, not timed (they last as long as they like;
/// `fulfillment_event_streams` shows them).
const STREAMS: [&str; 2] = ["/api/v1/my/events", "/api/v1/my/events/ws"];

/// The gauges derived from the database, computed at most once per period whatever the
/// number of scrapers.
pub struct Scrape {
    pub metrics: Arc<Metrics>,
    period: Duration,
    refreshed: tokio::sync::Mutex<Option<Instant>>,
}

impl Scrape {
    pub fn new(metrics: Arc<Metrics>, period: Duration) -> Self {
        Scrape {
            metrics,
            period,
            refreshed: tokio::sync::Mutex::new(None),
        }
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Records one request of a matched route (a `route_layer`, so the template is known).
pub async fn record(State(st): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = method_label(req.method());
    let started = Instant::now();
    let resp = next.run(req).await;
    observe(
        &st.scrape.metrics,
        route,
        method,
        resp.status().as_u16(),
        started,
    );
    resp
}

/// Records a request no route matched (answered at once: its duration is nil).
pub fn unmatched(metrics: &Metrics, method: &Method, status: u16) {
    let started = Instant::now();
    observe(
        metrics,
        "unmatched".into(),
        method_label(method),
        status,
        started,
    );
}

fn observe(metrics: &Metrics, route: String, method: &'static str, status: u16, started: Instant) {
    let timed = !STREAMS.contains(&route.as_str());
    if timed {
        metrics
            .http_duration
            .get_or_create(&RouteLabels {
                route: route.clone(),
                method,
            })
            .observe(started.elapsed().as_secs_f64());
    }
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route,
            method,
            status,
        })
        .inc();
}

/// The router of the metrics listener: `GET /metrics`, nothing else.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            )
        })
        .with_state(state)
}

async fn scrape(State(st): State<Arc<ApiState>>) -> Response {
    refresh(&st).await;
    let hub = &st.app.live;
    let open = Transport::ALL.map(|t| (t.as_str(), hub.open_over(t)));
    st.scrape.metrics.set_streams(&open);
    let mut resp = st.scrape.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// A node is fresh when it reported within this long.
pub const FRESH_WITHIN: chrono::Duration = chrono::Duration::minutes(5);

/// Re-reads the database's gauges if the last read is older than the period. Concurrent
/// scrapes wait for the one reading; a failed read keeps the last values (and is logged).
async fn refresh(st: &ApiState) {
    let mut refreshed = st.scrape.refreshed.lock().await;
    if refreshed.is_some_and(|at| at.elapsed() < st.scrape.period) {
        return;
    }
    let meter = st.app.meter();
    let now = meter.now;
    st.scrape.metrics.gauge_refreshes.inc();
    let readings = st
        .app
        .ports
        .store
        .readings(now, now - FRESH_WITHIN, meter.period_start());
    match readings.await {
        Ok(readings) => st.scrape.metrics.set_readings(&readings, now),
        Err(e) => tracing::warn!(error = %e, "could not read the gauges; keeping the last values"),
    }
    *refreshed = Some(Instant::now());
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LoadQuery {
    /// The order, highest first (`cpu` when absent).
    #[param(inline, value_type = Option<crate::openapi::LoadSortNames>)]
    sort: Option<String>,
    /// How many nodes (50 when absent).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// A node's latest load and traffic.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NodeLoad)]
pub struct NodeLoadView {
    resource_id: String,
    user_id: String,
    region: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mem_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load1: Option<f64>,
    /// GiB; none until the node reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    traffic_used_gb: Option<Num>,
    #[schema(value_type = f64)]
    traffic_limit_gb: Num,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    traffic_percent: Option<Num>,
    #[serde(
        serialize_with = "rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    reported_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<NodeLoadRow> for NodeLoadView {
    fn from(r: NodeLoadRow) -> Self {
        // Traffic figures come from reports: a node that never reported has none.
        let metered = r.reported_at.is_some();
        NodeLoadView {
            traffic_used_gb: metered.then(|| Num(gib(r.traffic_used))),
            traffic_limit_gb: Num(gib(r.traffic_limit)),
            traffic_percent: metered.then(|| Num(percent(r.traffic_used, r.traffic_limit))),
            resource_id: r.resource_id,
            user_id: r.user_id,
            region: r.region,
            public_ip: r.public_ip,
            cpu_percent: r.cpu_percent,
            mem_percent: r.mem_percent,
            load1: r.load1,
            reported_at: r.reported_at,
        }
    }
}

/// `GET /api/internal/nodes/load`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NodesLoad)]
pub struct NodesLoadView {
    nodes: Vec<NodeLoadView>,
}

/// Most nodes one answer lists.
const MAX_LOAD_ROWS: i64 = 500;

/// `GET /api/internal/nodes/load?sort=cpu|mem|load|traffic&limit=N`.
#[utoipa::path(
    get,
    path = "/api/internal/nodes/load",
    summary = "Nodes by load",
    tag = "operator",
    security(("internal_secret" = []), ("operator_jwt" = [])),
    params(LoadQuery),
    responses((status = 200, description = "Nodes, highest load first", body = NodesLoadView), (status = 403, description = "A user token", body = doc::ErrorBody), (status = 422, description = "A bad sort or limit", body = doc::ErrorBody), doc::Refusals)
)]
pub async fn nodes_load(
    State(st): State<Arc<ApiState>>,
    _: Staff,
    ApiQuery(q): ApiQuery<LoadQuery>,
) -> Result<Json<NodesLoadView>, ApiError> {
    let invalid =
        |code, msg: &str| ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, code, msg);
    let sort = match q.sort.as_deref() {
        None => LoadSort::Cpu,
        Some(s) => LoadSort::parse(s)
            .ok_or_else(|| invalid("invalid_sort", "sort is one of cpu, mem, load, traffic"))?,
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LOAD_ROWS).contains(&limit) {
        return Err(invalid("invalid_limit", "limit is from 1 to 500"));
    }
    let period = st.app.meter().period_start();
    let rows = st.app.ports.store.node_load(sort, limit, period).await?;
    let nodes = rows.into_iter().map(NodeLoadView::from).collect();
    Ok(Json(NodesLoadView { nodes }))
}

//! Node callbacks (`/api/callback/node/*`): the node agent reports ready or failed, by POST
//! with a JSON body or by GET with query parameters.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use super::ApiState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Node};
use super::openapi::refusals as doc;
use super::views::StatusMessage;
use app::{NodeReport, NodeStatsReport};

fn ok() -> Json<StatusMessage> {
    Json(StatusMessage::ok())
}

#[utoipa::path(
    post,
    path = "/api/callback/node/ready",
    summary = "A node agent reports that it is ready",
    tag = "callbacks",
    security(("node_credential" = []), ("internal_secret" = [])),
    request_body = NodeReport,
    responses((status = 200, description = "Recorded", body = StatusMessage), doc::CallbackRefusals)
)]
pub async fn ready_post(
    State(st): State<Arc<ApiState>>,
    Node(caller): Node,
    ApiJson(report): ApiJson<NodeReport>,
) -> Result<Json<StatusMessage>, ApiError> {
    st.app.node_ready(caller, report).await?;
    Ok(ok())
}

#[utoipa::path(
    get,
    path = "/api/callback/node/ready",
    summary = "A node agent reports that it is ready (query form)",
    tag = "callbacks",
    security(("node_credential" = []), ("internal_secret" = [])),
    params(NodeReport),
    responses((status = 200, description = "Recorded", body = StatusMessage), doc::CallbackRefusals)
)]
pub async fn ready_get(
    State(st): State<Arc<ApiState>>,
    Node(caller): Node,
    ApiQuery(report): ApiQuery<NodeReport>,
) -> Result<Json<StatusMessage>, ApiError> {
    st.app.node_ready(caller, report).await?;
    Ok(ok())
}

#[utoipa::path(
    post,
    path = "/api/callback/node/failed",
    summary = "A node agent reports that it failed",
    tag = "callbacks",
    security(("node_credential" = []), ("internal_secret" = [])),
    request_body = NodeReport,
    responses((status = 200, description = "Recorded", body = StatusMessage), doc::CallbackRefusals)
)]
pub async fn failed_post(
    State(st): State<Arc<ApiState>>,
    Node(caller): Node,
    ApiJson(report): ApiJson<NodeReport>,
) -> Result<Json<StatusMessage>, ApiError> {
    st.app.node_failed(caller, report).await?;
    Ok(ok())
}

#[utoipa::path(
    get,
    path = "/api/callback/node/failed",
    summary = "A node agent reports that it failed (query form)",
    tag = "callbacks",
    security(("node_credential" = []), ("internal_secret" = [])),
    params(NodeReport),
    responses((status = 200, description = "Recorded", body = StatusMessage), doc::CallbackRefusals)
)]
pub async fn failed_get(
    State(st): State<Arc<ApiState>>,
    Node(caller): Node,
    ApiQuery(report): ApiQuery<NodeReport>,
) -> Result<Json<StatusMessage>, ApiError> {
    st.app.node_failed(caller, report).await?;
    Ok(ok())
}

/// `POST /api/callback/node/stats`: cumulative traffic counters and load.
#[utoipa::path(
    post,
    path = "/api/callback/node/stats",
    summary = "A node agent reports its traffic counters and load",
    tag = "callbacks",
    security(("node_credential" = []), ("internal_secret" = [])),
    request_body = NodeStatsReport,
    responses((status = 200, description = "Recorded", body = StatusMessage), doc::CallbackRefusals)
)]
pub async fn stats(
    State(st): State<Arc<ApiState>>,
    Node(caller): Node,
    ApiJson(report): ApiJson<NodeStatsReport>,
) -> Result<Json<StatusMessage>, ApiError> {
    st.app.node_stats(caller, report).await?;
    Ok(ok())
}

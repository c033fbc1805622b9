//! `/api/v1/my/node`: the node `/my/node` shows, creating it and deleting it.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::ApiState;
use crate::error::{ApiError, Shape};
use crate::extract::{ApiJson, User};
use crate::openapi::refusals as doc;
use crate::views::{CreateNodeView, MyNodeView, SuccessMessage};
use app::{NodeCreate, UserId};
use domain::progress::creation_progress;

#[utoipa::path(
    get,
    path = "/api/v1/my/node",
    summary = "My node and subscription",
    tag = "user",
    security(("user_jwt" = [])),
    responses((status = 200, description = "The user's node and subscription", body = MyNodeView), doc::Refusals, doc::RateLimited)
)]
pub async fn my_node(
    State(st): State<Arc<ApiState>>,
    User(user): User,
) -> Result<Response, ApiError> {
    Ok(json_response(node_body(&st, &user).await?))
}

/// The body of `GET /my/node`, which the event streams push as it is.
pub(crate) async fn node_body(st: &ApiState, user: &UserId) -> Result<String, ApiError> {
    let mine = st.app.my_node(user).await?;
    Ok(serde_json::to_string(&MyNodeView::new(&mine, &st.app.meter())).expect("a view serializes"))
}

/// A 200 with a JSON body already serialized.
pub(crate) fn json_response(body: String) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// A body naming a region (creating a node, migrating one).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(default)]
pub struct RegionChoice {
    /// A region code from `/regions` (required: a missing or empty one is 422, never the
    /// default region).
    #[schema(required = true, nullable = false, min_length = 1)]
    pub(crate) region: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/my/node",
    summary = "Create my node",
    tag = "user",
    security(("user_jwt" = [])),
    request_body = RegionChoice,
    responses((status = 200, description = "Created, or the node being created already", body = CreateNodeView), doc::CreateRefusals)
)]
pub async fn create_my_node(
    State(st): State<Arc<ApiState>>,
    User(user): User,
    body: Result<ApiJson<RegionChoice>, ApiError>,
) -> Result<Json<CreateNodeView>, ApiError> {
    create(&st, &user, body, NodeCreate::First).await
}

/// Creates a node for `POST /my/node` and `POST /my/nodes` alike: within the user's
/// node-creation budget (which a refused request does not spend), refused in the create
/// endpoint's own shape.
pub(crate) async fn create(
    st: &ApiState,
    user: &UserId,
    body: Result<ApiJson<RegionChoice>, ApiError>,
    how: NodeCreate,
) -> Result<Json<CreateNodeView>, ApiError> {
    let ApiJson(body) = body.map_err(|e| e.shaped(Shape::CreateNode))?;
    let spent = st
        .limits
        .node_create(user.as_str())
        .map_err(|e| e.shaped(Shape::CreateNode))?;
    let created = st
        .app
        .create_node(user, body.region.as_deref(), how)
        .await
        .map_err(ApiError::from);
    let (node, events) = spent
        .settle(created)
        .map_err(|e| e.shaped(Shape::CreateNode))?;
    Ok(Json(CreateNodeView {
        success: true,
        resource_id: node.id.to_string(),
        status: "creating",
        creation_progress: creation_progress(&node, &events),
        message: "Your node is being created.".into(),
    }))
}

#[utoipa::path(
    delete,
    path = "/api/v1/my/node",
    summary = "Delete my node",
    tag = "user",
    security(("user_jwt" = [])),
    responses((status = 200, description = "Deletion started", body = SuccessMessage), doc::SuccessRefusals)
)]
pub async fn delete_my_node(
    State(st): State<Arc<ApiState>>,
    User(user): User,
) -> Result<Json<SuccessMessage>, ApiError> {
    st.app
        .delete_my_node(&user)
        .await
        .map_err(|e| ApiError::from(e).shaped(Shape::Success))?;
    Ok(Json(SuccessMessage::new("Your node is being deleted.")))
}

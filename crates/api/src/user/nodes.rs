//! A user's several nodes (`/api/v1/my/nodes…`) and replacing a node's VPS (`…/migrate`;
//! the internal API's is in `internal::resources`). CONTRACTS.md §4.4 and §4.5.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::error::{ApiError, Shape};
use crate::extract::{ApiJson, ApiQuery, PathId, User};
use crate::openapi::refusals as doc;
use crate::user::node::RegionChoice;
use crate::views::{
    CreateNodeView, MigrationView, NodeUsageView, NodeView, SubscriptionView, SuccessMessage,
    UsageQuery,
};
use app::{MyNodeRef, MyNodes, NodeCreate, NodeEntry, UserId};
use domain::Resource;
use domain::progress::{self, CreationProgress, HostingStatus, SubscriptionState};
use domain::usage::Meter;

fn progress_of(e: &NodeEntry) -> Option<CreationProgress> {
    matches!(
        e.node.status,
        domain::Status::Pending | domain::Status::Creating
    )
    .then(|| progress::creation_progress(&e.node, &e.events))
}

/// `GET /api/v1/my/nodes`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MyNodes)]
pub struct MyNodesView<'a> {
    hosting_status: HostingStatus,
    has_subscription: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription: Option<SubscriptionView<'a>>,
    /// How many live nodes the subscription pays for.
    node_limit: u32,
    nodes: Vec<NodeView<'a>>,
    message: String,
}

/// `GET /api/v1/my/nodes/{resource_id}`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OneNode)]
pub struct OneNodeView<'a> {
    node: NodeView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    creation_progress: Option<CreationProgress>,
}

/// A migration accepted (202).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MigrationAccepted)]
pub struct MigrationAcceptedView<'a> {
    success: bool,
    resource_id: String,
    #[schema(required = true)]
    migration: Option<MigrationView<'a>>,
    message: &'static str,
}

/// A migration cancelled.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MigrationCancelled)]
pub struct MigrationCancelledView {
    success: bool,
    resource_id: String,
    message: &'static str,
}

impl<'a> MyNodesView<'a> {
    fn new(m: &'a MyNodes, meter: &Meter) -> Self {
        let subscription = match &m.subscription {
            SubscriptionState::Active(s) => Some(SubscriptionView::from(s)),
            _ => None,
        };
        MyNodesView {
            hosting_status: m.status,
            has_subscription: subscription.is_some(),
            subscription,
            node_limit: m.node_limit,
            nodes: m
                .nodes
                .iter()
                .map(|e| NodeView {
                    creation_progress: progress_of(e),
                    ..NodeView::new(&e.node, e.region.as_ref(), meter)
                })
                .collect(),
            message: progress::hosting_message(m.status, m.nodes.first().map(|e| &e.node)),
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/my/nodes",
    summary = "My nodes",
    tag = "user",
    security(("user_jwt" = [])),
    responses((status = 200, description = "The user's nodes", body = MyNodesView), doc::Refusals, doc::RateLimited)
)]
pub async fn list(State(st): State<Arc<ApiState>>, User(user): User) -> Result<Response, ApiError> {
    let mine = st.app.my_nodes(&user).await?;
    Ok(Json(MyNodesView::new(&mine, &st.app.meter())).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/my/nodes",
    summary = "Create one more node",
    tag = "user",
    security(("user_jwt" = [])),
    request_body = crate::user::node::RegionChoice,
    responses((status = 200, description = "Created, or the node being created already", body = CreateNodeView), doc::CreateRefusals)
)]
pub async fn create(
    State(st): State<Arc<ApiState>>,
    User(user): User,
    body: Result<ApiJson<RegionChoice>, ApiError>,
) -> Result<Json<CreateNodeView>, ApiError> {
    crate::user::node::create(&st, &user, body, NodeCreate::More).await
}

#[utoipa::path(
    get,
    path = "/api/v1/my/nodes/{resource_id}",
    summary = "One of my nodes",
    tag = "user",
    security(("user_jwt" = [])),
    params(("resource_id" = String, Path, description = "The node's resource id")),
    responses((status = 200, description = "One of the user's nodes", body = OneNodeView), (status = 404, description = "No such node of this user", body = doc::ErrorBody), doc::Refusals, doc::RateLimited)
)]
pub async fn one(
    State(st): State<Arc<ApiState>>,
    User(user): User,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let e = st.app.my_node_by_id(&user, &id).await?;
    Ok(Json(OneNodeView {
        node: NodeView::new(&e.node, e.region.as_ref(), &st.app.meter()),
        creation_progress: progress_of(&e),
    })
    .into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/my/nodes/{resource_id}/usage",
    summary = "One of my nodes' use by day",
    description = "Every UTC day of the window up to today's, oldest first, 0 for a day without use. A report counts on the day it was taken.",
    tag = "user",
    security(("user_jwt" = [])),
    params(("resource_id" = String, Path, description = "The node's resource id"), UsageQuery),
    responses((status = 200, description = "The node's use by day", body = NodeUsageView), (status = 404, description = "No such node of this user", body = doc::ErrorBody), (status = 422, description = "days outside 1 to 90", body = doc::ErrorBody), doc::Refusals, doc::RateLimited)
)]
pub async fn my_node_usage(
    State(st): State<Arc<ApiState>>,
    User(user): User,
    PathId(id): PathId,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<NodeUsageView>, ApiError> {
    let usage = st.app.my_node_usage(&user, &id, q.days).await?;
    Ok(Json(NodeUsageView::from(&usage)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/my/nodes/{resource_id}",
    summary = "Delete one of my nodes",
    tag = "user",
    security(("user_jwt" = [])),
    params(("resource_id" = String, Path, description = "The node's resource id")),
    responses((status = 200, description = "Deletion started", body = SuccessMessage), doc::SuccessRefusals)
)]
pub async fn delete(
    State(st): State<Arc<ApiState>>,
    User(user): User,
    PathId(id): PathId,
) -> Result<Json<SuccessMessage>, ApiError> {
    st.app
        .delete_my_node_by_id(&user, &id)
        .await
        .map_err(|e| ApiError::from(e).shaped(Shape::Success))?;
    Ok(Json(SuccessMessage::new("Your node is being deleted.")))
}

/// The 202 of a migration request.
pub(crate) fn accepted(r: &Resource) -> Response {
    let view = MigrationAcceptedView {
        success: true,
        resource_id: r.id.to_string(),
        migration: MigrationView::of(r),
        message: "A new VPS is being prepared; the node keeps serving until it is ready.",
    };
    (StatusCode::ACCEPTED, Json(view)).into_response()
}

pub(crate) fn cancelled(r: &Resource) -> Json<MigrationCancelledView> {
    Json(MigrationCancelledView {
        success: true,
        resource_id: r.id.to_string(),
        message: "The migration is cancelled; the node stays as it was.",
    })
}

#[utoipa::path(
    post,
    path = "/api/v1/my/nodes/{resource_id}/migrate",
    summary = "Move one of my nodes to another region",
    tag = "user",
    security(("user_jwt" = [])),
    params(("resource_id" = String, Path, description = "The node's resource id")),
    request_body = crate::user::node::RegionChoice,
    responses((status = 202, description = "A new VPS is being prepared", body = MigrationAcceptedView), doc::SuccessRefusals)
)]
pub async fn migrate_one(
    State(st): State<Arc<ApiState>>,
    User(user): User,
    PathId(id): PathId,
    ApiJson(body): ApiJson<RegionChoice>,
) -> Result<Response, ApiError> {
    migrate(&st, &user, MyNodeRef::Id(&id), body).await
}

#[utoipa::path(
    post,
    path = "/api/v1/my/node/migrate",
    summary = "Move my node to another region",
    tag = "user",
    security(("user_jwt" = [])),
    request_body = crate::user::node::RegionChoice,
    responses((status = 202, description = "A new VPS is being prepared", body = MigrationAcceptedView), doc::SuccessRefusals)
)]
pub async fn migrate_shown(
    State(st): State<Arc<ApiState>>,
    User(user): User,
    ApiJson(body): ApiJson<RegionChoice>,
) -> Result<Response, ApiError> {
    migrate(&st, &user, MyNodeRef::Shown, body).await
}

/// A user's migration, of the node named or the one `/my/node` shows.
async fn migrate(
    st: &ApiState,
    user: &UserId,
    node: MyNodeRef<'_>,
    body: RegionChoice,
) -> Result<Response, ApiError> {
    // A migration makes a VPS: it counts against the node-creation budget.
    let spent = st
        .limits
        .node_create(user.as_str())
        .map_err(|e| e.shaped(Shape::Success))?;
    let started = st
        .app
        .migrate_my_node(user, node, body.region.as_deref())
        .await
        .map_err(ApiError::from);
    let r = spent
        .settle(started)
        .map_err(|e| e.shaped(Shape::Success))?;
    Ok(accepted(&r))
}

#[utoipa::path(
    delete,
    path = "/api/v1/my/nodes/{resource_id}/migrate",
    summary = "Cancel a node's migration",
    tag = "user",
    security(("user_jwt" = [])),
    params(("resource_id" = String, Path, description = "The node's resource id")),
    responses((status = 200, description = "Cancelled", body = MigrationCancelledView), doc::SuccessRefusals)
)]
pub async fn cancel_one(
    State(st): State<Arc<ApiState>>,
    User(user): User,
    PathId(id): PathId,
) -> Result<Json<MigrationCancelledView>, ApiError> {
    let r = st
        .app
        .cancel_my_migration(&user, MyNodeRef::Id(&id))
        .await
        .map_err(|e| ApiError::from(e).shaped(Shape::Success))?;
    Ok(cancelled(&r))
}

#[utoipa::path(
    delete,
    path = "/api/v1/my/node/migrate",
    summary = "Cancel my node's migration",
    tag = "user",
    security(("user_jwt" = [])),
    responses((status = 200, description = "Cancelled", body = MigrationCancelledView), doc::SuccessRefusals)
)]
pub async fn cancel_shown(
    State(st): State<Arc<ApiState>>,
    User(user): User,
) -> Result<Json<MigrationCancelledView>, ApiError> {
    let r = st
        .app
        .cancel_my_migration(&user, MyNodeRef::Shown)
        .await
        .map_err(|e| ApiError::from(e).shaped(Shape::Success))?;
    Ok(cancelled(&r))
}

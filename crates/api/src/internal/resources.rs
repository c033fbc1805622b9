//! Internal reads of resources (by id, subscription, user) and the internal migrate.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiState;
use crate::error::{ApiError, Shape};
use crate::extract::{ApiJson, ApiQuery, PathId, Staff};
use crate::openapi::refusals as doc;
use crate::user::nodes::{MigrationAcceptedView, MigrationCancelledView, accepted, cancelled};
use crate::views::{MyNodeView, NodeUsageView, ResourceStatus, UsageQuery};
use app::{ResourceId, SubscriptionId, UserId};

#[utoipa::path(
    get,
    path = "/api/internal/resources/{id}/usage",
    summary = "A node's use by day",
    description = "Every UTC day of the window up to today's, oldest first, 0 for a day without use; deleted nodes' rows are kept until USAGE_RETENTION_DAYS.",
    tag = "internal",
    security(("internal_secret" = []), ("operator_jwt" = [])),
    params(("id" = String, Path, description = "A hosting node's resource id"), UsageQuery),
    responses((status = 200, description = "The node's use by day", body = NodeUsageView), (status = 403, description = "A user token", body = doc::ErrorBody), (status = 404, description = "No such resource", body = doc::ErrorBody), (status = 422, description = "days outside 1 to 90, or a VPN account", body = doc::ErrorBody), doc::Refusals)
)]
pub async fn resource_usage(
    State(st): State<Arc<ApiState>>,
    _: Staff,
    PathId(id): PathId,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<NodeUsageView>, ApiError> {
    let usage = st
        .app
        .resource_usage(ResourceId::parse(&id)?, q.days)
        .await?;
    Ok(Json(NodeUsageView::from(&usage)))
}

#[utoipa::path(
    get,
    path = "/api/internal/resources/{id}",
    summary = "A resource's true lifecycle",
    tag = "internal",
    security(("internal_secret" = []), ("operator_jwt" = [])),
    params(("id" = String, Path, description = "A resource id")),
    responses((status = 200, description = "The resource", body = ResourceStatus), (status = 403, description = "A user token", body = doc::ErrorBody), (status = 404, description = "No such resource", body = doc::ErrorBody), doc::Refusals)
)]
pub async fn resource(
    State(st): State<Arc<ApiState>>,
    _: Staff,
    PathId(id): PathId,
) -> Result<Json<ResourceStatus>, ApiError> {
    let r = st.app.resource(ResourceId::parse(&id)?).await?;
    Ok(Json(ResourceStatus::new(&r, &st.app.meter())))
}

/// A subscription's resources.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Resources)]
pub struct ResourcesView {
    resources: Vec<ResourceStatus>,
}

#[utoipa::path(
    get,
    path = "/api/internal/subscriptions/{subscription_id}/resources",
    summary = "A subscription's resources",
    tag = "internal",
    security(("internal_secret" = []), ("operator_jwt" = [])),
    params(("subscription_id" = String, Path, max_length = 256)),
    responses((status = 200, description = "The subscription's resources", body = ResourcesView), (status = 403, description = "A user token", body = doc::ErrorBody), (status = 404, description = "A malformed id", body = doc::ErrorBody), (status = 422, description = "A subscription id over 256 characters", body = doc::ErrorBody), doc::Refusals)
)]
pub async fn subscription_resources(
    State(st): State<Arc<ApiState>>,
    _: Staff,
    PathId(subscription_id): PathId,
) -> Result<Json<ResourcesView>, ApiError> {
    let subscription = SubscriptionId::parse(&subscription_id)?;
    let resources = st.app.subscription_resources(&subscription).await?;
    let meter = st.app.meter();
    Ok(Json(ResourcesView {
        resources: resources
            .iter()
            .map(|r| ResourceStatus::new(r, &meter))
            .collect(),
    }))
}

/// `GET /api/internal/users/{user_id}/resources`: the user's `/my/node` document.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UserResources)]
pub struct UserResourcesView<'a> {
    success: bool,
    data: MyNodeView<'a>,
}

#[utoipa::path(
    get,
    path = "/api/internal/users/{user_id}/resources",
    summary = "A user's node document",
    tag = "internal",
    security(("internal_secret" = []), ("operator_jwt" = [])),
    params(("user_id" = String, Path, max_length = 256, description = "A user id (opaque, up to 256 characters)")),
    responses((status = 200, description = "The user's node document", body = UserResourcesView), (status = 403, description = "A user token", body = doc::ErrorBody), (status = 404, description = "A malformed id", body = doc::ErrorBody), (status = 422, description = "A bad user id", body = doc::ErrorBody), doc::Refusals)
)]
pub async fn user_resources(
    State(st): State<Arc<ApiState>>,
    _: Staff,
    PathId(user_id): PathId,
) -> Result<Response, ApiError> {
    let mine = st.app.my_node(&UserId::parse(&user_id)?).await?;
    let view = UserResourcesView {
        success: true,
        data: MyNodeView::new(&mine, &st.app.meter()),
    };
    Ok(Json(view).into_response())
}

/// An internal migration: to another region, another plan, or both.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(default)]
#[schema(as = MigrateRequest)]
pub struct MigrateBody {
    region: Option<String>,
    plan_tier: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/internal/resources/{id}/migrate",
    summary = "Migrate a node to another region or plan",
    tag = "operator",
    security(("internal_secret" = []), ("operator_jwt" = [])),
    params(("id" = String, Path, description = "A resource id")),
    request_body = MigrateBody,
    responses((status = 202, description = "A new VPS is being prepared", body = MigrationAcceptedView), doc::SuccessRefusals)
)]
pub async fn migrate_internal(
    State(st): State<Arc<ApiState>>,
    staff: Staff,
    PathId(id): PathId,
    ApiJson(body): ApiJson<MigrateBody>,
) -> Result<Response, ApiError> {
    let actor = staff.actor();
    let r = st
        .app
        .migrate_resource(
            &id,
            body.region.as_deref(),
            body.plan_tier.as_deref(),
            &actor,
        )
        .await
        .map_err(|e| ApiError::from(e).shaped(Shape::Success))?;
    Ok(accepted(&r))
}

#[utoipa::path(
    delete,
    path = "/api/internal/resources/{id}/migrate",
    summary = "Cancel a node's migration",
    tag = "operator",
    security(("internal_secret" = []), ("operator_jwt" = [])),
    params(("id" = String, Path, description = "A resource id")),
    responses((status = 200, description = "Cancelled", body = MigrationCancelledView), doc::SuccessRefusals)
)]
pub async fn cancel_internal(
    State(st): State<Arc<ApiState>>,
    staff: Staff,
    PathId(id): PathId,
) -> Result<Json<MigrationCancelledView>, ApiError> {
    let r = st
        .app
        .cancel_resource_migration(&id, &staff.actor())
        .await
        .map_err(|e| ApiError::from(e).shaped(Shape::Success))?;
    Ok(cancelled(&r))
}

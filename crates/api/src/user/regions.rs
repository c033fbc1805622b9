//! The regions a node may be created in (`/api/v1/regions`, `/api/v1/public/regions`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::User;
use crate::openapi::refusals as doc;
use crate::views::RegionsView;

#[utoipa::path(
    get,
    path = "/api/v1/regions",
    summary = "Regions",
    tag = "user",
    security(("user_jwt" = [])),
    responses((status = 200, description = "Every region", body = RegionsView), doc::Refusals, doc::RateLimited)
)]
pub async fn regions(
    State(st): State<Arc<ApiState>>,
    _user: User,
) -> Result<Json<RegionsView>, ApiError> {
    public_regions(State(st)).await
}

#[utoipa::path(
    get,
    path = "/api/v1/public/regions",
    summary = "Regions (no credentials)",
    tag = "public",
    responses((status = 200, description = "Every region", body = RegionsView), doc::Refusals)
)]
pub async fn public_regions(
    State(st): State<Arc<ApiState>>,
) -> Result<Json<RegionsView>, ApiError> {
    let regions = st.app.regions.all().await?;
    Ok(Json(RegionsView::from(regions.as_slice())))
}

//! `/api/v1/my/vpn`: the user's VPN and its connection config.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::Response;

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::User;
use crate::openapi::refusals as doc;
use crate::user::node::json_response;
use crate::vpn_views::{VpnStatusView, VpnSubscribeView};
use app::UserId;

#[utoipa::path(
    get,
    path = "/api/v1/my/vpn",
    summary = "My VPN",
    tag = "user",
    security(("user_jwt" = [])),
    responses((status = 200, description = "The user's VPN", body = VpnStatusView), doc::Refusals, doc::RateLimited)
)]
pub async fn my_vpn(
    State(st): State<Arc<ApiState>>,
    User(user): User,
) -> Result<Response, ApiError> {
    Ok(json_response(vpn_body(&st, &user).await?))
}

/// The body of `GET /my/vpn`, which the event streams push as it is.
pub(crate) async fn vpn_body(st: &ApiState, user: &UserId) -> Result<String, ApiError> {
    let mine = st.app.my_vpn(user).await?;
    let view = VpnStatusView::new(&mine, st.app.ports.clock.now());
    Ok(serde_json::to_string(&view).expect("a view serializes"))
}

#[utoipa::path(
    get,
    path = "/api/v1/my/vpn/subscribe",
    summary = "My VPN's subscribe links",
    tag = "user",
    security(("user_jwt" = [])),
    responses((status = 200, description = "The subscribe links", body = VpnSubscribeView), (status = 403, description = "The VPN is not active", body = doc::ErrorBody), (status = 404, description = "No VPN", body = doc::ErrorBody), doc::Refusals, doc::RateLimited)
)]
pub async fn my_vpn_subscribe(
    State(st): State<Arc<ApiState>>,
    User(user): User,
) -> Result<Json<VpnSubscribeView>, ApiError> {
    let config = st.app.vpn_config(&user).await?;
    Ok(Json(VpnSubscribeView::new(
        &config,
        st.app.config.vpn.subscribe_base.as_deref(),
    )))
}

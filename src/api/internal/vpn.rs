//! The VPN's internal endpoints: status, config, terms, email, gifts, entitlements.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::ApiState;
use crate::api::error::{ApiError, Shape};
use crate::api::extract::{ApiJson, ApiQuery, Internal, PathId, RawBody};
use crate::api::internal::orders::idempotent;
use crate::api::openapi::{internal as idoc, schemas as doc};
use crate::api::vpn_views::{EntitlementView, GiftView, VpnRecordView, VpnSubscribeView};
use crate::app::{Gift, ResourceId, UserId, VpnChange};
use crate::ports::store::EntitlementFilter;

#[utoipa::path(
    get,
    path = "/api/internal/vpn/user/{user_id}/subscribe",
    tag = "internal",
    security(("internal_secret" = [])),
    params(("user_id" = String, Path, description = "A user id (opaque, up to 256 characters)")),
    responses((status = 200, description = "The user's subscribe links", body = idoc::InternalVpnSubscribe), doc::SuccessRefusals)
)]
pub async fn user_subscribe(
    State(st): State<Arc<ApiState>>,
    _: Internal,
    PathId(user_id): PathId,
) -> Result<Json<Value>, ApiError> {
    let config = match UserId::parse(&user_id) {
        Ok(user) => st.app.vpn_config(&user).await,
        Err(e) => Err(e),
    }
    .map_err(|e| ApiError::from(e).shaped(Shape::Success))?;
    let view = VpnSubscribeView::new(&config, st.app.config.vpn.subscribe_base.as_deref());
    Ok(Json(json!({"success": true, "data": view})))
}

#[utoipa::path(
    get,
    path = "/api/internal/vpn/user/{user_id}/status",
    tag = "internal",
    security(("internal_secret" = [])),
    params(("user_id" = String, Path, description = "A user id (opaque, up to 256 characters)")),
    responses((status = 200, description = "The user's VPN record", body = idoc::InternalVpnStatus), doc::SuccessRefusals)
)]
pub async fn user_status(
    State(st): State<Arc<ApiState>>,
    _: Internal,
    PathId(user_id): PathId,
) -> Result<Json<Value>, ApiError> {
    let (status, record) = match UserId::parse(&user_id) {
        Ok(user) => st.app.vpn_record(&user).await,
        Err(e) => Err(e),
    }
    .map_err(|e| ApiError::from(e).shaped(Shape::Success))?;
    Ok(Json(
        json!({"success": true, "data": VpnRecordView::new(status, &record)}),
    ))
}

#[utoipa::path(
    put,
    path = "/api/internal/resources/{id}/vpn",
    tag = "internal",
    security(("internal_secret" = [])),
    params(("id" = String, Path, description = "A resource id")),
    request_body = crate::app::VpnChange,
    responses((status = 200, description = "Applied", body = doc::StatusMessage), (status = 202, description = "Saved; applied when the VPN manager answers", body = doc::StatusMessage), (status = 404, description = "No such resource", body = doc::Error), doc::Refusals, doc::BodyRefusals)
)]
pub async fn change_vpn(
    State(st): State<Arc<ApiState>>,
    _: Internal,
    PathId(id): PathId,
    ApiJson(change): ApiJson<VpnChange>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if st.app.change_vpn(ResourceId::parse(&id)?, change).await? {
        Ok((
            StatusCode::OK,
            Json(json!({"status": "ok", "message": "vpn user updated"})),
        ))
    } else {
        // Saved; never reported as done before the VPN manager has it.
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({"status": "pending",
                "message": "saved; the VPN manager will be updated when it answers"})),
        ))
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct EmailChange {
    /// Empty or omitted clears it.
    email: Option<String>,
}

#[utoipa::path(
    put,
    path = "/api/internal/users/{user_id}/email",
    tag = "internal",
    security(("internal_secret" = [])),
    params(("user_id" = String, Path, description = "A user id (opaque, up to 256 characters)")),
    request_body = EmailChange,
    responses((status = 200, description = "Saved", body = idoc::MessageOnly), (status = 404, description = "No such user", body = doc::Error), doc::Refusals, doc::BodyRefusals)
)]
pub async fn set_email(
    State(st): State<Arc<ApiState>>,
    _: Internal,
    PathId(user_id): PathId,
    ApiJson(body): ApiJson<EmailChange>,
) -> Result<Json<Value>, ApiError> {
    st.app
        .set_email(&UserId::parse(&user_id)?, body.email.as_deref())
        .await?;
    Ok(Json(json!({"message": "email updated"})))
}

/// `POST /entitlements/gift`, honouring `Idempotency-Key` like provisioning.
#[utoipa::path(
    post,
    path = "/api/internal/entitlements/gift",
    tag = "internal",
    security(("internal_secret" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "A repeat with the same key gets the first answer")),
    request_body = crate::app::Gift,
    responses((status = 201, description = "Granted", body = idoc::Gifted), (status = 409, description = "The key was used with another body", body = doc::Error), doc::Refusals, doc::BodyRefusals)
)]
pub async fn gift(
    State(st): State<Arc<ApiState>>,
    _: Internal,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    idempotent(&st, "gift", &headers, &body, || gift_once(&st, &body)).await
}

async fn gift_once(st: &ApiState, body: &Bytes) -> Result<(StatusCode, Value), ApiError> {
    let ApiJson(gift): ApiJson<Gift> = ApiJson::from_bytes(body)?;
    let outcome = st.app.gift(gift).await?;
    Ok((StatusCode::CREATED, json!(GiftView::from(&outcome))))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EntitlementQuery {
    user_id: Option<String>,
    business_type: Option<String>,
    status: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/internal/entitlements",
    tag = "internal",
    security(("internal_secret" = [])),
    params(("user_id" = Option<String>, Query), ("business_type" = Option<String>, Query), ("status" = Option<String>, Query)),
    responses((status = 200, description = "Entitlements, newest first", body = idoc::Entitlements), (status = 422, description = "A bad filter", body = doc::Error), doc::Refusals)
)]
pub async fn entitlements(
    State(st): State<Arc<ApiState>>,
    _: Internal,
    ApiQuery(q): ApiQuery<EntitlementQuery>,
) -> Result<Json<Value>, ApiError> {
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let filter = EntitlementFilter {
        user_id: nonempty(q.user_id),
        business_type: nonempty(q.business_type),
        status: nonempty(q.status),
        limit: 0,
    };
    let list = st.app.entitlements(filter).await?;
    let now = st.app.ports.clock.now();
    let views: Vec<EntitlementView> = list.iter().map(|e| EntitlementView::new(e, now)).collect();
    Ok(Json(json!({"entitlements": views})))
}

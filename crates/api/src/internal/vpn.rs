//! The VPN's internal endpoints: status, config, terms, email, gifts, entitlements.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::ApiState;
use crate::error::{ApiError, Shape};
use crate::extract::{ApiJson, ApiQuery, Internal, PathId, RawBody};
use crate::internal::orders::idempotent;
use crate::openapi::refusals as doc;
use crate::views::{MessageOnly, StatusMessage};
use crate::vpn_views::{EntitlementView, GiftView, VpnRecordView, VpnSubscribeView};
use app::{Gift, ResourceId, UserId, VpnChange};
use ports::store::EntitlementFilter;

/// `GET /api/internal/vpn/user/{user_id}/subscribe`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = InternalVpnSubscribe)]
pub struct InternalVpnSubscribeView {
    success: bool,
    data: VpnSubscribeView,
}

/// `GET /api/internal/vpn/user/{user_id}/status`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = InternalVpnStatus)]
pub struct InternalVpnStatusView {
    success: bool,
    /// `null` when the user never had VPN access.
    #[schema(required = true)]
    data: Option<VpnRecordView>,
}

/// `GET /api/internal/entitlements`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Entitlements)]
pub struct EntitlementsView {
    entitlements: Vec<EntitlementView>,
}

#[utoipa::path(
    get,
    path = "/api/internal/vpn/user/{user_id}/subscribe",
    summary = "A user's VPN subscribe links",
    tag = "internal",
    security(("internal_secret" = [])),
    params(("user_id" = String, Path, description = "A user id (opaque, up to 256 characters)")),
    responses((status = 200, description = "The user's subscribe links", body = InternalVpnSubscribeView), doc::SuccessRefusals)
)]
pub async fn user_subscribe(
    State(st): State<Arc<ApiState>>,
    _: Internal,
    PathId(user_id): PathId,
) -> Result<Json<InternalVpnSubscribeView>, ApiError> {
    let config = match UserId::parse(&user_id) {
        Ok(user) => st.app.vpn_config(&user).await,
        Err(e) => Err(e),
    }
    .map_err(|e| ApiError::from(e).shaped(Shape::Success))?;
    let view = VpnSubscribeView::new(&config, st.app.config.vpn.subscribe_base.as_deref());
    Ok(Json(InternalVpnSubscribeView {
        success: true,
        data: view,
    }))
}

#[utoipa::path(
    get,
    path = "/api/internal/vpn/user/{user_id}/status",
    summary = "A user's VPN record",
    tag = "internal",
    security(("internal_secret" = [])),
    params(("user_id" = String, Path, description = "A user id (opaque, up to 256 characters)")),
    responses((status = 200, description = "The user's VPN record", body = InternalVpnStatusView), doc::SuccessRefusals)
)]
pub async fn user_status(
    State(st): State<Arc<ApiState>>,
    _: Internal,
    PathId(user_id): PathId,
) -> Result<Json<InternalVpnStatusView>, ApiError> {
    let (status, record) = match UserId::parse(&user_id) {
        Ok(user) => st.app.vpn_record(&user).await,
        Err(e) => Err(e),
    }
    .map_err(|e| ApiError::from(e).shaped(Shape::Success))?;
    Ok(Json(InternalVpnStatusView {
        success: true,
        data: VpnRecordView::new(status, &record),
    }))
}

#[utoipa::path(
    put,
    path = "/api/internal/resources/{id}/vpn",
    summary = "Change a VPN account's terms",
    tag = "internal",
    security(("internal_secret" = [])),
    params(("id" = String, Path, description = "A resource id")),
    request_body = app::VpnChange,
    responses((status = 200, description = "Applied", body = StatusMessage), (status = 202, description = "Saved; applied when the VPN manager answers", body = StatusMessage), (status = 404, description = "No such resource", body = doc::ErrorBody), doc::Refusals, doc::BodyRefusals)
)]
pub async fn change_vpn(
    State(st): State<Arc<ApiState>>,
    _: Internal,
    PathId(id): PathId,
    ApiJson(change): ApiJson<VpnChange>,
) -> Result<(StatusCode, Json<StatusMessage>), ApiError> {
    let (code, status, message) = if st.app.change_vpn(ResourceId::parse(&id)?, change).await? {
        (StatusCode::OK, "ok", "vpn user updated")
    } else {
        // Saved; never reported as done before the VPN manager has it.
        let later = "saved; the VPN manager will be updated when it answers";
        (StatusCode::ACCEPTED, "pending", later)
    };
    let message = Some(message);
    Ok((code, Json(StatusMessage { status, message })))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct EmailChange {
    /// An address (`local@domain`).
    #[schema(
        required = true,
        nullable = false,
        max_length = 254,
        pattern = r"^[^\S\x00-\x1f\x7f-\x9f]*[^\s@\x00-\x1f\x7f-\x9f]+@[^\s@\x00-\x1f\x7f-\x9f]+[^\S\x00-\x1f\x7f-\x9f]*$"
    )]
    email: Option<String>,
}

#[utoipa::path(
    put,
    path = "/api/internal/users/{user_id}/email",
    summary = "Set a user's email",
    tag = "internal",
    security(("internal_secret" = [])),
    params(("user_id" = String, Path, description = "A user id (opaque, up to 256 characters)")),
    request_body = EmailChange,
    responses((status = 200, description = "Saved", body = MessageOnly), (status = 404, description = "No such user", body = doc::ErrorBody), doc::Refusals, doc::BodyRefusals)
)]
pub async fn set_email(
    State(st): State<Arc<ApiState>>,
    _: Internal,
    PathId(user_id): PathId,
    ApiJson(body): ApiJson<EmailChange>,
) -> Result<Json<MessageOnly>, ApiError> {
    st.app
        .set_email(&UserId::parse(&user_id)?, body.email.as_deref())
        .await?;
    Ok(Json(MessageOnly {
        message: "email updated",
    }))
}

/// `POST /entitlements/gift`, honouring `Idempotency-Key` like provisioning.
#[utoipa::path(
    post,
    path = "/api/internal/entitlements/gift",
    summary = "Gift VPN access",
    tag = "internal",
    security(("internal_secret" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "A repeat with the same key gets the first answer")),
    request_body = app::Gift,
    responses((status = 201, description = "Granted", body = GiftView), (status = 409, description = "A request with the same Idempotency-Key is still in flight (the same key with another body is 422)", body = doc::ErrorBody), doc::Refusals, doc::BodyRefusals)
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
    let view = serde_json::to_value(GiftView::from(&outcome)).expect("a view serializes");
    Ok((StatusCode::CREATED, view))
}

/// Filters of the entitlement list; an empty one filters nothing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct EntitlementQuery {
    #[param(
        max_length = 256,
        pattern = r"^([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*)?$"
    )]
    user_id: Option<String>,
    #[param(
        max_length = 256,
        pattern = r"^([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*)?$"
    )]
    business_type: Option<String>,
    #[param(pattern = r"^(active|expired|superseded|merged|cancelled)?$")]
    status: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/internal/entitlements",
    summary = "List entitlements",
    tag = "internal",
    security(("internal_secret" = [])),
    params(EntitlementQuery),
    responses((status = 200, description = "Entitlements, newest first", body = EntitlementsView), (status = 422, description = "A bad filter", body = doc::ErrorBody), doc::Refusals)
)]
pub async fn entitlements(
    State(st): State<Arc<ApiState>>,
    _: Internal,
    ApiQuery(q): ApiQuery<EntitlementQuery>,
) -> Result<Json<EntitlementsView>, ApiError> {
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let filter = EntitlementFilter {
        user_id: nonempty(q.user_id),
        business_type: nonempty(q.business_type),
        status: nonempty(q.status),
        limit: 0,
    };
    let list = st.app.entitlements(filter).await?;
    let now = st.app.ports.clock.now();
    let entitlements = list.iter().map(|e| EntitlementView::new(e, now)).collect();
    Ok(Json(EntitlementsView { entitlements }))
}

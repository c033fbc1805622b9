//! VPN endpoints: the user's VPN and its connection config (`/api/v1/my/vpn*`) and the
//! internal ones (status, config, adjustments, email, gifts, entitlements).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiState;
use super::error::{ApiError, Shape};
use super::extract::{ApiJson, ApiQuery, Internal, PathId, RawBody, User};
use super::internal::idempotent;
use super::user::json_response;
use super::vpn_views::{EntitlementView, GiftView, VpnRecordView, VpnStatusView, VpnSubscribeView};
use crate::app::{Gift, ResourceId, UserId, VpnChange};
use crate::ports::store::EntitlementFilter;

pub async fn my_vpn(
    State(st): State<Arc<ApiState>>,
    User(user): User,
) -> Result<Response, ApiError> {
    Ok(json_response(vpn_body(&st, &user).await?))
}

/// The body of `GET /my/vpn`, which the event streams push as it is.
pub(super) async fn vpn_body(st: &ApiState, user: &UserId) -> Result<String, ApiError> {
    let mine = st.app.my_vpn(user).await?;
    let view = VpnStatusView::new(&mine, st.app.ports.clock.now());
    Ok(serde_json::to_string(&view).expect("a view serializes"))
}

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

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EmailChange {
    email: Option<String>,
}

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

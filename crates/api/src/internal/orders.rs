//! The subscription service's orders: provision and deprovision, idempotent.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Internal, RawBody};
use crate::openapi::refusals as doc;
use crate::views::{DeprovisionView, ProvisionView};
use app::{Deprovision, Keyed, Provision, VpnOutcome};
use domain::Status;

/// `POST /api/internal/provision`, honouring `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/api/internal/provision",
    summary = "Provision a paid order",
    tag = "internal",
    security(("internal_secret" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "A repeat with the same key gets the first answer")),
    request_body = app::Provision,
    responses((status = 200, description = "The order was known already (or a VPN order applied at once)", body = ProvisionView), (status = 202, description = "Provisioning started", body = ProvisionView), (status = 403, description = "The order may not be fulfilled", body = doc::ErrorBody), (status = 409, description = "Conflicts with what exists, or a request with the same Idempotency-Key is still in flight (the same key with another body is 422)", body = doc::ErrorBody), doc::Refusals, doc::BodyRefusals)
)]
pub async fn provision(
    State(st): State<Arc<ApiState>>,
    _: Internal,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    idempotent(&st, "provision", &headers, &body, || {
        provision_once(&st, &body)
    })
    .await
}

/// Runs `run` once per `Idempotency-Key` (when the caller sends one; see
/// `App::once`), answering a repeat with the first answer.
pub(crate) async fn idempotent<F, Fut>(
    st: &ApiState,
    scope: &str,
    headers: &HeaderMap,
    body: &Bytes,
    run: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(StatusCode, Value), ApiError>>,
{
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let answer = |(status, view): &(StatusCode, Value)| {
        let text = serde_json::to_string(view).unwrap_or_default();
        (status.as_u16(), text)
    };
    match st.app.once(scope, key, body, run, answer).await? {
        Keyed::Ran((status, view)) => Ok((status, Json(view)).into_response()),
        Keyed::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            Ok((status, Json(body)).into_response())
        }
    }
}

async fn provision_once(st: &ApiState, body: &Bytes) -> Result<(StatusCode, Value), ApiError> {
    let ApiJson(req): ApiJson<Provision> = ApiJson::from_bytes(body)?;
    if req.is_vpn() {
        let outcome = st.app.provision_vpn(req).await?;
        return Ok(vpn_provision_view(&outcome));
    }
    let outcome = st.app.provision(req).await?;
    let r = &outcome.resource;
    let in_progress = matches!(r.status, Status::Pending | Status::Creating);
    let message = match (outcome.created, r.status) {
        (true, _) => "provisioning started",
        (false, Status::Active) => "already provisioned",
        (false, Status::Failed) => "provisioning failed earlier; deprovision and order again",
        (false, Status::Deleting | Status::Deleted) => "this order's node was deleted",
        (false, _) => "provisioning already in progress",
    };
    let status = if outcome.created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let view = ProvisionView {
        resource_id: r.id.to_string(),
        status: r.status.as_str(),
        estimated_ready_seconds: in_progress.then_some(300),
        vpn_user_id: None,
        resource_ids: (outcome.resource_ids.len() > 1).then(|| {
            outcome
                .resource_ids
                .iter()
                .map(|id| id.to_string())
                .collect()
        }),
        message: message.into(),
    };
    Ok((status, json!(view)))
}

/// A VPN order's answer: `active` with the VPN manager's uuid once it holds the order,
/// else `pending` (the engine finishes it), `failed` or `deleted`.
fn vpn_provision_view(o: &VpnOutcome) -> (StatusCode, Value) {
    let r = &o.resource;
    // By state only, so a repeated delivery gets the same answer as the first.
    let (code, status, message) = if o.is_applied() {
        (StatusCode::OK, "active", "vpn user is active")
    } else if r.status == Status::Failed {
        (StatusCode::OK, "failed", "the VPN manager refused the user")
    } else if matches!(r.status, Status::Deleting | Status::Deleted) {
        (StatusCode::OK, "deleted", "the VPN user was deprovisioned")
    } else {
        let message = "recorded; the VPN user will be updated when the VPN manager answers";
        (StatusCode::ACCEPTED, "pending", message)
    };
    let view = ProvisionView {
        resource_id: r.id.to_string(),
        status,
        estimated_ready_seconds: (status == "pending").then_some(30),
        vpn_user_id: o.is_applied().then(|| r.vpn.vpn_user_id.clone()).flatten(),
        resource_ids: None,
        message: message.into(),
    };
    (code, json!(view))
}

#[utoipa::path(
    post,
    path = "/api/internal/deprovision",
    summary = "Delete a subscription's resources",
    tag = "internal",
    security(("internal_secret" = [])),
    request_body = app::Deprovision,
    responses((status = 200, description = "Deletion started (or done)", body = DeprovisionView), (status = 404, description = "No such resource", body = doc::ErrorBody), doc::Refusals, doc::BodyRefusals)
)]
pub async fn deprovision(
    State(st): State<Arc<ApiState>>,
    _: Internal,
    ApiJson(req): ApiJson<Deprovision>,
) -> Result<Json<DeprovisionView>, ApiError> {
    let outcome = st.app.deprovision(req).await?;
    let r = &outcome.resource;
    Ok(Json(DeprovisionView {
        resource_id: r.id.to_string(),
        status: r.status.as_str(),
        message: if r.status == Status::Deleted {
            "already deleted"
        } else {
            "deletion started"
        }
        .into(),
    }))
}

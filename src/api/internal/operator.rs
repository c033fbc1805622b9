//! The operators' endpoints (`/api/internal/operator/*`, `/api/internal/resources/{id}/events`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::api::extract::{ApiJson, PathId, Staff};
use crate::api::openapi::{internal as idoc, schemas as doc};
use crate::api::views::ResourceStatus;
use crate::app::{OperatorAction, ResourceId, STUCK_ATTEMPTS};
use crate::domain::units::{rfc3339, rfc3339_opt};
use crate::domain::{Event, EventKind, Resource, Status};

/// A resource in the queue, with what an operator needs to decide.
#[derive(Debug, Serialize)]
pub struct QueueItem {
    #[serde(flatten)]
    pub resource: ResourceStatus,
    /// `failed`, `past_deadline` or `retrying`.
    pub why: &'static str,
    pub desired_state: &'static str,
    pub attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(
        serialize_with = "rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub deadline_at: Option<DateTime<Utc>>,
    #[serde(
        serialize_with = "rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl QueueItem {
    fn new(r: &Resource, now: DateTime<Utc>) -> Self {
        let why = if r.status == Status::Failed {
            "failed"
        } else if r.deadline_at.is_some_and(|d| d < now) {
            "past_deadline"
        } else {
            "retrying"
        };
        QueueItem {
            resource: ResourceStatus::from(r),
            why,
            desired_state: r.desired.as_str(),
            attempts: r.attempts,
            last_error: r.last_error.clone(),
            deadline_at: r.deadline_at,
            next_attempt_at: r.next_attempt_at,
            updated_at: r.updated_at,
        }
    }
}

/// One entry of a resource's history.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = HistoryEvent)]
pub struct EventView {
    kind: EventKind,
    /// `engine`, `api`, `operator:NAME`, …
    actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    at: DateTime<Utc>,
}

#[utoipa::path(
    get,
    path = "/api/internal/operator/queue",
    tag = "operator",
    security(("internal_secret" = []), ("operator_jwt" = [])),
    responses((status = 200, description = "The failed-work queue", body = idoc::Queue), (status = 403, description = "A user token", body = doc::Error), doc::Refusals)
)]
pub async fn queue(State(st): State<Arc<ApiState>>, _: Staff) -> Result<Json<Value>, ApiError> {
    let q = st.app.operator_queue().await?;
    let now = st.app.ports.clock.now();
    let resources: Vec<QueueItem> = q.resources.iter().map(|r| QueueItem::new(r, now)).collect();
    let callbacks: Vec<Value> = q
        .callbacks
        .iter()
        .map(|c| {
            json!({"outbox_id": c.message.id, "subscription_id": c.message.subscription_id,
                "callback": c.message.callback, "attempts": c.message.attempts,
                "last_error": c.last_error,
                "created_at": c.message.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "next_attempt_at": c.next_attempt_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)})
        })
        .collect();
    let subscriptions: Vec<Value> = q
        .over_limit
        .iter()
        .map(|o| {
            json!({"subscription_id": o.subscription_id, "user_id": o.user_id,
                "why": "over_node_limit", "live_nodes": o.live_nodes, "node_limit": o.node_limit})
        })
        .collect();
    Ok(Json(json!({
        "resources": resources,
        "callbacks": callbacks,
        "subscriptions": subscriptions,
        "stuck_after_attempts": STUCK_ATTEMPTS,
    })))
}

#[utoipa::path(
    post,
    path = "/api/internal/operator/resources/{id}/retry",
    tag = "operator",
    security(("internal_secret" = []), ("operator_jwt" = [])),
    params(("id" = String, Path, description = "A resource id")),
    request_body = OperatorAction,
    responses((status = 200, description = "The next step runs now", body = idoc::OperatorDone), (status = 403, description = "A user token", body = doc::Error), (status = 404, description = "No such resource", body = doc::Error), (status = 409, description = "Nothing to retry", body = doc::Error), doc::Refusals, doc::BodyRefusals)
)]
pub async fn retry(
    State(st): State<Arc<ApiState>>,
    staff: Staff,
    PathId(id): PathId,
    ApiJson(action): ApiJson<OperatorAction>,
) -> Result<Json<Value>, ApiError> {
    let action = signed(&staff, action);
    let r = st
        .app
        .operator_retry(ResourceId::parse(&id)?, action)
        .await?;
    Ok(Json(
        json!({"status": "ok", "message": "the next step runs now", "resource": ResourceStatus::from(&r)}),
    ))
}

#[utoipa::path(
    post,
    path = "/api/internal/operator/resources/{id}/fail",
    tag = "operator",
    security(("internal_secret" = []), ("operator_jwt" = [])),
    params(("id" = String, Path, description = "A resource id")),
    request_body = OperatorAction,
    responses((status = 200, description = "Failed and reported", body = idoc::OperatorDone), (status = 403, description = "A user token", body = doc::Error), (status = 404, description = "No such resource", body = doc::Error), (status = 409, description = "Already settled", body = doc::Error), doc::Refusals, doc::BodyRefusals)
)]
pub async fn fail(
    State(st): State<Arc<ApiState>>,
    staff: Staff,
    PathId(id): PathId,
    ApiJson(action): ApiJson<OperatorAction>,
) -> Result<Json<Value>, ApiError> {
    let action = signed(&staff, action);
    let r = st
        .app
        .operator_fail(ResourceId::parse(&id)?, action)
        .await?;
    Ok(Json(json!({"status": "ok",
        "message": "failed, reported, and anything upstream is being cleaned up",
        "resource": ResourceStatus::from(&r)})))
}

/// An operator token names who pulls the lever: its name is recorded, whatever the body
/// says (with the internal secret, the body's `operator` is taken at its word).
fn signed(staff: &Staff, action: OperatorAction) -> OperatorAction {
    match staff.operator() {
        Some(name) => OperatorAction {
            operator: Some(name.to_owned()),
            ..action
        },
        None => action,
    }
}

#[utoipa::path(
    get,
    path = "/api/internal/resources/{id}/events",
    tag = "operator",
    security(("internal_secret" = []), ("operator_jwt" = [])),
    params(("id" = String, Path, description = "A resource id")),
    responses((status = 200, description = "The resource's history, oldest first", body = History), (status = 403, description = "A user token", body = doc::Error), (status = 404, description = "No such resource", body = doc::Error), doc::Refusals)
)]
pub async fn events(
    State(st): State<Arc<ApiState>>,
    _: Staff,
    PathId(id): PathId,
) -> Result<Json<History>, ApiError> {
    let events: Vec<Event> = st.app.history(ResourceId::parse(&id)?).await?;
    Ok(Json(History {
        resource_id: id,
        events: events
            .into_iter()
            .map(|e| EventView {
                kind: e.kind,
                actor: e.actor,
                message: e.message,
                at: e.at,
            })
            .collect(),
    }))
}

/// `GET /api/internal/resources/{id}/events`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct History {
    resource_id: String,
    events: Vec<EventView>,
}

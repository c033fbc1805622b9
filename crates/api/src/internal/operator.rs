//! The operators' endpoints (`/api/internal/operator/*`, `/api/internal/resources/{id}/events`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::{ApiJson, PathId, Staff};
use crate::openapi::refusals as doc;
use crate::views::ResourceStatus;
use app::{OperatorAction, ResourceId, STUCK_ATTEMPTS};
use domain::callback::FulfillmentCallback;
use domain::units::{rfc3339, rfc3339_opt};
use domain::usage::Meter;
use domain::{Event, EventKind, Resource, Status};

/// A resource in the queue, with what an operator needs to decide.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueItem {
    #[serde(flatten)]
    pub resource: ResourceStatus,
    /// `failed`, `past_deadline` or `retrying`.
    pub why: &'static str,
    /// `present` or `absent`.
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
    fn new(r: &Resource, meter: &Meter) -> Self {
        let now = meter.now;
        let why = if r.status == Status::Failed {
            "failed"
        } else if r.deadline_at.is_some_and(|d| d < now) {
            "past_deadline"
        } else {
            "retrying"
        };
        QueueItem {
            resource: ResourceStatus::new(r, meter),
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

/// A callback to the subscription service that keeps failing.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueCallback<'a> {
    outbox_id: i64,
    subscription_id: &'a str,
    #[schema(value_type = Object)]
    callback: &'a FulfillmentCallback,
    attempts: i32,
    #[schema(required = true)]
    last_error: Option<&'a str>,
    #[serde(serialize_with = "rfc3339")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    next_attempt_at: DateTime<Utc>,
}

/// A subscription with more live nodes than it pays for.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueSubscription<'a> {
    subscription_id: &'a str,
    user_id: &'a str,
    /// `over_node_limit`.
    why: &'static str,
    live_nodes: i64,
    node_limit: i64,
}

/// `GET /api/internal/operator/queue`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Queue<'a> {
    resources: Vec<QueueItem>,
    callbacks: Vec<QueueCallback<'a>>,
    subscriptions: Vec<QueueSubscription<'a>>,
    stuck_after_attempts: i32,
}

/// An operator's action done: the resource as it is now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorDone {
    /// `ok`.
    status: &'static str,
    message: &'static str,
    resource: ResourceStatus,
}

impl OperatorDone {
    fn new(message: &'static str, r: &Resource, meter: &Meter) -> Json<Self> {
        Json(OperatorDone {
            status: "ok",
            message,
            resource: ResourceStatus::new(r, meter),
        })
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
    summary = "The failed-work queue",
    tag = "operator",
    security(("internal_secret" = []), ("operator_jwt" = [])),
    responses((status = 200, description = "The failed-work queue", body = Queue), (status = 403, description = "A user token", body = doc::ErrorBody), doc::Refusals)
)]
pub async fn queue(State(st): State<Arc<ApiState>>, _: Staff) -> Result<Response, ApiError> {
    let q = st.app.operator_queue().await?;
    let meter = st.app.meter();
    let callbacks = q.callbacks.iter().map(|c| QueueCallback {
        outbox_id: c.message.id,
        subscription_id: &c.message.subscription_id,
        callback: &c.message.callback,
        attempts: c.message.attempts,
        last_error: c.last_error.as_deref(),
        created_at: c.message.created_at,
        next_attempt_at: c.next_attempt_at,
    });
    let subscriptions = q.over_limit.iter().map(|o| QueueSubscription {
        subscription_id: &o.subscription_id,
        user_id: &o.user_id,
        why: "over_node_limit",
        live_nodes: o.live_nodes,
        node_limit: o.node_limit,
    });
    let view = Queue {
        resources: q
            .resources
            .iter()
            .map(|r| QueueItem::new(r, &meter))
            .collect(),
        callbacks: callbacks.collect(),
        subscriptions: subscriptions.collect(),
        stuck_after_attempts: STUCK_ATTEMPTS,
    };
    Ok(Json(view).into_response())
}

#[utoipa::path(
    post,
    path = "/api/internal/operator/resources/{id}/retry",
    summary = "Run a resource's next step now",
    tag = "operator",
    security(("internal_secret" = []), ("operator_jwt" = [])),
    params(("id" = String, Path, description = "A resource id")),
    request_body = OperatorAction,
    responses((status = 200, description = "The next step runs now", body = OperatorDone), (status = 403, description = "A user token", body = doc::ErrorBody), (status = 404, description = "No such resource", body = doc::ErrorBody), (status = 409, description = "Nothing to retry", body = doc::ErrorBody), doc::Refusals, doc::BodyRefusals)
)]
pub async fn retry(
    State(st): State<Arc<ApiState>>,
    staff: Staff,
    PathId(id): PathId,
    ApiJson(action): ApiJson<OperatorAction>,
) -> Result<Json<OperatorDone>, ApiError> {
    let action = signed(&staff, action);
    let r = st
        .app
        .operator_retry(ResourceId::parse(&id)?, action)
        .await?;
    Ok(OperatorDone::new(
        "the next step runs now",
        &r,
        &st.app.meter(),
    ))
}

#[utoipa::path(
    post,
    path = "/api/internal/operator/resources/{id}/fail",
    summary = "Fail a resource and report it",
    tag = "operator",
    security(("internal_secret" = []), ("operator_jwt" = [])),
    params(("id" = String, Path, description = "A resource id")),
    request_body = OperatorAction,
    responses((status = 200, description = "Failed and reported", body = OperatorDone), (status = 403, description = "A user token", body = doc::ErrorBody), (status = 404, description = "No such resource", body = doc::ErrorBody), (status = 409, description = "Already settled", body = doc::ErrorBody), doc::Refusals, doc::BodyRefusals)
)]
pub async fn fail(
    State(st): State<Arc<ApiState>>,
    staff: Staff,
    PathId(id): PathId,
    ApiJson(action): ApiJson<OperatorAction>,
) -> Result<Json<OperatorDone>, ApiError> {
    let action = signed(&staff, action);
    let r = st
        .app
        .operator_fail(ResourceId::parse(&id)?, action)
        .await?;
    let done = "failed, reported, and anything upstream is being cleaned up";
    Ok(OperatorDone::new(done, &r, &st.app.meter()))
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
    summary = "A resource's history",
    tag = "operator",
    security(("internal_secret" = []), ("operator_jwt" = [])),
    params(("id" = String, Path, description = "A resource id")),
    responses((status = 200, description = "The resource's history, oldest first", body = History), (status = 403, description = "A user token", body = doc::ErrorBody), (status = 404, description = "No such resource", body = doc::ErrorBody), doc::Refusals)
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

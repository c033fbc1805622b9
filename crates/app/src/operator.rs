//! The operators' failed-work queue: what failed or is stuck, and the two levers (retry
//! now; give up, which fails, reports and cleans up). Every lever pulled is in the
//! resource's history with the operator's name and reason.

use serde::Deserialize;

use super::ids::ResourceId;
use super::{App, AppError};
use domain::input;
use domain::{EventKind, Resource};
use engine::{Applied, NotComingUp};
use ports::store::{NewEvent, OverLimit, StuckCallback};

/// Retries at or past this count put a resource (or a callback) in the queue.
pub const STUCK_ATTEMPTS: i32 = 5;
const QUEUE_LIMIT: i64 = 200;

/// Who pulls a lever, and why (both optional; the event log records them).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct OperatorAction {
    pub operator: Option<String>,
    pub reason: Option<String>,
}

impl OperatorAction {
    /// The actor and message for the history.
    fn checked(&self) -> Result<(String, Option<String>), AppError> {
        let operator = self
            .operator
            .as_deref()
            .map(str::trim)
            .filter(|o| !o.is_empty());
        if let Some(o) = operator {
            input::id(o, "operator", "invalid_operator", "operator_too_long")?;
        }
        let reason = self
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        if reason.is_some_and(|r| r.chars().count() > 1000) {
            return Err(AppError::invalid(
                "reason_too_long",
                "reason is over 1000 characters",
            ));
        }
        Ok((
            format!("operator:{}", operator.unwrap_or("unnamed")),
            reason.and_then(input::free_text),
        ))
    }
}

/// What the queue shows.
#[derive(Debug, Clone)]
pub struct Queue {
    pub resources: Vec<Resource>,
    pub callbacks: Vec<StuckCallback>,
    /// Subscriptions with more live nodes than they pay for (`over_node_limit`).
    pub over_limit: Vec<OverLimit>,
}

impl App {
    pub async fn operator_queue(&self) -> Result<Queue, AppError> {
        let now = self.ports.clock.now();
        let store = &self.ports.store;
        let (resources, callbacks, over_limit) = tokio::join!(
            store.failed_work(now, STUCK_ATTEMPTS, QUEUE_LIMIT),
            store.stuck_callbacks(STUCK_ATTEMPTS, QUEUE_LIMIT),
            store.over_node_limit(QUEUE_LIMIT),
        );
        Ok(Queue {
            resources: resources?,
            callbacks: callbacks?,
            over_limit: over_limit?,
        })
    }

    /// Makes the resource's next step happen now, with a fresh retry budget.
    pub async fn operator_retry(
        &self,
        id: ResourceId,
        a: OperatorAction,
    ) -> Result<Resource, AppError> {
        let (actor, reason) = a.checked()?;
        let mut event = NewEvent::new(EventKind::OperatorRetry, &actor);
        event.message = reason;
        self.ports
            .store
            .retry_now(id.0, &event, self.ports.clock.now())
            .await?
            .ok_or_else(|| AppError::not_found("resource_not_found", "no such live resource"))
    }

    /// Gives up on a resource that is coming up: failed, reported, and whatever exists
    /// upstream cleaned up by the engine.
    pub async fn operator_fail(
        &self,
        id: ResourceId,
        a: OperatorAction,
    ) -> Result<Resource, AppError> {
        let (actor, reason) = a.checked()?;
        let r = self.resource(id).await?;
        let msg = match reason {
            Some(why) => format!("failed by an operator: {why}"),
            None => "failed by an operator".to_owned(),
        };
        match self.engine.fail_from_outside(&r, &msg, &actor).await? {
            Applied::Done => self.resource(id).await,
            Applied::Refused(NotComingUp) => Err(AppError::conflict(
                "not_in_progress",
                format!(
                    "only a resource being created can be failed (it is {})",
                    r.status
                ),
            )),
            Applied::Stale => Err(AppError::conflict(
                "resource_busy",
                "the resource changed meanwhile; look at it again",
            )),
        }
    }
}

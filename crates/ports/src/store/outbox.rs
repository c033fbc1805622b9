//! The outbox: callbacks to the subscription service, queued with the change they report
//! and delivered in order per subscription until acknowledged.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Claim, StoreResult};
use domain::callback::FulfillmentCallback;

/// A callback waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub id: i64,
    pub subscription_id: String,
    pub callback: FulfillmentCallback,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// A callback the subscription service keeps refusing.
#[derive(Debug, Clone, PartialEq)]
pub struct StuckCallback {
    pub message: OutboxMessage,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
}

/// A callback of one resource, delivered or not (the console's history of a resource).
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackRecord {
    pub message: OutboxMessage,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
}

#[async_trait]
pub trait Outbox: Send + Sync {
    /// Leases the oldest undelivered callback of each subscription that is due.
    async fn claim_outbox(&self, claim: Claim<'_>) -> StoreResult<Vec<OutboxMessage>>;
    /// Marks callbacks delivered (those `owner` still leases), in one statement.
    async fn outbox_delivered(
        &self,
        ids: &[i64],
        owner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn outbox_retry(
        &self,
        id: i64,
        owner: &str,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> StoreResult<()>;
    async fn next_outbox_due(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// Callbacks not yet delivered.
    async fn outbox_backlog(&self) -> StoreResult<i64>;
    /// Callbacks retried at least `min_attempts` times and still undelivered.
    async fn stuck_callbacks(
        &self,
        min_attempts: i32,
        limit: i64,
    ) -> StoreResult<Vec<StuckCallback>>;
    /// The callbacks queued for a resource, oldest first (at most `limit`), delivered
    /// (until purged) or not.
    async fn callbacks_of(&self, resource_id: &str, limit: i64)
    -> StoreResult<Vec<CallbackRecord>>;
    /// Deletes up to `limit` callbacks delivered before `before`; returns how many.
    /// Undelivered callbacks are never deleted.
    async fn purge_delivered_outbox(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<u64>;
}

//! Durable state: the `Store` trait and its two implementations, PostgreSQL (production,
//! any number of replicas) and SQLite (embedded, one process). Both run the same SQL where
//! the dialects agree (see `sql.rs`) and differ only in how work is claimed and how waiting
//! workers are woken. One conformance suite (`tests/store_conformance.rs`) runs on both.

mod node_lookups;
mod postgres;
mod row;
mod sql;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::domain::entitlement::{Entitlement, OrderTerms};
use crate::domain::progress::SubscriptionSnapshot;
use crate::domain::{
    Connection, DeleteReason, Desired, Event, EventKind, Resource, ResourceKind, Status,
};
use crate::ports::FulfillmentCallback;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Storage failures, typed so callers can map them: a missing row, a uniqueness conflict,
/// or the database being unreachable (which the API answers with 503).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
            // A connection cut mid-conversation (a server going down) reads as garbage.
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_owned())
            }
            // Deadlock or serialization failure: the transaction can simply run again.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("40P01" | "40001")) =>
            {
                StoreError::Conflict(db.message().to_owned())
            }
            sqlx::Error::Database(db) if is_transient_db_error(db.code().as_deref()) => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

/// PostgreSQL shutting down or refusing connections, SQLite busy: worth a retry.
fn is_transient_db_error(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("57P01" | "57P02" | "57P03" | "53300" | "08000" | "08003" | "08006" | "5" | "6")
    )
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A hosting region.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Region {
    pub code: String,
    pub name: String,
    pub provider: String,
    pub available: bool,
}

/// A resource to record, with its first event.
#[derive(Debug, Clone)]
pub struct NewResource {
    pub id: Uuid,
    pub kind: ResourceKind,
    pub subscription_id: String,
    pub user_id: String,
    pub user_email: Option<String>,
    pub order_key: String,
    pub provider: String,
    pub region: String,
    pub plan_tier: String,
    pub traffic_limit: i64,
    /// Who asked: `subscription_service`, `user`, `admin`.
    pub actor: String,
}

/// What `insert_resource` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    Created(Resource),
    /// The subscription already has a live node: this is it (a repeated order).
    ExistingForSubscription(Resource),
    /// The user already has a live node on another subscription.
    ExistingForUser(Resource),
}

/// Who may write: the worker holding the lease, or anyone (callbacks, operators) when the
/// compare-and-set on status alone is enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    Lease(String),
    Unleased,
}

/// How a change moves the failure counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Attempts {
    #[default]
    Keep,
    Reset,
    Increment,
}

/// An event to append with a change.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub actor: String,
    pub message: Option<String>,
}

impl NewEvent {
    pub fn new(kind: EventKind, actor: &str) -> Self {
        NewEvent {
            kind,
            actor: actor.to_owned(),
            message: None,
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// One compare-and-set write to a resource, applied in one transaction together with its
/// event and its outbox callback. Fields left `None` keep their stored value.
#[derive(Debug, Clone)]
pub struct Change {
    pub id: Uuid,
    pub guard: Guard,
    /// The status the row must have for the change to apply.
    pub expect: Status,
    /// The desired state the row must have, when it matters (a ready callback must not
    /// touch a resource someone asked to delete).
    pub expect_desired: Option<Desired>,
    pub status: Option<Status>,
    pub node_id: Option<String>,
    /// Raise the creation step to at least this.
    pub phase: Option<i32>,
    pub connection: Option<Connection>,
    pub error_message: Option<String>,
    pub last_error: Option<String>,
    pub callback_token_hash: Option<String>,
    pub upstream_released: Option<bool>,
    pub traffic_limit: Option<i64>,
    pub ready_at: Option<DateTime<Utc>>,
    /// `Some(x)` sets the deadline to `x` (`Some(None)` clears it).
    pub deadline_at: Option<Option<DateTime<Utc>>>,
    pub attempts: Attempts,
    /// `Some(x)` reschedules the row (`Some(None)`: nothing left to do). If the desired
    /// state changed since `seen_generation`, the row is due at once instead.
    pub next_attempt_at: Option<Option<DateTime<Utc>>>,
    pub seen_generation: i64,
    /// Likewise for the VPN terms: if they changed since, the row is due at once.
    pub seen_spec_version: i64,
    /// Give the lease back with this change.
    pub release_lease: bool,
    /// Appended to the history, in order, with the change.
    pub events: Vec<NewEvent>,
    /// Callbacks to queue in the outbox with the change, in order.
    pub callbacks: Vec<FulfillmentCallback>,
    /// The VPN manager's uuid for a VPN user.
    pub vpn_user_id: Option<String>,
    /// The VPN manager now holds this `spec_version` of the terms.
    pub applied_version: Option<i64>,
    /// Marks the resource's entitlements up to this `spec_version` as reported (their
    /// callbacks are in `callbacks`).
    pub report_through: Option<i64>,
    pub now: DateTime<Utc>,
}

impl Change {
    /// A change that expects `resource` to still be in the state it was read in.
    pub fn on(resource: &Resource, guard: Guard, now: DateTime<Utc>) -> Self {
        Change {
            id: resource.id,
            guard,
            expect: resource.status,
            expect_desired: None,
            status: None,
            node_id: None,
            phase: None,
            connection: None,
            error_message: None,
            last_error: None,
            callback_token_hash: None,
            upstream_released: None,
            traffic_limit: None,
            ready_at: None,
            deadline_at: None,
            attempts: Attempts::Keep,
            next_attempt_at: None,
            seen_generation: resource.generation,
            seen_spec_version: resource.vpn.spec_version,
            release_lease: false,
            events: Vec::new(),
            callbacks: Vec::new(),
            vpn_user_id: None,
            applied_version: None,
            report_through: None,
            now,
        }
    }
}

/// A VPN order (or gift) to record.
#[derive(Debug, Clone)]
pub struct VpnOrder {
    /// The id of the VPN user resource, if the user needs a new one.
    pub resource_id: Uuid,
    pub entitlement_id: Uuid,
    pub user_id: String,
    pub email: Option<String>,
    /// `None` for gifts.
    pub subscription_id: Option<String>,
    /// The order's identity (`None` for gifts): a second delivery changes nothing.
    pub order_key: Option<String>,
    pub channel: String,
    pub business_type: String,
    pub plan_tier: String,
    pub service_tier: String,
    pub terms: OrderTerms,
    /// The account's expiry as the VPN manager reported it when the order arrived
    /// (`None` when it has no account yet or could not be read).
    pub upstream_expiry: Option<DateTime<Utc>>,
    pub is_trial: bool,
    pub device_id: Option<String>,
    pub note: Option<String>,
    pub actor: String,
    /// When the engine may take the resource over (the request tries first, and the engine
    /// finishes what the request did not).
    pub due_at: DateTime<Utc>,
}

/// What recording a VPN order did.
#[derive(Debug, Clone, PartialEq)]
pub enum VpnOrderOutcome {
    /// Recorded, with the VPN user resource as it is after the write.
    Recorded {
        entitlement: Entitlement,
        resource: Resource,
    },
    /// The same order was recorded before; nothing changed.
    Duplicate {
        entitlement: Entitlement,
        resource: Resource,
    },
    /// A trial was asked for, but the user, device or email had one already.
    TrialUsed,
}

/// Changes to a VPN user's current entitlement (`PUT /resources/{id}/vpn`).
#[derive(Debug, Clone, Default)]
pub struct VpnAdjustment {
    pub traffic_limit: Option<i64>,
    pub extend_days: Option<i64>,
    pub plan_tier: Option<String>,
    pub service_tier: Option<String>,
}

/// Filters of `GET /api/internal/entitlements`.
#[derive(Debug, Clone, Default)]
pub struct EntitlementFilter {
    pub user_id: Option<String>,
    pub business_type: Option<String>,
    /// A stored status, or `expired` (an `active` row past its expiry).
    pub status: Option<String>,
    pub limit: i64,
}

/// A user's VPN as the store knows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VpnRecord {
    /// The current entitlement, else the latest one.
    pub entitlement: Option<Entitlement>,
    /// The latest VPN user resource.
    pub resource: Option<Resource>,
}

/// A node agent's report: cumulative counters since the node booted, and its load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeStats {
    pub rx_bytes: i64,
    pub tx_bytes: i64,
    pub load1: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub mem_percent: Option<f64>,
    /// When the sample was taken (the agent's clock, never later than ours; else arrival):
    /// samples older than the last one recorded are ignored.
    pub at: DateTime<Utc>,
}

/// A callback the subscription service keeps refusing.
#[derive(Debug, Clone, PartialEq)]
pub struct StuckCallback {
    pub message: OutboxMessage,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
}

/// A callback waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub id: i64,
    pub subscription_id: String,
    pub callback: FulfillmentCallback,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// What the store remembers of a user's subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSnapshot {
    /// Whether the last answer said "active".
    pub active: bool,
    /// The last active subscription seen.
    pub last_active: Option<SubscriptionSnapshot>,
    pub fetched_at: DateTime<Utc>,
}

/// The state of an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyBegin {
    /// First use: go ahead, then `idempotency_finish`.
    Proceed,
    /// Done before with the same body: answer this again.
    Replay { status: u16, body: String },
    /// Same key, different body.
    Mismatch,
    /// The first request with this key has not finished.
    InFlight,
}

/// Wake-ups for the engine's loops. PostgreSQL fans them out across replicas with
/// LISTEN/NOTIFY; SQLite signals in process.
#[derive(Debug, Default)]
pub struct Wakeups {
    pub resources: Notify,
    pub outbox: Notify,
}

/// Lease settings for claims.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub owner: &'a str,
    pub now: DateTime<Utc>,
    pub lease: Duration,
    pub limit: i64,
}

impl Claim<'_> {
    pub fn lease_until(&self) -> DateTime<Utc> {
        crate::domain::units::after(self.now, self.lease)
    }
}

/// The storage port. Every method is one short transaction; none holds a transaction
/// across a call to another service.
#[async_trait]
pub trait Store: Send + Sync {
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;
    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// The signals the engine waits on.
    fn wakeups(&self) -> Arc<Wakeups>;

    async fn regions(&self) -> StoreResult<Vec<Region>>;

    /// Records a new resource with its first event, unless the subscription (or the user)
    /// already has a live hosting node: uniqueness is enforced by the database.
    async fn insert_resource(&self, new: &NewResource, now: DateTime<Utc>)
    -> StoreResult<Inserted>;
    /// Sets the desired state to `deleted` (once; later calls return the row unchanged).
    async fn request_deletion(
        &self,
        id: Uuid,
        reason: DeleteReason,
        actor: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Resource>>;
    async fn resource(&self, id: Uuid) -> StoreResult<Option<Resource>>;
    /// Resources of a subscription: its nodes, and the VPN users any of its entitlements apply to.
    async fn resources_for_subscription(&self, subscription_id: &str)
    -> StoreResult<Vec<Resource>>;
    /// The user's live hosting node that is meant to exist, if any.
    async fn current_hosting_node(&self, user_id: &str) -> StoreResult<Option<Resource>>;
    /// Node ids recorded on any resource, to tell our nodes apart when adopting one.
    async fn node_owner(&self, node_id: &str) -> StoreResult<Option<Uuid>>;
    async fn events(&self, id: Uuid) -> StoreResult<Vec<Event>>;
    /// Appends to a resource's history without changing it.
    async fn append_event(&self, id: Uuid, event: &NewEvent, now: DateTime<Utc>)
    -> StoreResult<()>;
    /// The digest of the node credential minted for this resource, if any.
    async fn node_credential(&self, id: Uuid) -> StoreResult<Option<String>>;

    /// Leases up to `limit` resources whose next attempt is due.
    async fn claim_resources(&self, claim: Claim<'_>) -> StoreResult<Vec<Resource>>;
    /// Applies a compare-and-set change; `false` when the guard did not match.
    async fn apply(&self, change: &Change) -> StoreResult<bool>;
    /// Extends a lease its owner still holds (a step that runs long); `false` when it does
    /// not hold it any more.
    async fn extend_lease(&self, id: Uuid, owner: &str, until: DateTime<Utc>) -> StoreResult<bool>;
    /// Gives a lease back and makes the row due now (after a lost compare-and-set).
    async fn release(&self, id: Uuid, owner: &str, now: DateTime<Utc>) -> StoreResult<()>;
    /// When the earliest scheduled resource is due.
    async fn next_resource_due(&self) -> StoreResult<Option<DateTime<Utc>>>;

    /// Leases the oldest undelivered callback of each subscription that is due.
    async fn claim_outbox(&self, claim: Claim<'_>) -> StoreResult<Vec<OutboxMessage>>;
    async fn outbox_delivered(&self, id: i64, owner: &str, now: DateTime<Utc>) -> StoreResult<()>;
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

    /// Records the subscription service's answer (`None`: no active subscription) and
    /// returns the last active subscription on record after the write.
    async fn save_subscription(
        &self,
        user_id: &str,
        app: &str,
        active: Option<&SubscriptionSnapshot>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<SubscriptionSnapshot>>;
    async fn subscription(&self, user_id: &str, app: &str) -> StoreResult<Option<StoredSnapshot>>;

    /// Records a VPN order in one transaction: the entitlement (demoting the current one,
    /// or folding a gift into it), the VPN user resource's new terms (creating the resource
    /// if the user has none live), and the history. The same order twice, even concurrently,
    /// is recorded once; a second trial for a user, device or email is refused.
    async fn record_vpn_order(
        &self,
        order: &VpnOrder,
        now: DateTime<Utc>,
    ) -> StoreResult<VpnOrderOutcome>;
    async fn vpn_of_user(&self, user_id: &str) -> StoreResult<VpnRecord>;
    async fn entitlements(
        &self,
        filter: &EntitlementFilter,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Entitlement>>;
    async fn entitlements_for_subscription(
        &self,
        subscription_id: &str,
    ) -> StoreResult<Vec<Entitlement>>;
    /// The resource's entitlements up to `version` whose `active` callback is not queued.
    async fn unreported_entitlements(
        &self,
        resource_id: Uuid,
        version: i64,
    ) -> StoreResult<Vec<Entitlement>>;
    /// Ends a subscription's entitlements. When one of them was the user's current one, the
    /// VPN user is to be deleted (returned); otherwise the `deleted` callback is queued at
    /// once, since nothing changes at the VPN manager. `None` when nothing matches.
    async fn cancel_vpn_subscription(
        &self,
        subscription_id: &str,
        reason: DeleteReason,
        actor: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Resource>>;
    /// Changes the current entitlement of a VPN user resource and schedules the update at
    /// the VPN manager; `None` when the resource is not a live VPN user with one.
    async fn adjust_vpn(
        &self,
        resource_id: Uuid,
        adjustment: &VpnAdjustment,
        due_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(Entitlement, Resource)>>;
    /// Records a user's new email on their live resources and current entitlement, and
    /// schedules the VPN manager update. Returns the live VPN user, if any.
    async fn set_user_email(
        &self,
        user_id: &str,
        email: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Resource>>;
    /// Whether another VPN user resource of this user is still being deleted (a new
    /// account must wait: the VPN manager keeps one per user).
    async fn vpn_user_deleting(&self, user_id: &str, except: Uuid) -> StoreResult<bool>;
    /// Leases one resource, due or not (a request driving its own order).
    async fn claim_resource(&self, id: Uuid, claim: Claim<'_>) -> StoreResult<Option<Resource>>;

    /// Live VPN users with an account and unexpired terms, by id after `after`.
    async fn vpn_sync_page(
        &self,
        after: Option<Uuid>,
        limit: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(Uuid, String)>>;
    /// Records traffic read from the VPN manager, one statement for the whole batch.
    async fn record_vpn_usage(&self, usage: &[(Uuid, i64)], now: DateTime<Utc>) -> StoreResult<()>;
    /// Records a node agent's report, counting each byte once: a counter lower than the last
    /// one is a reset (the node rebooted) and counts from zero; a sample older than the
    /// last is ignored, and a repeat adds nothing. `false` when the resource is not a live hosting node.
    async fn record_node_stats(&self, id: Uuid, stats: &NodeStats) -> StoreResult<bool>;

    /// Leases a periodic job when it is due; `false` when it is not due or another worker
    /// holds it. A job never seen before is first due at `first_run_at`.
    async fn claim_job(
        &self,
        name: &str,
        first_run_at: DateTime<Utc>,
        claim: Claim<'_>,
    ) -> StoreResult<bool>;
    async fn finish_job(
        &self,
        name: &str,
        owner: &str,
        next_run_at: DateTime<Utc>,
        result: &str,
    ) -> StoreResult<()>;

    /// Deletes up to `limit` `Idempotency-Key`s whose request finished and that were
    /// first seen before `before`; returns how many. Keys in flight are kept.
    async fn purge_idempotency_keys(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<u64>;
    /// Deletes up to `limit` callbacks delivered before `before`; returns how many.
    /// Undelivered callbacks are never deleted.
    async fn purge_delivered_outbox(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<u64>;

    /// Resources an operator should look at: failed (and still meant to exist), past
    /// their deadline, or retried at least `min_attempts` times; oldest change first.
    async fn failed_work(
        &self,
        now: DateTime<Utc>,
        min_attempts: i32,
        limit: i64,
    ) -> StoreResult<Vec<Resource>>;
    /// Callbacks retried at least `min_attempts` times and still undelivered.
    async fn stuck_callbacks(
        &self,
        min_attempts: i32,
        limit: i64,
    ) -> StoreResult<Vec<StuckCallback>>;
    /// Makes a resource due now with a fresh retry budget, recording who asked and why.
    /// `None` when it does not exist or is already deleted.
    async fn retry_now(
        &self,
        id: Uuid,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Resource>>;

    async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<IdempotencyBegin>;
    async fn idempotency_finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> StoreResult<()>;
    /// Forgets an unfinished key so the caller may retry (the request failed before acting).
    async fn idempotency_abandon(&self, scope: &str, key: &str) -> StoreResult<()>;
}

/// Opens the store a URL names: `postgres://…` or `sqlite://…`, applying migrations.
/// `max_connections` sizes PostgreSQL's pool (SQLite has one writer).
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, max_connections).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        anyhow::bail!("DB_URL must start with postgres:// or sqlite:, got {url:?}")
    }
}

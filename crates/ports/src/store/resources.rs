//! Resources (hosting nodes and VPN users): recording them, reading them, their history,
//! and what node agents report.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::StoreResult;
use domain::slots::SlotChoice;
use domain::usage::DayUsage;
use domain::{DeleteReason, Event, EventKind, Resource, ResourceKind};

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
    /// The slots of its subscription a hosting node may take (VPN users take none).
    pub slots: SlotChoice,
    /// A VPS the hosting service already holds for it (recovered after our database lost
    /// the resource): it is recorded `creating` on that VPS, so the engine looks at it
    /// rather than creating another.
    pub recovered_node: Option<String>,
}

/// What `insert_resource` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    Created(Box<Resource>),
    /// Every slot it may take is held: the subscription's live nodes, oldest first.
    Full(Vec<Resource>),
}

/// An event to append to a resource's history.
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

/// The digests of a node's credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeCredentials {
    /// The serving VPS's agent.
    pub current: Option<String>,
    /// The agent of the VPS a migration prepares.
    pub migration: Option<String>,
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

#[async_trait]
pub trait Resources: Send + Sync {
    /// Records a new hosting node with its first event in a free slot of its subscription
    /// (`new.slots`), unless every such slot is held: the limit is enforced by the
    /// database's unique slot index.
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
    /// Resources of a subscription: its nodes, and the VPN users any of its entitlements
    /// apply to.
    async fn resources_for_subscription(&self, subscription_id: &str)
    -> StoreResult<Vec<Resource>>;
    /// The user's oldest live hosting node that is meant to exist, if any.
    async fn current_hosting_node(&self, user_id: &str) -> StoreResult<Option<Resource>>;
    /// The resource a node id is recorded on, to tell our nodes apart when adopting one.
    async fn node_owner(&self, node_id: &str) -> StoreResult<Option<Uuid>>;
    /// Every resource that names a node (its VPS, a migration's, a retired one), and
    /// whether each was imported from the Go service: how the sweep judges a VPS without
    /// our correlation id.
    async fn node_claims(&self, node_id: &str) -> StoreResult<Vec<domain::orphans::Claim>>;
    async fn events(&self, id: Uuid) -> StoreResult<Vec<Event>>;
    /// The users whose resources recorded events after event `after` (at most `limit`
    /// events' worth), and the last event id read: from there the next call goes on.
    /// Without `after`, only where the history ends now.
    async fn users_with_events_after(
        &self,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<(i64, Vec<String>)>;
    /// Appends to a resource's history without changing it.
    async fn append_event(&self, id: Uuid, event: &NewEvent, now: DateTime<Utc>)
    -> StoreResult<()>;
    /// The digests of the node credentials minted for this resource: its VPS's and a
    /// migration's new VPS's.
    async fn node_credential(&self, id: Uuid) -> StoreResult<NodeCredentials>;
    /// Records a node agent's report, counting each byte once: a counter lower than the last
    /// one is a reset (the node rebooted) and counts from zero; a sample older than the
    /// last is ignored, and a repeat adds nothing. `false` when the resource is not a live
    /// hosting node. The growth is added to the all-time count, the tally of the month
    /// the report was taken in, and that day's usage row, in one transaction.
    async fn record_node_stats(&self, id: Uuid, stats: &NodeStats) -> StoreResult<bool>;
    /// A node's usage rows from `first_day` to `last_day` (both included), oldest first;
    /// days without use have no row.
    async fn node_usage(
        &self,
        id: Uuid,
        first_day: NaiveDate,
        last_day: NaiveDate,
    ) -> StoreResult<Vec<DayUsage>>;
    /// Deletes at most `limit` usage rows of days before `before` (retention); how many.
    async fn purge_node_usage(&self, before: NaiveDate, limit: i64) -> StoreResult<u64>;

    /// Resources an operator should look at: failed (and still meant to exist), past
    /// their deadline, or retried at least `min_attempts` times; oldest change first.
    async fn failed_work(
        &self,
        now: DateTime<Utc>,
        min_attempts: i32,
        limit: i64,
    ) -> StoreResult<Vec<Resource>>;
    /// Makes a resource due now with a fresh retry budget, recording who asked and why.
    /// `None` when it does not exist or is already deleted.
    async fn retry_now(
        &self,
        id: Uuid,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Resource>>;
}

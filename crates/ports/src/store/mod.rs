//! The storage port, one trait per aggregate, and `Store`, the umbrella every adapter
//! implements so the core can hold one `Arc<dyn Store>`. Every method is one short
//! transaction; none holds a transaction across a call to another service. A caller
//! imports the aggregate traits it uses, which is also a map of who touches what.

mod error;
mod idempotency;
mod import;
mod jobs;
mod monitoring;
mod nodes;
mod outbox;
mod resources;
mod snapshots;
mod vpn;
mod work;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use crate::change_bus::{ChangeBus, Changed, Observer, Signal};
pub use error::{BoxError, StoreError, StoreResult};
pub use idempotency::{Idempotency, IdempotencyBegin};
pub use import::{Import, ImportSession, ImportedLogs, ImportedNodes, ImportedVpn};
pub use jobs::Jobs;
pub use monitoring::{HOT_PERCENT, LoadSort, Monitoring, NodeLoadRow, NodesOver, Readings};
pub use nodes::{HostingOrder, LatestOrder, Nodes, NodesOf, OrderRecorded, OverLimit};
pub use outbox::{CallbackRecord, Outbox, OutboxMessage, StuckCallback};
pub use resources::{Inserted, NewEvent, NewResource, NodeCredentials, NodeStats, Resources};
pub use snapshots::{Region, Snapshots, StoredSnapshot};
pub use vpn::{
    AdoptedTerms, EntitlementFilter, VpnAdjustment, VpnOrder, VpnOrderOutcome, VpnRecord, VpnUsers,
};
pub use work::{Attempts, Change, Guard, Work};

/// The whole store: every aggregate, plus what concerns the database itself.
#[async_trait]
pub trait Store:
    Resources
    + Nodes
    + Work
    + VpnUsers
    + Outbox
    + Jobs
    + Idempotency
    + Snapshots
    + Monitoring
    + Import
    + Send
    + Sync
{
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;
    /// Whether other processes may write this database (PostgreSQL: replicas), so that
    /// news of their changes can be missed (see `engine::news_net`).
    fn shared(&self) -> bool;
    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// The signals the engine waits on.
    fn bus(&self) -> Arc<ChangeBus>;
    /// Sends the news of this process's commits the other replicas have not heard yet
    /// (a clean stop's last word; news is otherwise sent in batches).
    async fn flush(&self) -> StoreResult<()>;
}

/// Lease settings for a claim (of resources, callbacks or a job).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub owner: &'a str,
    pub now: DateTime<Utc>,
    pub lease: Duration,
    pub limit: i64,
}

impl Claim<'_> {
    pub fn lease_until(&self) -> DateTime<Utc> {
        domain::units::after(self.now, self.lease)
    }
}

/// How often a running process beats its lifeline.
pub const LIFELINE_BEAT: Duration = Duration::from_secs(1);

/// A lifeline this much older than its last beat is a dead process's: the beats of two
/// beat periods were missed.
pub const LIFELINE_STALE: Duration = Duration::from_millis(2_500);

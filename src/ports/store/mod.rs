//! The storage port, one trait per aggregate, and `Store`, the umbrella every adapter
//! implements so the core can hold one `Arc<dyn Store>`. Every method is one short
//! transaction; none holds a transaction across a call to another service. A caller
//! imports the aggregate traits it uses, which is also a map of who touches what.

mod error;
mod idempotency;
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
use tokio::sync::{Notify, broadcast};

pub use error::{BoxError, StoreError, StoreResult};
pub use idempotency::{Idempotency, IdempotencyBegin};
pub use jobs::Jobs;
pub use monitoring::{HOT_PERCENT, LoadSort, Monitoring, NodeLoadRow, NodesOver, Readings};
pub use nodes::{HostingOrder, LatestOrder, Nodes, NodesOf, OrderRecorded, OverLimit};
pub use outbox::{CallbackRecord, Outbox, OutboxMessage, StuckCallback};
pub use resources::{Inserted, NewEvent, NewResource, NodeCredentials, NodeStats, Resources};
pub use snapshots::{Region, Snapshots, StoredSnapshot};
pub use vpn::{EntitlementFilter, VpnAdjustment, VpnOrder, VpnOrderOutcome, VpnRecord, VpnUsers};
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
    + Send
    + Sync
{
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;
    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// The signals the engine waits on.
    fn wakeups(&self) -> Arc<Wakeups>;
}

/// Wake-ups for the engine's loops, and news of whose documents changed for the live
/// streams. PostgreSQL fans them out across replicas with LISTEN/NOTIFY; SQLite signals in
/// process.
#[derive(Debug)]
pub struct Wakeups {
    pub resources: Notify,
    pub outbox: Notify,
    /// Sent after a commit that recorded a resource's event (a status, a creation step,
    /// connection details), never for usage reports.
    pub users: broadcast::Sender<Changed>,
}

/// News that what `GET /my/node` or `GET /my/vpn` answers may have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// This user's documents.
    User(Arc<str>),
    /// Anyone's: notifications may have been missed (the listener reconnected).
    Everyone,
}

/// News kept for a listener that falls behind; past it, the listener hears `Everyone`.
const CHANGES_BUFFERED: usize = 4096;

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups {
            resources: Notify::new(),
            outbox: Notify::new(),
            users: broadcast::channel(CHANGES_BUFFERED).0,
        }
    }
}

impl Wakeups {
    /// Tells the live streams in this process.
    pub fn changed(&self, change: Changed) {
        // No receiver (no hub listening) is not an error.
        let _ = self.users.send(change);
    }
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
        crate::domain::units::after(self.now, self.lease)
    }
}

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
pub struct Wakeups {
    pub resources: Notify,
    pub outbox: Notify,
    /// Sent after a commit that recorded a resource's event (a status, a creation step,
    /// connection details), never for usage reports.
    pub users: broadcast::Sender<Changed>,
    /// Told of every change synchronously: this process's own before its commit returns,
    /// other replicas' as they are heard (the read model's invalidation).
    observers: std::sync::RwLock<Vec<Observer>>,
    /// Whether every replica's changes reach this process now (false while PostgreSQL's
    /// listener is not listening: changes may be missed, so nothing may be cached).
    hearing: std::sync::atomic::AtomicBool,
}

/// Something told of every change to users' documents (see `Wakeups::observe`).
pub type Observer = Arc<dyn Fn(&Changed) + Send + Sync>;

impl std::fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeups")
            .field("hearing", &self.hearing())
            .finish_non_exhaustive()
    }
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
            observers: std::sync::RwLock::new(Vec::new()),
            hearing: std::sync::atomic::AtomicBool::new(true),
        }
    }
}

impl Wakeups {
    /// Tells the observers, then the live streams in this process.
    pub fn changed(&self, change: Changed) {
        self.observed(&change);
        // No receiver (no hub listening) is not an error.
        let _ = self.users.send(change);
    }

    /// Tells the observers of changes this process has just committed (the live streams
    /// hear of them with every other replica's).
    pub fn committed(&self, users: &[String]) {
        for user in users {
            self.observed(&Changed::User(user.as_str().into()));
        }
    }

    /// Registers an observer of every change (see `observers`).
    pub fn observe(&self, observer: Observer) {
        self.observers.write().unwrap().push(observer);
    }

    /// Whether news of every replica's changes reaches this process now.
    pub fn hearing(&self) -> bool {
        self.hearing.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Says whether news of every replica's changes reaches this process. Stopping to hear
    /// is itself news: whatever was known may go stale unheard.
    pub fn set_hearing(&self, hearing: bool) {
        let was = self
            .hearing
            .swap(hearing, std::sync::atomic::Ordering::AcqRel);
        if was && !hearing {
            self.observed(&Changed::Everyone);
        }
    }

    fn observed(&self, change: &Changed) {
        for observer in self.observers.read().unwrap().iter() {
            observer(change);
        }
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

/// How often a running process beats its lifeline.
pub const LIFELINE_BEAT: Duration = Duration::from_secs(1);

/// A lifeline this much older than its last beat is a dead process's: the beats of two
/// beat periods were missed.
pub const LIFELINE_STALE: Duration = Duration::from_millis(2_500);

//! The engine: workers that drive every resource toward its desired state and deliver
//! every callback, with all their state in the database. Each worker claims a batch of due
//! items, takes one idempotent step per item (writing the outcome with compare-and-set),
//! and sleeps until woken, until the next item is due, or until the fallback poll. Any process can die at any instant: leases expire and another worker
//! continues from what the database says.

mod backoff;
mod jobs;
mod lifecycle;
mod node;
mod outbox;
mod reports;
mod retention;
mod runner;
mod step;
mod sweep;
mod traffic;
mod vpn_user;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use backoff::Backoff;
pub use retention::{RETENTION_JOB, RetentionReport};
pub use runner::{Shutdown, spawn};
pub use step::StepError;
pub use sweep::{SWEEP_JOB, SweepError, SweepReport};
pub use traffic::{SyncReport, TRAFFIC_JOB};

use crate::ports::Ports;

/// Tuning for the engine. Defaults suit production; tests shorten the times.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This worker's identity in leases (unique per process).
    pub owner: String,
    /// How long a claim is held before another worker may take the item over.
    pub lease: Duration,
    /// Items in flight at once, per loop.
    pub concurrency: usize,
    /// Upper bound on the sleep between looks at the queue.
    pub fallback_poll: Duration,
    /// After a wake-up, how long to let more work arrive before claiming, so a burst is
    /// claimed in one batch rather than one query per item.
    pub batch_window: Duration,
    /// How often a node that is coming up is polled.
    pub node_poll: Duration,
    /// How long a node may take to become ready before it is failed.
    pub ready_timeout: Duration,
    /// Retry delays for failed upstream calls.
    pub backoff: Backoff,
    /// Base URL the node agent reports to (`…/ready`, `…/failed`).
    pub node_callback_url: String,
    pub cloud_provider: String,
    pub node_api_port: i32,
    /// How often VPN traffic is read from the VPN manager (one replica at a time).
    pub vpn_sync_interval: Duration,
    /// VPN manager reads per second during a traffic sync, at most.
    pub vpn_sync_rate: u32,
    /// How often the orphan sweep runs (one replica at a time).
    pub orphan_sweep_interval: Duration,
    /// Nodes younger than this are never swept (they may not be linked yet).
    pub orphan_grace: Duration,
    /// Most deletions per sweep.
    pub orphan_max_per_run: usize,
    /// Report orphans without deleting them.
    pub orphan_dry_run: bool,
    /// How long finished `Idempotency-Key`s are kept.
    pub idempotency_retention: Duration,
    /// How long delivered callbacks are kept.
    pub outbox_retention: Duration,
    /// How often the retention pass runs.
    pub retention_interval: Duration,
}

impl EngineConfig {
    pub fn new(node_callback_url: String) -> Self {
        EngineConfig {
            owner: format!(
                "{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            lease: Duration::from_secs(15),
            concurrency: 32,
            fallback_poll: Duration::from_secs(5),
            batch_window: Duration::from_millis(5),
            node_poll: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(600),
            backoff: Backoff::default(),
            node_callback_url,
            cloud_provider: "lightsail".into(),
            node_api_port: 8080,
            vpn_sync_interval: Duration::from_secs(300),
            vpn_sync_rate: 50,
            orphan_sweep_interval: Duration::from_secs(600),
            orphan_grace: Duration::from_secs(1800),
            orphan_max_per_run: 10,
            orphan_dry_run: false,
            idempotency_retention: Duration::from_secs(24 * 3600),
            outbox_retention: Duration::from_secs(7 * 24 * 3600),
            retention_interval: Duration::from_secs(3600),
        }
    }
}

/// The reconciler and the outbox dispatcher over one set of ports.
pub struct Engine {
    pub ports: Ports,
    pub config: EngineConfig,
    /// The earliest time this process's own steps scheduled more work for (unix ms), so
    /// the loops can sleep exactly until then without asking the database.
    next_resource_wake: AtomicI64,
    next_outbox_wake: AtomicI64,
    /// Set to the loop's name when one of the engine's loops ends without being told to
    /// (a panic, a bug): the process can then no longer do its job, and says so.
    died: tokio::sync::watch::Sender<Option<&'static str>>,
}

impl Engine {
    pub fn new(ports: Ports, config: EngineConfig) -> Arc<Self> {
        Arc::new(Engine {
            ports,
            config,
            next_resource_wake: AtomicI64::new(i64::MAX),
            next_outbox_wake: AtomicI64::new(i64::MAX),
            died: tokio::sync::watch::channel(None).0,
        })
    }

    /// The loop that died, if one did (readiness fails then, and `serve` exits).
    pub fn dead_loop(&self) -> Option<&'static str> {
        *self.died.borrow()
    }

    /// Resolves when one of the engine's loops has died, with its name.
    pub async fn died(&self) -> &'static str {
        let mut rx = self.died.subscribe();
        loop {
            if let Some(name) = *rx.borrow_and_update() {
                return name;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    fn schedule_wake(slot: &AtomicI64, at: DateTime<Utc>) {
        slot.fetch_min(at.timestamp_millis(), Ordering::Relaxed);
    }

    /// Takes the earliest wake-up scheduled since the last call.
    fn take_wake(slot: &AtomicI64) -> Option<DateTime<Utc>> {
        let ms = slot.swap(i64::MAX, Ordering::Relaxed);
        (ms != i64::MAX)
            .then(|| DateTime::from_timestamp_millis(ms))
            .flatten()
    }
}

//! The engine: workers that drive every resource toward its desired state and deliver
//! every callback, with all their state in the database. Each worker claims a batch of due
//! items, takes one idempotent step per item (writing the outcome with compare-and-set),
//! and sleeps until woken, until the next item is due, or until the fallback poll. Any process can die at any instant: leases expire and another worker
//! continues from what the database says.

mod backoff;
mod config;
mod jobs;
mod lifecycle;
mod migration;
mod news_net;
mod node;
mod outbox;
mod requests;
mod retention;
mod runner;
mod step;
mod sweep;
#[cfg(test)]
mod tests;
mod traffic;
mod vpn_user;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

pub use backoff::Backoff;
pub use config::{EngineConfig, RetentionConfig, SweepConfig, TrafficConfig};
pub use news_net::NET_EVERY;
pub use requests::{Applied, NotComingUp};
pub use retention::{RETENTION_JOB, RetentionReport};
pub use runner::{Shutdown, spawn};
pub use step::StepError;
pub use sweep::{SWEEP_JOB, SweepError, SweepReport};
pub use traffic::{SyncReport, TRAFFIC_JOB};

use ports::Ports;

/// The reconciler and the outbox dispatcher over one set of ports.
pub struct Engine {
    pub ports: Ports,
    pub config: EngineConfig,
    /// The earliest time this process's own steps scheduled more work for (unix ms), so
    /// the loops can sleep exactly until then without asking the database.
    next_resource_wake: AtomicI64,
    next_outbox_wake: AtomicI64,
    /// Leases this process is working under now (steps, deliveries, job passes): its
    /// lifeline beats while there are any, and rests when there are none.
    holding: std::sync::atomic::AtomicUsize,
    /// Deliveries waiting to be recorded together.
    acks: outbox::Acks,
    /// Set to the loop's name when one of the engine's loops ends without being told to
    /// (a panic, a bug): the process can then no longer do its job, and says so.
    died: tokio::sync::watch::Sender<Option<&'static str>>,
}

/// A lease in hand (see `Engine::hold`).
pub(crate) struct Held<'a>(&'a Engine);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0
            .holding
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Engine {
    pub fn new(ports: Ports, config: EngineConfig) -> Arc<Self> {
        Arc::new(Engine {
            ports,
            config,
            next_resource_wake: AtomicI64::new(i64::MAX),
            next_outbox_wake: AtomicI64::new(i64::MAX),
            holding: std::sync::atomic::AtomicUsize::new(0),
            acks: outbox::Acks::default(),
            died: tokio::sync::watch::channel(None).0,
        })
    }

    /// Counts a lease in hand until the guard is dropped.
    pub(crate) fn hold(&self) -> Held<'_> {
        self.holding
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Held(self)
    }

    /// Whether this process is working under any lease now.
    pub fn holds_leases(&self) -> bool {
        self.holding.load(std::sync::atomic::Ordering::Acquire) > 0
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

//! The engine: workers that drive every resource toward its desired state and deliver
//! every callback, with all their state in the database. Each worker is a `tick` (claim a
//! batch, do one idempotent step per item, write the outcome with compare-and-set) and a
//! loop around it that sleeps until woken, until the next item is due, or until the
//! fallback poll. Any process can die at any instant: leases expire and another worker
//! continues from what the database says.

mod backoff;
mod hosting;
mod outbox;
mod runner;

use std::sync::Arc;
use std::time::Duration;

pub use backoff::Backoff;
pub use runner::{Shutdown, spawn};

use futures::future::join_all;

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
}

impl EngineConfig {
    pub fn new(node_callback_url: String) -> Self {
        EngineConfig {
            owner: format!(
                "{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            lease: Duration::from_secs(60),
            concurrency: 32,
            fallback_poll: Duration::from_secs(5),
            node_poll: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(600),
            backoff: Backoff::default(),
            node_callback_url,
            cloud_provider: "lightsail".into(),
            node_api_port: 8080,
        }
    }
}

/// The reconciler and the outbox dispatcher over one set of ports.
pub struct Engine {
    pub ports: Ports,
    pub config: EngineConfig,
}

impl Engine {
    pub fn new(ports: Ports, config: EngineConfig) -> Arc<Self> {
        Arc::new(Engine { ports, config })
    }

    /// Claims the resources that are due and takes one step on each. Returns how many were
    /// claimed. Tests call this to drive the engine deterministically.
    pub async fn tick_resources(&self) -> anyhow::Result<usize> {
        let batch = self.claim_resources(self.config.concurrency as i64).await?;
        let n = batch.len();
        let steps = batch.into_iter().map(|r| self.reconcile(r));
        for result in join_all(steps).await {
            result?;
        }
        Ok(n)
    }

    /// Delivers the callbacks that are due. Returns how many were attempted.
    pub async fn tick_outbox(&self) -> anyhow::Result<usize> {
        let batch = self.claim_outbox(self.config.concurrency as i64).await?;
        let n = batch.len();
        join_all(batch.into_iter().map(|m| self.deliver(m))).await;
        Ok(n)
    }

    /// Ticks both loops until neither finds work (or `max_rounds` passes). For tests and
    /// tools that drive the engine by hand.
    pub async fn drain(&self, max_rounds: usize) -> anyhow::Result<()> {
        for _ in 0..max_rounds {
            let worked = self.tick_resources().await? + self.tick_outbox().await?;
            if worked == 0 {
                return Ok(());
            }
        }
        Ok(())
    }
}

//! Tuning for the engine, by concern. Each default is written here, once; the service's
//! configuration reads the environment over these.

use std::time::Duration;

use super::Backoff;

/// Tuning for the engine. Defaults suit production; tests shorten the times.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This worker's identity in leases (unique per process: see `fresh_owner`).
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
    pub node_api_port: i32,
    pub traffic: TrafficConfig,
    pub sweep: SweepConfig,
    pub retention: RetentionConfig,
}

/// The VPN traffic sync (one replica at a time).
#[derive(Debug, Clone)]
pub struct TrafficConfig {
    /// How often VPN traffic is read from the VPN manager.
    pub interval: Duration,
    /// VPN manager reads per second during a sync, at most.
    pub rate: u32,
}

/// The orphan sweep (one replica at a time).
#[derive(Debug, Clone)]
pub struct SweepConfig {
    pub interval: Duration,
    /// Nodes younger than this are never swept (they may not be linked yet).
    pub grace: Duration,
    /// Most deletions per sweep.
    pub max_per_run: usize,
    /// Report orphans without deleting them.
    pub dry_run: bool,
}

/// The retention pass.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// How long finished `Idempotency-Key`s are kept.
    pub idempotency: Duration,
    /// How long delivered callbacks are kept.
    pub outbox: Duration,
    /// Days a node's daily usage rows are kept (CONTRACTS.md §4.8).
    pub usage_days: u32,
    /// How often the pass runs.
    pub interval: Duration,
}

impl EngineConfig {
    pub fn new(node_callback_url: String) -> Self {
        EngineConfig {
            owner: Self::fresh_owner(),
            lease: Duration::from_secs(15),
            concurrency: 32,
            fallback_poll: Duration::from_secs(5),
            batch_window: Duration::from_millis(5),
            node_poll: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(600),
            backoff: Backoff::default(),
            node_callback_url,
            node_api_port: 8080,
            traffic: TrafficConfig {
                interval: Duration::from_secs(300),
                rate: 50,
            },
            sweep: SweepConfig {
                interval: Duration::from_secs(600),
                grace: Duration::from_secs(1800),
                max_per_run: 10,
                dry_run: false,
            },
            retention: RetentionConfig {
                idempotency: Duration::from_secs(24 * 3600),
                outbox: Duration::from_secs(7 * 24 * 3600),
                usage_days: 400,
                interval: Duration::from_secs(3600),
            },
        }
    }

    /// A lease owner no other process (nor an earlier run of this one) has used.
    pub fn fresh_owner() -> String {
        format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    }
}

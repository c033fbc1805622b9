//! What monitoring reads from the store: the gauges a scrape shows (computed over live
//! rows only, never the whole history) and the per-node load view.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::StoreResult;
use domain::{ResourceKind, Status};

/// The gauges derived from the database, read in one statement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readings {
    /// Resources per kind and status, `deleted` excepted (that is history, not state).
    pub resources: Vec<(ResourceKind, Status, i64)>,
    /// Resources whose next step is due now and not leased.
    pub due_resources: i64,
    /// Callbacks due for delivery now.
    pub due_callbacks: i64,
    /// Callbacks not yet acknowledged.
    pub pending_callbacks: i64,
    /// When the oldest of them was queued.
    pub oldest_pending: Option<DateTime<Utc>>,
    /// Active hosting nodes with a report since the freshness cut-off, and without.
    pub nodes_fresh: i64,
    pub nodes_stale: i64,
    /// Active nodes over `HOT_PERCENT` by figure.
    pub nodes_over: NodesOver,
}

/// A node is hot past this share (of CPU, memory, or its traffic limit).
pub const HOT_PERCENT: f64 = 90.0;

/// Active nodes over `HOT_PERCENT`, by figure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodesOver {
    pub cpu: i64,
    pub mem: i64,
    pub traffic: i64,
}

/// How the node load view is sorted, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSort {
    Cpu,
    Mem,
    Load,
    Traffic,
}

impl LoadSort {
    /// Every order, by the name `?sort=` gives it.
    pub const NAMES: [(&'static str, LoadSort); 4] = [
        ("cpu", LoadSort::Cpu),
        ("mem", LoadSort::Mem),
        ("load", LoadSort::Load),
        ("traffic", LoadSort::Traffic),
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find_map(|&(name, sort)| (name == s).then_some(sort))
    }
}

/// One active node's last report.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLoadRow {
    pub resource_id: String,
    pub user_id: String,
    pub region: String,
    pub public_ip: Option<String>,
    pub cpu_percent: Option<f64>,
    pub mem_percent: Option<f64>,
    pub load1: Option<f64>,
    /// Bytes used in the period asked for (all time when none was).
    pub traffic_used: i64,
    pub traffic_limit: i64,
    pub reported_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait Monitoring: Send + Sync {
    /// The gauges as of `now`; a node is fresh when it reported at or after `fresh_since`.
    /// Traffic counts in the period starting on `period` (a month's first day), or for all
    /// time when it is `None` (CONTRACTS.md §4.8).
    async fn readings(
        &self,
        now: DateTime<Utc>,
        fresh_since: DateTime<Utc>,
        period: Option<NaiveDate>,
    ) -> StoreResult<Readings>;
    /// Active nodes by `sort`, highest first, nodes without that figure last; traffic in
    /// `period` as for `readings`.
    async fn node_load(
        &self,
        sort: LoadSort,
        limit: i64,
        period: Option<NaiveDate>,
    ) -> StoreResult<Vec<NodeLoadRow>>;
}

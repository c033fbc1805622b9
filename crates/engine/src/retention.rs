//! Retention: a periodic pass (one replica at a time, leased like the sweep) that deletes
//! what only grows and is no longer needed: `Idempotency-Key`s whose request finished
//! longer than `IDEMPOTENCY_RETENTION_HOURS` ago (24 h by default, as Stripe keeps them),
//! callbacks delivered longer than `OUTBOX_RETENTION_HOURS` ago (7 days), and nodes' daily
//! usage rows older than `USAGE_RETENTION_DAYS` (400 days: a year and its month before). It deletes
//! in batches so no statement holds many rows at once. Undelivered callbacks and keys
//! still in flight are never touched. The resource history (`resource_events`) is kept
//! forever: it is the audit trail (see docs/ARCHITECTURE.md).

use std::sync::Arc;
use std::time::Duration;

use super::Engine;
use super::jobs::{Job, Summary};
use ports::store::StoreResult;

/// The job row of the retention pass.
pub const RETENTION_JOB: &str = "retention";
/// Rows deleted per statement.
const BATCH: i64 = 1000;
/// A pass that dies keeps the job this long before another worker may start one.
const JOB_LEASE: Duration = Duration::from_secs(600);

/// What one pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetentionReport {
    pub idempotency_keys: u64,
    pub delivered_callbacks: u64,
    pub spent_tickets: u64,
    pub usage_days: u64,
}

impl Engine {
    /// Runs a pass if one is due and no other worker is running it.
    pub async fn retention_tick(self: &Arc<Self>) -> StoreResult<Option<RetentionReport>> {
        let job = Job {
            name: RETENTION_JOB,
            lease: JOB_LEASE,
            interval: self.config.retention.interval,
            first_at_once: false,
        };
        let summarize = |r: &RetentionReport| Summary {
            line: format!(
                "idempotency keys {} delivered callbacks {} spent tickets {} usage days {}",
                r.idempotency_keys, r.delivered_callbacks, r.spent_tickets, r.usage_days
            ),
            notable: false,
        };
        let ran = self.run_job(&job, self.purge_expired(), summarize).await?;
        ran.transpose()
    }

    /// Deletes, in batches, what is past its retention now.
    pub async fn purge_expired(&self) -> StoreResult<RetentionReport> {
        let now = self.now();
        let before = |keep: Duration| {
            chrono::Duration::from_std(keep)
                .ok()
                .and_then(|k| now.checked_sub_signed(k))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
        };
        let keys_before = before(self.config.retention.idempotency);
        let outbox_before = before(self.config.retention.outbox);
        let store = &self.ports.store;
        let mut report = RetentionReport::default();
        loop {
            let n = store.purge_idempotency_keys(keys_before, BATCH).await?;
            report.idempotency_keys += n;
            if n < BATCH as u64 {
                break;
            }
        }
        loop {
            let n = store.purge_delivered_outbox(outbox_before, BATCH).await?;
            report.delivered_callbacks += n;
            if n < BATCH as u64 {
                break;
            }
        }
        loop {
            let n = store.purge_spent_tickets(now, BATCH).await?;
            report.spent_tickets += n;
            if n < BATCH as u64 {
                break;
            }
        }
        let usage_before = domain::usage::kept_from(now, self.config.retention.usage_days);
        loop {
            let n = store.purge_node_usage(usage_before, BATCH).await?;
            report.usage_days += n;
            if n < BATCH as u64 {
                break;
            }
        }
        Ok(report)
    }
}

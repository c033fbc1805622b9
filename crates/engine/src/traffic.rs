//! VPN traffic metering: a periodic pass that reads each live VPN user's usage from the
//! VPN manager and records it. One replica at a time runs it (a leased job row). It reads
//! only live, unexpired accounts, a page at a time (one query to read a page, one to write
//! it), and paces its calls so the VPN manager is never flooded.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::Engine;
use super::jobs::{Job, Summary};
use ports::store::{AdoptedTerms, StoreResult};

/// The job row of the traffic sync.
pub const TRAFFIC_JOB: &str = "vpn_traffic_sync";
/// Accounts read per page.
const PAGE: i64 = 500;
/// VPN manager reads in flight at once.
const IN_FLIGHT: usize = 16;
/// A pass that dies keeps the job this long before another worker may start one.
const JOB_LEASE: Duration = Duration::from_secs(3600);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    /// Accounts whose usage was recorded.
    pub updated: usize,
    /// Reads that failed (left as they were until the next pass).
    pub failed: usize,
    /// Pages read from the database (each one read and at most one write).
    pub pages: usize,
}

impl Engine {
    /// Runs a pass if one is due and no other worker is running it.
    pub async fn traffic_sync_tick(self: &Arc<Self>) -> StoreResult<Option<SyncReport>> {
        let job = Job {
            name: TRAFFIC_JOB,
            lease: JOB_LEASE,
            interval: self.config.traffic.interval,
            first_at_once: true,
        };
        let summarize = |r: &SyncReport| Summary {
            line: format!(
                "updated {} failed {} pages {}",
                r.updated, r.failed, r.pages
            ),
            notable: false,
        };
        let ran = self
            .run_job(&job, self.sync_vpn_traffic(), summarize)
            .await?;
        ran.transpose()
    }

    /// Reads every live VPN user's usage from the VPN manager, at most `vpn_sync_rate`
    /// reads per second, and records it a page at a time.
    pub async fn sync_vpn_traffic(&self) -> StoreResult<SyncReport> {
        let now = self.now();
        let rate = f64::from(self.config.traffic.rate.max(1));
        let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut report = SyncReport::default();
        let mut after = None;
        loop {
            let page = self.ports.store.vpn_sync_page(after, PAGE, now).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            report.pages += 1;
            let mut reads = JoinSet::new();
            let mut read = Reads {
                usage: Vec::with_capacity(page.len()),
                adopted: Vec::new(),
            };
            for (id, uuid, adopt) in page {
                pace.tick().await;
                while reads.len() >= IN_FLIGHT {
                    read.collect(reads.join_next().await, &mut report);
                }
                let vpn = self.ports.vpn.clone();
                reads.spawn(async move { (id, adopt, vpn.get_user(&uuid).await) });
            }
            while let Some(done) = reads.join_next().await {
                read.collect(Some(done), &mut report);
            }
            self.ports.store.record_vpn_usage(&read.usage, now).await?;
            if !read.adopted.is_empty() {
                self.ports.store.adopt_vpn_terms(&read.adopted, now).await?;
            }
            report.updated += read.usage.len();
        }
        Ok(report)
    }
}

type Read = (
    uuid::Uuid,
    bool,
    ports::UpstreamResult<Option<ports::VpnUser>>,
);

/// What a page's reads found: usage for every account, and the whole terms of the
/// imported accounts whose terms are taken from the VPN manager.
struct Reads {
    usage: Vec<(uuid::Uuid, i64)>,
    adopted: Vec<(uuid::Uuid, AdoptedTerms)>,
}

impl Reads {
    fn collect(
        &mut self,
        done: Option<Result<Read, tokio::task::JoinError>>,
        report: &mut SyncReport,
    ) {
        match done {
            Some(Ok((id, adopt, Ok(Some(user))))) => {
                let used = user.traffic_used.max(0);
                self.usage.push((id, used));
                if adopt {
                    let terms = AdoptedTerms {
                        expire_at: user.expire_at,
                        traffic_limit: user.traffic_limit.max(0),
                        traffic_used: used,
                    };
                    self.adopted.push((id, terms));
                }
            }
            Some(Ok((id, _, Ok(None)))) => {
                tracing::warn!(resource_id = %id, "VPN user unknown to the VPN manager during sync");
                report.failed += 1;
            }
            Some(Ok((id, _, Err(e)))) => {
                tracing::debug!(resource_id = %id, error = %e, "traffic read failed");
                report.failed += 1;
            }
            Some(Err(_)) | None => report.failed += 1,
        }
    }
}

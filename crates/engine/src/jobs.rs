//! Periodic jobs (VPN traffic sync, orphan sweep, retention), run one way: each is a row
//! in `jobs`, leased so that one replica runs each pass, with a one-line summary of every
//! pass logged and kept on the row.

use std::time::Duration;

use super::Engine;
use domain::units::after;
use ports::store::{Claim, StoreResult};

/// A periodic job.
pub(crate) struct Job {
    pub name: &'static str,
    /// How long a pass holds the job; a pass that dies frees it after this.
    pub lease: Duration,
    pub interval: Duration,
    /// Whether the first pass runs as soon as the job is first seen, or one interval on.
    pub first_at_once: bool,
}

/// How a pass went, in one line.
pub(crate) struct Summary {
    pub line: String,
    /// Worth an operator's attention (logged as a warning).
    pub notable: bool,
}

impl Engine {
    /// Runs one pass of `job` if it is due and no other worker holds it: claims the job's
    /// row, awaits `pass`, logs and records its summary (`summarize` for a pass that
    /// finished, the error for one that did not), and schedules the next pass one
    /// interval on. `None` when the job was not due.
    pub(crate) async fn run_job<T, E: std::fmt::Display>(
        &self,
        job: &Job,
        pass: impl Future<Output = Result<T, E>>,
        summarize: impl FnOnce(&T) -> Summary,
    ) -> StoreResult<Option<Result<T, E>>> {
        let now = self.ports.clock.now();
        let claim = Claim {
            owner: &self.config.owner,
            now,
            lease: job.lease,
            limit: 1,
        };
        let first = if job.first_at_once {
            now
        } else {
            after(now, job.interval)
        };
        if !self.ports.store.claim_job(job.name, first, claim).await? {
            return Ok(None);
        }
        let _held = self.hold();
        let result = pass.await;
        let summary = match &result {
            Ok(done) => summarize(done),
            Err(e) => Summary {
                line: format!("error: {e}"),
                notable: true,
            },
        };
        if summary.notable {
            tracing::warn!(job = job.name, summary = %summary.line, "periodic job");
        } else {
            tracing::info!(job = job.name, summary = %summary.line, "periodic job");
        }
        let next = after(self.ports.clock.now(), job.interval);
        self.ports
            .store
            .finish_job(job.name, &self.config.owner, next, &summary.line)
            .await?;
        Ok(Some(result))
    }
}

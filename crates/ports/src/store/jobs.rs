//! Periodic jobs (traffic sync, orphan sweep, retention): one lease per job across every
//! replica, and when each runs next.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Claim, StoreResult};

#[async_trait]
pub trait Jobs: Send + Sync {
    /// Leases a periodic job when it is due; `false` when it is not due or another worker
    /// holds it. A job never seen before is first due at `first_run_at`.
    async fn claim_job(
        &self,
        name: &str,
        first_run_at: DateTime<Utc>,
        claim: Claim<'_>,
    ) -> StoreResult<bool>;
    async fn finish_job(
        &self,
        name: &str,
        owner: &str,
        next_run_at: DateTime<Utc>,
        result: &str,
    ) -> StoreResult<()>;
}

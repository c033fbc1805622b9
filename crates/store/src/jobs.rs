//! Periodic jobs: one lease per job name across every replica.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqlStore;
use ports::store::{Claim, Jobs, StoreResult};

#[async_trait]
impl Jobs for SqlStore {
    async fn claim_job(
        &self,
        name: &str,
        first_run_at: DateTime<Utc>,
        claim: Claim<'_>,
    ) -> StoreResult<bool> {
        // One statement: the row is made on first sight (claimed at once if its first
        // pass is due), else leased if due and free.
        let claimed: Option<(bool,)> = self
            .db
            .sql(
                "insert into jobs (name, next_run_at, lease_owner, lease_until) \
                 values ($1, $2, case when $2 <= $5 then $3 end, \
                 case when $2 <= $5 then $4 end) \
                 on conflict (name) do update set lease_owner = $3, lease_until = $4 \
                 where jobs.next_run_at <= $5 and (jobs.lease_until is null \
                 or jobs.lease_until < $5 or jobs.lease_owner in (\
                 select owner from lifelines where dead_at < $5)) \
                 returning lease_owner is not null and lease_owner = $3",
            )
            .bind(name)
            .bind(first_run_at)
            .bind(claim.owner)
            .bind(claim.lease_until())
            .bind(claim.now)
            .fetch_optional()
            .await?;
        Ok(claimed.is_some_and(|(ours,)| ours))
    }

    async fn finish_job(
        &self,
        name: &str,
        owner: &str,
        next_run_at: DateTime<Utc>,
        result: &str,
    ) -> StoreResult<()> {
        self.db
            .sql(
                "update jobs set next_run_at = $3, last_result = $4, lease_owner = null, \
                 lease_until = null where name = $1 and lease_owner = $2",
            )
            .bind(name)
            .bind(owner)
            .bind(next_run_at)
            .bind(result)
            .execute()
            .await?;
        Ok(())
    }
}

//! Periodic jobs: one lease per job name across every replica.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqlStore;
use crate::ports::store::{Claim, Jobs, StoreResult};

#[async_trait]
impl Jobs for SqlStore {
    async fn claim_job(
        &self,
        name: &str,
        first_run_at: DateTime<Utc>,
        claim: Claim<'_>,
    ) -> StoreResult<bool> {
        self.db
            .sql("insert into jobs (name, next_run_at) values ($1, $2) on conflict do nothing")
            .bind(name)
            .bind(first_run_at)
            .execute()
            .await?;
        let done = self
            .db
            .sql(
                "update jobs set lease_owner = $2, lease_until = $3 where name = $1 \
                 and next_run_at <= $4 and (lease_until is null or lease_until < $4 \
                 or lease_owner in (select owner from lifelines where dead_at < $4))",
            )
            .bind(name)
            .bind(claim.owner)
            .bind(claim.lease_until())
            .bind(claim.now)
            .execute()
            .await?;
        Ok(done == 1)
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

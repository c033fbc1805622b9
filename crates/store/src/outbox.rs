//! The outbox: callbacks queued with their change, delivered in order per subscription.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqlStore;
use super::row::OutboxRow;
use ports::store::{CallbackRecord, Claim, Outbox, OutboxMessage, StoreResult, StuckCallback};

#[async_trait]
impl Outbox for SqlStore {
    async fn claim_outbox(&self, claim: Claim<'_>) -> StoreResult<Vec<OutboxMessage>> {
        let rows: Vec<OutboxRow> = self
            .db
            .sql(
                "update outbox set lease_owner = $1, lease_until = $2 where id in (\
                 select o.id from outbox o where o.delivered_at is null \
                 and o.next_attempt_at <= $3 \
                 and (o.lease_until is null or o.lease_until < $3 or o.lease_owner in (\
                 select owner from lifelines where dead_at < $3)) \
                 and not exists (select 1 from outbox p \
                 where p.subscription_id = o.subscription_id \
                 and p.delivered_at is null and p.id < o.id) \
                 order by o.id limit $4{skip_locked}) \
                 returning id, subscription_id, payload, attempts, created_at",
            )
            .bind(claim.owner)
            .bind(claim.lease_until())
            .bind(claim.now)
            .bind(claim.limit)
            .fetch_all()
            .await?;
        rows.into_iter().map(OutboxMessage::try_from).collect()
    }

    async fn outbox_delivered(
        &self,
        ids: &[i64],
        owner: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let Some((first, rest)) = ids.split_first() else {
            return Ok(());
        };
        let mut q = self.db.sql("");
        q.push("update outbox set delivered_at = ")
            .push_bind(now)
            .push(", lease_owner = null, lease_until = null where lease_owner = ")
            .push_bind(owner)
            .push(" and id in (")
            .push_bind(*first);
        for id in rest {
            q.push(", ").push_bind(*id);
        }
        q.push(")");
        q.execute().await?;
        Ok(())
    }

    async fn outbox_retry(
        &self,
        id: i64,
        owner: &str,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> StoreResult<()> {
        self.db
            .sql(
                "update outbox set attempts = attempts + 1, next_attempt_at = $3, \
                 last_error = $4, lease_owner = null, lease_until = null \
                 where id = $1 and lease_owner = $2",
            )
            .bind(id)
            .bind(owner)
            .bind(next_attempt_at)
            .bind(error)
            .execute()
            .await?;
        Ok(())
    }

    async fn next_outbox_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        self.db
            .sql(
                "select min(case when lease_until is not null and lease_until > next_attempt_at \
                 then lease_until else next_attempt_at end) \
                 from outbox where delivered_at is null",
            )
            .scalar()
            .await
    }

    async fn outbox_backlog(&self) -> StoreResult<i64> {
        self.db
            .sql("select count(*) from outbox where delivered_at is null")
            .scalar()
            .await
    }

    async fn stuck_callbacks(
        &self,
        min_attempts: i32,
        limit: i64,
    ) -> StoreResult<Vec<StuckCallback>> {
        let rows: Vec<RecordRow> = self
            .db
            .sql(
                "select id, subscription_id, payload, attempts, created_at, delivered_at, \
                 last_error, next_attempt_at from outbox where delivered_at is null \
                 and attempts >= $1 order by id limit $2",
            )
            .bind(min_attempts)
            .bind(limit)
            .fetch_all()
            .await?;
        rows.into_iter()
            .map(|row| {
                let r = record(row)?;
                Ok(StuckCallback {
                    message: r.message,
                    last_error: r.last_error,
                    next_attempt_at: r.next_attempt_at,
                })
            })
            .collect()
    }

    async fn callbacks_of(
        &self,
        resource_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<CallbackRecord>> {
        let rows: Vec<RecordRow> = self
            .db
            .sql(
                "select id, subscription_id, payload, attempts, created_at, delivered_at, \
                 last_error, next_attempt_at from outbox where resource_id = $1 \
                 order by id limit $2",
            )
            .bind(resource_id)
            .bind(limit)
            .fetch_all()
            .await?;
        rows.into_iter().map(record).collect()
    }

    async fn purge_delivered_outbox(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<u64> {
        self.db
            .sql(
                "delete from outbox where id in (\
                 select id from outbox where delivered_at is not null \
                 and delivered_at < $1 limit $2)",
            )
            .bind(before)
            .bind(limit)
            .execute()
            .await
    }
}

/// An outbox row with its delivery state, as `stuck_callbacks` and `callbacks_of` read it.
type RecordRow = (
    i64,
    String,
    String,
    i32,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<String>,
    DateTime<Utc>,
);

fn record(
    (id, subscription_id, payload, attempts, created_at, delivered_at, last_error, next): RecordRow,
) -> StoreResult<CallbackRecord> {
    let row = OutboxRow {
        id,
        subscription_id,
        payload,
        attempts,
        created_at,
    };
    Ok(CallbackRecord {
        message: row.try_into()?,
        delivered_at,
        last_error,
        next_attempt_at: next,
    })
}

//! `Idempotency-Key`s: taken by the first request, answered again to repeats.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqlStore;
use super::row::IdempotencyRow;
use ports::store::{Idempotency, IdempotencyBegin, StoreResult};

/// How long an unfinished `Idempotency-Key` request holds its key (longer than any
/// request may take: the API answers every request within 30 s).
pub const IDEMPOTENCY_IN_FLIGHT_SECS: i64 = 60;

#[async_trait]
impl Idempotency for SqlStore {
    async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<IdempotencyBegin> {
        let inserted = self
            .db
            .sql(
                "insert into idempotency_keys (scope, key, fingerprint, created_at) \
                 values ($1, $2, $3, $4) on conflict do nothing",
            )
            .bind(scope)
            .bind(key)
            .bind(fingerprint)
            .bind(now)
            .execute()
            .await?;
        if inserted == 1 {
            return Ok(IdempotencyBegin::Proceed);
        }
        // A first request that never finished (its process died) does not hold the key
        // forever: after a while, the next request with it takes over.
        let stale = now - chrono::Duration::seconds(IDEMPOTENCY_IN_FLIGHT_SECS);
        let taken = self
            .db
            .sql(
                "update idempotency_keys set fingerprint = $3, created_at = $4 \
                 where scope = $1 and key = $2 and status_code is null and created_at < $5",
            )
            .bind(scope)
            .bind(key)
            .bind(fingerprint)
            .bind(now)
            .bind(stale)
            .execute()
            .await?;
        if taken == 1 {
            return Ok(IdempotencyBegin::Proceed);
        }
        let row: Option<IdempotencyRow> = self
            .db
            .sql(
                "select fingerprint, status_code, body from idempotency_keys \
                 where scope = $1 and key = $2",
            )
            .bind(scope)
            .bind(key)
            .fetch_optional()
            .await?;
        Ok(match row {
            // Abandoned between our insert and our read: the caller may retry.
            None => IdempotencyBegin::InFlight,
            Some(r) if r.fingerprint != fingerprint => IdempotencyBegin::Mismatch,
            Some(IdempotencyRow {
                status_code: Some(status),
                body: Some(body),
                ..
            }) => IdempotencyBegin::Replay {
                status: u16::try_from(status).unwrap_or(200),
                body,
            },
            Some(_) => IdempotencyBegin::InFlight,
        })
    }

    async fn idempotency_finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> StoreResult<()> {
        self.db
            .sql(
                "update idempotency_keys set status_code = $3, body = $4 \
                 where scope = $1 and key = $2",
            )
            .bind(scope)
            .bind(key)
            .bind(i32::from(status))
            .bind(body)
            .execute()
            .await?;
        Ok(())
    }

    async fn idempotency_abandon(&self, scope: &str, key: &str) -> StoreResult<()> {
        self.db
            .sql(
                "delete from idempotency_keys where scope = $1 and key = $2 \
                 and status_code is null",
            )
            .bind(scope)
            .bind(key)
            .execute()
            .await?;
        Ok(())
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<u64> {
        self.db
            .sql(
                "delete from idempotency_keys where (scope, key) in (\
                 select scope, key from idempotency_keys \
                 where status_code is not null and created_at < $1 limit $2)",
            )
            .bind(before)
            .bind(limit)
            .execute()
            .await
    }

    async fn spend_ticket(&self, nonce: &str, expires_at: DateTime<Utc>) -> StoreResult<bool> {
        let spent = self
            .db
            .sql(
                "insert into spent_tickets (nonce, expires_at) values ($1, $2) \
                 on conflict (nonce) do nothing",
            )
            .bind(nonce)
            .bind(expires_at)
            .execute()
            .await?;
        Ok(spent == 1)
    }

    async fn purge_spent_tickets(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<u64> {
        self.db
            .sql(
                "delete from spent_tickets where nonce in (\
                 select nonce from spent_tickets where expires_at < $1 limit $2)",
            )
            .bind(before)
            .bind(limit)
            .execute()
            .await
    }
}

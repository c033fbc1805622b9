//! `Idempotency-Key`s: a request's answer kept so that a repeat gets it again.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// The state of an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyBegin {
    /// First use: go ahead, then `idempotency_finish`.
    Proceed,
    /// Done before with the same body: answer this again.
    Replay { status: u16, body: String },
    /// Same key, different body.
    Mismatch,
    /// The first request with this key has not finished.
    InFlight,
}

#[async_trait]
pub trait Idempotency: Send + Sync {
    /// Takes a key for a request, or says why not. An unfinished key whose first request
    /// has not finished for a while (its process died) is taken over.
    async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<IdempotencyBegin>;
    async fn idempotency_finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> StoreResult<()>;
    /// Forgets an unfinished key so the caller may retry (the request failed before acting).
    async fn idempotency_abandon(&self, scope: &str, key: &str) -> StoreResult<()>;
    /// Deletes up to `limit` keys whose request finished and that were first seen before
    /// `before`; returns how many. Keys in flight are kept.
    async fn purge_idempotency_keys(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<u64>;
    /// Spends an event-stream ticket (by its nonce): `true` the first time on any
    /// replica, `false` ever after, until `expires_at` is purged.
    async fn spend_ticket(&self, nonce: &str, expires_at: DateTime<Utc>) -> StoreResult<bool>;
    /// Forgets at most `limit` spent tickets that expired before `before`.
    async fn purge_spent_tickets(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<u64>;
}

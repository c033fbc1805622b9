//! PostgreSQL: the production store. Any number of replicas share it: claims skip rows
//! another worker has locked, and LISTEN/NOTIFY wakes every replica's engine when work
//! appears (a slow poll in the engine covers a lost notification).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use uuid::Uuid;

use super::node_lookups::NodeLookups;
use super::row::{
    self, EntitlementRow, EventRow, IdempotencyRow, OutboxRow, ResourceRow, SnapshotRow,
    entitlement_columns, resource_columns,
};
use super::sql::{IDEMPOTENCY_IN_FLIGHT_SECS, Topic, impl_store, live_sql};
use super::{
    Attempts, Change, Claim, DeleteReason, EntitlementFilter, Event, EventKind, Guard,
    IdempotencyBegin, Inserted, NewEvent, NewResource, NodeStats, OutboxMessage, Region, Resource,
    Status, StoreError, StoreResult, StoredSnapshot, SubscriptionSnapshot, VpnAdjustment, VpnOrder,
    VpnOrderOutcome, VpnRecord, Wakeups,
};
use crate::domain::entitlement::{Entitlement, Placement, place_order};

pub struct PgStore {
    pool: PgPool,
    /// The batched "user's live node" read (see `node_lookups`).
    lookups: Arc<NodeLookups>,
    wakeups: Arc<Wakeups>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PgStore {
    /// Connects, applies pending migrations (under PostgreSQL's migration lock, so replicas
    /// starting together are safe) and starts listening for wake-ups.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            // No ping before every checkout: that doubles the round trips of every query,
            // and a broken connection surfaces as an error on use anyway.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Self::migrate(&pool).await?;
        let lookups = NodeLookups::new(PgConnectOptions::from_str(url)?)?;
        let wakeups = Arc::new(Wakeups::default());
        let listener = tokio::spawn(listen(pool.clone(), wakeups.clone()));
        Ok(PgStore {
            pool,
            lookups,
            wakeups,
            listener,
        })
    }

    pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
        sqlx::migrate!("migrations/postgres").run(pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn wake_in_tx(tx: &mut sqlx::Transaction<'_, Postgres>, topic: Topic) -> StoreResult<()> {
        // Delivered at commit, to every listening replica (including this one).
        sqlx::query("select pg_notify($1, '')")
            .bind(topic.channel())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    fn wake_after_commit(&self, _topic: Topic) {}

    /// The user's live hosting node: batched with concurrent lookups.
    async fn current_node_row(&self, user_id: &str) -> StoreResult<Option<ResourceRow>> {
        self.lookups.get(user_id).await
    }
}

/// Forwards notifications to the in-process signals, reconnecting when the connection
/// drops. After a reconnect it wakes everyone: notifications may have been missed.
async fn listen(pool: PgPool, wakeups: Arc<Wakeups>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for wake-ups; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let channels = [Topic::Resources.channel(), Topic::Outbox.channel()];
        if let Err(e) = listener.listen_all(channels).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        wakeups.resources.notify_waiters();
        wakeups.outbox.notify_waiters();
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) if n.channel() == Topic::Outbox.channel() => {
                    wakeups.outbox.notify_waiters()
                }
                Ok(Some(_)) => wakeups.resources.notify_waiters(),
                Ok(None) => {
                    tracing::warn!("wake-up connection lost; reconnecting");
                    wakeups.resources.notify_waiters();
                    wakeups.outbox.notify_waiters();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "wake-up listener failed; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

impl_store!(
    PgStore,
    Postgres,
    backend = "postgres",
    skip_locked = " for update skip locked",
    for_update = " for update"
);

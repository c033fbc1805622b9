//! SQLite: the embedded store for one process (the demo, small deployments, tests without a
//! server). One connection is the single writer, so claims never race and no transaction
//! ever sees `SQLITE_BUSY`; waiting workers are woken in process.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};
use uuid::Uuid;

use super::row::{
    self, EntitlementRow, EventRow, IdempotencyRow, OutboxRow, ResourceRow, SnapshotRow,
    entitlement_columns, resource_columns,
};
use super::sql::{IDEMPOTENCY_IN_FLIGHT_SECS, Topic, impl_store, live_sql};
use super::{
    Attempts, Change, Claim, DeleteReason, EntitlementFilter, Event, EventKind, Guard,
    IdempotencyBegin, Inserted, NewEvent, NewResource, NodeStats, OutboxMessage, Region, Resource,
    ResourceKind, Status, StoreError, StoreResult, StoredSnapshot, SubscriptionSnapshot,
    VpnAdjustment, VpnOrder, VpnOrderOutcome, VpnRecord, Wakeups,
};
use crate::domain::entitlement::{Entitlement, Placement, place_order};

pub struct SqliteStore {
    pool: SqlitePool,
    wakeups: Arc<Wakeups>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore {
            pool,
            wakeups: Arc::new(Wakeups::default()),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn wake_in_tx(_tx: &mut sqlx::Transaction<'_, Sqlite>, _topic: Topic) -> StoreResult<()> {
        Ok(())
    }

    /// The user's live hosting node (one writer, nothing to batch).
    async fn current_node_row(&self, user_id: &str) -> StoreResult<Option<ResourceRow>> {
        Ok(sqlx::query_as(concat!(live_sql!(), "user_id = $1"))
            .bind(user_id)
            .bind(ResourceKind::HostingNode.as_str())
            .fetch_optional(&self.pool)
            .await?)
    }

    fn wake_after_commit(&self, topic: Topic) {
        match topic {
            Topic::Resources => self.wakeups.resources.notify_waiters(),
            Topic::Outbox => self.wakeups.outbox.notify_waiters(),
        }
    }
}

impl_store!(
    SqliteStore,
    Sqlite,
    backend = "sqlite",
    skip_locked = "",
    for_update = ""
);

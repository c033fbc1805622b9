//! Durable state: the storage port (`ports::store`) implemented once, by `SqlStore`, for
//! PostgreSQL (production, any number of replicas) and SQLite (embedded, one process).
//! Both run the same SQL text (`db` dispatches it) and differ only in how work is claimed
//! and how waiting workers are woken. The SQL is split by aggregate, one file each, as the
//! port is; one conformance suite (`tests/it/store_conformance.rs`) runs on both.

mod db;
mod error;
mod events;
mod idempotency;
mod import;
mod jobs;
pub mod monitoring;
mod news;
mod node_lookups;
mod nodes;
mod outbox;
pub mod postgres;
mod resources;
mod row;
mod snapshots;
pub mod sqlite;
mod vpn;
mod vpn_orders;
mod work;

use std::sync::Arc;

use async_trait::async_trait;

use db::{Db, Pool};
use node_lookups::NodeLookups;
use ports::store::{ChangeBus, Store, StoreResult};

/// The store on either database.
pub struct SqlStore {
    db: Db,
    /// PostgreSQL's batched "user's live node" read (see `node_lookups`).
    lookups: Option<Arc<NodeLookups>>,
    /// PostgreSQL's LISTEN loop and news sender, stopped with the store.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl SqlStore {
    /// Opens the store a URL names, `postgres://…` or `sqlite:…`, applying migrations.
    /// `max_connections` sizes PostgreSQL's pool (SQLite has one writer).
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            postgres::connect(url, max_connections).await
        } else if url.starts_with("sqlite:") {
            sqlite::connect(url).await
        } else {
            anyhow::bail!("DB_URL must start with postgres:// or sqlite:, got {url:?}")
        }
    }
}

/// `SqlStore::connect`, as the shared handle the core holds.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Arc<dyn Store>> {
    Ok(Arc::new(SqlStore::connect(url, max_connections).await?))
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.db.pool() {
            Pool::Postgres(_) => "postgres",
            Pool::Sqlite(_) => "sqlite",
        }
    }

    fn shared(&self) -> bool {
        self.db.outgoing().is_some()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db.sql("select 1").execute().await.map(|_| ())
    }

    fn bus(&self) -> Arc<ChangeBus> {
        self.db.bus().clone()
    }

    async fn flush(&self) -> StoreResult<()> {
        match (self.db.outgoing(), self.db.pool()) {
            (Some(outgoing), Pool::Postgres(pool)) => {
                outgoing.flush(pool).await.map_err(error::sorted)
            }
            _ => Ok(()),
        }
    }
}

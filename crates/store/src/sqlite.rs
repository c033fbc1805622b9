//! SQLite: the embedded store for one process (the demo, small deployments, tests without
//! a server). One connection is the single writer, so claims never race and no transaction
//! ever sees `SQLITE_BUSY`; waiting workers are woken in process.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::SqlStore;
use super::db::{Db, Pool};

/// Opens (creating if needed) the database file and applies pending migrations.
pub async fn connect(url: &str) -> anyhow::Result<SqlStore> {
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
    sqlx::migrate!("../../migrations/sqlite").run(&pool).await?;
    Ok(SqlStore {
        db: Db::new(Pool::Sqlite(pool)),
        lookups: None,
        tasks: Vec::new(),
    })
}

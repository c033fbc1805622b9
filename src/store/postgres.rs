//! PostgreSQL: the production store. Any number of replicas share it: claims skip rows
//! another worker has locked, and LISTEN/NOTIFY tells the other replicas of work they may
//! take and of users whose documents changed (`news`; a slow poll in the engine covers a
//! lost notification).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use super::SqlStore;
use super::db::{Db, Pool, Topic, USERS_CHANNEL};
use super::news::Outgoing;
use super::node_lookups::NodeLookups;
use crate::ports::store::{Changed, Wakeups};

/// How long a start waits for PostgreSQL to answer at all.
const STARTUP_WAIT: Duration = Duration::from_secs(30);

/// Connects, applies pending migrations (under PostgreSQL's migration lock, so replicas
/// starting together are safe) and starts listening for wake-ups.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<SqlStore> {
    let options = PgPoolOptions::new()
        .max_connections(max_connections)
        // No ping before every checkout: that doubles the round trips of every query,
        // and a broken connection surfaces as an error on use anyway.
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(5));
    // A server that is slow to answer (busy, or still starting) is given time; one that
    // refuses us (bad credentials, no such database) fails the start at once.
    let deadline = tokio::time::Instant::now() + STARTUP_WAIT;
    let pool = loop {
        match options.clone().connect(url).await {
            Ok(pool) => break pool,
            Err(e @ (sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)))
                if tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(error = %e, "the database does not answer yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    migrate(&pool).await?;
    let lookups = NodeLookups::new(PgConnectOptions::from_str(url)?)?;
    let db = Db::new(Pool::Postgres(pool.clone()));
    let outgoing = db
        .outgoing()
        .expect("a PostgreSQL store sends news")
        .clone();
    // Nothing is heard until the listener listens.
    db.wakeups().set_hearing(false);
    let tasks = vec![
        tokio::spawn(listen(pool.clone(), db.wakeups().clone(), outgoing.clone())),
        tokio::spawn(outgoing.run(pool)),
    ];
    Ok(SqlStore {
        db,
        lookups: Some(lookups),
        tasks,
    })
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("migrations/postgres").run(pool).await?;
    Ok(())
}

/// Forwards notifications to the in-process signals, reconnecting when the connection
/// drops. After a reconnect it wakes everyone, and tells every live stream to re-read:
/// notifications may have been missed.
async fn listen(pool: PgPool, wakeups: Arc<Wakeups>, outgoing: Arc<Outgoing>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for wake-ups; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let channels = [
            Topic::Resources.channel(),
            Topic::Outbox.channel(),
            USERS_CHANNEL,
        ];
        if let Err(e) = listener.listen_all(channels).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        wakeups.set_hearing(true);
        wake_everyone(&wakeups);
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) if n.channel() == USERS_CHANNEL => {
                    for change in outgoing.heard(n.payload()) {
                        wakeups.changed(change);
                    }
                }
                Ok(Some(n)) if n.channel() == Topic::Outbox.channel() => wakeups.outbox.wake(),
                Ok(Some(_)) => wakeups.resources.wake(),
                Ok(None) => {
                    // Listen again on a new connection, and only then wake everyone: what
                    // was committed before LISTEN is read by the woken, what after is heard.
                    tracing::warn!("wake-up connection lost; reconnecting");
                    wakeups.set_hearing(false);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "wake-up listener failed; reconnecting");
                    wakeups.set_hearing(false);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

fn wake_everyone(wakeups: &Wakeups) {
    wakeups.resources.wake();
    wakeups.outbox.wake();
    wakeups.changed(Changed::Everyone);
}

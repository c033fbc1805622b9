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
use super::db::{Db, Pool};
use super::news::Outgoing;
use super::news::{Topic, USERS_CHANNEL};
use super::node_lookups::NodeLookups;
use ports::store::{ChangeBus, Changed};

/// Whether a failed connection may succeed by waiting: the server is slow or still
/// starting. A refused TLS certificate is no such thing.
fn answers_later(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Io(io) => !tls_refused(io),
        _ => false,
    }
}

/// Whether an I/O error is TLS refusing the server (its certificate, its name).
fn tls_refused(io: &std::io::Error) -> bool {
    io.get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>())
}

/// A connection error, with what to do when TLS or a pooler in front of PostgreSQL
/// caused it.
fn explained(e: sqlx::Error) -> anyhow::Error {
    let text = e.to_string();
    let tls = matches!(&e, sqlx::Error::Io(io) if tls_refused(io));
    let e = anyhow::Error::from(e);
    if tls {
        e.context(
            "the database server's TLS certificate was not accepted: `sslrootcert` in DB_URL \
             must name the CA that signed it (or leave it out for the system's CAs), and the \
             host in DB_URL must be one the certificate names (docs/OPERATIONS.md, TLS)",
        )
    } else if text.contains("unsupported startup parameter") {
        // PgBouncer refuses the `extra_float_digits` every client library sends.
        e.context(
            "a connection pooler (PgBouncer) refused a startup parameter: add \
             `ignore_startup_parameters = extra_float_digits` to its [pgbouncer] section, \
             and run this service's database in `pool_mode = session` \
             (docs/OPERATIONS.md, PgBouncer)",
        )
    } else {
        e
    }
}

/// Refuses a pooler that hands one server connection to several clients in turn
/// (PgBouncer's `pool_mode = transaction` or `statement`): the service's prepared
/// statements, LISTEN and migration lock need a server connection of their own, and
/// behind such a pooler it would start and then fail at random. Two clients connected at
/// once never share a backend in session mode or directly; in transaction mode the second
/// is handed the backend the first just released (PgBouncer reuses the latest first).
async fn refuse_transaction_pooling(url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let options = PgConnectOptions::from_str(url)?;
    for _ in 0..3 {
        let mut first = sqlx::PgConnection::connect_with(&options)
            .await
            .map_err(explained)?;
        let mut second = sqlx::PgConnection::connect_with(&options)
            .await
            .map_err(explained)?;
        let backend = "select pg_backend_pid()";
        let a: i32 = sqlx::query_scalar(backend)
            .persistent(false)
            .fetch_one(&mut first)
            .await?;
        let b: i32 = sqlx::query_scalar(backend)
            .persistent(false)
            .fetch_one(&mut second)
            .await?;
        // Asked again while the other is connected: a session pooler keeps each on its own.
        let a_again: i32 = sqlx::query_scalar(backend)
            .persistent(false)
            .fetch_one(&mut first)
            .await?;
        let (_, _) = (first.close().await, second.close().await);
        if a == b || a != a_again {
            anyhow::bail!(
                "the database connection goes through a pooler in transaction (or statement) \
                 mode, which hands one server connection to several clients: this service \
                 needs one of its own per connection (prepared statements, LISTEN, the \
                 migration lock). Set `pool_mode = session` for this service's database in \
                 PgBouncer, or connect it to PostgreSQL directly (docs/OPERATIONS.md, PgBouncer)"
            );
        }
    }
    Ok(())
}

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
            Err(e) if answers_later(&e) && tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "the database does not answer yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(explained(e)),
        }
    };
    refuse_transaction_pooling(url).await?;
    migrate(&pool).await?;
    let lookups = NodeLookups::new(PgConnectOptions::from_str(url)?)?;
    let db = Db::new(Pool::Postgres(pool.clone()));
    let outgoing = db
        .outgoing()
        .expect("a PostgreSQL store sends news")
        .clone();
    // Nothing is heard until the listener listens.
    db.bus().set_hearing(false);
    let tasks = vec![
        tokio::spawn(listen(pool.clone(), db.bus().clone(), outgoing.clone())),
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
    sqlx::migrate!("../../migrations/postgres")
        .run(pool)
        .await?;
    Ok(())
}

/// Forwards notifications to the in-process signals, reconnecting when the connection
/// drops. After a reconnect it wakes everyone, and tells every live stream to re-read:
/// notifications may have been missed.
async fn listen(pool: PgPool, bus: Arc<ChangeBus>, outgoing: Arc<Outgoing>) {
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
        bus.set_hearing(true);
        wake_everyone(&bus);
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) if n.channel() == USERS_CHANNEL => {
                    for change in outgoing.heard(n.payload()) {
                        bus.changed(change);
                    }
                }
                Ok(Some(n)) if n.channel() == Topic::Outbox.channel() => bus.outbox.wake(),
                Ok(Some(_)) => bus.resources.wake(),
                Ok(None) => {
                    // Listen again on a new connection, and only then wake everyone: what
                    // was committed before LISTEN is read by the woken, what after is heard.
                    tracing::warn!("wake-up connection lost; reconnecting");
                    bus.set_hearing(false);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "wake-up listener failed; reconnecting");
                    bus.set_hearing(false);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

fn wake_everyone(bus: &ChangeBus) {
    bus.resources.wake();
    bus.outbox.wake();
    bus.changed(Changed::Everyone);
}

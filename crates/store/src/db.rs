//! One SQL text, two databases. PostgreSQL and SQLite agree on almost everything this
//! service needs (`returning`, `on conflict`, partial indexes, `$n` parameters), so every
//! query is written once, as ordinary code, and runs on whichever database the store
//! opened. The dispatch is here and nowhere else: a statement is made from a pool or a
//! transaction of one backend and carries that backend's arguments, so a PostgreSQL
//! statement can never meet an SQLite connection.
//!
//! The places the dialects differ are spelled as markers a statement may contain:
//! `{skip_locked}` (a claim skips rows another worker holds: `for update skip locked` on
//! PostgreSQL, nothing on SQLite, whose single writer serialises claims) and
//! `{for_update}` (row locks taken in a transaction; SQLite's writer lock covers it), and
//! one helper: `push_in` (a list of values, as one array on PostgreSQL).
//!
//! A commit wakes this process's engine loops (if they have room) and tells its read model
//! and live streams before it returns; `news` tells the other replicas.

use std::fmt::Write as _;
use std::sync::Arc;

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query_with;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{
    Arguments, AssertSqlSafe, Encode, FromRow, PgConnection, PgPool, Postgres, SqlSafeStr, SqlStr,
    Sqlite, SqliteConnection, SqlitePool, Type,
};

use super::error::sorted;
use super::news::{self, Outgoing, Topic};
use ports::store::{BoxError, ChangeBus, StoreError, StoreResult};

/// A value either backend can bind.
pub trait Value<'q>:
    Encode<'q, Postgres> + Type<Postgres> + Encode<'q, Sqlite> + Type<Sqlite>
{
}

impl<'q, T> Value<'q> for T where
    T: Encode<'q, Postgres> + Type<Postgres> + Encode<'q, Sqlite> + Type<Sqlite>
{
}

/// A row type either backend can decode.
pub trait Rows: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin {}

impl<T> Rows for T where
    T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

/// A connection pool of either backend, with the in-process wake-up signals and (on
/// PostgreSQL) the news waiting for the other replicas. A clone shares all three.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    bus: Arc<ChangeBus>,
    outgoing: Option<Arc<Outgoing>>,
}

#[derive(Clone)]
pub enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    pub fn new(pool: Pool) -> Self {
        let outgoing = matches!(pool, Pool::Postgres(_)).then(Outgoing::new);
        Db {
            pool,
            bus: Arc::new(ChangeBus::default()),
            outgoing,
        }
    }

    /// The news for the other replicas (PostgreSQL).
    pub fn outgoing(&self) -> Option<&Arc<Outgoing>> {
        self.outgoing.as_ref()
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn bus(&self) -> &Arc<ChangeBus> {
        &self.bus
    }

    /// A statement run on the pool, outside any transaction.
    pub fn sql(&self, text: &'static str) -> Sql<'_> {
        let bound = match &self.pool {
            Pool::Postgres(p) => Bound::Postgres(PgArguments::default(), PgTarget::Pool(p)),
            Pool::Sqlite(p) => Bound::Sqlite(SqliteArguments::default(), LiteTarget::Pool(p)),
        };
        Sql::new(text, bound)
    }

    pub async fn begin(&self) -> StoreResult<Tx> {
        let inner = match &self.pool {
            Pool::Postgres(p) => TxInner::Postgres(p.begin().await.map_err(sorted)?),
            Pool::Sqlite(p) => TxInner::Sqlite(p.begin().await.map_err(sorted)?),
        };
        Ok(Tx {
            inner,
            bus: self.bus.clone(),
            outgoing: self.outgoing.clone(),
            wake: Vec::new(),
            users: Vec::new(),
            usage: Vec::new(),
        })
    }

    /// Wakes this process's waiting workers now.
    pub fn wake_here(&self, topic: Topic) {
        topic.signal(&self.bus).wake();
    }
}

/// A transaction of either backend. Dropped without `commit`, it rolls back.
pub struct Tx {
    inner: TxInner,
    bus: Arc<ChangeBus>,
    outgoing: Option<Arc<Outgoing>>,
    wake: Vec<Topic>,
    /// Users whose documents this transaction changes.
    users: Vec<String>,
    /// Users whose traffic figures alone it changes.
    usage: Vec<String>,
}

enum TxInner {
    Postgres(sqlx::Transaction<'static, Postgres>),
    Sqlite(sqlx::Transaction<'static, Sqlite>),
}

impl Tx {
    /// A statement run inside the transaction.
    pub fn sql(&mut self, text: &'static str) -> Sql<'_> {
        let bound = match &mut self.inner {
            TxInner::Postgres(tx) => Bound::Postgres(PgArguments::default(), PgTarget::Conn(tx)),
            TxInner::Sqlite(tx) => Bound::Sqlite(SqliteArguments::default(), LiteTarget::Conn(tx)),
        };
        Sql::new(text, bound)
    }

    /// Wakes the workers waiting on `topic` once the transaction commits: this process's
    /// if its loop has room, else the other replicas' (see `news`).
    pub fn wake(&mut self, topic: Topic) {
        if !self.wake.contains(&topic) {
            self.wake.push(topic);
        }
    }

    /// Tells the read models and live streams of `user`, on every replica, once the
    /// transaction commits (a rollback tells no one).
    pub fn changed(&mut self, user: String) {
        if !self.users.contains(&user) {
            self.users.push(user);
        }
    }

    /// Tells the read models of `user`'s new traffic figures, on every replica, once the
    /// transaction commits (the live streams are not told: `Changed::Usage`).
    pub fn usage_changed(&mut self, user: String) {
        if !self.usage.contains(&user) {
            self.usage.push(user);
        }
    }

    /// Commits, then tells this process at once (before returning: it reads its own
    /// writes) and queues the news for the other replicas.
    pub async fn commit(self) -> StoreResult<()> {
        match self.inner {
            TxInner::Postgres(tx) => tx.commit().await.map_err(sorted)?,
            TxInner::Sqlite(tx) => tx.commit().await.map_err(sorted)?,
        }
        news::committed(
            &self.bus,
            &self.wake,
            &self.users,
            &self.usage,
            self.outgoing.as_deref(),
        );
        Ok(())
    }

    pub async fn rollback(self) -> StoreResult<()> {
        match self.inner {
            TxInner::Postgres(tx) => tx.rollback().await.map_err(sorted),
            TxInner::Sqlite(tx) => tx.rollback().await.map_err(sorted),
        }
    }
}

enum PgTarget<'c> {
    Pool(&'c PgPool),
    Conn(&'c mut PgConnection),
}

enum LiteTarget<'c> {
    Pool(&'c SqlitePool),
    Conn(&'c mut SqliteConnection),
}

/// The arguments of one backend, with where the statement runs on that backend.
enum Bound<'c> {
    Postgres(PgArguments, PgTarget<'c>),
    Sqlite(SqliteArguments, LiteTarget<'c>),
}

/// One statement: its text, its arguments in order, and where it runs. Text can also be
/// built piece by piece, each value pushed where its placeholder goes (`push_bind`).
pub struct Sql<'c> {
    text: String,
    fixed: Option<&'static str>,
    bound: Bound<'c>,
    /// The first value that failed to encode, reported when the statement runs.
    error: Option<BoxError>,
}

type PgQuery = sqlx::query::Query<'static, Postgres, PgArguments>;
type LiteQuery = sqlx::query::Query<'static, Sqlite, SqliteArguments>;

/// A statement ready to run: the query of its backend, and where.
enum Ready<'c> {
    PgPool(PgQuery, &'c PgPool),
    PgConn(PgQuery, &'c mut PgConnection),
    LitePool(LiteQuery, &'c SqlitePool),
    LiteConn(LiteQuery, &'c mut SqliteConnection),
}

fn decode<R: sqlx::Row, T: for<'r> FromRow<'r, R>>(row: &R) -> StoreResult<T> {
    T::from_row(row).map_err(sorted)
}

fn decode_all<R: sqlx::Row, T: for<'r> FromRow<'r, R>>(rows: &[R]) -> StoreResult<Vec<T>> {
    rows.iter().map(decode).collect()
}

impl<'c> Sql<'c> {
    fn new(text: &'static str, bound: Bound<'c>) -> Self {
        Sql {
            text: String::new(),
            fixed: Some(text),
            bound,
            error: None,
        }
    }

    fn is_postgres(&self) -> bool {
        matches!(self.bound, Bound::Postgres(..))
    }

    /// Adds the next value, for the next `$n`.
    pub fn bind<'q, T: Value<'q>>(mut self, value: T) -> Self {
        self.add(value);
        self
    }

    fn add<'q, T: Value<'q>>(&mut self, value: T) {
        let added = match &mut self.bound {
            Bound::Postgres(args, _) => args.add(value),
            Bound::Sqlite(args, _) => args.add(value),
        };
        if let (Err(e), None) = (added, &self.error) {
            self.error = Some(e);
        }
    }

    fn count(&self) -> usize {
        match &self.bound {
            Bound::Postgres(args, _) => args.len(),
            Bound::Sqlite(args, _) => args.len(),
        }
    }

    /// Appends text to the statement.
    pub fn push(&mut self, text: &str) -> &mut Self {
        if let Some(fixed) = self.fixed.take() {
            self.text.push_str(fixed);
        }
        self.text.push_str(text);
        self
    }

    /// Appends the placeholder of a new value, and binds the value to it.
    pub fn push_bind<'q, T: Value<'q>>(&mut self, value: T) -> &mut Self {
        self.add(value);
        let n = self.count();
        self.push("");
        let _ = write!(self.text, "${n}");
        self
    }

    /// Appends "`column` is one of `items`": on PostgreSQL one array value (`= any($n)`: one
    /// statement, planned once, whatever the number of items), on SQLite a list of values
    /// (`in ($a, $b, …)`). `items` must not be empty.
    pub fn push_in(&mut self, column: &str, items: Vec<String>) -> &mut Self {
        self.push(column);
        if let Bound::Postgres(args, _) = &mut self.bound {
            if let (Err(e), None) = (args.add(items), &self.error) {
                self.error = Some(e);
            }
            let n = self.count();
            let _ = write!(self.text, " = any(${n})");
            return self;
        }
        self.push(" in (");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push_bind(item);
        }
        self.push(")")
    }

    /// The text as the backend runs it, with the dialect markers filled in.
    fn sql_text(&mut self) -> SqlStr {
        let pg = self.is_postgres();
        let text = match self.fixed {
            Some(fixed) if !fixed.contains('{') => return fixed.into_sql_str(),
            Some(fixed) => fixed,
            None => self.text.as_str(),
        };
        let text = text
            .replace(
                "{skip_locked}",
                if pg { " for update skip locked" } else { "" },
            )
            .replace("{for_update}", if pg { " for update" } else { "" });
        AssertSqlSafe(text).into_sql_str()
    }

    /// The query for the statement's backend, with its target.
    fn ready(mut self) -> StoreResult<Ready<'c>> {
        if let Some(e) = self.error.take() {
            return Err(StoreError::Other(e));
        }
        let text = self.sql_text();
        Ok(match self.bound {
            Bound::Postgres(args, PgTarget::Pool(p)) => Ready::PgPool(query_with(text, args), p),
            Bound::Postgres(args, PgTarget::Conn(c)) => Ready::PgConn(query_with(text, args), c),
            Bound::Sqlite(args, LiteTarget::Pool(p)) => Ready::LitePool(query_with(text, args), p),
            Bound::Sqlite(args, LiteTarget::Conn(c)) => Ready::LiteConn(query_with(text, args), c),
        })
    }

    /// Runs the statement; how many rows it changed.
    pub async fn execute(self) -> StoreResult<u64> {
        Ok(match self.ready()? {
            Ready::PgPool(q, p) => q.execute(p).await.map_err(sorted)?.rows_affected(),
            Ready::PgConn(q, c) => q.execute(c).await.map_err(sorted)?.rows_affected(),
            Ready::LitePool(q, p) => q.execute(p).await.map_err(sorted)?.rows_affected(),
            Ready::LiteConn(q, c) => q.execute(c).await.map_err(sorted)?.rows_affected(),
        })
    }

    pub async fn fetch_optional<T: Rows>(self) -> StoreResult<Option<T>> {
        match self.ready()? {
            Ready::PgPool(q, p) => q
                .fetch_optional(p)
                .await
                .map_err(sorted)?
                .as_ref()
                .map(decode)
                .transpose(),
            Ready::PgConn(q, c) => q
                .fetch_optional(c)
                .await
                .map_err(sorted)?
                .as_ref()
                .map(decode)
                .transpose(),
            Ready::LitePool(q, p) => q
                .fetch_optional(p)
                .await
                .map_err(sorted)?
                .as_ref()
                .map(decode)
                .transpose(),
            Ready::LiteConn(q, c) => q
                .fetch_optional(c)
                .await
                .map_err(sorted)?
                .as_ref()
                .map(decode)
                .transpose(),
        }
    }

    pub async fn fetch_one<T: Rows>(self) -> StoreResult<T> {
        match self.ready()? {
            Ready::PgPool(q, p) => decode(&q.fetch_one(p).await.map_err(sorted)?),
            Ready::PgConn(q, c) => decode(&q.fetch_one(c).await.map_err(sorted)?),
            Ready::LitePool(q, p) => decode(&q.fetch_one(p).await.map_err(sorted)?),
            Ready::LiteConn(q, c) => decode(&q.fetch_one(c).await.map_err(sorted)?),
        }
    }

    pub async fn fetch_all<T: Rows>(self) -> StoreResult<Vec<T>> {
        match self.ready()? {
            Ready::PgPool(q, p) => decode_all(&q.fetch_all(p).await.map_err(sorted)?),
            Ready::PgConn(q, c) => decode_all(&q.fetch_all(c).await.map_err(sorted)?),
            Ready::LitePool(q, p) => decode_all(&q.fetch_all(p).await.map_err(sorted)?),
            Ready::LiteConn(q, c) => decode_all(&q.fetch_all(c).await.map_err(sorted)?),
        }
    }

    /// The first column of the one row the statement returns.
    pub async fn scalar<T>(self) -> StoreResult<T>
    where
        (T,): Rows,
    {
        Ok(self.fetch_one::<(T,)>().await?.0)
    }
}

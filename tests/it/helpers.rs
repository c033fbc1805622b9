//! Test harness: databases per test, the simulators over real HTTP, the service itself
//! over real HTTP, and polling with a deadline instead of sleeps.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fulfillment::api::extract::mint_user_token;
use fulfillment::config::Config;
use fulfillment::domain::product::{HOSTING, Product, VPN};
use fulfillment::domain::progress::SubscriptionSnapshot;
use fulfillment::ports::{ShiftedClock, Store};
use fulfillment::server::{self, Running};
use fulfillment::sim::{Knobs, NodeTiming, Sim, SimAuth};
use fulfillment::store::{SqlStore, postgres};
use serde_json::Value;

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123";
pub const INTERNAL_SECRET: &str = "test-internal-secret-0123456789abcdef";
pub const ADMIN_KEY: &str = "test-admin-key";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Generates one test per backend from an async body taking a `Backend`.
#[macro_export]
macro_rules! on_both {
    ($(#[$m:meta])* async fn $name:ident($b:ident: Backend) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($b: $crate::helpers::Backend) $body
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            $(#[$m])*
            async fn postgres() { run($crate::helpers::Backend::Postgres).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            $(#[$m])*
            async fn sqlite() { run($crate::helpers::Backend::Sqlite).await }
        }
    };
}

/// Runs `$body` with `$pool` connected to the PostgreSQL or SQLite database at `$url`.
macro_rules! on_pool {
    ($url:expr, |$pool:ident| $body:expr) => {
        if $url.starts_with("postgres") {
            let $pool = sqlx::PgPool::connect($url).await.unwrap();
            $body
        } else {
            let $pool = sqlx::SqlitePool::connect($url).await.unwrap();
            $body
        }
    };
}

/// A database of its own for one test, removed afterwards.
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
    /// One small pool kept for `count`, which tests call in tight loops.
    reader: tokio::sync::OnceCell<Reader>,
}

enum Reader {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

enum Cleanup {
    Postgres { admin: String, name: String },
    Sqlite { path: std::path::PathBuf },
}

pub fn pg_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database with every migration applied, cloned for each PostgreSQL test (cloning is
/// several times cheaper than migrating). It is built once per schema: its name carries the
/// newest migration and its checksum, and it appears under that name only once complete.
async fn pg_template(admin: &str) -> &'static str {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let migrator = sqlx::migrate!("migrations/postgres");
            let newest = migrator.iter().last().expect("migrations exist");
            let checksum: String = newest
                .checksum
                .iter()
                .take(6)
                .map(|b| format!("{b:02x}"))
                .collect();
            let name = format!("ft_tpl_{}_{checksum}", newest.version);
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin)
                .await
                .expect("PostgreSQL must be running for the tests (see README)");
            let exists: Option<i32> =
                sqlx::query_scalar("select 1 from pg_database where datname = $1")
                    .bind(&name)
                    .fetch_optional(&mut conn)
                    .await
                    .unwrap();
            if exists.is_some() {
                return name;
            }
            let building = format!("ft_tplb_{}", uuid::Uuid::new_v4().simple());
            let run = |sql: String| sqlx::AssertSqlSafe(sql);
            sqlx::Executor::execute(&mut conn, run(format!("create database {building}")))
                .await
                .unwrap();
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
            let pool = sqlx::PgPool::connect(&format!("{base}/{building}"))
                .await
                .unwrap();
            postgres::migrate(&pool).await.unwrap();
            pool.close().await;
            // Our own connection may take a moment to go away on the server.
            for _ in 0..100 {
                let renamed = sqlx::Executor::execute(
                    &mut conn,
                    run(format!("alter database {building} rename to {name}")),
                )
                .await;
                let duplicate = |e: &sqlx::Error| {
                    e.as_database_error()
                        .and_then(|d| d.code())
                        .is_some_and(|code| code == "42P04")
                };
                match renamed {
                    Ok(_) => return name,
                    Err(e) if duplicate(&e) => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            // Another test process built it first.
            let _ = sqlx::Executor::execute(
                &mut conn,
                run(format!("drop database if exists {building} with (force)")),
            )
            .await;
            name
        })
        .await
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Postgres => {
                let admin = pg_admin_url();
                let name = format!("ft_{}", uuid::Uuid::new_v4().simple());
                let template = pg_template(&admin).await;
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                    .await
                    .expect("PostgreSQL must be running for the tests (see README)");
                sqlx::Executor::execute(
                    &mut conn,
                    sqlx::AssertSqlSafe(format!("create database {name} template {template}")),
                )
                .await
                .unwrap();
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                TestDb {
                    url: format!("{base}/{name}"),
                    cleanup: Cleanup::Postgres { admin, name },
                    reader: Default::default(),
                }
            }
            Backend::Sqlite => {
                let path =
                    std::env::temp_dir().join(format!("ft_{}.db", uuid::Uuid::new_v4().simple()));
                TestDb {
                    url: format!("sqlite://{}", path.display()),
                    cleanup: Cleanup::Sqlite { path },
                    reader: Default::default(),
                }
            }
        }
    }

    pub async fn store(&self) -> Arc<dyn Store> {
        if self.url.starts_with("postgres") {
            Arc::new(SqlStore::connect(&self.url, 4).await.unwrap())
        } else {
            Arc::new(SqlStore::connect(&self.url, 1).await.unwrap())
        }
    }

    /// Runs one SQL statement directly, bypassing the store (to prove what the schema
    /// itself refuses).
    pub async fn exec(&self, sql: &str) -> Result<u64, String> {
        on_pool!(&self.url, |pool| sqlx::query(sqlx::AssertSqlSafe(
            sql.to_owned()
        ))
        .execute(&pool)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| e.to_string()))
    }

    /// Rows in each table that records state (the subscription snapshot cache and the
    /// job rows are left out: reads and the engine's periodic passes write those).
    pub async fn row_counts(&self) -> Vec<(&'static str, i64)> {
        const TABLES: [&str; 5] = [
            "resources",
            "entitlements",
            "outbox",
            "idempotency_keys",
            "resource_events",
        ];
        let mut counts = Vec::new();
        for table in TABLES {
            counts.push((table, self.count(table, "true").await));
        }
        counts
    }

    /// Rows of `table` for which the SQL condition `filter` holds.
    pub async fn count(&self, table: &str, filter: &str) -> i64 {
        let reader = self
            .reader
            .get_or_init(|| async {
                if self.url.starts_with("postgres") {
                    let options = sqlx::postgres::PgPoolOptions::new().max_connections(1);
                    Reader::Postgres(options.connect(&self.url).await.unwrap())
                } else {
                    let options = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1);
                    Reader::Sqlite(options.connect(&self.url).await.unwrap())
                }
            })
            .await;
        let sql = || sqlx::AssertSqlSafe(format!("select count(*) from {table} where {filter}"));
        match reader {
            Reader::Postgres(pool) => sqlx::query_scalar(sql()).fetch_one(pool).await.unwrap(),
            Reader::Sqlite(pool) => sqlx::query_scalar(sql()).fetch_one(pool).await.unwrap(),
        }
    }

    /// Moves a user's current VPN entitlement (and its account's terms) to expire at `at`:
    /// time passing, without waiting for it.
    pub async fn set_vpn_expiry(&self, user: &str, at: chrono::DateTime<chrono::Utc>) {
        const ENTITLEMENT: &str =
            "update entitlements set expire_at = $1 where user_id = $2 and is_current";
        const RESOURCE: &str = "update resources set expire_at = $1 where user_id = $2 \
             and resource_type = 'vpn_user' and status <> 'deleted'";
        on_pool!(&self.url, |pool| for sql in [ENTITLEMENT, RESOURCE] {
            sqlx::query(sql)
                .bind(at)
                .bind(user)
                .execute(&pool)
                .await
                .unwrap();
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Postgres { admin, name } => drop_pg_database(admin, name),
        }
    }
}

/// Drops a database of the PostgreSQL server at `admin`, from a `Drop` (which runs inside
/// the test's runtime: on a thread with its own).
pub fn drop_pg_database(admin: &str, name: &str) {
    let (admin, name) = (admin.to_owned(), name.to_owned());
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await {
                let sql = format!("drop database if exists {name} with (force)");
                let _ = sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(sql)).await;
            }
        });
    })
    .join();
}

/// The simulators, served over HTTP on a port of their own.
pub struct SimServer {
    pub sim: Sim,
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl SimServer {
    pub async fn start(timing: NodeTiming) -> SimServer {
        let sim = Sim::new(
            Knobs {
                hang_ms: 3_000,
                ..Knobs::default()
            },
            timing,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let auth = SimAuth {
            admin_key: Some(ADMIN_KEY.into()),
            internal_secret: Some(INTERNAL_SECRET.into()),
        };
        let task = tokio::spawn({
            let sim = sim.clone();
            async move {
                let _ = fulfillment::sim::serve(sim, auth, listener).await;
            }
        });
        SimServer { sim, url, task }
    }

    /// Gives `user` an active hosting subscription.
    pub fn subscribe(&self, user: &str, subscription_id: &str, plan: &str) {
        self.subscribe_to(HOSTING, user, subscription_id, plan, true);
    }

    /// Gives `user` an active VPN subscription.
    pub fn subscribe_vpn(&self, user: &str, subscription_id: &str, plan: &str) {
        self.subscribe_to(VPN, user, subscription_id, plan, false);
    }

    fn subscribe_to(
        &self,
        product: Product,
        user: &str,
        subscription_id: &str,
        plan: &str,
        auto_renew: bool,
    ) {
        self.sim.subscriptions.set(
            user,
            product.app,
            product.service,
            Some(SubscriptionSnapshot {
                subscription_id: subscription_id.into(),
                status: "active".into(),
                plan_tier: plan.into(),
                expires_at: Some(chrono::Utc::now() + chrono::Duration::days(30)),
                auto_renew,
                quantity: None,
            }),
        );
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The environment of a service under test: fast polls and retries, the given database
/// and simulators.
pub fn test_env(db_url: &str, sim_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DB_URL", db_url.to_owned()),
        ("JWT_SECRET", JWT_SECRET.to_owned()),
        ("INTERNAL_SECRET", INTERNAL_SECRET.to_owned()),
        ("HOSTING_SERVICE_URL", sim_url.to_owned()),
        ("HOSTING_ADMIN_KEY", ADMIN_KEY.to_owned()),
        ("SUBSCRIPTION_SERVICE_URL", sim_url.to_owned()),
        ("OTUN_MANAGER_URL", sim_url.to_owned()),
        ("BIND_ADDR", "127.0.0.1".to_owned()),
        // Many services run at once: each takes a port of its own for its metrics.
        ("METRICS_ADDR", "127.0.0.1:0".to_owned()),
        ("METRICS_CACHE_SECS", "0".to_owned()),
        ("UPSTREAM_TIMEOUT_SECS", "1".to_owned()),
        ("SUBSCRIPTION_CACHE_SECS", "0".to_owned()),
        ("NODE_POLL_SECS", "0.05".to_owned()),
        ("ENGINE_LEASE_SECS", "3".to_owned()),
        ("ENGINE_POLL_SECS", "0.2".to_owned()),
        ("RETRY_BASE_SECS", "0.05".to_owned()),
        ("RETRY_MAX_SECS", "0.4".to_owned()),
        // Tests poll hard; the limits have tests of their own.
        ("USER_RATE_PER_SEC", "10000".to_owned()),
        ("USER_RATE_BURST", "10000".to_owned()),
        ("NODE_CREATES_PER_MIN", "10000".to_owned()),
    ]
}

/// `test_env` as a `Config`.
pub fn test_config(db_url: &str, sim_url: &str) -> Config {
    let vars = test_env(db_url, sim_url);
    Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap()
}

/// The service and the simulators, both over real HTTP, on a database of the test's own.
pub struct TestApp {
    pub db: TestDb,
    pub sims: SimServer,
    pub config: Config,
    pub running: Option<Running>,
    pub base: String,
    pub http: reqwest::Client,
    /// The time the service reads (the wall clock until a test moves it).
    pub clock: Arc<ShiftedClock>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, NodeTiming::default(), |_| {}).await
    }

    pub async fn spawn_with(
        backend: Backend,
        timing: NodeTiming,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        let mut app = Self::prepare(backend, timing, tweak).await;
        app.start().await;
        app
    }

    /// The database, the simulators and the configuration, with the service not started
    /// yet (`start` starts it).
    pub async fn prepare(
        backend: Backend,
        timing: NodeTiming,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        let db = TestDb::new(backend).await;
        let sims = SimServer::start(timing).await;
        let mut config = test_config(&db.url, &sims.url);
        tweak(&mut config);
        TestApp {
            db,
            sims,
            config,
            running: None,
            base: String::new(),
            http: fulfillment::upstream::http_client(Duration::from_secs(30)),
            clock: Arc::new(ShiftedClock::default()),
        }
    }

    pub async fn start(&mut self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = server::start_with_clock(&self.config, listener, None, self.clock.clone())
            .await
            .unwrap();
        self.base = format!("http://{}", running.addr);
        self.running = Some(running);
    }

    /// Stops gracefully and starts again on the same database.
    pub async fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        self.start().await;
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("the service is running")
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.running().state.app.ports.store.clone()
    }

    /// Moves the user's VPN expiry (time passing, for a test), and tells the service as a
    /// commit would: what it keeps in memory stands until a change is heard.
    pub async fn set_vpn_expiry(&self, user: &str, at: chrono::DateTime<chrono::Utc>) {
        self.db.set_vpn_expiry(user, at).await;
        let user = fulfillment::ports::store::Changed::User(user.into());
        self.store().bus().changed(user);
    }

    /// Takes every step and delivery that is due until nothing is due and nothing is in
    /// flight (`Engine::drain`): then "nothing more happens" can be asserted at once.
    pub async fn settle(&self) {
        let engine = &self.running().state.app.engine;
        let quiet = engine.drain(Duration::from_secs(20)).await.unwrap();
        assert!(quiet, "the engine never settled");
    }

    pub fn token(&self, user: &str) -> String {
        mint_user_token(JWT_SECRET, user, Duration::from_secs(3600))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A user API call; returns status and JSON body.
    pub async fn user(
        &self,
        method: reqwest::Method,
        path: &str,
        user: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.clone(), self.url(path))
            .bearer_auth(self.token(user));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let (status, body) = read(req.send().await.unwrap()).await;
        crate::openapi::conforms(method.as_str(), path, status, &body);
        (status, body)
    }

    /// An internal API call with the right secret.
    pub async fn internal(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        call_internal(&self.http, &self.base, method, path, body).await
    }

    pub async fn provision(&self, user: &str, subscription: &str) -> (u16, Value) {
        self.internal(
            reqwest::Method::POST,
            "/api/internal/provision",
            Some(
                serde_json::json!({"user_id": user, "subscription_id": subscription,
                "app_source": "obox", "plan_tier": "premium", "region": "ap-northeast-1"}),
            ),
        )
        .await
    }

    /// Kills the PostgreSQL connection the service listens for notifications on (it
    /// reconnects by itself); panics if none was found.
    pub async fn kill_listener(&self) {
        let killed = self
            .db
            .exec(
                "select pg_terminate_backend(pid) from pg_stat_activity \
                 where datname = current_database() and pid <> pg_backend_pid() \
                 and query ilike 'listen%'",
            )
            .await
            .unwrap();
        assert!(
            killed >= 1,
            "the listener's connection was found and killed"
        );
    }

    pub async fn resource(&self, id: &str) -> Value {
        let (status, body) = self
            .internal(
                reqwest::Method::GET,
                &format!("/api/internal/resources/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until the resource reaches `status` (panics after 20 s).
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let last = self.resource(id).await;
            if last["status"] == status {
                return last;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "resource {id} never reached {status}; last seen {last}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The VPS the engine has learned for resource `id`, once it has (the node agent's
    /// ready report can win the race with the create's answer: a resource may be active
    /// a moment before its node id is known). Panics after 20 s.
    pub async fn learned_node_id(&self, id: &str) -> String {
        let store = self.store();
        let id = id.parse().unwrap();
        let node_id = || async { store.resource(id).await.unwrap().unwrap().node_id };
        let learned = wait_until(Duration::from_secs(20), || async {
            node_id().await.is_some()
        })
        .await;
        assert!(learned, "the engine never learned the node id of {id}");
        node_id().await.unwrap()
    }

    /// Waits until the subscription service has received `n` callbacks for `subscription`.
    pub async fn wait_callbacks(
        &self,
        subscription: &str,
        n: usize,
    ) -> Vec<fulfillment::ports::FulfillmentCallback> {
        let ok = wait_until(Duration::from_secs(20), || async {
            self.sims
                .sim
                .subscriptions
                .callbacks_for(subscription)
                .len()
                >= n
        })
        .await;
        let got = self.sims.sim.subscriptions.callbacks_for(subscription);
        assert!(ok, "expected {n} callbacks for {subscription}, got {got:?}");
        got
    }
}

/// An internal API call with the right secret against the service at `base`.
pub async fn call_internal(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http
        .request(method.clone(), format!("{base}{path}"))
        .header("X-Internal-Secret", INTERNAL_SECRET);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let (status, body) = read(req.send().await.unwrap()).await;
    crate::openapi::conforms(method.as_str(), path, status, &body);
    (status, body)
}

/// Status and JSON body of a response (`Null` for an empty body).
pub async fn read(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub async fn wait_until<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A ready premium node for `user` whose agent sends no stats of its own, and its
/// credential.
pub async fn quiet_node(b: Backend, user: &str) -> (TestApp, String, String) {
    quiet_node_with(b, user, |_| {}, |_| {}).await
}

/// `quiet_node`, with the configuration tweaked, and `before` run on the service before
/// the order (to move its clock, say).
pub async fn quiet_node_with(
    b: Backend,
    user: &str,
    tweak: impl FnOnce(&mut Config),
    before: impl FnOnce(&TestApp),
) -> (TestApp, String, String) {
    let timing = NodeTiming {
        stats_interval_ms: 0,
        ..NodeTiming::default()
    };
    let app = TestApp::spawn_with(b, timing, tweak).await;
    before(&app);
    app.sims.subscribe(user, &format!("sub-{user}"), "premium");
    let (_, resp) = app.provision(user, &format!("sub-{user}")).await;
    let id = resp["resource_id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "active").await;
    let token = app
        .sims
        .sim
        .hosting
        .creates()
        .last()
        .unwrap()
        .callback_token
        .clone();
    (app, id, token)
}

//! What every benchmark shares: the service's configuration, a database of its own,
//! pgbench as the baseline, peak RSS, the service and its simulators started in process,
//! seeded data, and waiting for the callbacks.

use std::process::Command;
use std::time::{Duration, Instant};

use fulfillment::config::Config;
use fulfillment::server;
use fulfillment::sim::{Knobs, NodeTiming, Sim};
use sqlx::{Connection, Executor, PgConnection};

use crate::Args;

pub(crate) const JWT: &str = "bench-jwt-secret-0123456789abcdef0123456789";
pub(crate) const INTERNAL: &str = "bench-internal-secret-0123456789abcdef0123";

pub(crate) fn config(db_url: &str) -> Config {
    let vars = [
        ("DB_URL", db_url),
        ("JWT_SECRET", JWT),
        ("INTERNAL_SECRET", INTERNAL),
        ("HOSTING_SERVICE_URL", "http://127.0.0.1:9"),
        ("HOSTING_ADMIN_KEY", "unused: simulated in process"),
        ("SUBSCRIPTION_SERVICE_URL", "http://127.0.0.1:9"),
        ("OTUN_MANAGER_URL", "http://127.0.0.1:9"),
        ("BIND_ADDR", "127.0.0.1"),
        // Several instances run at once; the scrape benchmark sets its own.
        ("METRICS_ADDR", ""),
        ("SUBSCRIPTION_CACHE_SECS", "600"),
        ("NODE_POLL_SECS", "0.2"),
        // The sync benchmark measures a pass's own cost, not the pacing.
        ("VPN_SYNC_RATE", "100000000"),
    ];
    Config::from_lookup(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap()
}

/// Rows `owner` still holds in the database at `url` (leases not taken over, not expired).
pub(crate) async fn leased_by(url: &str, owner: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(
        "select count(*) from resources where lease_owner = $1 and lease_until > now()",
    )
    .bind(owner)
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

/// A database of its own, dropped at the end.
pub(crate) struct Db {
    admin: String,
    pub(crate) name: String,
    pub(crate) url: String,
}

impl Db {
    pub(crate) async fn create(admin: &str, prefix: &str) -> Db {
        let name = format!("{prefix}_{}", std::process::id());
        let mut conn = PgConnection::connect(admin)
            .await
            .expect("PostgreSQL is reachable");
        conn.execute(sqlx::AssertSqlSafe(format!(
            "drop database if exists {name} with (force)"
        )))
        .await
        .unwrap();
        conn.execute(sqlx::AssertSqlSafe(format!("create database {name}")))
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
        Db {
            admin: admin.into(),
            // TLS on a loopback connection only measures the TLS stack; the service and
            // pgbench both connect without it.
            url: format!("{base}/{name}?sslmode=disable"),
            name,
        }
    }

    pub(crate) async fn drop(self) {
        let mut conn = PgConnection::connect(&self.admin).await.unwrap();
        let _ = conn
            .execute(sqlx::AssertSqlSafe(format!(
                "drop database if exists {} with (force)",
                self.name
            )))
            .await;
    }

    /// Resources whose lease has not run out (steps in flight, or left by a killed worker).
    pub(crate) async fn leased(&self) -> i64 {
        let mut conn = PgConnection::connect(&self.url).await.unwrap();
        sqlx::query_scalar("select count(*) from resources where lease_until > now()")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }

    /// Committed plus rolled-back transactions so far.
    pub(crate) async fn transactions(&self) -> i64 {
        let mut conn = PgConnection::connect(&self.admin).await.unwrap();
        sqlx::query_scalar(
            "select (xact_commit + xact_rollback)::bigint from pg_stat_database where datname = $1",
        )
        .bind(&self.name)
        .fetch_one(&mut conn)
        .await
        .unwrap()
    }
}

pub(crate) fn pg_args(url: &str) -> Vec<String> {
    let u = reqwest::Url::parse(url).unwrap();
    vec![
        "-h".into(),
        u.host_str().unwrap_or("127.0.0.1").into(),
        "-p".into(),
        u.port().unwrap_or(5432).to_string(),
        "-U".into(),
        if u.username().is_empty() {
            "postgres".into()
        } else {
            u.username().into()
        },
    ]
}

/// Runs pgbench and returns its TPS (excluding connection time).
pub(crate) fn pgbench(db: &Db, extra: &[&str]) -> f64 {
    let out = Command::new("pgbench")
        .env("PGSSLMODE", "disable")
        .args(pg_args(&db.url))
        .args(extra)
        .arg(&db.name)
        .output()
        .expect("pgbench is installed (postgresql-client)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .expect("pgbench printed a tps line")
}

/// Resets this process's peak RSS (Linux: clear_refs 5).
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub(crate) fn current_rss_mb() -> f64 {
    status_kb("VmRSS:") / 1024.0
}

pub(crate) fn peak_rss_mb() -> f64 {
    status_kb("VmHWM:") / 1024.0
}

/// A `kB` line of /proc/self/status.
pub(crate) fn status_kb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse().ok()))
        .unwrap_or(f64::NAN)
}

pub(crate) async fn start(db: &Db, sim: Sim) -> server::Running {
    start_with(sim, config(&db.url)).await
}

pub(crate) async fn start_with(sim: Sim, config: Config) -> server::Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    server::start(&config, listener, Some(sim)).await.unwrap()
}

pub(crate) fn sim(send_callbacks: bool) -> Sim {
    let sim = Sim::new(
        Knobs::default(),
        NodeTiming {
            send_callbacks,
            ..NodeTiming::default()
        },
    );
    sim.subscriptions.set_default_plan(Some("premium".into()));
    sim
}

/// `n` users (`bench-user-1` …), each with an active premium node.
pub(crate) async fn seed_active_nodes(db: &Db, n: usize) {
    drop(
        fulfillment::store::connect(&db.url, 1)
            .await
            .expect("migrated"),
    );
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query(
        "insert into resources (id, resource_type, subscription_id, user_id, order_key, provider, region, \
         plan_tier, status, desired_state, generation, phase, public_ip, api_port, api_key, vless_port, \
         ss_port, public_key, short_id, traffic_limit, traffic_used, attempts, upstream_released, node_id, \
         created_at, updated_at, ready_at) \
         select gen_random_uuid()::text, 'hosting_node', 'sub_obox_bench-user-' || i, 'bench-user-' || i, \
         'sub_obox_bench-user-' || i || '|sub', 'lightsail', 'ap-northeast-1', 'premium', 'active', 'active', \
         0, 4, '203.0.113.1', 8080, 'agent-key-' || i, 443, 8388, 'pk', 'sid', 3298534883328, \
         (i % 100)::bigint * 1073741824, 0, false, 'node-' || i, now(), now(), now() \
         from generate_series(1, $1) as i",
    )
    .bind(n as i32)
    .execute(&mut conn)
    .await
    .unwrap();
    conn.execute("analyze resources").await.unwrap();
}

/// The baseline for write-heavy work: `pgbench -N` (simple updates, no branch contention)
/// at the benchmark's concurrency, on a database of its own.
pub(crate) async fn pgbench_writes(args: &Args) -> f64 {
    let baseline_db = Db::create(&args.pg, "bench_pgbench").await;
    let init = Command::new("pgbench")
        .env("PGSSLMODE", "disable")
        .args(pg_args(&baseline_db.url))
        .args(["-i", "-q", "-s", "10"])
        .arg(&baseline_db.name)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let c = args.concurrency.to_string();
    let t = args.secs.to_string();
    let baseline = pgbench(&baseline_db, &["-N", "-n", "-c", &c, "-j", "2", "-T", &t]);
    baseline_db.drop().await;
    baseline
}

/// Waits until `n` callbacks reached the subscription service; the time since `started`
/// and the peak RSS.
pub(crate) async fn until_reported(sim: &Sim, n: usize, started: Instant) -> (f64, f64) {
    let limit = Instant::now() + Duration::from_secs(600);
    while sim.subscriptions.callbacks().len() < n {
        assert!(
            Instant::now() < limit,
            "orders did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (started.elapsed().as_secs_f64(), peak_rss_mb())
}

/// Stops the service and returns the database's transactions since `before`; drops it.
pub(crate) async fn stop_and_count(running: server::Running, db: Db, before: i64) -> f64 {
    running.stop().await;
    // Backends flush their statistics within PostgreSQL's idle interval (10 s).
    tokio::time::sleep(Duration::from_secs(11)).await;
    let tx = (db.transactions().await - before) as f64;
    db.drop().await;
    tx
}

/// Posts `orders` orders (made by `order(i)`) to `/api/internal/provision`, `concurrency`
/// at a time, spread over the services at `bases`, and returns every answer.
pub(crate) async fn post_orders(
    bases: &[String],
    orders: usize,
    concurrency: usize,
    order: fn(usize) -> serde_json::Value,
) -> Vec<(u16, serde_json::Value)> {
    let http = fulfillment::upstream::http_client(Duration::from_secs(30));
    let per = orders.div_ceil(concurrency);
    let urls: Vec<String> = bases
        .iter()
        .map(|b| format!("{b}/api/internal/provision"))
        .collect();
    let senders = (0..concurrency).map(|w| {
        let (http, urls) = (http.clone(), urls.clone());
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in (w * per)..((w + 1) * per).min(orders) {
                let r = http
                    .post(&urls[i % urls.len()])
                    .header("X-Internal-Secret", INTERNAL)
                    .json(&order(i))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                answers.push((status, r.json().await.unwrap()));
            }
            answers
        })
    });
    futures::future::join_all(senders)
        .await
        .into_iter()
        .flat_map(Result::unwrap)
        .collect()
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

/// One run of `args.orders` orders through the HTTP API against a service and a database
/// of its own, until every order is reported; the service is stopped after.
pub(crate) struct OrderRun {
    pub answers: Vec<(u16, serde_json::Value)>,
    pub sim: Sim,
    /// Seconds from the first order to the last callback.
    pub elapsed: f64,
    /// Peak RSS (MB) of this process: service and load generator.
    pub rss: f64,
    /// Database transactions of the run.
    pub tx: f64,
    /// `pgbench -N` at the run's concurrency (tx/s).
    pub baseline: f64,
}

pub(crate) async fn order_run(
    args: &Args,
    db_name: &str,
    order: fn(usize) -> serde_json::Value,
) -> OrderRun {
    let db = Db::create(&args.pg, db_name).await;
    let before = db.transactions().await;
    let sim = sim(false);
    reset_peak_rss();
    let running = start(&db, sim.clone()).await;
    let base = format!("http://{}", running.addr);
    let started = Instant::now();
    let answers = post_orders(&[base], args.orders, args.concurrency, order).await;
    let (elapsed, rss) = until_reported(&sim, args.orders, started).await;
    let tx = stop_and_count(running, db, before).await;
    let baseline = pgbench_writes(args).await;
    OrderRun {
        answers,
        sim,
        elapsed,
        rss,
        tx,
        baseline,
    }
}

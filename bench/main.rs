//! Benchmarks (not tests): `bench/run`. Each measures the service against a baseline taken
//! in the same run on the same machine, and reports the ratio, because absolute numbers on
//! a shared 2-core machine do not compare across runs.
//!
//! - `read`: `GET /api/v1/my/node` for users with active nodes, on PostgreSQL, at a fixed
//!   concurrency for a fixed time; baseline: pgbench running the request's SQL.
//! - `provision`: orders through the HTTP API until every node is active and every callback
//!   delivered, against in-process simulators with no latency; transactions per resource
//!   from `pg_stat_database`; baseline: `pgbench -N`.
//!
//! - `replicas`: the provisioning run with 1 and with 3 service instances on one database;
//!   the throughput ratio shows whether claiming scales or contends.
//! - `resume`: the time from killing the service with work in flight to all of it done by
//!   a new instance, with the default lease (15 s) and the old one (60 s), against no kill.
//! - `vpn`: VPN orders through the HTTP API (each tried within its request) until every
//!   callback is delivered; transactions per order; baseline: `pgbench -N`.
//! - `sync`: one VPN traffic-sync pass over 100,000 live VPN users: wall time, statements
//!   issued, peak RSS; baseline: one statement writing the same rows.
//!
//! - `migrate`: 500 active nodes migrated to another region at once: migrations per
//!   second, transactions per migration, the peak of VPSes alive; baseline: `pgbench -N`.
//!
//! - `push`: as many SSE streams as the machine holds, then 1,000 changes: delivery
//!   latency, RSS per idle stream, idle CPU; baseline: the same users polling every 5 s
//!   (database transactions per second in both modes).
//! - `scrape`: one `/metrics` scrape with 100,000 resources in the database, and the
//!   database reads of 50 scrapes a second; baseline: the gauges' statement in pgbench.
//!
//! - `import`: `fulfillment import-legacy` over a Go database of 1.4 million rows: rows per
//!   second and the importer's peak RSS; baseline: PostgreSQL's own `insert … select`.
//!
//! - `abuse`: the service's peak RSS and `/health` under the attacks of issue 23 (held
//!   WebSocket fragments, every stream slot, WebSockets past the cap, huge request heads);
//!   baseline: the same binary idle.
//!
//! Peak RSS (VmHWM of this process, reset before each benchmark) is reported for both.

mod abuse;
mod idle;
mod import;
mod migrate;
mod push;
mod scrape;

use std::fmt::Write as _;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use fulfillment::api::extract::mint_user_token;
use fulfillment::config::Config;
use fulfillment::server;
use fulfillment::sim::{Knobs, NodeTiming, Sim};
use sqlx::{Connection, Executor, PgConnection};

#[derive(Parser)]
struct Args {
    /// `read`, `provision`, `replicas`, `resume`, `vpn`, `sync`, `migrate`, `push`,
    /// `scrape`, `idle`, `import`, `abuse` or `all`.
    #[arg(long, default_value = "all")]
    which: String,
    /// Seconds of each timed phase.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    #[arg(long, default_value_t = 2_000)]
    orders: usize,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Settled resources the idle service holds.
    #[arg(long, default_value_t = 100_000)]
    idle_resources: usize,
    /// Live VPN users in the traffic-sync benchmark.
    #[arg(long, default_value_t = 100_000)]
    sync_users: usize,
    /// A PostgreSQL URL with the right to create databases.
    #[arg(
        long,
        env = "BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg: String,
    /// Where to append the results (nothing is written when empty).
    #[arg(long, default_value = "bench/RESULTS.md")]
    out: String,
}

const JWT: &str = "bench-jwt-secret-0123456789abcdef0123456789";
const INTERNAL: &str = "bench-internal-secret-0123456789abcdef0123";

fn config(db_url: &str) -> Config {
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
async fn leased_by(url: &str, owner: &str) -> i64 {
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
struct Db {
    admin: String,
    name: String,
    url: String,
}

impl Db {
    async fn create(admin: &str, prefix: &str) -> Db {
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

    async fn drop(self) {
        let mut conn = PgConnection::connect(&self.admin).await.unwrap();
        let _ = conn
            .execute(sqlx::AssertSqlSafe(format!(
                "drop database if exists {} with (force)",
                self.name
            )))
            .await;
    }

    /// Resources whose lease has not run out (steps in flight, or left by a killed worker).
    async fn leased(&self) -> i64 {
        let mut conn = PgConnection::connect(&self.url).await.unwrap();
        sqlx::query_scalar("select count(*) from resources where lease_until > now()")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }

    /// Committed plus rolled-back transactions so far.
    async fn transactions(&self) -> i64 {
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

fn pg_args(url: &str) -> Vec<String> {
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
fn pgbench(db: &Db, extra: &[&str]) -> f64 {
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
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn current_rss_mb() -> f64 {
    status_kb("VmRSS:") / 1024.0
}

fn peak_rss_mb() -> f64 {
    status_kb("VmHWM:") / 1024.0
}

/// A `kB` line of /proc/self/status.
fn status_kb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// wrk's request script: every request for the next user's token, each thread starting
/// at its own place in the list.
const WRK_SCRIPT: &str = r#"
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local threads = 0
function setup(thread)
  thread:set("offset", threads * 4999)
  threads = threads + 1
end
local i = 0
function init(args)
  i = offset or 0
end
function request()
  i = i % #tokens + 1
  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. tokens[i]})
end
"#;

/// A percentile from wrk's `--latency` distribution (`    99%   12.34ms`).
fn wrk_percentile(text: &str, which: &str) -> Duration {
    let value = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(which))
        .map(str::trim)
        .expect("wrk printed its latency distribution");
    let (number, unit) = value.split_at(
        value
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(value.len()),
    );
    let n: f64 = number.parse().unwrap_or(f64::NAN);
    Duration::from_secs_f64(match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => f64::NAN,
    })
}

async fn start(db: &Db, sim: Sim) -> server::Running {
    start_with(sim, config(&db.url)).await
}

async fn start_with(sim: Sim, config: Config) -> server::Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    server::start(&config, listener, Some(sim)).await.unwrap()
}

fn sim(send_callbacks: bool) -> Sim {
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
async fn seed_active_nodes(db: &Db, n: usize) {
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

async fn read_bench(args: &Args, report: &mut String) {
    let db = Db::create(&args.pg, "bench_read").await;
    seed_active_nodes(&db, args.users).await;
    let tokens: Arc<Vec<String>> = Arc::new(
        (1..=args.users)
            .map(|i| mint_user_token(JWT, &format!("bench-user-{i}"), Duration::from_secs(3600)))
            .collect(),
    );

    // Baseline: the request's SQL through pgbench at the same concurrency.
    let script = std::env::temp_dir().join(format!("bench-read-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        format!(
            "\\set uid random(1, {})\nselect id, resource_type, subscription_id, user_id, user_email, order_key, \
             provider, region, plan_tier, status, desired_state, generation, delete_reason, node_id, phase, \
             public_ip, api_port, api_key, vless_port, ss_port, public_key, short_id, traffic_limit, \
             traffic_used, error_message, attempts, upstream_released, deadline_at, next_attempt_at, \
             created_at, updated_at, ready_at from resources where resource_type = 'hosting_node' and \
             desired_state = 'active' and status <> 'deleted' and user_id = 'bench-user-' || :uid;\n",
            args.users
        ),
    )
    .unwrap();
    let c = args.concurrency.to_string();
    let t = args.secs.to_string();
    let baseline = pgbench(
        &db,
        &[
            "-n",
            "-M",
            "prepared",
            "-c",
            &c,
            "-j",
            "2",
            "-T",
            &t,
            "-f",
            script.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_file(&script);

    // The service with its read model (the default), then without: every read a query.
    let on = read_phase(args, &db, &tokens, None).await;
    let off = read_phase(args, &db, &tokens, Some(0)).await;
    db.drop().await;

    let _ = writeln!(
        report,
        "### GET /api/v1/my/node ({} users with active nodes, PostgreSQL, {} connections, {} s)\n\n\
         | measure | read model on | read model off | target |\n|---|---|---|---|\n\
         | service | {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms | {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms | p99 < 25 ms: {} |\n\
         | baseline: pgbench, the request's SQL | {baseline:.0} tx/s | | |\n\
         | ratio service / baseline | {:.2} | {:.2} | ≥ 0.5: {} |\n\
         | peak RSS of the service | {:.1} MB | {:.1} MB | < 100 MB: {} |\n",
        args.users,
        args.concurrency,
        args.secs,
        on.rps,
        on.p50 * 1e3,
        on.p99 * 1e3,
        off.rps,
        off.p50 * 1e3,
        off.p99 * 1e3,
        verdict(on.p99 < 0.025),
        on.rps / baseline,
        off.rps / baseline,
        verdict(on.rps / baseline >= 0.5),
        on.rss,
        off.rss,
        verdict(on.rss < 100.0),
    );
}

/// What one timed phase of `read` measured.
struct ReadPhase {
    rps: f64,
    /// Seconds.
    p50: f64,
    p99: f64,
    /// Peak RSS in MB.
    rss: f64,
}

/// Starts the service (with `READ_MODEL_USERS` = `users` when given), warms it with one
/// request per user (the subscription cache's and the read model's steady state), and
/// runs wrk against `GET /my/node` with one token per user.
async fn read_phase(
    args: &Args,
    db: &Db,
    tokens: &Arc<Vec<String>>,
    users: Option<usize>,
) -> ReadPhase {
    let mut cfg = config(&db.url);
    if let Some(n) = users {
        cfg.app.read_model_users = n;
    }
    let running = start_with(sim(false), cfg).await;
    let base = format!("http://{}", running.addr);
    let http = fulfillment::upstream::http_client(Duration::from_secs(10));
    let url = format!("{base}/api/v1/my/node");
    let per = args.users.div_ceil(args.concurrency);
    let warm: Vec<_> = (0..args.concurrency)
        .map(|w| {
            let (http, url, tokens) = (http.clone(), url.clone(), tokens.clone());
            tokio::spawn(async move {
                for t in tokens.iter().skip(w * per).take(per) {
                    let r = http.get(&url).bearer_auth(t).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    let body: serde_json::Value = r.json().await.unwrap();
                    assert_eq!(body["hosting_status"], "node_active");
                }
            })
        })
        .collect();
    futures::future::join_all(warm).await;

    // wrk: a separate, lean load generator.
    let dir = std::env::temp_dir();
    let token_file = dir.join(format!("bench-tokens-{}.txt", std::process::id()));
    std::fs::write(&token_file, tokens.join("\n")).unwrap();
    let lua = dir.join(format!("bench-read-{}.lua", std::process::id()));
    std::fs::write(&lua, WRK_SCRIPT).unwrap();
    reset_peak_rss();
    let out = Command::new("wrk")
        .args([
            "-t",
            "2",
            "-c",
            &args.concurrency.to_string(),
            "-d",
            &format!("{}s", args.secs),
            "--latency",
            "-s",
        ])
        .arg(&lua)
        .arg(&url)
        .env("BENCH_TOKENS", &token_file)
        .output()
        .expect("wrk is installed (bench/run installs it)");
    let _ = std::fs::remove_file(&token_file);
    let _ = std::fs::remove_file(&lua);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("Non-2xx"),
        "every request must succeed:\n{text}"
    );
    let rss = peak_rss_mb();
    let rps: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("wrk printed Requests/sec");
    let (p50, p99) = (wrk_percentile(&text, "50%"), wrk_percentile(&text, "99%"));
    running.stop().await;
    ReadPhase {
        rps,
        p50: p50.as_secs_f64(),
        p99: p99.as_secs_f64(),
        rss,
    }
}

/// The baseline for write-heavy work: `pgbench -N` (simple updates, no branch contention)
/// at the benchmark's concurrency, on a database of its own.
async fn pgbench_writes(args: &Args) -> f64 {
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
async fn until_reported(sim: &Sim, n: usize, started: Instant) -> (f64, f64) {
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
async fn stop_and_count(running: server::Running, db: Db, before: i64) -> f64 {
    running.stop().await;
    // Backends flush their statistics within PostgreSQL's idle interval (10 s).
    tokio::time::sleep(Duration::from_secs(11)).await;
    let tx = (db.transactions().await - before) as f64;
    db.drop().await;
    tx
}

/// Posts `orders` orders (made by `order(i)`) to `/api/internal/provision`, `concurrency`
/// at a time, spread over the services at `bases`, and returns every answer.
async fn post_orders(
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

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

async fn provision_bench(args: &Args, report: &mut String) {
    let db = Db::create(&args.pg, "bench_prov").await;
    let before = db.transactions().await;
    let sim = sim(false);
    reset_peak_rss();
    let running = start(&db, sim.clone()).await;
    let base = format!("http://{}", running.addr);

    let started = Instant::now();
    let answers = post_orders(&[base], args.orders, args.concurrency, |i| {
        serde_json::json!({"user_id": format!("order-user-{i}"),
            "subscription_id": format!("order-sub-{i}"), "plan_tier": "standard", "region": "us-east-1"})
    })
    .await;
    assert!(answers.iter().all(|(status, _)| *status == 202));
    let (elapsed, rss) = until_reported(&sim, args.orders, started).await;
    assert_eq!(
        sim.hosting.creates().len(),
        args.orders,
        "one node per order"
    );
    assert!(
        sim.subscriptions
            .callbacks()
            .iter()
            .all(|c| c.callback.status == "active")
    );
    let tx = stop_and_count(running, db, before).await;
    let baseline = pgbench_writes(args).await;

    let per_second = args.orders as f64 / elapsed;
    let per_resource = tx / args.orders as f64;
    let ratio = per_second * per_resource / baseline;
    let _ = writeln!(
        report,
        "### Provisioning ({} orders, in-process simulators without latency, PostgreSQL)\n\n\
         | measure | value | target |\n|---|---|---|\n\
         | throughput, order to callback delivered | {per_second:.0} resources/s ({elapsed:.1} s) | |\n\
         | database transactions per resource | {per_resource:.2} | ≤ 5: {} |\n\
         | baseline: `pgbench -N`, {} clients | {baseline:.0} tx/s | |\n\
         | resources/s × transactions per resource / baseline | {ratio:.2} | ≥ 0.3: {} |\n\
         | peak RSS (service and load generator) | {rss:.1} MB | < 100 MB: {} |\n",
        args.orders,
        verdict(per_resource <= 5.0),
        args.concurrency,
        verdict(ratio >= 0.3),
        verdict(rss < 100.0),
    );
}

/// Hosting orders with 1 and with 3 service instances on one PostgreSQL database, each
/// with its own engine: whether claiming scales or contends, and that no node is created
/// twice by racing replicas. Three instances run twice: with the default pool each (three
/// times the connections), and sharing one instance's pool between them.
async fn replicas_bench(args: &Args, report: &mut String) {
    let mut rows = String::new();
    let mut throughput = Vec::new();
    let pool = config(&args.pg).db.max_connections;
    let mut most_tx: f64 = 0.0;
    let shared: Vec<u32> = (0..3).map(|i| pool / 3 + u32::from(i < pool % 3)).collect();
    let runs: [(&str, Vec<u32>); 3] = [
        ("1", vec![pool]),
        ("3", vec![pool; 3]),
        ("3, one pool shared", shared),
    ];
    for (name, pools) in runs {
        let db = Db::create(&args.pg, "bench_rep").await;
        let before = db.transactions().await;
        let sim = sim(false);
        let mut running = Vec::new();
        for &connections in &pools {
            let mut cfg = config(&db.url);
            cfg.db.max_connections = connections;
            running.push(start_with(sim.clone(), cfg).await);
        }
        let bases: Vec<String> = running
            .iter()
            .map(|r| format!("http://{}", r.addr))
            .collect();
        let started = Instant::now();
        let answers = post_orders(&bases, args.orders, args.concurrency, |i| {
            serde_json::json!({"user_id": format!("rep-user-{i}"),
                "subscription_id": format!("rep-sub-{i}"), "plan_tier": "standard", "region": "us-east-1"})
        })
        .await;
        assert!(answers.iter().all(|(status, _)| *status == 202));
        let (elapsed, _) = until_reported(&sim, args.orders, started).await;
        assert_eq!(
            sim.hosting.creates().len(),
            args.orders,
            "no node created twice"
        );
        let mut rest = running.into_iter();
        let first = rest.next().unwrap();
        for r in rest {
            r.stop().await;
        }
        let tx = stop_and_count(first, db, before).await;
        let per_second = args.orders as f64 / elapsed;
        throughput.push(per_second);
        most_tx = most_tx.max(tx / args.orders as f64);
        let connections: Vec<String> = pools.iter().map(u32::to_string).collect();
        let _ = writeln!(
            rows,
            "| {name} | {} | {per_second:.0} resources/s ({elapsed:.1} s) | {:.2} | {:.2} |",
            connections.join(" + "),
            tx / args.orders as f64,
            per_second / throughput[0],
        );
    }
    let _ = writeln!(
        report,
        "### Replicas ({} hosting orders, in-process simulators, one PostgreSQL)\n\n\
         | service instances | pool connections | throughput, order to callback delivered | transactions per resource | throughput / 1 instance |\n|---|---|---|---|---|\n\
         {rows}\nGoals: 3 instances ≥ 1.0× one ({}: {:.2} with default pools, {:.2} sharing one pool), \
         at most 7 transactions per resource ({}). All instances share these 2 cores with \
         PostgreSQL, whose CPU is the bottleneck: this shows what replicas cost the database, \
         not how more machines would scale.\n",
        args.orders,
        verdict(throughput[1] / throughput[0] >= 1.0),
        throughput[1] / throughput[0],
        throughput[2] / throughput[0],
        verdict(most_tx <= 7.0),
    );
}

/// Kill recovery: orders whose nodes take 3 s to come up, polled through a hosting service
/// that takes 100 ms a call (so at any moment many steps are mid-call, holding their
/// leases), the service killed (its tasks dropped at once, leases left behind) while they
/// are in flight, a new instance started at once; the time until every order is active
/// and reported, against the same run without a kill, for the default lease and the old
/// fixed one.
async fn resume_bench(args: &Args, report: &mut String) {
    let orders = 200;
    let mut rows = String::new();
    // The run without a kill comes first: it is the baseline of the others.
    let mut baseline = None;
    for (lease, kill) in [(15.0, false), (15.0, true), (60.0, true)] {
        let db = Db::create(&args.pg, "bench_resume").await;
        let sim = Sim::new(
            Knobs {
                latency_ms: 100,
                ..Knobs::default()
            },
            NodeTiming {
                creating_ms: 3_000,
                send_callbacks: false,
                stats_interval_ms: 0,
                ..NodeTiming::default()
            },
        );
        sim.subscriptions.set_default_plan(Some("premium".into()));
        let mut cfg = config(&db.url);
        cfg.engine.lease = Duration::from_secs_f64(lease);
        let running = start_with(sim.clone(), cfg.clone()).await;
        let bases = [format!("http://{}", running.addr)];
        let answers = post_orders(&bases, orders, args.concurrency, |i| {
            serde_json::json!({"user_id": format!("resume-user-{i}"),
                "subscription_id": format!("resume-sub-{i}"), "plan_tier": "basic", "region": "us-east-1"})
        })
        .await;
        assert!(answers.iter().all(|(status, _)| *status == 202));
        // Every create is in flight at the hosting service: now the process dies.
        while sim.hosting.creates().len() < orders {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let dead_owner = running.state.app.engine.config.owner.clone();
        let t0 = Instant::now();
        let survivor = if kill {
            running.kill();
            None
        } else {
            Some(running)
        };
        // The killed process's leases (without a kill: the steps in flight).
        let held = db.leased().await;
        let survivor = match survivor {
            Some(running) => running,
            None => start_with(sim.clone(), cfg).await,
        };
        // How long the killed process's leases stand after the restart.
        let restarted = Instant::now();
        let freed = {
            let (url, owner) = (db.url.clone(), dead_owner.clone());
            tokio::spawn(async move {
                while leased_by(&url, &owner).await > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                restarted.elapsed().as_secs_f64()
            })
        };
        let (elapsed, _) = until_reported(&sim, orders, t0).await;
        let freed = freed.await.unwrap();
        assert_eq!(sim.hosting.creates().len(), orders, "no node created twice");
        survivor.stop().await;
        db.drop().await;
        let base = *baseline.get_or_insert(elapsed);
        let ratio = elapsed / base;
        let _ = writeln!(
            rows,
            "| {} | {lease:.0} s | {held} | {} | {elapsed:.1} s | {ratio:.2} | {} |",
            if kill {
                "killed, restarted at once"
            } else {
                "no kill"
            },
            if kill {
                format!("{freed:.1} s")
            } else {
                "—".into()
            },
            if kill {
                verdict(freed <= 3.0 && ratio < 1.3)
            } else {
                "baseline"
            },
        );
    }
    let _ = writeln!(
        report,
        "### Kill recovery ({orders} hosting orders in flight, nodes ready 3 s after create)\n\n\
         | run | `ENGINE_LEASE_SECS` | leases held just after the kill | the killed process's leases taken over, from the restart | from the kill (or the same moment) to all active and reported | / no kill | within 3 s of the restart and < 1.3× |\n|---|---|---|---|---|---|---|\n{rows}"
    );
}

/// VPN orders through the HTTP API, each answered `active` within its request (the VPN
/// manager simulated in process, without latency), until every callback is delivered.
async fn vpn_bench(args: &Args, report: &mut String) {
    let db = Db::create(&args.pg, "bench_vpn").await;
    let before = db.transactions().await;
    let sim = sim(false);
    reset_peak_rss();
    let running = start(&db, sim.clone()).await;
    let base = format!("http://{}", running.addr);
    let started = Instant::now();
    let answers = post_orders(&[base], args.orders, args.concurrency, |i| {
        serde_json::json!({"user_id": format!("vpn-user-{i}"),
            "subscription_id": format!("vpn-sub-{i}"), "app_source": "otun",
            "plan_tier": "premium", "channel": "stripe", "expire_days": 30})
    })
    .await;
    let answered_active = answers
        .iter()
        .filter(|(_, b)| b["status"] == "active")
        .count();
    let (elapsed, rss) = until_reported(&sim, args.orders, started).await;
    assert_eq!(sim.vpn.users().len(), args.orders, "one VPN user per order");
    let tx = stop_and_count(running, db, before).await;
    let baseline = pgbench_writes(args).await;

    let per_second = args.orders as f64 / elapsed;
    let per_order = tx / args.orders as f64;
    let ratio = per_second * per_order / baseline;
    let _ = writeln!(
        report,
        "### VPN provisioning ({} orders, in-process simulators without latency, PostgreSQL)\n\n\
         | measure | value |\n|---|---|\n\
         | throughput, order to callback delivered | {per_second:.0} orders/s ({elapsed:.1} s) |\n\
         | answered `active` within the request | {answered_active} of {} |\n\
         | database transactions per order (goal ≤ 6) | {per_order:.2}: {} |\n\
         | baseline: `pgbench -N`, {} clients | {baseline:.0} tx/s |\n\
         | orders/s × transactions per order / baseline | {ratio:.2} |\n\
         | peak RSS (service and load generator) | {rss:.1} MB |\n",
        args.orders,
        args.orders,
        verdict(per_order <= 6.0),
        args.concurrency,
    );
}

/// One traffic-sync pass over `sync_users` live VPN users (VPN manager in process, no
/// rate limit), against the floor of the same database work: one statement that writes
/// every one of those rows.
async fn sync_bench(args: &Args, report: &mut String) {
    let db = Db::create(&args.pg, "bench_sync").await;
    let sim = sim(false);
    let running = start(&db, sim.clone()).await;
    let n = args.sync_users;
    // Seed directly: accounts at the VPN manager and live VPN user rows.
    let expire = chrono::Utc::now() + chrono::Duration::days(30);
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query(
        "insert into resources (id, resource_type, subscription_id, user_id, order_key, provider, \
         region, plan_tier, status, desired_state, traffic_limit, created_at, updated_at, \
         vpn_user_id, expire_at, spec_version, applied_version) \
         select gen_random_uuid()::text, 'vpn_user', 'sync-sub-' || i, 'sync-user-' || i, \
         'sync-sub-' || i || '|sub', 'otun', '', 'premium', 'active', 'active', 1000, now(), now(), \
         'sync-uuid-' || i, $1, 1, 1 from generate_series(1, $2) as i",
    )
    .bind(expire)
    .bind(n as i64)
    .execute(&mut conn)
    .await
    .unwrap();
    for i in 1..=n {
        let (user, _) = sim.vpn.create(&fulfillment::ports::CreateVpnUser {
            uuid: format!("sync-uuid-{i}"),
            email: String::new(),
            auth_user_id: format!("sync-user-{i}"),
            protocols: vec!["vless".into()],
            ss_password: String::new(),
            traffic_limit: 1000,
            expire_at: expire,
            service_tier: "premium".into(),
        });
        sim.vpn.set_traffic_used(&user.uuid, i as i64);
    }
    sqlx::query("vacuum analyze resources")
        .execute(&mut conn)
        .await
        .unwrap();
    let engine = running.state.app.engine.clone();
    // The simulated VPN manager's 100,000 accounts live in this process too.
    let rss_before = current_rss_mb();
    reset_peak_rss();
    let before = db.transactions().await;
    let started = Instant::now();
    let pass = engine.sync_vpn_traffic().await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let rss = peak_rss_mb();
    assert_eq!(pass.updated, n, "every live user synced");
    let synced: i64 = sqlx::query_scalar(
        "select count(*) from resources where traffic_used > 0 and traffic_synced_at is not null",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(synced as usize, n);
    running.stop().await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    let queries = db.transactions().await - before;
    let floor_started = Instant::now();
    sqlx::query(
        "update resources set traffic_used = traffic_used + 1, traffic_synced_at = now() \
         where resource_type = 'vpn_user'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let floor = floor_started.elapsed().as_secs_f64();
    drop(conn);
    db.drop().await;
    let paced = n as f64 / 50.0;
    let _ = writeln!(
        report,
        "### VPN traffic sync ({n} live VPN users, VPN manager in process, no rate limit)\n\n\
         | measure | value |\n|---|---|\n\
         | one pass, wall time | {elapsed:.2} s ({:.0} users/s) |\n\
         | database statements issued (transactions in `pg_stat_database`) | {queries} ({} pages of 500) |\n\
         | baseline: one statement writing all {n} rows | {floor:.2} s |\n\
         | baseline / pass | {:.2} |\n\
         | RSS before the pass (service, and the simulated VPN manager's {n} accounts) | {rss_before:.1} MB |\n\
         | peak RSS during the pass | {rss:.1} MB (+{:.1} MB) |\n\
         | the same pass at the default pacing, `VPN_SYNC_RATE=50` | {paced:.0} s: each user refreshed about every {:.0} min |\n",
        n as f64 / elapsed,
        pass.pages,
        floor / elapsed,
        rss - rss_before,
        (paced + 300.0) / 60.0,
    );
}

/// The binary's allocator, since the service runs in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut report = String::new();
    let rev = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let _ = writeln!(
        report,
        "## {} (commit {rev}, {} CPUs)\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    if matches!(args.which.as_str(), "read" | "all") {
        read_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "provision" | "all") {
        provision_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "replicas" | "all") {
        replicas_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "resume" | "all") {
        resume_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "vpn" | "all") {
        vpn_bench(&args, &mut report).await;
    }
    // Before `sync`, whose 100,000 simulated accounts stay resident in this process and
    // would be counted in the migration's peak RSS.
    if matches!(args.which.as_str(), "migrate" | "all") {
        migrate::migrate_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "sync" | "all") {
        sync_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "push" | "all") {
        push::push_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "scrape" | "all") {
        scrape::scrape_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "idle" | "all") {
        idle::idle_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "import" | "all") {
        import::import_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "abuse" | "all") {
        abuse::abuse_bench(&args, &mut report).await;
    }
    println!("{report}");
    if !args.out.is_empty() {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.out)
            .unwrap();
        writeln!(f, "{report}").unwrap();
    }
}

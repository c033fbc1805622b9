//! `scrape`: the cost of one `/metrics` scrape with 100,000 resources in the database
//! (every scrape reading the database, the cache off), against the gauges' own statement
//! run by pgbench; then 50 scrapes a second for 20 s with the default 5 s cache, counting
//! the database reads they cause.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

use super::{Args, Db, config, pg_args, sim, start_with, verdict};

const RESOURCES: i64 = 100_000;

/// 100,000 resources: most deleted (history), the rest live in every status, with node
/// reports and pending callbacks; nothing due, so the engine stays idle.
async fn seed(db: &Db) {
    drop(
        fulfillment::store::connect(&db.url, 1)
            .await
            .expect("migrated"),
    );
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!(
        "insert into resources (id, resource_type, subscription_id, user_id, order_key, provider, \
         region, plan_tier, status, desired_state, generation, phase, public_ip, traffic_limit, \
         traffic_used, attempts, upstream_released, node_id, created_at, updated_at, stats_at, \
         cpu_percent, mem_percent, load1) \
         select gen_random_uuid()::text, \
         case when i % 3 = 0 then 'vpn_user' else 'hosting_node' end, 'sub-' || i, 'user-' || i, \
         'order-' || i, 'lightsail', 'us-east-1', 'premium', \
         case when i % 10 < 6 then 'deleted' when i % 10 < 8 then 'active' when i % 10 = 8 \
         then 'failed' else 'deleting' end, \
         case when i % 10 < 6 or i % 10 = 9 then 'deleted' else 'active' end, \
         0, 4, '203.0.113.1', 1099511627776, (i % 100)::bigint * 10995116277, 0, \
         i % 10 < 6, 'node-' || i, now(), now(), \
         case when i % 7 = 0 then null else now() - (i % 600) * interval '1 second' end, \
         (i % 100)::float8, ((i * 7) % 100)::float8, (i % 13)::float8 / 4 \
         from generate_series(1, {RESOURCES}) as i"
    )))
    .await
    .unwrap();
    conn.execute(
        "insert into outbox (subscription_id, resource_id, payload, created_at, attempts, \
         next_attempt_at) select 'sub-' || i, null, '{}', now() - i * interval '1 second', 3, \
         now() + interval '1 day' from generate_series(1, 2000) as i",
    )
    .await
    .unwrap();
    // The steady state autovacuum keeps: statistics, and the visibility map that lets
    // the counts read the index alone.
    conn.execute("vacuum analyze").await.unwrap();
}

fn derived_reads(text: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix("fulfillment_metrics_derived_reads_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

pub async fn scrape_bench(args: &Args, report: &mut String) {
    let db = Db::create(&args.pg, "bench_scrape").await;
    seed(&db).await;
    let http = fulfillment::upstream::http_client(Duration::from_secs(10));

    // Cold: the cache off, so every scrape reads the database.
    let mut c = config(&db.url);
    c.http.metrics_addr = Some(([127, 0, 0, 1], 0).into());
    c.http.metrics_cache = Duration::ZERO;
    let running = start_with(sim(false), c.clone()).await;
    let url = format!("http://{}/metrics", running.metrics_addr.unwrap());
    let mut times = Vec::new();
    for _ in 0..60 {
        let t = Instant::now();
        let text = http.get(&url).send().await.unwrap().text().await.unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(text.contains("fulfillment_resources{"));
    }
    times.drain(..10); // warm-up
    times.sort_by(f64::total_cmp);
    let p = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    let (p50, p99) = (p(0.5), p(0.99));
    running.stop().await;

    // Baseline: the same statement through pgbench, one client, prepared.
    let script = std::env::temp_dir().join(format!("bench-scrape-{}.sql", std::process::id()));
    let sql = fulfillment::store::monitoring::READINGS
        .replace("$1", "now()")
        .replace("$2", "now() - interval '5 minutes'")
        .replace("$3", "90")
        .replace("$4", "false")
        .replace("$5", "date_trunc('month', now())::date");
    std::fs::write(&script, format!("{sql};\n")).unwrap();
    let out = Command::new("pgbench")
        .env("PGSSLMODE", "disable")
        .args(pg_args(&db.url))
        .args(["-n", "-c", "1", "-T", "10", "-f"])
        .arg(&script)
        .arg(&db.name)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    let sql_ms: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("latency average = "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("pgbench printed its average latency");

    // Warm: the default 5 s cache, 50 scrapes a second for 20 s.
    c.http.metrics_cache = Duration::from_secs(5);
    let running = start_with(sim(false), c).await;
    let url = format!("http://{}/metrics", running.metrics_addr.unwrap());
    let before = derived_reads(&http.get(&url).send().await.unwrap().text().await.unwrap());
    let secs = 20;
    let started = Instant::now();
    let mut scrapes = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        let t = Instant::now();
        http.get(&url).send().await.unwrap().text().await.unwrap();
        scrapes += 1;
        tokio::time::sleep_until((t + Duration::from_millis(20)).into()).await;
    }
    let after = derived_reads(&http.get(&url).send().await.unwrap().text().await.unwrap());
    running.stop().await;
    db.drop().await;
    let reads = after - before;
    let periods = (secs as f64 / 5.0).ceil() + 1.0;

    let _ = writeln!(
        report,
        "### scrape: GET /metrics with {RESOURCES} resources (60% deleted) and 2,000 pending callbacks\n\n\
         | measure | value | target |\n|---|---|---|\n\
         | one scrape reading the database (cache off), 50 scrapes | p50 {p50:.1} ms, p99 {p99:.1} ms | < 50 ms: {} |\n\
         | baseline: the gauges' statement in pgbench | {sql_ms:.1} ms | |\n\
         | ratio scrape p50 / statement | {:.2} | |\n\
         | database reads for {scrapes} scrapes in {secs} s, 5 s cache | {reads:.0} | ≤ one per period ({periods:.0}): {} |\n",
        verdict(p99 < 50.0),
        p50 / sql_ms,
        verdict(reads <= periods),
    );
}

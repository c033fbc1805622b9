//! `import`: `fulfillment import-legacy` (the release binary, its own process) over a Go
//! database of 100,000 hosting rows, 300,000 VPN rows and 1,000,000 log rows, into a fresh
//! PostgreSQL database: rows per second and the importer's peak RSS. Baseline: PostgreSQL
//! copying the same rows into tables of the same shape (`insert … select`) on the same
//! server, in the same run. A second run over the imported database (everything already
//! there) is timed too: what finishing an interrupted import costs at worst.

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

use super::push::binary;
use super::{Args, Db, INTERNAL, JWT, verdict};

const GO_SCHEMA: &str = include_str!("../tests/fixtures/go_schema.sql");
const HOSTING: i64 = 100_000;
const VPN_USERS: i64 = 100_000;
const VPN_ROWS: i64 = 3 * VPN_USERS;
const LOGS: i64 = 1_000_000;

/// The Go database: a mix like production's (most hosting rows history, one current VPN
/// row of three per user, logs naming hosting rows, VPN rows, and rows long gone).
fn populate() -> String {
    format!(
        "insert into fulfillment.regions (code, name, provider) values \
         ('us-east-1', 'US East (Virginia)', 'lightsail'), ('sa-east-1', 'South America', 'lightsail');
         insert into fulfillment.hosting_provisions (subscription_id, user_id, hosting_node_id, \
         provider, region, public_ip, api_port, api_key, vless_port, ss_port, public_key, short_id, \
         status, plan_tier, traffic_limit, needs_cleanup, created_at, updated_at, ready_at, deleted_at) \
         select 'sub-' || i, 'user-' || (i % 60000), 'i-' || md5(i::text), 'lightsail', 'us-east-1', \
         '198.51.100.' || (i % 250), 8080, md5('k' || i), 443, 8388, md5('p' || i), left(md5('s' || i), 8), \
         s.status, case when i % 3 = 0 then 'premium' else 'standard' end, null, i % 50 = 0, \
         now() - (i || ' minutes')::interval, now() - (i || ' seconds')::interval, \
         case when s.status = 'active' then now() - (i || ' minutes')::interval end, \
         case when s.status = 'deleted' then now() end \
         from generate_series(1, {HOSTING}) i, lateral (select case \
         when i % 100 < 70 then 'deleted' when i % 100 < 95 then 'active' when i % 100 < 98 then 'failed' \
         when i % 100 < 99 then 'creating' else 'stopping' end as status) s;
         insert into fulfillment.vpn_provisions (user_id, subscription_id, channel, business_type, \
         service_tier, otun_uuid, plan_tier, status, traffic_limit, traffic_used, expire_at, email, \
         device_id, is_current, created_at, updated_at) \
         select 'vuser-' || (i / 3), 'vsub-' || i, 'apple', 'subscription', 'premium', \
         md5('acc' || (i / 3))::uuid::text, 'premium', case when i % 3 = 2 then 'active' else 'converted' end, \
         536870912000, i * 1000, now() + ((i % 40) || ' days')::interval, 'vuser-' || (i / 3) || '@example.com', \
         null, i % 3 = 2, now() - ((3 - i % 3) || ' days')::interval, now() \
         from generate_series(0, {} - 1) i;
         insert into fulfillment.provision_logs (provision_id, provision_type, action, status, message, \
         created_at) select h.id, 'hosting', 'step-' || k, 'ok', 'the Go service did step ' || k, \
         h.created_at + (k || ' seconds')::interval from fulfillment.hosting_provisions h, \
         generate_series(1, 5) k;
         insert into fulfillment.provision_logs (provision_id, provision_type, action, status, message, \
         created_at) select v.id, 'vpn', 'provision', 'ok', 'account ' || v.otun_uuid, v.created_at \
         from fulfillment.vpn_provisions v;
         insert into fulfillment.provision_logs (provision_id, provision_type, action, status, message, \
         created_at) select gen_random_uuid(), 'hosting', 'delete', 'ok', 'a row long gone', \
         now() - (i || ' hours')::interval from generate_series(1, {} - 5 * {HOSTING} - {}) i;
         analyze;",
        VPN_ROWS, LOGS, VPN_ROWS
    )
}

/// Peak RSS (VmHWM) of a process, in MB, while it lives.
fn peak_mb(pid: u32) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<f64>()
        .ok()
        .map(|kb| kb / 1024.0)
}

/// Runs the import to its end: seconds, peak RSS, and its JSON report.
fn run_import(go: &Db, ours: &Db) -> (f64, f64, serde_json::Value) {
    let started = Instant::now();
    let mut child = Command::new(binary())
        .args(["import-legacy", "--json", "--from", &go.url])
        .env_clear()
        .env("DB_URL", &ours.url)
        .env("JWT_SECRET", JWT)
        .env("INTERNAL_SECRET", INTERNAL)
        .env("HOSTING_SERVICE_URL", "http://127.0.0.1:9")
        .env("HOSTING_ADMIN_KEY", "unused: the import calls no upstream")
        .env("SUBSCRIPTION_SERVICE_URL", "http://127.0.0.1:9")
        .env("OTUN_MANAGER_URL", "http://127.0.0.1:9")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The report (every finding) is larger than a pipe holds: read it as it comes.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut out).unwrap();
        out
    });
    let mut peak: f64 = 0.0;
    while child.try_wait().unwrap().is_none() {
        if let Some(mb) = peak_mb(pid) {
            peak = peak.max(mb);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(child.wait().unwrap().success(), "the import failed");
    let out = reader.join().unwrap();
    let report = serde_json::from_slice(&out).expect("one JSON report on stdout");
    (elapsed, peak, report)
}

pub async fn import_bench(args: &Args, report: &mut String) {
    let go = Db::create(&args.pg, "bench_go").await;
    let mut conn = PgConnection::connect(&go.url).await.unwrap();
    sqlx::raw_sql(GO_SCHEMA).execute(&mut conn).await.unwrap();
    let seeding = Instant::now();
    sqlx::raw_sql(sqlx::AssertSqlSafe(populate()))
        .execute(&mut conn)
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar(
        "select (select count(*) from fulfillment.hosting_provisions) + \
         (select count(*) from fulfillment.vpn_provisions) + \
         (select count(*) from fulfillment.provision_logs)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows, HOSTING + VPN_ROWS + LOGS);
    println!(
        "import: Go database seeded in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    // Baseline: the same rows copied into tables of the same shape by PostgreSQL itself.
    let started = Instant::now();
    for table in ["hosting_provisions", "vpn_provisions", "provision_logs"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "create table fulfillment.copy_{table} (like fulfillment.{table} including all); \
             insert into fulfillment.copy_{table} select * from fulfillment.{table}"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let baseline_secs = started.elapsed().as_secs_f64();
    for table in ["hosting_provisions", "vpn_provisions", "provision_logs"] {
        conn.execute(sqlx::AssertSqlSafe(format!(
            "drop table fulfillment.copy_{table}"
        )))
        .await
        .unwrap();
    }
    drop(conn);

    let ours = Db::create(&args.pg, "bench_import").await;
    let (secs, peak, first) = run_import(&go, &ours);
    let (again_secs, again_peak, again) = run_import(&go, &ours);
    assert_eq!(
        again["hosting"]["imported"], 0,
        "a second run imports nothing"
    );
    go.drop().await;
    ours.drop().await;

    let rate = rows as f64 / secs;
    let baseline = rows as f64 / baseline_secs;
    let ratio = rate / baseline;
    let h = &first["hosting"];
    let v = &first["vpn"];
    let _ = writeln!(
        report,
        "### Import of the Go database ({HOSTING} hosting rows, {VPN_ROWS} VPN rows of \
         {VPN_USERS} users, {LOGS} log rows; into PostgreSQL)\n\n\
         | measure | value | target |\n|---|---|---|\n\
         | import (release binary, its own process) | {rate:.0} rows/s ({secs:.1} s) | |\n\
         | baseline: `insert … select` of the same rows into tables of the same shape | {baseline:.0} rows/s ({baseline_secs:.1} s) | |\n\
         | import / baseline | {ratio:.2} | ≥ 0.25: {} |\n\
         | importer's peak RSS | {peak:.1} MB | < 150 MB: {} |\n\
         | second run (every row already imported) | {again_secs:.1} s, peak RSS {again_peak:.1} MB | |\n\
         | imported | hosting {} ({}), VPN {} entitlements of {} users, history {} (skipped {}), findings {} | |\n",
        verdict(ratio >= 0.25),
        verdict(peak < 150.0),
        h["imported"],
        h["by_status"],
        v["entitlements"],
        v["users"],
        first["history"]["imported"],
        first["history"]["skipped"],
        first["findings"].as_array().map_or(0, Vec::len),
    );
}

//! `usage`: what keeping a node's use by day costs (issue 26, CONTRACTS.md §4.8).
//!
//! 1. Node reports through `POST /api/callback/node/stats` from 1,000 active nodes,
//!    `concurrency` at a time: first reports that add no bytes (the same counters again,
//!    a later moment), which write what every report wrote before daily usage (the node's
//!    counters and all-time count); then reports that add bytes, which also add to the
//!    day's row. Reports per second, database transactions per report and rows written per
//!    report (`pg_stat_database`), each as a ratio to the first kind in the same run. The
//!    goal: at most one statement (one row) more per report.
//! 2. `GET /api/v1/my/nodes/{id}/usage?days=90` for a node with 400 days of rows: p50 and
//!    p99 of sequential reads, against the same read for a node with none.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use fulfillment::api::extract::mint_user_token;
use sqlx::{Connection, Executor, PgConnection};

use super::{Args, Db, JWT, config, seed_active_nodes, sim, start_with, verdict};

const NODES: usize = 1_000;
/// Reports each node sends per phase.
const ROUNDS: usize = 10;
const READS: usize = 500;

/// Transactions, and rows inserted plus updated, in the database so far.
async fn counters(db: &Db, admin: &str) -> (i64, i64) {
    let mut conn = PgConnection::connect(admin).await.unwrap();
    sqlx::query_as(
        "select (xact_commit + xact_rollback)::bigint, (tup_inserted + tup_updated)::bigint \
         from pg_stat_database where datname = $1",
    )
    .bind(&db.name)
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

/// Every node reports `ROUNDS` times, taken a second apart from `from` on; the nodes are
/// shared among `concurrency` senders, each sending its nodes' reports in order (a report
/// taken before one already recorded would change nothing). `grow` decides whether each
/// report adds bytes. Reports per second.
async fn reports(
    base: &str,
    ids: &[(String, String)],
    concurrency: usize,
    from: chrono::DateTime<chrono::Utc>,
    grow: bool,
) -> f64 {
    let http = fulfillment::upstream::http_client(Duration::from_secs(30));
    let url = format!("{base}/api/callback/node/stats");
    let per = ids.len().div_ceil(concurrency);
    let started = Instant::now();
    let senders = ids.chunks(per).map(|nodes| {
        let (http, url, nodes) = (http.clone(), url.clone(), nodes.to_vec());
        tokio::spawn(async move {
            for round in 0..ROUNDS as i64 {
                let taken = from + chrono::Duration::seconds(round);
                // Counters grow by a MiB a round, or stay where the first report left them.
                let counter = if grow {
                    (round + 2) * 1_048_576
                } else {
                    1_048_576
                };
                for (id, token) in &nodes {
                    let r = http
                        .post(&url)
                        .bearer_auth(token)
                        .json(&serde_json::json!({"resource_id": id, "rx_bytes": counter,
                            "tx_bytes": counter, "reported_at": taken}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                }
            }
        })
    });
    for s in futures::future::join_all(senders).await {
        s.unwrap();
    }
    (ROUNDS * ids.len()) as f64 / started.elapsed().as_secs_f64()
}

/// p50 and p99 (ms) of `READS` sequential reads of a node's 90 days.
async fn read_days(base: &str, user: &str, id: &str) -> (f64, f64) {
    let http = fulfillment::upstream::http_client(Duration::from_secs(30));
    let token = mint_user_token(JWT, user, Duration::from_secs(3600));
    let url = format!("{base}/api/v1/my/nodes/{id}/usage?days=90");
    let mut times = Vec::with_capacity(READS);
    for _ in 0..READS + 20 {
        let t = Instant::now();
        let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["days"].as_array().map(Vec::len), Some(90));
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.drain(..20); // warm-up
    times.sort_by(f64::total_cmp);
    let p = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    (p(0.5), p(0.99))
}

pub async fn usage_bench(args: &Args, report: &mut String) {
    let db = Db::create(&args.pg, "bench_usage").await;
    seed_active_nodes(&db, NODES).await;
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    // Each node's credential is `bench-token-<user>` (only its digest is stored).
    conn.execute(
        "update resources set callback_token_hash = \
         encode(sha256(convert_to('bench-token-' || user_id, 'UTF8')), 'hex')",
    )
    .await
    .unwrap();
    // 400 days of use for bench-user-1's node.
    conn.execute(
        "insert into node_usage_days (resource_id, day, rx_bytes, tx_bytes) \
         select r.id, current_date - d, d * 1000, d * 10 \
         from resources r, generate_series(0, 399) as d where r.user_id = 'bench-user-1'",
    )
    .await
    .unwrap();
    conn.execute("vacuum analyze").await.unwrap();
    let ids: Vec<(String, String)> =
        sqlx::query_as("select id, 'bench-token-' || user_id from resources order by user_id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let id_of = |user: &str| -> String {
        let token = format!("bench-token-{user}");
        ids.iter().find(|(_, t)| *t == token).unwrap().0.clone()
    };

    // Sequential reads by one user, far past a user's request rate: the limit is not
    // what is measured.
    let mut c = config(&db.url);
    c.limits.per_second = 1_000_000;
    c.limits.burst = 1_000_000;
    let running = start_with(sim(false), c).await;
    let base = format!("http://{}", running.addr);
    // Reports are taken in the last hour, a phase's a minute after the one before.
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let at = |minute: i64| hour_ago + chrono::Duration::minutes(minute);
    // The first report of each node sets its counters.
    reports(&base, &ids[..], args.concurrency, at(0), false).await;
    let settle = Duration::from_secs(11); // backends flush their statistics when idle
    tokio::time::sleep(settle).await;
    let phase = async |grow: bool, from| {
        let before = counters(&db, &args.pg).await;
        let rate = reports(&base, &ids[..], args.concurrency, from, grow).await;
        tokio::time::sleep(settle).await;
        let after = counters(&db, &args.pg).await;
        let n = (ROUNDS * ids.len()) as f64;
        (
            rate,
            (after.0 - before.0) as f64 / n,
            (after.1 - before.1) as f64 / n,
        )
    };
    let (flat_rate, flat_tx, flat_rows) = phase(false, at(1)).await;
    let (grow_rate, grow_tx, grow_rows) = phase(true, at(2)).await;
    let days_written: i64 = sqlx::query_scalar("select count(*) from node_usage_days")
        .fetch_one(&mut conn)
        .await
        .unwrap();

    let (busy_p50, busy_p99) = read_days(&base, "bench-user-1", &id_of("bench-user-1")).await;
    let (empty_p50, empty_p99) = read_days(&base, "bench-user-2", &id_of("bench-user-2")).await;
    running.stop().await;
    db.drop().await;

    let extra_rows = grow_rows - flat_rows;
    let _ = writeln!(
        report,
        "### usage: node reports with daily usage, and a node's 90 days\n\n\
         {NODES} nodes, {ROUNDS} reports each per kind, {c} in flight; PostgreSQL.\n\n\
         | | reports adding no bytes (today's writes) | reports adding bytes (+ the day's row) | ratio |\n\
         |---|---|---|---|\n\
         | reports/s | {flat_rate:.0} | {grow_rate:.0} | {:.2} |\n\
         | transactions per report | {flat_tx:.2} | {grow_tx:.2} | {:.2} |\n\
         | rows written per report | {flat_rows:.2} | {grow_rows:.2} | +{extra_rows:.2} |\n\n\
         Daily rows after the run: {days_written} (400 seeded). Goal, at most one statement more per \
         report: {}.\n\n\
         | `GET …/usage?days=90`, {READS} sequential reads | p50 | p99 |\n\
         |---|---|---|\n\
         | node with 400 days of rows | {busy_p50:.2} ms | {busy_p99:.2} ms |\n\
         | node with none (baseline) | {empty_p50:.2} ms | {empty_p99:.2} ms |\n\
         | ratio | {:.2} | {:.2} |\n",
        grow_rate / flat_rate,
        grow_tx / flat_tx,
        verdict(extra_rows <= 1.05),
        busy_p50 / empty_p50,
        busy_p99 / empty_p99,
        c = args.concurrency,
    );
}

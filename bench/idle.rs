//! `idle`: what a service costs the database while nothing happens. The service (the
//! release binary, as in `push`) holds `--idle-resources` settled hosting nodes; the
//! database's transactions are counted over a whole re-read period of the live streams
//! (60 s), first with no client at all, then with `--users` SSE streams open and idle.
//! Between the two, each periodic job (traffic sync, orphan sweep, retention) is made due
//! and one pass is counted, less what the idle service costs meanwhile.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use fulfillment::api::extract::mint_user_token;
use fulfillment::engine::{RETENTION_JOB, SWEEP_JOB, TRAFFIC_JOB};
use sqlx::{Connection, PgConnection};
use tokio::io::AsyncReadExt;

use super::push::{open_stream, start_service};
use super::{Args, Db, JWT, seed_active_nodes, verdict};

/// One re-read period of the live streams, plus the jitter's worth.
const WINDOW: Duration = Duration::from_secs(60);

/// Transactions per second on `db` over `WINDOW`.
async fn idle_rate(db: &Db) -> f64 {
    let before = db.transactions().await;
    tokio::time::sleep(WINDOW).await;
    // The reading itself is one transaction.
    (db.transactions().await - before - 1) as f64 / WINDOW.as_secs_f64()
}

/// Makes `job` due now and counts the transactions of its pass (less the idle rate over
/// the time it took, and this function's own statements); `None` if no pass ended within
/// 40 s.
async fn one_pass(db: &Db, job: &str, idle_per_sec: f64) -> Option<(f64, String)> {
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let started = Instant::now();
    let before = db.transactions().await;
    sqlx::query("update jobs set next_run_at = now() where name = $1")
        .bind(job)
        .execute(&mut conn)
        .await
        .unwrap();
    let mut polls = 0.0;
    while started.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        polls += 1.0;
        // Rescheduled and let go: the pass is over.
        let (done, result): (bool, Option<String>) = sqlx::query_as(
            "select next_run_at > now() and lease_owner is null, last_result \
             from jobs where name = $1",
        )
        .bind(job)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if done {
            let spent = (db.transactions().await - before) as f64;
            let ours = 2.0 + polls;
            let pass = spent - ours - idle_per_sec * started.elapsed().as_secs_f64();
            return Some((pass.max(0.0), result.unwrap_or_default()));
        }
    }
    None
}

pub async fn idle_bench(args: &Args, report: &mut String) {
    let resources = args.idle_resources;
    let streams = args.users.min(resources);
    let db = Db::create(&args.pg, "bench_idle").await;
    seed_active_nodes(&db, resources).await;
    let (_sim, _service, port) = start_service(&db, streams).await;
    // Let the start's own work (migrations, first claims, job rows) settle.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let quiet = idle_rate(&db).await;

    // Each job's pass, while the service is otherwise quiet (the least noise to subtract).
    let mut passes = String::new();
    for job in [TRAFFIC_JOB, SWEEP_JOB, RETENTION_JOB] {
        let cell = match one_pass(&db, job, quiet).await {
            Some((n, result)) => format!("{n:.0} ({result})"),
            None => "no pass within 40 s".into(),
        };
        let _ = writeln!(passes, "| `{job}` | {cell} |");
    }

    let mut readers = Vec::new();
    let tokens: Vec<String> = (1..=streams)
        .map(|i| mint_user_token(JWT, &format!("bench-user-{i}"), Duration::from_secs(3600)))
        .collect();
    for chunk in tokens.chunks(100) {
        let opens = chunk.iter().map(|t| open_stream(port, t));
        for opened in futures::future::join_all(opens).await {
            let mut s = opened.expect("a stream opens");
            readers.push(tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(11)).await;
    let with_streams = idle_rate(&db).await;

    for r in readers {
        r.abort();
    }
    db.drop().await;

    let _ = writeln!(
        report,
        "### idle: {resources} settled hosting nodes, then {streams} idle SSE streams ({} s windows)\n\n\
         | measure | value | goal |\n|---|---|---|\n\
         | database transactions/s, no client | {quiet:.2} | ≤ 1: {} |\n\
         | database transactions/s, {streams} streams open and idle | {with_streams:.2} | ≤ 1: {} |\n\n\
         | one pass of the job over the settled resources (nothing to do) | transactions, less the idle rate (its own result) |\n|---|---|\n\
         {passes}",
        WINDOW.as_secs(),
        verdict(quiet <= 1.0),
        verdict(with_streams <= 1.0),
    );
}

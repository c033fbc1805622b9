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
//! - `usage`: node reports that add to a node's daily usage against reports that add
//!   nothing (what every report wrote before): reports per second, transactions and rows
//!   written per report; and `GET …/usage?days=90` p50/p99 for a node with 400 days of
//!   rows, against a node with none.
//!
//! Peak RSS (VmHWM of this process, reset before each benchmark) is reported for both.

mod abuse;
mod harness;
mod idle;
mod import;
mod migrate;
mod provision;
mod push;
mod read;
mod resume;
mod scrape;
mod sync;
mod usage;
mod vpn;

use std::fmt::Write as _;
use std::process::Command;

use clap::Parser;

use harness::*;

#[derive(Parser)]
pub(crate) struct Args {
    /// `read`, `provision`, `replicas`, `resume`, `vpn`, `sync`, `migrate`, `push`,
    /// `scrape`, `idle`, `import`, `abuse`, `usage` or `all`.
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
        read::read_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "provision" | "all") {
        provision::provision_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "replicas" | "all") {
        provision::replicas_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "resume" | "all") {
        resume::resume_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "vpn" | "all") {
        vpn::vpn_bench(&args, &mut report).await;
    }
    // Before `sync`, whose 100,000 simulated accounts stay resident in this process and
    // would be counted in the migration's peak RSS.
    if matches!(args.which.as_str(), "migrate" | "all") {
        migrate::migrate_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "sync" | "all") {
        sync::sync_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "push" | "all") {
        push::push_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "scrape" | "all") {
        scrape::scrape_bench(&args, &mut report).await;
    }
    if matches!(args.which.as_str(), "usage" | "all") {
        usage::usage_bench(&args, &mut report).await;
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

//! `migrate`: 500 active nodes migrated to another region at once, against in-process
//! simulators without latency. Migrations per second, database transactions per migration
//! (from `pg_stat_database`), and the peak number of VPSes alive at once, which must never
//! exceed the live nodes plus the migrations in flight; baseline: `pgbench -N`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Args, Db, INTERNAL, peak_rss_mb, pgbench_writes, post_orders, reset_peak_rss};
use super::{sim, start, stop_and_count, until_reported, verdict};

/// Nodes migrated at once.
const NODES: usize = 500;

pub async fn migrate_bench(args: &Args, report: &mut String) {
    let db = Db::create(&args.pg, "bench_migrate").await;
    let sim = sim(false);
    reset_peak_rss();
    let running = start(&db, sim.clone()).await;
    let base = format!("http://{}", running.addr);

    // 500 active nodes, each reported.
    let answers = post_orders(std::slice::from_ref(&base), NODES, args.concurrency, |i| {
        serde_json::json!({"user_id": format!("mig-user-{i}"),
            "subscription_id": format!("mig-sub-{i}"), "plan_tier": "standard", "region": "us-east-1"})
    })
    .await;
    let ids: Vec<String> = answers
        .iter()
        .map(|(_, a)| a["resource_id"].as_str().unwrap().to_owned())
        .collect();
    until_reported(&sim, NODES, Instant::now()).await;
    // Every node's VPS id is known (an agent's ready report can precede it), and the
    // database's statistics have caught up before the count starts.
    let limit = Instant::now() + Duration::from_secs(120);
    while sim.hosting.creates().len() < NODES || !all_known(&db).await {
        assert!(Instant::now() < limit, "nodes never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(11)).await;
    let before = db.transactions().await;

    // The peak of VPSes alive at once, sampled while the migrations run.
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = tokio::spawn({
        let (done, peak, sim) = (done.clone(), peak.clone(), sim.clone());
        async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(sim.hosting.obox_nodes().len(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });

    let started = Instant::now();
    let http = fulfillment::upstream::http_client(Duration::from_secs(30));
    let requests = futures::stream::iter(ids.iter().cloned())
        .map(|id| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                http.post(format!("{base}/api/internal/resources/{id}/migrate"))
                    .header("X-Internal-Secret", INTERNAL)
                    .json(&serde_json::json!({"region": "eu-west-1"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(args.concurrency);
    use futures::StreamExt;
    let statuses: Vec<u16> = requests.collect().await;
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    // Done when every old VPS is deleted and every node lives on a VPS in eu-west-1.
    let limit = Instant::now() + Duration::from_secs(600);
    loop {
        let nodes = sim.hosting.obox_nodes();
        if nodes.len() == NODES && nodes.iter().all(|n| n.region == "eu-west-1") {
            break;
        }
        assert!(
            Instant::now() < limit,
            "migrations did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let rss = peak_rss_mb();
    assert_eq!(
        sim.hosting.creates().len(),
        2 * NODES,
        "one new VPS per node"
    );
    assert_eq!(
        sim.subscriptions.callbacks().len(),
        NODES,
        "a migration reports nothing"
    );
    // Let the last commits (the retired VPSes forgotten) land before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tx = stop_and_count(running, db, before).await;
    let baseline = pgbench_writes(args).await;

    let peak = peak.load(Ordering::Relaxed);
    let per_second = NODES as f64 / elapsed;
    let per_migration = tx / NODES as f64;
    let ratio = per_second * per_migration / baseline;
    let _ = writeln!(
        report,
        "### Migration ({NODES} active nodes to another region at once, in-process simulators \
         without latency, PostgreSQL)\n\n\
         | measure | value | target |\n|---|---|---|\n\
         | throughput, request to old VPS deleted | {per_second:.0} migrations/s ({elapsed:.1} s) | |\n\
         | database transactions per migration | {per_migration:.2} | |\n\
         | peak VPSes alive at once | {peak} | ≤ {NODES} live + {NODES} in flight: {} |\n\
         | baseline: `pgbench -N`, {} clients | {baseline:.0} tx/s | |\n\
         | migrations/s × transactions per migration / baseline | {ratio:.2} | |\n\
         | peak RSS (service and load generator) | {rss:.1} MB | < 100 MB: {} |\n",
        verdict(peak <= 2 * NODES),
        args.concurrency,
        verdict(rss < 100.0),
    );
}

/// Whether every active node's VPS id is recorded.
async fn all_known(db: &Db) -> bool {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let unknown: i64 = sqlx::query_scalar(
        "select count(*) from resources where status <> 'active' or node_id is null",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    unknown == 0
}

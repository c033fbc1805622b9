//! `provision` and `replicas`: orders until every node is active and every callback
//! delivered, with one service instance and with three on one database.

use std::fmt::Write as _;
use std::time::Instant;

use crate::Args;
use crate::harness::*;

pub(crate) async fn provision_bench(args: &Args, report: &mut String) {
    let OrderRun {
        answers,
        sim,
        elapsed,
        rss,
        tx,
        baseline,
    } = order_run(args, "bench_prov", |i| {
        serde_json::json!({"user_id": format!("order-user-{i}"),
            "subscription_id": format!("order-sub-{i}"), "plan_tier": "standard", "region": "us-east-1"})
    })
    .await;
    assert!(answers.iter().all(|(status, _)| *status == 202));
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
pub(crate) async fn replicas_bench(args: &Args, report: &mut String) {
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

//! `vpn`: VPN orders through the HTTP API until every callback is delivered.

use std::fmt::Write as _;

use crate::Args;
use crate::harness::*;

/// VPN orders through the HTTP API, each answered `active` within its request (the VPN
/// manager simulated in process, without latency), until every callback is delivered.
pub(crate) async fn vpn_bench(args: &Args, report: &mut String) {
    let OrderRun {
        answers,
        sim,
        elapsed,
        rss,
        tx,
        baseline,
    } = order_run(args, "bench_vpn", |i| {
        serde_json::json!({"user_id": format!("vpn-user-{i}"),
            "subscription_id": format!("vpn-sub-{i}"), "app_source": "otun",
            "plan_tier": "premium", "channel": "stripe", "expire_days": 30})
    })
    .await;
    let answered_active = answers
        .iter()
        .filter(|(_, b)| b["status"] == "active")
        .count();
    assert_eq!(sim.vpn.users().len(), args.orders, "one VPN user per order");

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

//! `resume`: from a service killed with work in flight to all of it done by a new one.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use fulfillment::sim::{Knobs, NodeTiming, Sim};

use crate::Args;
use crate::harness::*;

/// Kill recovery: orders whose nodes take 3 s to come up, polled through a hosting service
/// that takes 100 ms a call (so at any moment many steps are mid-call, holding their
/// leases), the service killed (its tasks dropped at once, leases left behind) while they
/// are in flight, a new instance started at once; the time until every order is active
/// and reported, against the same run without a kill, for the default lease and the old
/// fixed one.
pub(crate) async fn resume_bench(args: &Args, report: &mut String) {
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

//! Traffic metering of hosting nodes: the node agent's cumulative counters, counted once
//! whatever the delivery order, and shown in `/my/node`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fulfillment::ports::Clock;
use fulfillment::sim::NodeTiming;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, quiet_node, read, wait_until};
use crate::on_both;

const GIB: i64 = 1024 * 1024 * 1024;

async fn report(app: &TestApp, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = app
        .http
        .post(app.url("/api/callback/node/stats"))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    read(req.send().await.unwrap()).await
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000 + secs, 0).unwrap()
}

on_both! {
    async fn node_counters_count_once_across_repeats_late_reports_and_resets(b: Backend) {
        let (app, id, token) = quiet_node(b, "n-1").await;
        // Every report below is taken in the month the service reads at (§4.8 counts a
        // node's traffic by month; this test is about counting each byte once).
        app.clock.shift_to(at(60));
        let used = || async { app.resource(&id).await["traffic_used_gb"].clone() };
        let sample = |rx: i64, tx: i64, when: Option<DateTime<Utc>>| {
            let mut body = json!({"resource_id": id, "rx_bytes": rx, "tx_bytes": tx,
                "load1": 0.5, "cpu_percent": 12.5, "mem_percent": 40});
            if let Some(w) = when {
                body["reported_at"] = json!(w);
            }
            body
        };
        let steps: [(Value, Value, &str); 6] = [
            (sample(GIB, GIB, Some(at(10))), json!(2), "first report"),
            (sample(GIB, GIB, Some(at(10))), json!(2), "the same report again"),
            (sample(GIB / 2, 0, Some(at(5))), json!(2), "a late, older report"),
            (sample(3 * GIB, GIB, Some(at(20))), json!(4), "growth"),
            (sample(GIB / 2, 0, Some(at(30))), json!(4.5), "a reset after a reboot"),
            (sample(GIB, GIB / 2, None), json!(5.5), "no timestamp: arrival order"),
        ];
        for (body, expected, what) in steps {
            let (status, resp) = report(&app, Some(&token), body).await;
            assert_eq!((status, resp), (200, json!({"status": "ok"})), "{what}");
            assert_eq!(used().await, expected, "{what}");
        }
        // An agent clock far ahead is read as now, so it cannot freeze later reports.
        let future = app.clock.now() + chrono::Duration::days(365);
        report(&app, Some(&token), sample(2 * GIB, GIB / 2, Some(future))).await;
        assert_eq!(used().await, json!(6.5));
        report(&app, Some(&token), sample(2 * GIB, GIB, None)).await;
        assert_eq!(used().await, json!(7), "a later report still counts");
        let (_, mine) = app.user(Method::GET, "/api/v1/my/node", "n-1", None).await;
        assert_eq!(mine["node"]["traffic_used_gb"], 7);
        assert_eq!(mine["node"]["traffic_limit_gb"], 3072);
        // 7 / 3072 × 100 = 0.2278…, shown to two decimals.
        assert_eq!(mine["node"]["traffic_percent"], 0.23);
    }
}

on_both! {
    async fn stats_need_the_nodes_own_credential_and_valid_counters(b: Backend) {
        let (app, id, token) = quiet_node(b, "n-2").await;
        let good = json!({"resource_id": id, "rx_bytes": 1, "tx_bytes": 1});
        let (status, resp) = report(&app, None, good.clone()).await;
        assert_eq!((status, resp["code"].as_str().is_some()), (401, true), "{resp}");
        let (status, _) = report(&app, Some("not-the-token"), good.clone()).await;
        assert_eq!(status, 403);
        for (body, code) in [
            (json!({"resource_id": id, "tx_bytes": 1}), "missing_counter"),
            (json!({"resource_id": id, "rx_bytes": -1, "tx_bytes": 1}), "invalid_counter"),
            (json!({"resource_id": id, "rx_bytes": 1, "tx_bytes": 1, "load1": -2}), "invalid_gauge"),
            (json!({"resource_id": id, "rx_bytes": "lots", "tx_bytes": 1}), "invalid_field"),
        ] {
            let (status, resp) = report(&app, Some(&token), body.clone()).await;
            assert_eq!((status, resp["code"].as_str()), (422, Some(code)), "{body}");
        }
        assert_eq!(app.resource(&id).await["traffic_used_gb"], 0, "nothing was counted");

        // A deleted node's reports change nothing.
        app.internal(Method::POST, "/api/internal/deprovision", Some(json!({"subscription_id": "sub-n-2"}))).await;
        app.wait_status(&id, "deleted").await;
        let (status, _) = report(&app, Some(&token), json!({"resource_id": id, "rx_bytes": GIB, "tx_bytes": 0})).await;
        assert_eq!(status, 200);
        assert_eq!(app.resource(&id).await["traffic_used_gb"], 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_nodes_report_their_traffic() {
    let timing = NodeTiming {
        stats_interval_ms: 50,
        ..NodeTiming::default()
    };
    let app = TestApp::spawn_with(Backend::Sqlite, timing, |_| {}).await;
    app.sims.subscribe("n-3", "sub-n-3", "basic");
    let (_, resp) = app.provision("n-3", "sub-n-3").await;
    let id = resp["resource_id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "active").await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            let (_, mine) = app.user(Method::GET, "/api/v1/my/node", "n-3", None).await;
            mine["node"]["traffic_used_gb"].as_f64().unwrap_or(0.0) > 0.0
        })
        .await,
        "the simulated agent's reports show up as usage"
    );
}

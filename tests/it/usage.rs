//! Traffic by period (CONTRACTS.md §4.8): a node's figures count the calendar month, its
//! use is kept by UTC day, and both come from the same reports. The service's clock is
//! stepped across days and a month's end (`TestApp::clock`); reports carry the moment they
//! were taken.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use fulfillment::config::Config;
use fulfillment::domain::usage::{PeriodPolicy, VpnTrafficReset};
use fulfillment::sim::NodeTiming;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, quiet_node_with, read};
use crate::on_both;

const GIB: i64 = 1024 * 1024 * 1024;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A premium node that reports only when the test says so, and its agent's credential.
/// The retention pass never runs by itself: the clock jumps years ahead, and a pass of the
/// engine's own would race the test's.
async fn node(b: Backend, user: &str, period: PeriodPolicy) -> (TestApp, String, String) {
    let tweak = |c: &mut Config| {
        c.app.traffic_period = period;
        c.engine.retention.interval = Duration::from_secs(100 * 366 * 24 * 3600);
    };
    quiet_node_with(b, user, tweak, |_| {}).await
}

/// The agent's cumulative counters, taken at `taken`.
async fn report(app: &TestApp, token: &str, id: &str, rx: i64, tx: i64, taken: &str) {
    let body = json!({"resource_id": id, "rx_bytes": rx, "tx_bytes": tx, "reported_at": taken});
    let resp = app
        .http
        .post(app.url("/api/callback/node/stats"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, resp) = read(resp).await;
    assert_eq!((status, resp), (200, json!({"status": "ok"})), "{body}");
}

async fn my_node(app: &TestApp, user: &str) -> Value {
    let (status, mine) = app.user(Method::GET, "/api/v1/my/node", user, None).await;
    assert_eq!(status, 200, "{mine}");
    mine["node"].clone()
}

async fn usage(app: &TestApp, user: &str, id: &str, days: u32) -> Vec<(String, i64, i64)> {
    let path = format!("/api/v1/my/nodes/{id}/usage?days={days}");
    let (status, body) = app.user(Method::GET, &path, user, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resource_id"], id);
    body["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let date = d["date"].as_str().unwrap().to_owned();
            (
                date,
                d["rx_bytes"].as_i64().unwrap(),
                d["tx_bytes"].as_i64().unwrap(),
            )
        })
        .collect()
}

on_both! {
    async fn a_nodes_use_is_kept_by_day_and_counted_by_month(b: Backend) {
        let (app, id, token) = node(b, "p-1", PeriodPolicy::Month).await;
        // Two days at the end of March 2031.
        app.clock.shift_to(at("2031-03-30T12:00:00Z"));
        report(&app, &token, &id, GIB, GIB, "2031-03-30T11:00:00Z").await;
        app.clock.shift_to(at("2031-03-31T12:00:00Z"));
        report(&app, &token, &id, 3 * GIB, GIB, "2031-03-31T11:00:00Z").await;
        report(&app, &token, &id, 3 * GIB, GIB, "2031-03-31T11:00:00Z").await; // a repeat
        let mine = my_node(&app, "p-1").await;
        assert_eq!(mine["traffic_used_gb"], 4, "{mine}");
        assert_eq!(mine["traffic_period"], json!({"start": "2031-03-01T00:00:00Z", "end": "2031-04-01T00:00:00Z"}));
        assert_eq!(
            usage(&app, "p-1", &id, 3).await,
            vec![
                ("2031-03-29".into(), 0, 0),
                ("2031-03-30".into(), GIB, GIB),
                ("2031-03-31".into(), 2 * GIB, 0),
            ]
        );
        // Taken a second before midnight, delivered after it: the 31st's, and March's.
        app.clock.shift_to(at("2031-04-01T00:00:20Z"));
        report(&app, &token, &id, 3 * GIB, 2 * GIB, "2031-03-31T23:59:59Z").await;
        let mine = my_node(&app, "p-1").await;
        assert_eq!(mine["traffic_used_gb"], 0, "April starts at 0: {mine}");
        assert_eq!(mine["traffic_percent"], 0);
        assert_eq!(mine["traffic_period"]["start"], "2031-04-01T00:00:00Z");
        let days = usage(&app, "p-1", &id, 3).await;
        assert_eq!(days[1], ("2031-03-31".into(), 2 * GIB, GIB), "late report on its own day");
        assert_eq!(days[2], ("2031-04-01".into(), 0, 0));
        // March's days add up to March's count (5 GiB), which the database kept.
        let whole_march: i64 = usage(&app, "p-1", &id, 10).await.iter()
            .filter(|d| d.0.starts_with("2031-03")).map(|d| d.1 + d.2).sum();
        assert_eq!(whole_march, 5 * GIB);
        assert_eq!(app.db.count("resources", &format!("id = '{id}' and period_used = {}", 5 * GIB)).await, 1);
        // The first report of April starts its count.
        report(&app, &token, &id, 3 * GIB, 2 * GIB + GIB / 2, "2031-04-01T00:00:10Z").await;
        assert_eq!(my_node(&app, "p-1").await["traffic_used_gb"], 0.5);
        // Everywhere a node's traffic is shown: the list, the internal read, the load view.
        let (_, nodes) = app.user(Method::GET, "/api/v1/my/nodes", "p-1", None).await;
        assert_eq!(nodes["nodes"][0]["traffic_used_gb"], 0.5, "{nodes}");
        assert_eq!(nodes["nodes"][0]["traffic_period"]["end"], "2031-05-01T00:00:00Z");
        let internal = app.resource(&id).await;
        assert_eq!(internal["traffic_used_gb"], 0.5, "{internal}");
        assert_eq!(internal["traffic_period"]["start"], "2031-04-01T00:00:00Z");
        let (_, load) = app.internal(Method::GET, "/api/internal/nodes/load?sort=traffic", None).await;
        assert_eq!(load["nodes"][0]["traffic_used_gb"], 0.5, "{load}");
        // The internal usage read answers the same days.
        let (status, days) = app.internal(Method::GET, &format!("/api/internal/resources/{id}/usage?days=2"), None).await;
        assert_eq!(status, 200, "{days}");
        assert_eq!(days["days"], json!([
            {"date": "2031-03-31", "rx_bytes": 2 * GIB, "tx_bytes": GIB},
            {"date": "2031-04-01", "rx_bytes": 0, "tx_bytes": GIB / 2},
        ]));
        // 30 days when none is asked for, each present.
        let (_, default) = app.user(Method::GET, &format!("/api/v1/my/nodes/{id}/usage"), "p-1", None).await;
        let default = default["days"].as_array().unwrap();
        assert_eq!(default.len(), 30);
        assert_eq!(default[0]["date"], "2031-03-03");
        assert_eq!(default[29]["date"], "2031-04-01");
    }
}

on_both! {
    async fn usage_reads_refuse_other_users_and_nonsense_windows(b: Backend) {
        let (app, id, _) = node(b, "p-2", PeriodPolicy::Month).await;
        app.sims.subscribe("p-3", "sub-p-3", "premium");
        let mine = format!("/api/v1/my/nodes/{id}/usage");
        let (status, body) = app.user(Method::GET, &mine, "p-3", None).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("node_not_found")), "another user's node");
        let unknown = "/api/v1/my/nodes/00000000-0000-4000-8000-000000000000/usage";
        let (status, _) = app.user(Method::GET, unknown, "p-2", None).await;
        assert_eq!(status, 404);
        for query in ["days=0", "days=91", "days=-1", "days=abc", "days=1.5", "days=99999999999999999999"] {
            for path in [format!("{mine}?{query}"), format!("/api/internal/resources/{id}/usage?{query}")] {
                let (status, body) = if path.starts_with("/api/v1") {
                    app.user(Method::GET, &path, "p-2", None).await
                } else {
                    app.internal(Method::GET, &path, None).await
                };
                assert!((400..500).contains(&status), "{path}: {status} {body}");
                assert!(body["code"].is_string() && body["error"].is_string(), "{path}: {body}");
            }
        }
        let (status, body) = app.user(Method::GET, &format!("{mine}?days=0"), "p-2", None).await;
        assert_eq!((status, body["code"].as_str()), (422, Some("invalid_days")));
        for days in [1, 90] {
            assert_eq!(usage(&app, "p-2", &id, days).await.len(), days as usize);
        }
        // A user's token cannot read the internal one; a VPN account has no daily rows.
        let (status, _) = app.user(Method::GET, &format!("/api/internal/resources/{id}/usage"), "p-2", None).await;
        assert_eq!(status, 403);
        app.sims.subscribe_vpn("p-4", "sub-p-4", "premium");
        let order = json!({"user_id": "p-4", "subscription_id": "sub-p-4", "app_source": "otun",
            "plan_tier": "premium", "channel": "stripe", "business_type": "subscription", "expire_days": 30});
        let (status, vpn) = app.internal(Method::POST, "/api/internal/provision", Some(order)).await;
        assert!(status < 300, "{vpn}");
        let vpn_id = vpn["resource_id"].as_str().unwrap();
        let (status, body) = app.internal(Method::GET, &format!("/api/internal/resources/{vpn_id}/usage"), None).await;
        assert_eq!((status, body["code"].as_str()), (422, Some("not_a_node")), "{body}");
        assert_eq!(app.db.count("node_usage_days", "true").await, 0, "reads wrote nothing");
    }
}

on_both! {
    async fn with_no_period_a_node_counts_all_time(b: Backend) {
        let (app, id, token) = node(b, "p-5", PeriodPolicy::None).await;
        app.clock.shift_to(at("2031-01-31T22:00:00Z"));
        report(&app, &token, &id, GIB, 0, "2031-01-31T21:00:00Z").await;
        app.clock.shift_to(at("2031-02-01T02:00:00Z"));
        report(&app, &token, &id, 2 * GIB, GIB, "2031-02-01T01:00:00Z").await;
        let mine = my_node(&app, "p-5").await;
        assert_eq!(mine["traffic_used_gb"], 3, "{mine}");
        assert!(mine.get("traffic_period").is_none(), "{mine}");
        let (_, load) = app.internal(Method::GET, "/api/internal/nodes/load?sort=traffic", None).await;
        assert_eq!(load["nodes"][0]["traffic_used_gb"], 3, "{load}");
        // Days are kept all the same.
        let days = usage(&app, "p-5", &id, 2).await;
        assert_eq!(days, vec![("2031-01-31".into(), GIB, 0), ("2031-02-01".into(), GIB, GIB)]);
    }
}

on_both! {
    async fn daily_rows_are_read_by_window_and_deleted_by_retention(b: Backend) {
        let (app, id, token) = node(b, "p-6", PeriodPolicy::Month).await;
        let days = ["2030-01-10", "2030-06-10", "2031-02-14"];
        let mut counter = 0;
        for day in days {
            app.clock.shift_to(at(&format!("{day}T12:00:00Z")));
            counter += GIB;
            report(&app, &token, &id, counter, 0, &format!("{day}T11:00:00Z")).await;
        }
        let store = app.store();
        let uuid: uuid::Uuid = id.parse().unwrap();
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        let rows = store.node_usage(uuid, day("2030-01-01"), day("2031-12-31")).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.date.to_string()).collect::<Vec<_>>(), days, "one row per day, oldest first");
        assert!(rows.iter().all(|r| r.rx_bytes == GIB && r.tx_bytes == 0), "{rows:?}");
        let window = store.node_usage(uuid, day("2030-06-10"), day("2030-06-10")).await.unwrap();
        assert_eq!(window.len(), 1, "both ends included");
        // 400 days back from 2031-02-14 is 2030-01-10: that day is kept, older ones go.
        assert_eq!(store.purge_node_usage(day("2030-01-10"), 1000).await.unwrap(), 0);
        let engine = app.running().state.app.engine.clone();
        app.clock.shift_to(at("2031-02-15T12:00:00Z"));
        let report = engine.purge_expired().await.unwrap();
        assert_eq!(report.usage_days, 1, "{report:?}");
        let left = store.node_usage(uuid, day("2000-01-01"), day("2099-01-01")).await.unwrap();
        assert_eq!(left.len(), 2);
        assert_eq!(left[0].date, day("2030-06-10"));
    }
}

/// A paid VPN order for `user`'s subscription, identified by its transaction.
fn vpn_order(user: &str, tx: &str) -> Value {
    json!({"user_id": user, "subscription_id": format!("sub-{user}"), "app_source": "otun",
        "plan_tier": "premium", "channel": "stripe", "business_type": "subscription",
        "expire_days": 30, "channel_tx_id": tx})
}

on_both! {
    async fn a_vpn_renewal_resets_the_usage_only_when_configured_and_only_once(b: Backend) {
        for (policy, resets) in [(VpnTrafficReset::OnRenewal, true), (VpnTrafficReset::Never, false)] {
            let app = TestApp::spawn_with(b, NodeTiming::default(), |c| c.app.vpn.traffic_reset = policy).await;
            let vpn = &app.sims.sim.vpn;
            app.sims.subscribe_vpn("v-1", "sub-v-1", "premium");
            let (status, first) = app.internal(Method::POST, "/api/internal/provision", Some(vpn_order("v-1", "tx-1"))).await;
            assert_eq!((status, first["status"].as_str()), (200, Some("active")), "{first}");
            let uuid = first["vpn_user_id"].as_str().unwrap().to_owned();
            assert!(vpn.set_traffic_used(&uuid, 5 * GIB));
            let pushed = vpn.updates().len();
            // The renewal: a new period, its terms pushed in one PUT.
            let (status, renewed) = app.internal(Method::POST, "/api/internal/provision", Some(vpn_order("v-1", "tx-2"))).await;
            assert_eq!((status, renewed["status"].as_str()), (200, Some("active")), "{renewed}");
            let updates = vpn.updates();
            let put = &updates[pushed..].last().expect("the renewal's terms were pushed").1;
            assert!(put.expire_at.is_some() && put.traffic_limit.is_some(), "{put:?}");
            assert_eq!(put.traffic_used, resets.then_some(0), "{policy:?}");
            let used = vpn.user(&uuid).unwrap().traffic_used;
            assert_eq!(used, if resets { 0 } else { 5 * GIB }, "{policy:?}");
            // The same renewal delivered again resets nothing.
            assert!(vpn.set_traffic_used(&uuid, 7 * GIB));
            let (status, again) = app.internal(Method::POST, "/api/internal/provision", Some(vpn_order("v-1", "tx-2"))).await;
            assert_eq!(status, 200, "{again}");
            app.settle().await;
            assert_eq!(vpn.user(&uuid).unwrap().traffic_used, 7 * GIB, "{policy:?}: a repeat");
            let resets_sent = vpn.updates()[pushed..].iter().filter(|(_, u)| u.traffic_used.is_some()).count();
            assert_eq!(resets_sent, usize::from(resets), "{policy:?}: the renewal's PUT only");
        }
    }
}

on_both! {
    async fn absurd_counters_saturate_the_day_and_the_month_and_never_fail_a_report(b: Backend) {
        let (app, id, token) = node(b, "p-7", PeriodPolicy::Month).await;
        app.clock.shift_to(at("2031-07-10T12:00:00Z"));
        // A report claiming to be taken at the start of the calendar counts on that day.
        report(&app, &token, &id, 0, 1, "0000-01-01T00:00:00Z").await;
        // A counter at its largest, then "rebooted" to 1, again and again: each round
        // counts about 2^60 bytes, and 20 rounds are past what a bigint holds.
        const MAX_COUNTER: i64 = 1 << 60;
        for i in 0..20 {
            let rx = if i % 2 == 0 { MAX_COUNTER } else { 1 };
            report(&app, &token, &id, rx, 0, &format!("2031-07-10T10:{i:02}:00Z")).await;
        }
        let days = usage(&app, "p-7", &id, 1).await;
        assert_eq!(days, vec![("2031-07-10".to_owned(), i64::MAX, 0)]);
        let mine = my_node(&app, "p-7").await;
        assert!(mine["traffic_used_gb"].as_f64().is_some_and(f64::is_finite), "{mine}");
        assert_eq!(
            app.db.count("resources", &format!("id = '{id}' and period_used = {}", i64::MAX)).await,
            1
        );
    }
}

on_both! {
    async fn the_traffic_gauge_behind_the_alert_counts_the_current_month(b: Backend) {
        let (app, id, token) = node(b, "p-8", PeriodPolicy::Month).await;
        // A 1 GiB allowance, all of it used on the last day of August.
        app.db.exec(&format!("update resources set traffic_limit = {GIB} where id = '{id}'")).await.unwrap();
        app.clock.shift_to(at("2031-08-31T20:00:00Z"));
        report(&app, &token, &id, GIB, 0, "2031-08-31T19:00:00Z").await;
        let over = || async {
            let text = crate::metrics::scrape(&app).await;
            crate::metrics::sample(&text, r#"fulfillment_nodes_over_threshold{figure="traffic"}"#)
        };
        assert_eq!(over().await, Some(1.0), "August: over 90%");
        let (_, load) = app.internal(Method::GET, "/api/internal/nodes/load?sort=traffic", None).await;
        assert_eq!(load["nodes"][0]["traffic_percent"], 100, "{load}");
        // September begins: the alert's gauge and the load view start over.
        app.clock.shift_to(at("2031-09-01T00:10:00Z"));
        assert_eq!(over().await, Some(0.0), "September: nothing used yet");
        let (_, load) = app.internal(Method::GET, "/api/internal/nodes/load?sort=traffic", None).await;
        assert_eq!(load["nodes"][0]["traffic_percent"], 0, "{load}");
    }
}

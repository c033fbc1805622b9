//! Metrics (`GET /metrics` on `METRICS_ADDR`) and node load, over real HTTP: every family
//! of the contract, the exposition accepted by `promtool`, no label value that names
//! anyone, the gauges' database reads bounded by the cache, every series the dashboard
//! and the alert rules query, the node load view, and node reports out of bounds.

use std::collections::BTreeSet;
use std::time::Duration;

use fulfillment::sim::{Fault, NodeTiming, Op};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, Backend, INTERNAL_SECRET, JWT_SECRET, TestApp, quiet_node, read};
use crate::on_both;

/// Every family of CONTRACTS.md §4.2, as its samples are named.
const CONTRACT_FAMILIES: [&str; 17] = [
    "fulfillment_http_requests_total",
    "fulfillment_http_request_duration_seconds_bucket",
    "fulfillment_resources",
    "fulfillment_provisioning_duration_seconds_bucket",
    "fulfillment_engine_due",
    "fulfillment_outbox_pending",
    "fulfillment_outbox_oldest_pending_age_seconds",
    "fulfillment_upstream_requests_total",
    "fulfillment_upstream_request_duration_seconds_bucket",
    "fulfillment_event_streams",
    "fulfillment_node_cpu_percent_bucket",
    "fulfillment_node_mem_percent_bucket",
    "fulfillment_node_load1_bucket",
    "fulfillment_nodes_reporting",
    "fulfillment_build_info",
    "fulfillment_provisioning_failures_total",
    "fulfillment_nodes_over_threshold",
];

pub async fn scrape(app: &TestApp) -> String {
    let at = app.running().metrics_addr.expect("metrics are served");
    let resp = app
        .http
        .get(format!("http://{at}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    resp.text().await.unwrap()
}

/// The value of the sample `series` (name and labels exactly as exposed).
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Names of the samples in an exposition.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// Every label value in an exposition (values are quoted, with `\"` and `\\` escaped).
fn label_values(text: &str) -> Vec<String> {
    let mut values = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c != '"' {
                continue;
            }
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
            values.push(value);
        }
    }
    values
}

fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed (.ci/run installs Debian's prometheus package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn post_stats(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    let req = app
        .http
        .post(app.url("/api/callback/node/stats"))
        .bearer_auth(token)
        .json(&body);
    read(req.send().await.unwrap()).await
}

on_both! {
    async fn a_scrape_has_every_family_and_counts_what_happened(b: Backend) {
        let (app, id, token) = quiet_node(b, "u-m").await;
        let (status, _) = post_stats(&app, &token, json!({"resource_id": id, "rx_bytes": 10,
            "tx_bytes": 20, "cpu_percent": 95.5, "mem_percent": 40.0, "load1": 0.7})).await;
        assert_eq!(status, 200);
        let (status, _) = app.user(Method::GET, "/api/v1/my/node", "u-m", None).await;
        assert_eq!(status, 200);
        let (status, _) = app.user(Method::GET, "/api/v1/nothing-here", "u-m", None).await;
        assert_eq!(status, 404);
        let stream = crate::sse_client::EventStream::open(&app, "u-m").await;

        let text = scrape(&app).await;
        promtool_check(&text);
        let names = sample_names(&text);
        for family in CONTRACT_FAMILIES {
            assert!(names.contains(family), "{family} is exported");
        }
        let value = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}"));
        assert_eq!(value(r#"fulfillment_resources{type="hosting_node",status="active"}"#), 1.0);
        assert_eq!(value(r#"fulfillment_provisioning_duration_seconds_count{type="hosting_node"}"#), 1.0);
        assert_eq!(value("fulfillment_node_cpu_percent_count"), 1.0);
        assert_eq!(value(r#"fulfillment_node_cpu_percent_bucket{le="90"}"#), 0.0);
        assert_eq!(value(r#"fulfillment_nodes_over_threshold{figure="cpu"}"#), 1.0);
        assert_eq!(value(r#"fulfillment_nodes_over_threshold{figure="mem"}"#), 0.0);
        assert_eq!(value(r#"fulfillment_nodes_reporting{freshness="fresh"}"#), 1.0);
        assert_eq!(value(r#"fulfillment_event_streams{transport="sse"}"#), 1.0);
        assert_eq!(
            value(r#"fulfillment_http_requests_total{route="/api/v1/my/node",method="GET",status="200"}"#),
            1.0
        );
        assert_eq!(value(r#"fulfillment_http_requests_total{route="unmatched",method="GET",status="404"}"#), 1.0);
        assert!(value(r#"fulfillment_upstream_requests_total{upstream="hosting",operation="create_node",outcome="ok"}"#) >= 1.0);
        assert!(
            !text.contains(r#"fulfillment_http_request_duration_seconds_count{route="/api/v1/my/events""#),
            "event streams are not timed"
        );
        drop(stream);
        // The public port does not serve metrics.
        let (status, body) = read(app.http.get(app.url("/metrics")).send().await.unwrap()).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_counted_by_outcome() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.sims.subscribe("u-f", "sub-f", "premium");
    app.sims
        .sim
        .faults
        .script(Op::CreateNode, [Fault::Error(503), Fault::Garbage]);
    let (_, created) = app.provision("u-f", "sub-f").await;
    app.wait_status(created["resource_id"].as_str().unwrap(), "active")
        .await;
    let text = scrape(&app).await;
    let count = |outcome: &str| {
        sample(&text, &format!(
            r#"fulfillment_upstream_requests_total{{upstream="hosting",operation="create_node",outcome="{outcome}"}}"#
        ))
        .unwrap()
    };
    assert_eq!(count("http_5xx"), 1.0);
    assert_eq!(count("decode"), 1.0);
    assert_eq!(count("timeout"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_label_value_names_a_user_a_resource_an_address_an_email_or_a_secret() {
    let (app, id, token) = quiet_node(Backend::Sqlite, "apple_000123.abc").await;
    let stats = json!({"resource_id": id, "cpu_percent": 5.0, "rx_bytes": 0, "tx_bytes": 0});
    assert_eq!(post_stats(&app, &token, stats).await.0, 200);
    let (status, _) = app
        .internal(
            Method::PUT,
            "/api/internal/users/apple_000123.abc/email",
            Some(json!({"email": "someone@example.com"})),
        )
        .await;
    assert!(status < 500);
    let resource = app.resource(&id).await;
    let node_id = resource["node_id"]
        .as_str()
        .unwrap_or("no-node-id")
        .to_owned();
    let ip = resource["public_ip"]
        .as_str()
        .unwrap_or("203.0.113.1")
        .to_owned();
    // Paths that carry ids, so a route label made from the raw path would show them.
    app.internal(Method::GET, &format!("/api/internal/resources/{id}"), None)
        .await;
    app.internal(
        Method::GET,
        "/api/internal/users/apple_000123.abc/resources",
        None,
    )
    .await;
    let text = scrape(&app).await;
    let forbidden = [
        "apple_000123.abc",
        "sub-apple_000123.abc",
        &id,
        &node_id,
        &ip,
        "someone@example.com",
        &token,
        JWT_SECRET,
        INTERNAL_SECRET,
        ADMIN_KEY,
    ];
    let values = label_values(&text);
    assert!(
        values.iter().any(|v| v == "/api/internal/resources/{id}"),
        "route templates are labels"
    );
    for v in &values {
        for f in forbidden {
            assert!(!v.contains(f), "label value {v:?} contains {f:?}");
        }
        assert!(
            v.parse::<std::net::IpAddr>().is_err(),
            "label value {v:?} is an address"
        );
        assert!(
            uuid::Uuid::parse_str(v).is_err(),
            "label value {v:?} is an id"
        );
        assert!(!v.contains('@'), "label value {v:?} looks like an email");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_derived_gauges_cost_one_database_read_per_cache_period() {
    let app = TestApp::spawn_with(Backend::Postgres, NodeTiming::default(), |c| {
        c.http.metrics_cache = Duration::from_secs(600);
    })
    .await;
    // Within the metrics listener's cap of 16 connections (CONTRACTS.md §4.7).
    let scrapes: Vec<_> = (0..12).map(|_| scrape(&app)).collect();
    let texts = futures::future::join_all(scrapes).await;
    for text in &texts {
        assert_eq!(
            sample(text, "fulfillment_metrics_derived_reads_total"),
            Some(1.0)
        );
    }
}

/// `deploy/grafana/fulfillment.json`.
pub fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/fulfillment.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every `fulfillment_*` name in the dashboard's and the alert rules' expressions.
pub fn queried_names() -> BTreeSet<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let dashboard =
        std::fs::read_to_string(format!("{root}/deploy/grafana/fulfillment.json")).unwrap();
    let alerts = std::fs::read_to_string(format!("{root}/deploy/prometheus/alerts.yml")).unwrap();
    let mut names = BTreeSet::new();
    for text in [dashboard, alerts] {
        let mut rest = text.as_str();
        while let Some(at) = rest.find("fulfillment_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.insert(name);
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_the_dashboard_and_the_alerts_query_is_exported() {
    let dashboard = dashboard();
    // Imports as it is: no id, a fixed uid, a Prometheus data source variable.
    assert!(dashboard["id"].is_null());
    assert_eq!(dashboard["uid"], "fulfillment-service");
    assert_eq!(dashboard["templating"]["list"][0]["type"], "datasource");
    assert_eq!(dashboard["templating"]["list"][0]["query"], "prometheus");

    let (app, _, _) = quiet_node(Backend::Sqlite, "u-d").await;
    let names = sample_names(&scrape(&app).await);
    let queried = queried_names();
    assert!(
        queried.len() >= 15,
        "the expressions were read: {queried:?}"
    );
    // `fulfillment_service` is the dashboard's uid, not a series.
    for name in queried.iter().filter(|n| *n != "fulfillment_service") {
        assert!(names.contains(name), "{name} is queried but not exported");
    }
}

on_both! {
    async fn the_node_load_view_sorts_limits_and_omits_what_was_never_reported(b: Backend) {
        let timing = NodeTiming { stats_interval_ms: 0, ..NodeTiming::default() };
        let app = TestApp::spawn_with(b, timing, |_| {}).await;
        let mut nodes = Vec::new();
        for user in ["u-1", "u-2", "u-3"] {
            app.sims.subscribe(user, &format!("sub-{user}"), "premium");
            let (_, r) = app.provision(user, &format!("sub-{user}")).await;
            let id = r["resource_id"].as_str().unwrap().to_owned();
            app.wait_status(&id, "active").await;
            let creates = app.sims.sim.hosting.creates();
            nodes.push((id, creates.last().unwrap().callback_token.clone()));
        }
        // u-1: hot CPU, little memory; u-2: the reverse; u-3 never reports.
        let (status, _) = post_stats(&app, &nodes[0].1, json!({"resource_id": nodes[0].0, "cpu_percent": 80.0,
            "mem_percent": 10.0, "load1": 2.5, "rx_bytes": 1_073_741_824_i64, "tx_bytes": 0})).await;
        assert_eq!(status, 200);
        let (status, _) = post_stats(&app, &nodes[1].1, json!({"resource_id": nodes[1].0,
            "cpu_percent": 20.0, "mem_percent": 70.0, "load1": 0.5, "rx_bytes": 0, "tx_bytes": 0})).await;
        assert_eq!(status, 200);
        let app = &app;
        let load = |query: &'static str| async move {
            app.internal(Method::GET, &format!("/api/internal/nodes/load{query}"), None).await
        };
        let ids = |v: &Value| -> Vec<String> {
            v["nodes"].as_array().unwrap().iter().map(|n| n["resource_id"].as_str().unwrap().to_owned()).collect()
        };
        let (status, by_cpu) = load("").await;
        assert_eq!(status, 200, "{by_cpu}");
        assert_eq!(ids(&by_cpu), [nodes[0].0.clone(), nodes[1].0.clone(), nodes[2].0.clone()]);
        let first = &by_cpu["nodes"][0];
        assert_eq!(first["user_id"], "u-1");
        assert_eq!(first["cpu_percent"], 80.0);
        assert_eq!(first["traffic_used_gb"], 1);
        assert!(first["public_ip"].is_string() && first["reported_at"].is_string());
        let silent = &by_cpu["nodes"][2];
        for field in ["cpu_percent", "mem_percent", "load1", "reported_at", "traffic_used_gb"] {
            assert!(silent.get(field).is_none(), "{field} of a node that never reported: {silent}");
        }
        let (_, by_mem) = load("?sort=mem").await;
        assert_eq!(ids(&by_mem), [nodes[1].0.clone(), nodes[0].0.clone(), nodes[2].0.clone()]);
        let (_, by_traffic) = load("?sort=traffic&limit=1").await;
        assert_eq!(ids(&by_traffic), [nodes[0].0.clone()]);
        for bad in ["?sort=disk", "?limit=0", "?limit=501", "?limit=ten"] {
            let (status, body) = load(bad).await;
            assert_eq!(status, 422, "{bad}: {body}");
            assert!(body["code"].is_string());
        }
        let (status, _) = read(app.http.get(app.url("/api/internal/nodes/load")).send().await.unwrap()).await;
        assert_eq!(status, 401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_report_out_of_bounds_is_refused_and_changes_nothing() {
    let (app, id, token) = quiet_node(Backend::Postgres, "u-b").await;
    let (status, _) = post_stats(
        &app,
        &token,
        json!({"resource_id": id, "cpu_percent": 50.0, "rx_bytes": 0, "tx_bytes": 0}),
    )
    .await;
    assert_eq!(status, 200);
    let before = app
        .internal(Method::GET, "/api/internal/nodes/load", None)
        .await
        .1;
    for bad in [
        json!({"resource_id": id, "rx_bytes": 5, "tx_bytes": 5, "cpu_percent": 100.5}),
        json!({"resource_id": id, "rx_bytes": 5, "tx_bytes": 5, "mem_percent": -1}),
        json!({"resource_id": id, "rx_bytes": 5, "tx_bytes": 5, "mem_percent": 250}),
        json!({"resource_id": id, "rx_bytes": 5, "tx_bytes": 5, "load1": -0.5}),
        json!({"resource_id": id, "rx_bytes": -1, "tx_bytes": 5}),
        json!({"resource_id": id, "rx_bytes": 5, "tx_bytes": 5, "cpu_percent": "high"}),
    ] {
        let (status, body) = post_stats(&app, &token, bad.clone()).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(body["error"].is_string() && body["code"].is_string());
    }
    let after = app
        .internal(Method::GET, "/api/internal/nodes/load", None)
        .await
        .1;
    assert_eq!(before, after, "nothing was recorded");
    assert_eq!(
        sample(&scrape(&app).await, "fulfillment_node_cpu_percent_count"),
        Some(1.0)
    );
}

//! The retention pass (what only grew is deleted once its time is up, nothing else), and
//! a dead engine loop failing readiness.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fulfillment::api::{self, ApiState, extract::Auth};
use fulfillment::app::App;
use fulfillment::engine::{self, Engine, EngineConfig, RetentionReport};
use fulfillment::ports::{Clock, Ports};
use fulfillment::sim::NodeTiming;
use reqwest::Method;
use serde_json::json;
use tower::ServiceExt;

use crate::helpers::{
    Backend, INTERNAL_SECRET, JWT_SECRET, SimServer, TestApp, TestDb, test_config,
};
use crate::on_both;

async fn count(app: &TestApp, table: &str, filter: &str) -> i64 {
    app.db.count(table, filter).await
}

on_both! {
    async fn retention_deletes_only_finished_keys_and_delivered_callbacks(b: Backend) {
        let app = TestApp::spawn_with(b, NodeTiming::default(), |c| {
            c.engine.retention.idempotency = Duration::ZERO;
            c.engine.retention.outbox = Duration::ZERO;
        }).await;
        app.sims.subscribe("u-k", "sub-k", "premium");
        let resp = app.http.post(app.url("/api/internal/provision"))
            .header("X-Internal-Secret", INTERNAL_SECRET)
            .header("Idempotency-Key", "key-1")
            .json(&json!({"user_id": "u-k", "subscription_id": "sub-k", "region": "ap-northeast-1"}))
            .send().await.unwrap();
        assert_eq!(resp.status(), 202);
        let id = resp.json::<serde_json::Value>().await.unwrap()["resource_id"].as_str().unwrap().to_owned();
        app.wait_status(&id, "active").await;
        app.wait_callbacks("sub-k", 1).await;
        // A key whose request is still running, and a callback not yet delivered.
        let long_ago = "2020-01-01T00:00:00Z";
        app.db.exec(&format!("insert into idempotency_keys (scope, key, fingerprint, created_at) \
            values ('provision', 'in-flight', 'f', '{long_ago}')")).await.unwrap();
        app.db.exec(&format!("insert into outbox (subscription_id, payload, created_at, next_attempt_at) \
            values ('sub-undelivered', '{{}}', '{long_ago}', '2999-01-01T00:00:00Z')")).await.unwrap();
        assert!(crate::helpers::wait_until(Duration::from_secs(10), || async {
            count(&app, "outbox", "delivered_at is not null").await >= 1
        }).await, "the active callback was delivered");
        let delivered = count(&app, "outbox", "delivered_at is not null").await as u64;
        // A node's usage of a day long past USAGE_RETENTION_DAYS (400), and of today.
        let today = Utc::now().date_naive();
        for day in ["2020-01-01".to_owned(), today.to_string()] {
            app.db.exec(&format!("insert into node_usage_days (resource_id, day, rx_bytes, tx_bytes) \
                values ('{id}', '{day}', 1, 2)")).await.unwrap();
        }

        let engine = app.running().state.app.engine.clone();
        let report = engine.purge_expired().await.unwrap();
        assert_eq!(report, RetentionReport { idempotency_keys: 1, delivered_callbacks: delivered, spent_tickets: 0, usage_days: 1 });
        assert_eq!(count(&app, "node_usage_days", &format!("day = '{today}'")).await, 1, "today's usage: kept");
        assert_eq!(count(&app, "idempotency_keys", "key = 'in-flight'").await, 1, "in flight: kept");
        assert_eq!(count(&app, "idempotency_keys", "key = 'key-1'").await, 0);
        assert_eq!(count(&app, "outbox", "delivered_at is null").await, 1, "undelivered: kept");
        assert_eq!(count(&app, "outbox", "delivered_at is not null").await, 0);
        // Nothing else went: the resource and its history are kept forever.
        let (status, _) = app.internal(Method::GET, &format!("/api/internal/resources/{id}/events"), None).await;
        assert_eq!(status, 200);
        assert!(count(&app, "resources", "true").await >= 1);
        assert_eq!(engine.purge_expired().await.unwrap(), RetentionReport::default(), "a second pass finds nothing");
    }
}

on_both! {
    async fn retention_keeps_what_is_younger_than_its_window_and_deletes_in_batches(b: Backend) {
        // The store alone: no engine whose own pass could race the test's.
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        for i in 0..25 {
            db.exec(&format!("insert into idempotency_keys (scope, key, fingerprint, status_code, body, created_at) \
                values ('gift', 'k-{i}', 'f', 201, '{{}}', '{}')", (now - chrono::Duration::hours(30)).to_rfc3339())).await.unwrap();
        }
        let day_ago = now - chrono::Duration::hours(24);
        let hour_ago: DateTime<Utc> = now - chrono::Duration::hours(1);
        assert_eq!(store.purge_idempotency_keys(hour_ago - chrono::Duration::days(2), 1000).await.unwrap(), 0, "younger than the window");
        assert_eq!(store.purge_idempotency_keys(day_ago, 10).await.unwrap(), 10, "one batch");
        assert_eq!(store.purge_idempotency_keys(day_ago, 10).await.unwrap(), 10);
        assert_eq!(store.purge_idempotency_keys(day_ago, 10).await.unwrap(), 5);
        assert_eq!(store.purge_idempotency_keys(day_ago, 10).await.unwrap(), 0);
    }
}

/// A clock that works a few times and then panics, as a bug in a loop would.
struct FailingClock(AtomicUsize);

impl Clock for FailingClock {
    fn now(&self) -> DateTime<Utc> {
        assert!(
            self.0.fetch_add(1, Ordering::Relaxed) < 3,
            "a bug in the engine"
        );
        Utc::now()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_engine_loop_fails_readiness() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sims = SimServer::start(NodeTiming::default()).await;
    let config = test_config(&db.url, &sims.url);
    let ports = Ports {
        store: db.store().await,
        hosting: sims.sim.hosting.clone(),
        subscriptions: sims.sim.subscriptions.clone(),
        vpn: sims.sim.vpn.clone(),
        clock: Arc::new(FailingClock(AtomicUsize::new(0))),
        telemetry: Arc::new(fulfillment::ports::NoTelemetry),
    };
    let engine = Engine::new(
        ports.clone(),
        EngineConfig::new("http://127.0.0.1:9/cb".into()),
    );
    assert_eq!(engine.dead_loop(), None);
    let loops = engine::spawn(engine.clone());
    let died = tokio::time::timeout(Duration::from_secs(10), engine.died()).await;
    assert!(died.is_ok(), "a loop died and said so");
    assert!(engine.dead_loop().is_some());
    let app_config = config.app.clone();
    let state = Arc::new(ApiState {
        app: App::new(ports, engine.clone(), app_config),
        auth: Auth::new(JWT_SECRET, INTERNAL_SECRET),
        limits: api::limits::RateLimits::new(config.limits),
        request_timeout: Duration::from_secs(5),
        scrape: api::metrics::Scrape::new(Default::default(), Duration::ZERO),
        demo: false,
        product_name: "Fulfillment".into(),
    });
    let ready = axum::http::Request::get("/ready")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = api::router(state).oneshot(ready).await.unwrap();
    assert_eq!(resp.status(), 503);
    let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "engine_stopped", "{body}");
    // The loops still alive stop when asked.
    tokio::time::timeout(Duration::from_secs(10), loops.stop())
        .await
        .unwrap();
}

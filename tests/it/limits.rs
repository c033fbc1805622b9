//! Limits: per-user rate limits on the user API (stricter on creating a node), a deadline
//! on every request, and bounded concurrency toward each upstream.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fulfillment::api::limits::RateLimitConfig;
use fulfillment::ports::Hosting;
use fulfillment::sim::{Fault, Knobs, Op};
use fulfillment::upstream::{HostingClient, http_client};
use reqwest::Method;

use crate::helpers::{Backend, TestApp, wait_until};

/// A refusal to come back later: this status, `Retry-After` of a second or more, and
/// `{"error", "code"}` with this code.
async fn assert_refused(r: reqwest::Response, status: u16, code: &str) {
    assert_eq!(r.status(), status);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_rate_limited_each_on_their_own() {
    let app = TestApp::spawn_with(Backend::Sqlite, Default::default(), |c| {
        c.limits = RateLimitConfig {
            per_second: 1,
            burst: 3,
            node_creates_per_minute: 2,
        };
    })
    .await;
    app.sims.subscribe("r-1", "sub-r1", "basic");
    for _ in 0..3 {
        let (status, _) = app.user(Method::GET, "/api/v1/my/node", "r-1", None).await;
        assert_eq!(status, 200);
    }
    let r = app
        .http
        .get(app.url("/api/v1/my/node"))
        .bearer_auth(app.token("r-1"))
        .send()
        .await
        .unwrap();
    assert_refused(r, 429, "rate_limited").await;
    // Someone else is not slowed down by r-1.
    let (status, _) = app.user(Method::GET, "/api/v1/my/vpn", "r-2", None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_creation_has_its_own_stricter_limit() {
    let app = TestApp::spawn_with(Backend::Sqlite, Default::default(), |c| {
        c.limits = RateLimitConfig {
            per_second: 1000,
            burst: 1000,
            node_creates_per_minute: 2,
        };
    })
    .await;
    app.sims.subscribe("r-3", "sub-r3", "basic");
    let body = serde_json::json!({"region": "us-east-1"});
    for _ in 0..2 {
        let (status, _) = app
            .user(Method::POST, "/api/v1/my/node", "r-3", Some(body.clone()))
            .await;
        assert_eq!(status, 200);
    }
    let (status, refused) = app
        .user(Method::POST, "/api/v1/my/node", "r-3", Some(body))
        .await;
    assert_eq!(status, 429);
    assert_eq!(
        (
            refused["success"].as_bool(),
            refused["status"].as_str(),
            refused["code"].as_str()
        ),
        (Some(false), Some("failed"), Some("rate_limited")),
        "the create refusal keeps its shape: {refused}"
    );
    let (status, _) = app.user(Method::GET, "/api/v1/my/node", "r-3", None).await;
    assert_eq!(status, 200, "reads are not held back by the create limit");
    let (_, listed) = app
        .internal(
            Method::GET,
            "/api/internal/subscriptions/sub-r3/resources",
            None,
        )
        .await;
    assert_eq!(listed["resources"].as_array().unwrap().len(), 1, "one node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_is_a_json_503_and_changes_nothing() {
    // The subscription service hangs longer than a request may take (and than our own
    // upstream timeout would wait): the request deadline answers first.
    let app = TestApp::spawn_with(Backend::Sqlite, Default::default(), |c| {
        c.upstreams.timeout = Duration::from_secs(60);
        c.http.request_timeout = Duration::from_secs(2);
    })
    .await;
    app.sims.subscribe("t-1", "sub-t1", "basic");
    let faults = &app.sims.sim.faults;
    faults.set_knobs(Knobs {
        hang_ms: 30_000,
        ..faults.knobs()
    });
    faults.script(Op::ActiveSubscription, [Fault::Hang, Fault::Hang]);
    let read = app
        .http
        .get(app.url("/api/v1/my/node"))
        .bearer_auth(app.token("t-1"))
        .send()
        .await
        .unwrap();
    assert_refused(read, 503, "timeout").await;
    let create = app
        .http
        .post(app.url("/api/v1/my/node"))
        .bearer_auth(app.token("t-1"))
        .json(&serde_json::json!({"region": "us-east-1"}))
        .send()
        .await
        .unwrap();
    assert_refused(create, 503, "timeout").await;
    let node = app.store().current_hosting_node("t-1").await.unwrap();
    assert!(
        node.is_none(),
        "a create cut off by the deadline leaves nothing behind: {node:?}"
    );
    // The service itself is fine: once the subscription service answers, so do we (waited
    // for, not timed: a loaded machine may need more than one try within the deadline).
    let answers = wait_until(Duration::from_secs(20), || async {
        let (status, _) = app.user(Method::GET, "/api/v1/my/node", "t-1", None).await;
        status == 200
    })
    .await;
    assert!(answers, "my node never answered 200 after the hangs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_toward_an_upstream_are_bounded() {
    // A hosting service that counts how many requests it is serving at once.
    let now = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (now, most) = (now.clone(), most.clone());
        move || {
            let (now, most) = (now.clone(), most.clone());
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                axum::http::StatusCode::NOT_FOUND
            }
        }
    };
    let router = axum::Router::new().route("/api/admin/nodes/{id}", axum::routing::get(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let client = HostingClient::new(
        http_client(Duration::from_secs(5)),
        base.parse().unwrap(),
        "key".into(),
    )
    .with_max_in_flight(2);
    let calls = (0..8).map(|i| {
        let client = client.clone();
        async move { client.get_node(&format!("n-{i}")).await }
    });
    for answer in futures::future::join_all(calls).await {
        assert_eq!(answer.unwrap(), None);
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "never more than 2 at once, and 2 at times"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_migrations_count_against_the_node_creation_rate() {
    let app = TestApp::spawn_with(Backend::Sqlite, Default::default(), |c| {
        c.limits = RateLimitConfig {
            per_second: 1000,
            burst: 1000,
            node_creates_per_minute: 2,
        };
    })
    .await;
    app.sims.subscribe("r-5", "sub-r5", "basic");
    app.sims
        .sim
        .hosting
        .set_timing(fulfillment::sim::NodeTiming {
            send_callbacks: false,
            ..Default::default()
        });
    let (_, body) = app.provision("r-5", "sub-r5").await;
    let id = body["resource_id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "active").await;
    app.sims
        .sim
        .hosting
        .set_timing(fulfillment::sim::NodeTiming {
            creating_ms: 60_000,
            ..Default::default()
        });
    let to = serde_json::json!({"region": "eu-west-1"});
    let path = "/api/v1/my/node/migrate";
    let (status, _) = app.user(Method::POST, path, "r-5", Some(to.clone())).await;
    assert_eq!(status, 202);
    // Refused by rule (one at a time): no VPS could come of it, so it spends nothing,
    // however often it is asked.
    for _ in 0..3 {
        let (status, _) = app.user(Method::POST, path, "r-5", Some(to.clone())).await;
        assert_eq!(status, 409, "one at a time");
    }
    let (status, _) = app.user(Method::DELETE, path, "r-5", None).await;
    assert_eq!(status, 200);
    // The cancelled one's VPS is taken down meanwhile (409 until then, still free).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = app.user(Method::POST, path, "r-5", Some(to.clone())).await;
        match status {
            202 => break,
            409 if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => panic!("the 409s spent nothing, yet {status}: {body}"),
        }
    }
    let (status, _) = app.user(Method::DELETE, path, "r-5", None).await;
    assert_eq!(status, 200);
    let (status, refused) = app.user(Method::POST, path, "r-5", Some(to)).await;
    assert_eq!(
        (
            status,
            refused["success"].as_bool(),
            refused["code"].as_str()
        ),
        (429, Some(false), Some("rate_limited")),
        "{refused}"
    );
}

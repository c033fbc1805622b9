//! Golden snapshots of the shapes CONTRACTS.md §4.4 and §4.5 add: a user's several nodes,
//! one node, creating one more, the migration's answers and the `migration` object.

use std::time::Duration;

use fulfillment::sim::NodeTiming;
use reqwest::Method;
use serde_json::json;

use crate::golden::{redact, snapshot};
use crate::helpers::{Backend, TestApp, read, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_nodes_and_migration_shapes() {
    // Nodes stay `creating` until their agent reports: the test decides when.
    let timing = NodeTiming {
        creating_ms: 60_000,
        send_callbacks: false,
        ..NodeTiming::default()
    };
    let app = TestApp::spawn_with(Backend::Sqlite, timing, |_| {}).await;
    crate::golden::pin_clock(&app);
    let mut sub = snapshot(chrono::Duration::days(30));
    sub.quantity = Some(2);
    app.sims
        .sim
        .subscriptions
        .set("u-1", "obox", "hosting", Some(sub));

    let (status, created) = app
        .user(
            Method::POST,
            "/api/v1/my/nodes",
            "u-1",
            Some(json!({"region": "ap-northeast-1"})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    insta::assert_json_snapshot!("my_nodes_create", redact(created.clone()));
    let id = created["resource_id"].as_str().unwrap().to_owned();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            !app.sims.sim.hosting.creates().is_empty()
        })
        .await
    );
    let (status, list) = app.user(Method::GET, "/api/v1/my/nodes", "u-1", None).await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("my_nodes_creating", redact(list));

    // The agent reports ready: the node is active.
    let token = app.sims.sim.hosting.creates()[0].callback_token.clone();
    let r = app.http.post(app.url("/api/callback/node/ready")).bearer_auth(&token)
        .json(&json!({"resource_id": id, "public_ip": "1.2.3.4", "api_port": 8080, "api_key": "agent-key",
            "vless_port": 443, "ss_port": 8388, "public_key": "pubkey", "short_id": "abcd"}))
        .send().await.unwrap();
    assert_eq!(read(r).await.0, 200);
    app.learned_node_id(&id).await;
    let store = app.store();
    let (_, one) = app
        .user(Method::GET, &format!("/api/v1/my/nodes/{id}"), "u-1", None)
        .await;
    insta::assert_json_snapshot!("my_nodes_one_active", redact(one));

    // A second node fills the limit; a third is refused.
    let (status, _) = app
        .user(
            Method::POST,
            "/api/v1/my/nodes",
            "u-1",
            Some(json!({"region": "eu-west-1"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, full) = app
        .user(
            Method::POST,
            "/api/v1/my/nodes",
            "u-1",
            Some(json!({"region": "eu-west-1"})),
        )
        .await;
    assert_eq!(status, 409);
    insta::assert_json_snapshot!("my_nodes_limit_reached", full);
    let (status, missing) = app
        .user(
            Method::GET,
            "/api/v1/my/nodes/0190a0e0-0000-7000-8000-000000000001",
            "u-1",
            None,
        )
        .await;
    assert_eq!(status, 404);
    insta::assert_json_snapshot!("my_nodes_not_found", missing);

    // A migration: the answer, the node while it runs, and the refusals.
    let (status, started) = app
        .user(
            Method::POST,
            &format!("/api/v1/my/nodes/{id}/migrate"),
            "u-1",
            Some(json!({"region": "us-west-2"})),
        )
        .await;
    assert_eq!(status, 202);
    insta::assert_json_snapshot!("migrate_accepted", redact(started));
    let (_, during) = app.user(Method::GET, "/api/v1/my/node", "u-1", None).await;
    assert_eq!(during["node"]["resource_id"], id.as_str());
    insta::assert_json_snapshot!("my_node_migrating", redact(during));
    let (status, busy) = app
        .user(
            Method::POST,
            "/api/v1/my/node/migrate",
            "u-1",
            Some(json!({"region": "us-east-1"})),
        )
        .await;
    assert_eq!(status, 409);
    insta::assert_json_snapshot!("migrate_in_progress", busy);
    let (_, internal) = app
        .internal(Method::GET, &format!("/api/internal/resources/{id}"), None)
        .await;
    insta::assert_json_snapshot!("resource_status_migrating", redact(internal));
    let (status, cancelled) = app
        .user(
            Method::DELETE,
            &format!("/api/v1/my/nodes/{id}/migrate"),
            "u-1",
            None,
        )
        .await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("migrate_cancelled", redact(cancelled));
    // A repeat while the new VPS is being deleted is the same success; once it is gone,
    // there is nothing to cancel.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            let r = store.resource(id.parse().unwrap()).await.unwrap().unwrap();
            r.migration.is_none()
        })
        .await
    );
    let (status, none) = app
        .user(
            Method::DELETE,
            &format!("/api/v1/my/nodes/{id}/migrate"),
            "u-1",
            None,
        )
        .await;
    assert_eq!(status, 404);
    insta::assert_json_snapshot!("migrate_none", none);
    let (status, deleted) = app
        .user(
            Method::DELETE,
            &format!("/api/v1/my/nodes/{id}"),
            "u-1",
            None,
        )
        .await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("my_nodes_deleted", deleted);
}

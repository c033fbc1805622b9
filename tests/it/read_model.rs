//! The read model (`app::read_model`): `/my/node` and `/my/vpn` served from memory, a
//! replica reading its own writes at once, another replica's writes within the bound of
//! the live streams, and the subscription answer's own expiry.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{Backend, TestApp, wait_until};
use crate::sse_client::PUSHED_WITHIN;

async fn my_node(base: &str, app: &TestApp, user: &str) -> Value {
    let r = app
        .http
        .get(format!("{base}/api/v1/my/node"))
        .bearer_auth(app.token(user))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// A change no one is told of: the document kept in memory does not see it (so the
/// read model is in use), until a notified change or the document's expiry.
async fn rename_region_unheard(app: &TestApp, id: &str, region: &str) {
    let n = app
        .db
        .exec(&format!(
            "update resources set region = '{region}' where id = '{id}'"
        ))
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// Proves `base` serves `user`'s node document from memory: a change no one is told of
/// does not show. The node's last steps may still be committing (each invalidates), so
/// each try reads, changes unheard, and reads again.
async fn served_from_memory(base: &str, app: &TestApp, id: &str, user: &str) {
    for region in [
        "eu-west-1",
        "us-west-2",
        "eu-west-1",
        "us-west-2",
        "eu-west-1",
    ] {
        let before = my_node(base, app, user).await;
        assert_eq!(before["hosting_status"], "node_active");
        rename_region_unheard(app, id, region).await;
        if my_node(base, app, user).await["node"]["region"] == before["node"]["region"] {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{base} never served a document from memory");
}

crate::on_both! {
    async fn a_replica_serves_from_memory_and_reads_its_own_writes_at_once(b: Backend) {
        // A long subscription cache: only commits make a document stale here.
        let app = TestApp::spawn_with(b, Default::default(), |c| {
            c.app.subscription_ttl = Duration::from_secs(3600);
        }).await;
        app.sims.subscribe("rm-1", "sub-rm1", "premium");
        let (_, order) = app.provision("rm-1", "sub-rm1").await;
        let id = order["resource_id"].as_str().unwrap().to_owned();
        app.wait_status(&id, "active").await;
        served_from_memory(&app.base, &app, &id, "rm-1").await;

        // The user's own write, through this replica: the next read has it, no waiting.
        let (status, _) = app.user(Method::DELETE, "/api/v1/my/node", "rm-1", None).await;
        assert_eq!(status, 200);
        let after = my_node(&app.base, &app, "rm-1").await;
        assert_eq!(after["hosting_status"], "subscribed_no_node", "{after}");
        // And an order from the subscription service, also through this replica.
        app.sims.subscribe("rm-2", "sub-rm2", "premium");
        assert_eq!(my_node(&app.base, &app, "rm-2").await["hosting_status"], "subscribed_no_node");
        let (status, _) = app.provision("rm-2", "sub-rm2").await;
        assert_eq!(status, 202);
        // (The simulated node may be up already.)
        let now = my_node(&app.base, &app, "rm-2").await;
        assert!(["node_creating", "node_active"].contains(&now["hosting_status"].as_str().unwrap()), "{now}");
    }
}

crate::on_both! {
    async fn the_read_model_off_reads_the_database_every_time(b: Backend) {
        let app = TestApp::spawn_with(b, Default::default(), |c| {
            c.app.read_model_users = 0;
        }).await;
        app.sims.subscribe("rm-3", "sub-rm3", "premium");
        let (_, order) = app.provision("rm-3", "sub-rm3").await;
        let id = order["resource_id"].as_str().unwrap().to_owned();
        app.wait_status(&id, "active").await;
        assert_eq!(my_node(&app.base, &app, "rm-3").await["node"]["region"], "ap-northeast-1");
        rename_region_unheard(&app, &id, "eu-west-1").await;
        assert_eq!(my_node(&app.base, &app, "rm-3").await["node"]["region"], "eu-west-1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replicas_write_reaches_this_replicas_reads_by_notification() {
    let app = TestApp::spawn_with(Backend::Postgres, Default::default(), |c| {
        c.app.subscription_ttl = Duration::from_secs(3600);
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = fulfillment::server::start(&app.config, listener, None)
        .await
        .unwrap();
    let other_base = format!("http://{}", other.addr);
    app.sims.subscribe("rm-4", "sub-rm4", "premium");
    let (_, order) = app.provision("rm-4", "sub-rm4").await;
    let id = order["resource_id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "active").await;
    // The other replica keeps the document (it keeps nothing until it listens).
    served_from_memory(&other_base, &app, &id, "rm-4").await;

    // The user deletes the node through the first replica: the second hears of it. (Its
    // documents are kept at most 30 s, so a change seen sooner came by notification.)
    let (status, _) = app
        .user(Method::DELETE, "/api/v1/my/node", "rm-4", None)
        .await;
    assert_eq!(status, 200);
    let heard = wait_until(PUSHED_WITHIN, || async {
        my_node(&other_base, &app, "rm-4").await["hosting_status"] == "subscribed_no_node"
    })
    .await;
    assert!(heard, "the other replica never saw the deletion");
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_document_still_follows_the_subscription_answers_expiry() {
    let app = TestApp::spawn_with(Backend::Sqlite, Default::default(), |c| {
        c.app.subscription_ttl = Duration::from_millis(300);
    })
    .await;
    app.sims.subscribe("rm-5", "sub-rm5", "premium");
    assert_eq!(
        my_node(&app.base, &app, "rm-5").await["hosting_status"],
        "subscribed_no_node"
    );
    // The subscription ends at the subscription service: no commit here says so.
    app.sims
        .sim
        .subscriptions
        .set("rm-5", "obox", "hosting", None);
    let seen = wait_until(Duration::from_secs(10), || async {
        my_node(&app.base, &app, "rm-5").await["hosting_status"] == "no_subscription"
    })
    .await;
    assert!(seen, "the kept document outlived its subscription answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_kept_is_forgotten_when_notifications_may_have_been_missed() {
    let app = TestApp::spawn_with(Backend::Postgres, Default::default(), |c| {
        c.app.subscription_ttl = Duration::from_secs(3600);
    })
    .await;
    app.sims.subscribe("rm-6", "sub-rm6", "premium");
    let (_, order) = app.provision("rm-6", "sub-rm6").await;
    let id = order["resource_id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "active").await;
    assert_eq!(
        my_node(&app.base, &app, "rm-6").await["node"]["region"],
        "ap-northeast-1"
    );
    // The listener's connection dies: what is kept is forgotten, and a change made while
    // it reconnects is seen.
    app.kill_listener().await;
    rename_region_unheard(&app, &id, "eu-west-1").await;
    let seen = wait_until(PUSHED_WITHIN, || async {
        my_node(&app.base, &app, "rm-6").await["node"]["region"] == "eu-west-1"
    })
    .await;
    assert!(
        seen,
        "a document kept across the listener's loss was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_report_on_one_replica_renews_the_traffic_the_other_replica_keeps() {
    let (app, id, token) = crate::helpers::quiet_node(Backend::Postgres, "rm-7").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = fulfillment::server::start(&app.config, listener, None)
        .await
        .unwrap();
    let other_base = format!("http://{}", other.addr);
    served_from_memory(&other_base, &app, &id, "rm-7").await;
    let before = my_node(&other_base, &app, "rm-7").await;

    // The node's agent reports usage to the first replica: no event, no live push, but
    // what the other replica keeps of the traffic figures is stale, and it hears so.
    let stats = serde_json::json!({"resource_id": id, "rx_bytes": 5_000_000_000_i64,
        "tx_bytes": 0, "cpu_percent": 10.0});
    let resp = app
        .http
        .post(app.url("/api/callback/node/stats"))
        .bearer_auth(&token)
        .json(&stats)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let renewed = wait_until(PUSHED_WITHIN, || async {
        my_node(&other_base, &app, "rm-7").await["node"]["traffic_used_gb"]
            != before["node"]["traffic_used_gb"]
    })
    .await;
    assert!(renewed, "the other replica kept the old traffic figures");
    other.stop().await;
}

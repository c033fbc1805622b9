//! Several nodes per hosting subscription (CONTRACTS.md §4.4), end to end over HTTP
//! against the simulators, on both databases.

use std::collections::HashSet;
use std::time::Duration;

use fulfillment::domain::progress::SubscriptionSnapshot;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, wait_until};
use crate::on_both;

async fn order(
    app: &TestApp,
    user: &str,
    sub: &str,
    tx: &str,
    quantity: i64,
    plan: &str,
) -> (u16, Value) {
    app.internal(
        Method::POST,
        "/api/internal/provision",
        Some(
            json!({"user_id": user, "subscription_id": sub, "app_source": "obox", "plan_tier": plan,
            "region": "ap-northeast-1", "channel_tx_id": tx, "quantity": quantity}),
        ),
    )
    .await
}

/// The subscription service answers for `user` with `quantity` nodes.
fn subscribe_with_quantity(app: &TestApp, user: &str, sub: &str, quantity: Option<i64>) {
    app.sims.sim.subscriptions.set(
        user,
        "obox",
        "hosting",
        Some(SubscriptionSnapshot {
            subscription_id: sub.into(),
            status: "active".into(),
            plan_tier: "standard".into(),
            expires_at: Some(chrono::Utc::now() + chrono::Duration::days(30)),
            auto_renew: true,
            quantity,
        }),
    );
}

fn ids(list: &Value) -> Vec<String> {
    list["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["resource_id"].as_str().unwrap().to_owned())
        .collect()
}

on_both! {
    async fn an_order_for_three_makes_three_nodes_each_reported_and_listed(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.subscribe("u-1", "sub-1", "premium");
        let (status, body) = order(&app, "u-1", "sub-1", "tx-1", 3, "premium").await;
        assert_eq!(status, 202, "{body}");
        let all: Vec<String> = body["resource_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(body["resource_id"], all[0], "the first of them");
        for id in &all {
            app.wait_status(id, "active").await;
        }
        // One `active` callback per node, each naming it.
        let calls = app.wait_callbacks("sub-1", 3).await;
        let named: HashSet<_> = calls.iter().map(|c| c.resource_id.clone().unwrap()).collect();
        assert_eq!(named, all.iter().cloned().collect::<HashSet<_>>());
        assert!(calls.iter().all(|c| c.status == "active"));
        assert_eq!(app.sims.sim.hosting.obox_nodes().len(), 3);

        let (status, list) = app.user(Method::GET, "/api/v1/my/nodes", "u-1", None).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!((list["node_limit"].as_i64(), list["hosting_status"].as_str()), (Some(3), Some("node_active")));
        assert_eq!(ids(&list), all, "oldest first");
        assert!(list["nodes"][0]["public_ip"].is_string());
        // /my/node keeps its contract: the oldest live node.
        let (_, mine) = app.user(Method::GET, "/api/v1/my/node", "u-1", None).await;
        assert_eq!(mine["node"]["resource_id"], all[0]);
        assert_eq!(mine["hosting_status"], "node_active");

        // A repeat of the order changes nothing.
        let (status, again) = order(&app, "u-1", "sub-1", "tx-1", 3, "premium").await;
        assert_eq!((status, again["resource_id"].as_str()), (200, Some(all[0].as_str())));
        assert_eq!(app.sims.sim.hosting.creates().len(), 3);
        assert_eq!(app.db.count("resources", "subscription_id = 'sub-1'").await, 3);
    }
}

on_both! {
    async fn a_user_creates_up_to_the_limit_reads_and_deletes_one(b: Backend) {
        let app = TestApp::spawn(b).await;
        subscribe_with_quantity(&app, "u-1", "sub-1", Some(2));
        let mut made = Vec::new();
        for region in ["us-east-1", "eu-west-1"] {
            let (status, body) = app.user(Method::POST, "/api/v1/my/nodes", "u-1", Some(json!({"region": region}))).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!((body["success"].as_bool(), body["status"].as_str()), (Some(true), Some("creating")));
            made.push(body["resource_id"].as_str().unwrap().to_owned());
        }
        let (status, body) = app.user(Method::POST, "/api/v1/my/nodes", "u-1", Some(json!({"region": "us-east-1"}))).await;
        assert_eq!((status, body["code"].as_str(), body["success"].as_bool()), (409, Some("node_limit_reached"), Some(false)));
        // /my/node's POST creates only when the user has none (while their first node is
        // being created, it answers with that node instead).
        app.wait_status(&made[0], "active").await;
        let (status, body) = app.user(Method::POST, "/api/v1/my/node", "u-1", Some(json!({"region": "us-east-1"}))).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(app.db.count("resources", "user_id = 'u-1'").await, 2);

        app.wait_status(&made[1], "active").await;
        let (status, one) = app.user(Method::GET, &format!("/api/v1/my/nodes/{}", made[1]), "u-1", None).await;
        assert_eq!(status, 200, "{one}");
        assert_eq!((one["node"]["region"].as_str(), one["node"]["status"].as_str()), (Some("eu-west-1"), Some("active")));
        assert!(one.get("creation_progress").is_none());

        // Another user's node reads exactly like an unknown one.
        let (s1, other) = app.user(Method::GET, &format!("/api/v1/my/nodes/{}", made[1]), "u-2", None).await;
        let (s2, unknown) = app.user(Method::GET, "/api/v1/my/nodes/0190a0e0-0000-7000-8000-000000000001", "u-2", None).await;
        assert_eq!((s1, &other), (s2, &unknown));
        assert_eq!(s1, 404);
        let (s1, other) = app.user(Method::DELETE, &format!("/api/v1/my/nodes/{}", made[1]), "u-2", None).await;
        let (s2, unknown) = app.user(Method::DELETE, "/api/v1/my/nodes/not-a-uuid", "u-2", None).await;
        assert_eq!((s1, &other), (s2, &unknown));
        assert_eq!((s1, other["success"].as_bool()), (404, Some(false)));
        app.wait_status(&made[1], "active").await;

        let (status, body) = app.user(Method::DELETE, &format!("/api/v1/my/nodes/{}", made[1]), "u-1", None).await;
        assert_eq!((status, body["success"].as_bool()), (200, Some(true)));
        app.wait_status(&made[1], "deleted").await;
        let (_, list) = app.user(Method::GET, "/api/v1/my/nodes", "u-1", None).await;
        assert_eq!(ids(&list), vec![made[0].clone()]);
        // Room again: one more.
        let (status, _) = app.user(Method::POST, "/api/v1/my/nodes", "u-1", Some(json!({"region": "us-west-2"}))).await;
        assert_eq!(status, 200);
    }
}

on_both! {
    async fn fifty_concurrent_creates_at_the_limit_make_exactly_n(b: Backend) {
        let app = TestApp::spawn(b).await;
        subscribe_with_quantity(&app, "u-1", "sub-1", Some(4));
        let calls = (0..50).map(|_| app.user(Method::POST, "/api/v1/my/nodes", "u-1", Some(json!({"region": "us-east-1"}))));
        let answers = futures::future::join_all(calls).await;
        let ok = answers.iter().filter(|(s, _)| *s == 200).count();
        let full = answers.iter().filter(|(s, b)| *s == 409 && b["code"] == "node_limit_reached").count();
        assert_eq!((ok, full), (4, 46), "{answers:?}");
        assert_eq!(app.db.count("resources", "subscription_id = 'sub-1'").await, 4);
        assert!(wait_until(Duration::from_secs(20), || async { app.sims.sim.hosting.obox_nodes().len() == 4 }).await);
        assert_eq!(app.sims.sim.hosting.creates().len(), 4);
    }
}

on_both! {
    async fn a_lower_quantity_deletes_nothing_and_shows_in_the_operator_queue(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.subscribe("u-1", "sub-1", "premium");
        let (_, body) = order(&app, "u-1", "sub-1", "tx-1", 3, "premium").await;
        let (status, _) = order(&app, "u-1", "sub-1", "tx-2", 1, "premium").await;
        assert_eq!(status, 200);
        for id in body["resource_ids"].as_array().unwrap() {
            app.wait_status(id.as_str().unwrap(), "active").await;
        }
        let (_, queue) = app.internal(Method::GET, "/api/internal/operator/queue", None).await;
        assert_eq!(queue["subscriptions"], json!([{"subscription_id": "sub-1", "user_id": "u-1",
            "why": "over_node_limit", "live_nodes": 3, "node_limit": 1}]));
        let (status, body) = app.user(Method::POST, "/api/v1/my/nodes", "u-1", Some(json!({"region": "us-east-1"}))).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("node_limit_reached")));
        assert_eq!(app.sims.sim.hosting.obox_nodes().len(), 3, "nothing deleted by itself");
        let (_, list) = app.user(Method::GET, "/api/v1/my/nodes", "u-1", None).await;
        assert_eq!((list["node_limit"].as_i64(), ids(&list).len()), (Some(1), 3));
    }
}

on_both! {
    async fn a_quantity_out_of_bounds_is_refused_and_changes_nothing(b: Backend) {
        let app = TestApp::spawn(b).await;
        for q in [0, -1, 11, 1_000_000] {
            let (status, body) = order(&app, "u-1", "sub-1", "tx-1", q, "premium").await;
            assert_eq!((status, body["code"].as_str()), (422, Some("invalid_quantity")), "{q}: {body}");
        }
        let (status, body) = app.internal(Method::POST, "/api/internal/provision",
            Some(json!({"user_id": "u-1", "subscription_id": "sub-1", "quantity": "three"}))).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(app.db.count("resources", "true").await, 0);
        assert_eq!(app.db.count("hosting_orders", "true").await, 0);
    }
}

on_both! {
    async fn deprovision_deletes_all_the_subscriptions_nodes_or_the_one_named(b: Backend) {
        let app = TestApp::spawn(b).await;
        let (_, body) = order(&app, "u-1", "sub-1", "tx-1", 3, "basic").await;
        let all: Vec<String> = body["resource_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        for id in &all {
            app.wait_status(id, "active").await;
        }
        let (status, _) = app.internal(Method::POST, "/api/internal/deprovision",
            Some(json!({"subscription_id": "sub-1", "resource_id": all[2]}))).await;
        assert_eq!(status, 200);
        app.wait_status(&all[2], "deleted").await;
        assert_eq!(app.sims.sim.hosting.obox_nodes().len(), 2);
        let (status, _) = app.internal(Method::POST, "/api/internal/deprovision", Some(json!({"subscription_id": "sub-1"}))).await;
        assert_eq!(status, 200);
        for id in &all {
            app.wait_status(id, "deleted").await;
        }
        assert!(app.sims.sim.hosting.obox_nodes().is_empty());
        let calls = app.wait_callbacks("sub-1", 6).await;
        let deleted: HashSet<_> = calls.iter().filter(|c| c.status == "deleted").map(|c| c.resource_id.clone().unwrap()).collect();
        assert_eq!(deleted.len(), 3);
    }
}

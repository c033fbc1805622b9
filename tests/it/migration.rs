//! Replacing a node's VPS (CONTRACTS.md §4.5): region migration, plan change, rebuild,
//! failure, cancel and delete mid-migration, end to end over HTTP against the simulators,
//! on both databases.

use std::time::Duration;

use fulfillment::sim::NodeTiming;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, wait_until};
use crate::on_both;

/// A node that takes a while to come up, so a migration can be watched mid-way.
fn slow() -> NodeTiming {
    NodeTiming {
        creating_ms: 1_500,
        installing_ms: 1_500,
        ..NodeTiming::default()
    }
}

/// A user's active node: (resource id, its VPS's node id, its public ip).
async fn active_node(app: &TestApp, user: &str, sub: &str) -> (String, String, String) {
    let (status, body) = app.provision(user, sub).await;
    assert_eq!(status, 202, "{body}");
    let id = body["resource_id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "active").await;
    // The agent's ready report may precede the create's answer: wait for the VPS's id.
    let known = wait_until(Duration::from_secs(20), || async {
        fulfillment_row(app, &id).await.node_id.is_some()
    })
    .await;
    assert!(known, "the node's VPS id was never learned");
    let r = fulfillment_row(app, &id).await;
    (id, r.node_id.unwrap(), r.connection.public_ip.unwrap())
}

async fn fulfillment_row(app: &TestApp, id: &str) -> fulfillment::domain::Resource {
    app.store()
        .resource(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap()
}

async fn my_node(app: &TestApp, user: &str) -> Value {
    let (status, body) = app.user(Method::GET, "/api/v1/my/node", user, None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until the node shows no migration and serves from another VPS than `old`.
async fn wait_switched(app: &TestApp, id: &str, old: &str) -> fulfillment::domain::Resource {
    let ok = wait_until(Duration::from_secs(20), || async {
        let r = fulfillment_row(app, id).await;
        r.migration.is_none() && r.node_id.as_deref() != Some(old) && r.retire_node_id.is_none()
    })
    .await;
    let r = fulfillment_row(app, id).await;
    assert!(ok, "never switched: {r:?}");
    r
}

async fn kinds(app: &TestApp, id: &str) -> Vec<(String, Option<String>, String)> {
    let (_, body) = app
        .internal(
            Method::GET,
            &format!("/api/internal/resources/{id}/events"),
            None,
        )
        .await;
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["message"].as_str().map(Into::into),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

on_both! {
    async fn a_node_moves_to_another_region_and_serves_throughout(b: Backend) {
        let app = TestApp::spawn_with(b, NodeTiming::default(), |_| {}).await;
        app.sims.subscribe("u-1", "sub-1", "premium");
        let (id, old_node, old_ip) = active_node(&app, "u-1", "sub-1").await;
        app.sims.sim.hosting.set_timing(slow());

        let (status, body) = app.user(Method::POST, "/api/v1/my/node/migrate", "u-1", Some(json!({"region": "eu-west-1"}))).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["resource_id"], id);
        assert_eq!((body["migration"]["to_region"].as_str(), body["migration"]["status"].as_str()), (Some("eu-west-1"), Some("creating")));
        assert!(body["migration"]["started_at"].is_string());
        assert!(body["migration"].get("to_plan_tier").is_none(), "the plan does not change");

        // While the new VPS comes up, the node is active on the old one.
        let mid = my_node(&app, "u-1").await;
        assert_eq!((mid["hosting_status"].as_str(), mid["node"]["status"].as_str()), (Some("node_active"), Some("active")));
        assert_eq!((mid["node"]["public_ip"].as_str(), mid["node"]["region"].as_str()), (Some(old_ip.as_str()), Some("ap-northeast-1")));
        assert!(["creating", "installing"].contains(&mid["node"]["migration"]["status"].as_str().unwrap()), "{mid}");
        let (status, body) = app.user(Method::POST, &format!("/api/v1/my/nodes/{id}/migrate"), "u-1", Some(json!({"region": "us-east-1"}))).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("migration_in_progress")));

        let r = wait_switched(&app, &id, &old_node).await;
        assert_eq!((r.region.as_str(), r.status), ("eu-west-1", fulfillment::domain::Status::Active));
        let after = my_node(&app, "u-1").await;
        assert!(after["node"].get("migration").is_none(), "{after}");
        assert_eq!(after["node"]["region"], "eu-west-1");
        assert_ne!(after["node"]["public_ip"].as_str(), Some(old_ip.as_str()));
        assert_eq!(after["node"]["resource_id"], id, "the resource keeps its id");
        // Exactly one VPS, the new one, in the new region.
        let vpses = app.sims.sim.hosting.obox_nodes();
        assert_eq!(vpses.len(), 1);
        assert_eq!((vpses[0].node_id.as_str(), vpses[0].region.as_str()), (r.node_id.as_deref().unwrap(), "eu-west-1"));
        assert!(app.sims.sim.hosting.deletes().contains(&old_node));
        // The history names both VPSes and who asked.
        let history = kinds(&app, &id).await;
        assert!(history.iter().any(|(k, _, a)| k == "migration_requested" && a == "user"), "{history:?}");
        let switched = history.iter().find(|(k, _, _)| k == "migration_switched").unwrap();
        let msg = switched.1.as_deref().unwrap();
        assert!(msg.contains(&old_node) && msg.contains(r.node_id.as_deref().unwrap()), "{msg}");
        assert!(history.iter().any(|(k, m, _)| k == "retired_node_deleted" && m.as_deref() == Some(old_node.as_str())));

        // The new VPS's agent holds the node's credential now; the old one's is refused.
        let creates = app.sims.sim.hosting.creates();
        let (old_token, new_token) = (&creates[0].callback_token, &creates[1].callback_token);
        assert_eq!(creates[1].resource_id, id, "the new VPS is correlated to the same resource");
        let stats = |token: &str| app.http.post(app.url("/api/callback/node/stats")).bearer_auth(token.to_owned())
            .json(&json!({"resource_id": id, "rx_bytes": 10, "tx_bytes": 10})).send();
        assert_eq!(stats(new_token).await.unwrap().status(), 200);
        assert_eq!(stats(old_token).await.unwrap().status(), 403);
        // Only one `active` callback: a migration is not a new order.
        assert_eq!(app.sims.sim.subscriptions.callbacks_for("sub-1").len(), 1);
    }
}

on_both! {
    async fn a_hosting_order_on_another_plan_migrates_the_node_in_place(b: Backend) {
        let app = TestApp::spawn(b).await;
        let (id, old_node, _) = active_node(&app, "u-1", "sub-1").await;
        let (status, body) = app.internal(Method::POST, "/api/internal/provision",
            Some(json!({"user_id": "u-1", "subscription_id": "sub-1", "app_source": "obox", "plan_tier": "basic",
                "channel_tx_id": "renewal-1"}))).await;
        assert_eq!((status, body["resource_id"].as_str()), (200, Some(id.as_str())), "{body}");
        let r = wait_switched(&app, &id, &old_node).await;
        assert_eq!((r.plan_tier.as_str(), r.region.as_str(), r.traffic_limit), ("basic", "ap-northeast-1", 1024_i64.pow(4)));
        let creates = app.sims.sim.hosting.creates();
        assert_eq!((creates.len(), creates[1].bundle_id.as_str(), creates[1].region.as_str()), (2, "nano_3_0", "ap-northeast-1"));
        assert_eq!(app.sims.sim.hosting.obox_nodes().len(), 1);
        let history = kinds(&app, &id).await;
        assert!(history.iter().any(|(k, m, a)| k == "migration_requested" && a == "subscription_service"
            && m.as_deref().is_some_and(|m| m.contains("premium") && m.contains("basic"))), "{history:?}");
        let shown = app.resource(&id).await;
        assert_eq!((shown["plan_tier"].as_str(), shown["traffic_limit_gb"].as_i64()), (Some("basic"), Some(1024)));
    }
}

on_both! {
    async fn a_rebuild_puts_the_node_on_a_fresh_vps_in_the_same_region(b: Backend) {
        let app = TestApp::spawn(b).await;
        let (id, old_node, _) = active_node(&app, "u-1", "sub-1").await;
        let (status, body) = app.internal(Method::POST, &format!("/api/internal/resources/{id}/migrate"), None).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["migration"]["to_region"], "ap-northeast-1");
        let r = wait_switched(&app, &id, &old_node).await;
        assert_eq!((r.region.as_str(), r.plan_tier.as_str()), ("ap-northeast-1", "premium"));
        let vpses = app.sims.sim.hosting.obox_nodes();
        assert_eq!(vpses.len(), 1);
        assert_ne!(vpses[0].node_id, old_node);
        assert!(kinds(&app, &id).await.iter().any(|(k, _, a)| k == "migration_requested" && a == "admin"));
    }
}

on_both! {
    async fn a_failed_new_vps_is_deleted_and_the_old_one_serves_on(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.subscribe("u-1", "sub-1", "premium");
        let (id, old_node, old_ip) = active_node(&app, "u-1", "sub-1").await;
        app.sims.sim.hosting.set_timing(NodeTiming { fail_rate: 1.0, ..NodeTiming::default() });
        let (status, _) = app.user(Method::POST, &format!("/api/v1/my/nodes/{id}/migrate"), "u-1", Some(json!({"region": "us-west-2"}))).await;
        assert_eq!(status, 202);
        let failed = wait_until(Duration::from_secs(20), || async {
            let r = fulfillment_row(&app, &id).await;
            r.migration.as_ref().is_some_and(|m| m.status == fulfillment::domain::migration::MigrationStatus::Failed)
        }).await;
        assert!(failed, "{:?}", fulfillment_row(&app, &id).await);
        let shown = my_node(&app, "u-1").await;
        assert_eq!((shown["node"]["status"].as_str(), shown["hosting_status"].as_str()), (Some("active"), Some("node_active")));
        assert_eq!(shown["node"]["public_ip"].as_str(), Some(old_ip.as_str()));
        assert_eq!(shown["node"]["migration"]["status"], "failed");
        assert!(shown["node"]["migration"]["error_message"].is_string());
        let vpses = app.sims.sim.hosting.obox_nodes();
        assert_eq!(vpses.iter().map(|n| n.node_id.as_str()).collect::<Vec<_>>(), vec![old_node.as_str()]);
        // Dismissed by DELETE …/migrate; then a new migration may start.
        let (status, _) = app.user(Method::DELETE, "/api/v1/my/node/migrate", "u-1", None).await;
        assert_eq!(status, 200);
        assert!(my_node(&app, "u-1").await["node"].get("migration").is_none());
        let (status, body) = app.user(Method::DELETE, "/api/v1/my/node/migrate", "u-1", None).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("no_migration")));
        assert_eq!(fulfillment_row(&app, &id).await.node_id.as_deref(), Some(old_node.as_str()));
    }
}

on_both! {
    async fn a_late_new_vps_misses_its_deadline_and_is_deleted(b: Backend) {
        let app = TestApp::spawn_with(b, NodeTiming::default(), |c| c.engine.ready_timeout = Duration::from_secs(2)).await;
        let (id, old_node, _) = active_node(&app, "u-1", "sub-1").await;
        app.sims.sim.hosting.set_timing(NodeTiming { creating_ms: 60_000, ..NodeTiming::default() });
        let (status, _) = app.internal(Method::POST, &format!("/api/internal/resources/{id}/migrate"), Some(json!({"region": "eu-west-1"}))).await;
        assert_eq!(status, 202);
        let failed = wait_until(Duration::from_secs(20), || async {
            let r = fulfillment_row(&app, &id).await;
            r.migration.as_ref().is_some_and(|m| m.status == fulfillment::domain::migration::MigrationStatus::Failed)
        }).await;
        let r = fulfillment_row(&app, &id).await;
        assert!(failed, "{r:?}");
        assert!(r.migration.unwrap().error_message.unwrap().contains("not ready within"));
        assert_eq!(app.sims.sim.hosting.obox_nodes().iter().map(|n| n.node_id.clone()).collect::<Vec<_>>(), vec![old_node]);
    }
}

on_both! {
    async fn a_cancel_deletes_the_new_vps_and_changes_nothing_else(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.subscribe("u-1", "sub-1", "premium");
        let (id, old_node, old_ip) = active_node(&app, "u-1", "sub-1").await;
        app.sims.sim.hosting.set_timing(NodeTiming { creating_ms: 60_000, ..NodeTiming::default() });
        let (status, _) = app.user(Method::POST, &format!("/api/v1/my/nodes/{id}/migrate"), "u-1", Some(json!({"region": "eu-west-1"}))).await;
        assert_eq!(status, 202);
        assert!(wait_until(Duration::from_secs(20), || async { app.sims.sim.hosting.obox_nodes().len() == 2 }).await);
        let (status, body) = app.user(Method::DELETE, &format!("/api/v1/my/nodes/{id}/migrate"), "u-1", None).await;
        assert_eq!((status, body["success"].as_bool()), (200, Some(true)), "{body}");
        assert!(my_node(&app, "u-1").await["node"].get("migration").is_none(), "hidden at once");
        assert!(wait_until(Duration::from_secs(20), || async {
            app.sims.sim.hosting.obox_nodes().len() == 1 && fulfillment_row(&app, &id).await.migration.is_none()
        }).await);
        let r = fulfillment_row(&app, &id).await;
        assert_eq!((r.node_id.as_deref(), r.region.as_str()), (Some(old_node.as_str()), "ap-northeast-1"));
        assert_eq!(r.connection.public_ip.as_deref(), Some(old_ip.as_str()));
        assert_eq!(app.sims.sim.hosting.obox_nodes()[0].node_id, old_node);
        assert!(kinds(&app, &id).await.iter().any(|(k, _, a)| k == "migration_cancelled" && a == "user"));
    }
}

on_both! {
    async fn deleting_the_node_mid_migration_deletes_both_vpses(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.subscribe("u-1", "sub-1", "premium");
        let (id, _, _) = active_node(&app, "u-1", "sub-1").await;
        app.sims.sim.hosting.set_timing(NodeTiming { creating_ms: 60_000, ..NodeTiming::default() });
        app.user(Method::POST, "/api/v1/my/node/migrate", "u-1", Some(json!({"region": "eu-west-1"}))).await;
        assert!(wait_until(Duration::from_secs(20), || async { app.sims.sim.hosting.obox_nodes().len() == 2 }).await);
        let (status, _) = app.user(Method::DELETE, "/api/v1/my/node", "u-1", None).await;
        assert_eq!(status, 200);
        app.wait_status(&id, "deleted").await;
        assert!(app.sims.sim.hosting.obox_nodes().is_empty(), "both VPSes are gone");
        let calls = app.wait_callbacks("sub-1", 2).await;
        assert_eq!(calls.iter().map(|c| c.status.as_str()).collect::<Vec<_>>(), vec!["active", "deleted"]);
    }
}

on_both! {
    async fn bad_migration_requests_are_refused_and_change_nothing(b: Backend) {
        let app = TestApp::spawn_with(b, NodeTiming { creating_ms: 60_000, ..NodeTiming::default() }, |_| {}).await;
        app.sims.subscribe("u-1", "sub-1", "premium");
        let (_, body) = app.provision("u-1", "sub-1").await;
        let id = body["resource_id"].as_str().unwrap().to_owned();
        // Still being created: not active.
        let (status, body) = app.user(Method::POST, "/api/v1/my/node/migrate", "u-1", Some(json!({"region": "eu-west-1"}))).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("node_not_active")));
        for (body, code) in [
            (json!({"region": "mars-1"}), "unknown_region"),
            (json!({"region": 7}), "invalid_body"),
        ] {
            let (status, answer) = app.user(Method::POST, &format!("/api/v1/my/nodes/{id}/migrate"), "u-1", Some(body)).await;
            assert_eq!(status, 422, "{answer}");
            if code != "invalid_body" {
                assert_eq!(answer["code"], code);
            }
        }
        let (status, _) = app.internal(Method::POST, &format!("/api/internal/resources/{id}/migrate"), Some(json!({"plan_tier": "gold"}))).await;
        assert_eq!(status, 422);
        // Another user's node, or none.
        let (status, _) = app.user(Method::POST, &format!("/api/v1/my/nodes/{id}/migrate"), "u-2", Some(json!({"region": "us-east-1"}))).await;
        assert_eq!(status, 404);
        let (status, _) = app.user(Method::POST, "/api/v1/my/node/migrate", "u-2", Some(json!({"region": "us-east-1"}))).await;
        assert_eq!(status, 404);
        let (status, _) = app.internal(Method::POST, "/api/internal/resources/0190a0e0-0000-7000-8000-000000000001/migrate", None).await;
        assert_eq!(status, 404);
        let r = fulfillment_row(&app, &id).await;
        assert!(r.migration.is_none());
        assert!(kinds(&app, &id).await.iter().all(|(k, _, _)| !k.starts_with("migration")));
    }
}

on_both! {
    async fn the_live_stream_shows_the_migrations_progress_and_the_switch(b: Backend) {
        use crate::sse_client::{EventStream, PUSHED_WITHIN, initial};
        let app = TestApp::spawn(b).await;
        app.sims.subscribe("u-1", "sub-1", "premium");
        let (_, old_node, _) = active_node(&app, "u-1", "sub-1").await;
        app.sims.sim.hosting.set_timing(slow());
        let mut stream = EventStream::open(&app, "u-1").await;
        let (first, _) = initial(&mut stream).await;
        assert!(first.json()["node"].get("migration").is_none());
        let (status, _) = app.user(Method::POST, "/api/v1/my/node/migrate", "u-1", Some(json!({"region": "eu-west-1"}))).await;
        assert_eq!(status, 202);
        let mut seen = Vec::new();
        let last = loop {
            let e = stream.next_of("node", PUSHED_WITHIN).await
                .unwrap_or_else(|| panic!("the stream stalled after {seen:?}"));
            let doc = e.json();
            // Closed enums: the node stays active and node_active throughout.
            assert_eq!((doc["hosting_status"].as_str(), doc["node"]["status"].as_str()), (Some("node_active"), Some("active")), "{doc}");
            match doc["node"]["migration"]["status"].as_str() {
                Some(s) => {
                    if seen.last().map(String::as_str) != Some(s) {
                        seen.push(s.to_owned());
                    }
                    assert_eq!(doc["node"]["region"], "ap-northeast-1", "served by the old VPS: {doc}");
                }
                None => break doc,
            }
        };
        assert!(seen.first().is_some_and(|s| s == "creating"), "{seen:?}");
        assert!(seen.iter().any(|s| s == "installing"), "progress pushed step by step: {seen:?}");
        assert_eq!(last["node"]["region"], "eu-west-1", "the switch is pushed");
        let r = fulfillment_row(&app, last["node"]["resource_id"].as_str().unwrap()).await;
        assert_ne!(r.node_id.as_deref(), Some(old_node.as_str()));
    }
}

on_both! {
    async fn a_plan_ordered_while_the_node_comes_up_is_applied_once_it_is_active(b: Backend) {
        let app = TestApp::spawn_with(b, slow(), |_| {}).await;
        let (_, body) = app.provision("u-1", "sub-1").await;
        let id = body["resource_id"].as_str().unwrap().to_owned();
        // A renewal on another plan arrives while the VPS is still being created.
        let (status, _) = app.internal(Method::POST, "/api/internal/provision",
            Some(json!({"user_id": "u-1", "subscription_id": "sub-1", "app_source": "obox", "plan_tier": "basic",
                "region": "ap-northeast-1", "channel_tx_id": "renewal-1"}))).await;
        assert_eq!(status, 200);
        let moved = wait_until(Duration::from_secs(30), || async {
            let r = fulfillment_row(&app, &id).await;
            r.status == fulfillment::domain::Status::Active && r.plan_tier == "basic"
                && r.migration.is_none() && r.retire_node_id.is_none()
        })
        .await;
        let r = fulfillment_row(&app, &id).await;
        assert!(moved, "never moved to the ordered plan: {r:?}");
        assert_eq!(r.plan_wanted, None);
        let creates = app.sims.sim.hosting.creates();
        assert_eq!(creates.iter().map(|c| c.bundle_id.as_str()).collect::<Vec<_>>(), vec!["small_3_0", "nano_3_0"]);
        let vpses = app.sims.sim.hosting.obox_nodes();
        assert_eq!(vpses.len(), 1);
        assert_eq!(Some(vpses[0].node_id.as_str()), r.node_id.as_deref(), "the node is on the new VPS");
        assert_eq!(app.sims.sim.subscriptions.callbacks_for("sub-1").len(), 1, "one active callback");
    }
}

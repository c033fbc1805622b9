//! Hosting nodes end to end: the service and the simulators over real HTTP.

use std::time::Duration;

use fulfillment::sim::{Fault, NodeTiming, Op};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, wait_until};
use crate::on_both;

fn slow_nodes(creating_ms: u64) -> NodeTiming {
    NodeTiming {
        creating_ms,
        // Long enough that a loaded machine still sees the node installing.
        installing_ms: 1_000,
        ..NodeTiming::default()
    }
}

on_both! {
    async fn a_provisioned_node_becomes_active_and_is_reported(b: Backend) {
        let app = TestApp::spawn(b).await;
        let (status, body) = app.provision("u-1", "sub-1").await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "pending");
        let id = body["resource_id"].as_str().unwrap().to_owned();

        let r = app.wait_status(&id, "active").await;
        assert_eq!(r["traffic_limit_gb"], 3072);
        assert_eq!(r["api_port"], 8080);
        assert!(r["public_ip"].as_str().unwrap().starts_with("203.0.113."));
        assert!(r["ready_at"].is_string());

        let calls = app.wait_callbacks("sub-1", 1).await;
        assert_eq!(json!(calls[0]), json!({"subscription_id": "sub-1", "app": "obox", "status": "active",
            "message": "hosting node is active", "resource_id": id}));
        let creates = app.sims.sim.hosting.creates();
        assert_eq!(creates.len(), 1);
        assert_eq!((creates[0].bundle_id.as_str(), creates[0].region.as_str()), ("small_3_0", "ap-northeast-1"));
        assert_eq!(creates[0].resource_id, id);
        assert!(creates[0].callback_url.ends_with("/api/callback/node"));
        assert_eq!(creates[0].callback_token.len(), 64);
        // A repeated order returns the live resource.
        let (status, again) = app.provision("u-1", "sub-1").await;
        assert_eq!((status, again["resource_id"].as_str()), (200, Some(id.as_str())));
        assert_eq!(again["status"], "active");
    }
}

on_both! {
    async fn deprovision_deletes_the_vps_and_reports_the_reason(b: Backend) {
        let app = TestApp::spawn(b).await;
        let (_, body) = app.provision("u-1", "sub-1").await;
        let id = body["resource_id"].as_str().unwrap().to_owned();
        app.wait_status(&id, "active").await;
        assert_eq!(app.sims.sim.hosting.obox_nodes().len(), 1);

        let (status, body) = app
            .internal(Method::POST, "/api/internal/deprovision", Some(json!({"subscription_id": "sub-1", "reason": "subscription_expired"})))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["resource_id"], id);
        app.wait_status(&id, "deleted").await;
        assert!(app.sims.sim.hosting.obox_nodes().is_empty(), "no VPS is left billing");
        let calls = app.wait_callbacks("sub-1", 2).await;
        assert_eq!((calls[1].status.as_str(), calls[1].reason.as_deref()), ("deleted", Some("subscription_expired")));

        // A retried deprovision is still a success; an unknown subscription is a 404.
        let (status, body) = app.internal(Method::POST, "/api/internal/deprovision", Some(json!({"subscription_id": "sub-1"}))).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("deleted")));
        let (status, body) = app.internal(Method::POST, "/api/internal/deprovision", Some(json!({"subscription_id": "nope"}))).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("resource_not_found")));
    }
}

on_both! {
    async fn a_user_creates_watches_and_deletes_their_node(b: Backend) {
        let app = TestApp::spawn_with(b, slow_nodes(300), |_| {}).await;
        app.sims.subscribe("u-1", "sub-1", "standard");
        let (status, body) = app.user(Method::GET, "/api/v1/my/node", "u-1", None).await;
        assert_eq!((status, body["hosting_status"].as_str()), (200, Some("subscribed_no_node")));

        let (status, created) = app.user(Method::POST, "/api/v1/my/node", "u-1", Some(json!({"region": "eu-west-1"}))).await;
        assert_eq!(status, 200, "{created}");
        assert_eq!((created["success"].as_bool(), created["status"].as_str()), (Some(true), Some("creating")));
        let id = created["resource_id"].as_str().unwrap().to_owned();

        let (_, again) = app.user(Method::POST, "/api/v1/my/node", "u-1", Some(json!({"region": "eu-west-1"}))).await;
        assert_eq!(again["resource_id"], id, "a repeat while creating returns the same node");

        // Progress follows the lifecycle: at some point step 3 is in progress.
        let mut saw_installing = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut ok = false;
        while tokio::time::Instant::now() < deadline {
            let (_, b) = app.user(Method::GET, "/api/v1/my/node", "u-1", None).await;
            if b["creation_progress"]["current_step"] == 3 {
                assert_eq!(b["creation_progress"]["steps"][2]["status"], "in_progress");
                assert!(b["creation_progress"]["steps"][2]["started_at"].is_string());
                saw_installing = true;
            }
            if b["hosting_status"] == "node_active" {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok && saw_installing, "active after showing step 3 (saw it: {saw_installing})");

        let (status, body) = app.user(Method::POST, "/api/v1/my/node", "u-1", Some(json!({"region": "us-east-1"}))).await;
        assert_eq!((status, body["success"].as_bool(), body["status"].as_str()), (409, Some(false), Some("failed")));

        let (status, body) = app.user(Method::DELETE, "/api/v1/my/node", "u-1", None).await;
        assert_eq!((status, body["success"].as_bool()), (200, Some(true)));
        let (_, body) = app.user(Method::GET, "/api/v1/my/node", "u-1", None).await;
        assert_eq!(body["hosting_status"], "subscribed_no_node", "a node being deleted reads as no node");
        app.wait_status(&id, "deleted").await;
        assert!(app.sims.sim.hosting.obox_nodes().is_empty());
        let calls = app.wait_callbacks("sub-1", 2).await;
        assert_eq!((calls[1].status.as_str(), calls[1].reason.as_deref()), ("deleted", Some("user_initiated")));
        let (status, body) = app.user(Method::DELETE, "/api/v1/my/node", "u-1", None).await;
        assert_eq!((status, body["success"].as_bool()), (404, Some(false)));
    }
}

on_both! {
    async fn deleting_during_creation_leaves_no_vps(b: Backend) {
        let app = TestApp::spawn_with(b, slow_nodes(1_000), |_| {}).await;
        app.sims.subscribe("u-1", "sub-1", "premium");
        let (_, created) = app.user(Method::POST, "/api/v1/my/node", "u-1", Some(json!({"region": "us-east-1"}))).await;
        let id = created["resource_id"].as_str().unwrap().to_owned();
        // Wait until the create reached the hosting service, then delete.
        assert!(wait_until(Duration::from_secs(10), || async { !app.sims.sim.hosting.creates().is_empty() }).await);
        let (status, _) = app.user(Method::DELETE, "/api/v1/my/node", "u-1", None).await;
        assert_eq!(status, 200);
        app.wait_status(&id, "deleted").await;
        assert!(app.sims.sim.hosting.obox_nodes().is_empty(), "the VPS created meanwhile was deleted");
        // Whether or not the node came up first, the last word is "deleted".
        let reported = wait_until(Duration::from_secs(10), || async {
            app.sims.sim.subscriptions.callbacks_for("sub-1").last().is_some_and(|c| c.status == "deleted")
        })
        .await;
        assert!(reported, "{:?}", app.sims.sim.subscriptions.callbacks_for("sub-1"));
    }
}

on_both! {
    async fn a_failed_node_is_cleaned_up_reported_and_replaced(b: Backend) {
        let timing = NodeTiming { fail_rate: 1.0, ..NodeTiming::default() };
        let app = TestApp::spawn_with(b, timing, |_| {}).await;
        app.sims.subscribe("u-1", "sub-1", "basic");
        let (_, created) = app.user(Method::POST, "/api/v1/my/node", "u-1", Some(json!({"region": "us-west-2"}))).await;
        let id = created["resource_id"].as_str().unwrap().to_owned();
        let failed = app.wait_status(&id, "failed").await;
        assert_eq!(failed["error_message"], "simulated provisioning failure");
        let calls = app.wait_callbacks("sub-1", 1).await;
        assert_eq!((calls[0].status.as_str(), calls[0].reason.as_deref()), ("failed", Some("provision_failed")));
        assert_eq!(calls[0].error.as_deref(), Some("simulated provisioning failure"));
        assert!(wait_until(Duration::from_secs(10), || async { app.sims.sim.hosting.obox_nodes().is_empty() }).await,
            "the failed VPS is deleted");
        let (_, body) = app.user(Method::GET, "/api/v1/my/node", "u-1", None).await;
        assert_eq!(body["hosting_status"], "node_failed");
        assert!(body["message"].as_str().unwrap().contains("simulated provisioning failure"));

        app.sims.sim.hosting.set_timing(NodeTiming::default());
        let (status, replaced) = app.user(Method::POST, "/api/v1/my/node", "u-1", Some(json!({"region": "us-west-2"}))).await;
        assert_eq!(status, 200, "{replaced}");
        let new_id = replaced["resource_id"].as_str().unwrap().to_owned();
        assert_ne!(new_id, id);
        app.wait_status(&new_id, "active").await;
        app.wait_status(&id, "deleted").await;
        assert_eq!(app.sims.sim.hosting.obox_nodes().len(), 1);

        // The other way back from a failure: delete the failed node, then create anew.
        app.sims.sim.hosting.set_timing(NodeTiming { fail_rate: 1.0, ..NodeTiming::default() });
        app.sims.subscribe("u-2", "sub-2", "basic");
        let (_, created) = app.user(Method::POST, "/api/v1/my/node", "u-2", Some(json!({"region": "us-west-2"}))).await;
        let failed_id = created["resource_id"].as_str().unwrap().to_owned();
        app.wait_status(&failed_id, "failed").await;
        let (status, _) = app.user(Method::DELETE, "/api/v1/my/node", "u-2", None).await;
        assert_eq!(status, 200, "a failed node can be deleted");
        app.wait_status(&failed_id, "deleted").await;
        let (_, body) = app.user(Method::GET, "/api/v1/my/node", "u-2", None).await;
        assert_eq!(body["hosting_status"], "subscribed_no_node");
        app.sims.sim.hosting.set_timing(NodeTiming::default());
        let (status, again) = app.user(Method::POST, "/api/v1/my/node", "u-2", Some(json!({"region": "us-west-2"}))).await;
        assert_eq!(status, 200);
        app.wait_status(again["resource_id"].as_str().unwrap(), "active").await;
        let reasons: Vec<_> = app.wait_callbacks("sub-2", 3).await.into_iter().map(|c| (c.status, c.reason)).collect();
        assert_eq!(reasons, [
            ("failed".to_owned(), Some("provision_failed".to_owned())),
            ("deleted".to_owned(), Some("user_initiated".to_owned())),
            ("active".to_owned(), None),
        ]);
    }
}

on_both! {
    async fn fifty_concurrent_identical_orders_make_one_node(b: Backend) {
        let app = TestApp::spawn(b).await;
        let results = futures::future::join_all((0..50).map(|_| app.provision("u-1", "sub-1"))).await;
        let ids: std::collections::HashSet<_> = results
            .iter()
            .map(|(status, body)| {
                assert!(*status == 200 || *status == 202, "{status} {body}");
                body["resource_id"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(ids.len(), 1);
        let id = ids.into_iter().next().unwrap();
        app.wait_status(&id, "active").await;
        assert_eq!(app.sims.sim.hosting.creates().len(), 1, "one node was created upstream");
        let (_, list) = app.internal(Method::GET, "/api/internal/subscriptions/sub-1/resources", None).await;
        assert_eq!(list["resources"].as_array().unwrap().len(), 1);
    }
}

on_both! {
    async fn transient_upstream_faults_are_retried_without_duplicates(b: Backend) {
        let app = TestApp::spawn(b).await;
        let faults = &app.sims.sim.faults;
        faults.script(Op::CreateNode, [Fault::Error(500), Fault::Hang, Fault::Error(503)]);
        faults.script(Op::GetNode, [Fault::Error(502), Fault::Hang, Fault::Garbage]);
        faults.script(Op::ListNodes, [Fault::Error(500)]);
        let (_, body) = app.provision("u-1", "sub-1").await;
        let id = body["resource_id"].as_str().unwrap().to_owned();
        app.wait_status(&id, "active").await;
        assert_eq!(app.sims.sim.hosting.creates().len(), 1);
        assert_eq!(app.sims.sim.hosting.obox_nodes().len(), 1);

        faults.script(Op::DeleteNode, [Fault::Error(500), Fault::Hang]);
        app.internal(Method::POST, "/api/internal/deprovision", Some(json!({"subscription_id": "sub-1"}))).await;
        app.wait_status(&id, "deleted").await;
        assert!(app.sims.sim.hosting.obox_nodes().is_empty());
    }
}

on_both! {
    async fn a_create_whose_answer_was_lost_is_adopted_not_repeated(b: Backend) {
        // Whether the agent's ready report or our own look finds the node first, it is
        // adopted, never created twice, and deleted when the order ends.
        for send_callbacks in [false, true] {
            let timing = NodeTiming { send_callbacks, ..NodeTiming::default() };
            let app = TestApp::spawn_with(b, timing, |_| {}).await;
            app.sims.sim.faults.script(Op::CreateNode, [Fault::LostResponse, Fault::Garbage]);
            let (_, body) = app.provision("u-1", "sub-1").await;
            let id = body["resource_id"].as_str().unwrap().to_owned();
            app.wait_status(&id, "active").await;
            let adopted = wait_until(Duration::from_secs(10), || async {
                let events = app.store().events(id.parse().unwrap()).await.unwrap();
                events.iter().any(|e| e.kind == fulfillment::domain::EventKind::NodeAdopted)
            })
            .await;
            assert!(adopted, "the node from the lost answer was adopted (callbacks: {send_callbacks})");
            assert_eq!(app.sims.sim.hosting.creates().len(), 1, "the lost create was found, not repeated");
            app.internal(Method::POST, "/api/internal/deprovision", Some(json!({"subscription_id": "sub-1"}))).await;
            app.wait_status(&id, "deleted").await;
            assert!(app.sims.sim.hosting.obox_nodes().is_empty());
        }
    }
}

on_both! {
    async fn a_permanent_refusal_fails_the_node_and_reports_it(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.sim.faults.script(Op::CreateNode, [Fault::Error(400)]);
        let (_, body) = app.provision("u-1", "sub-1").await;
        let id = body["resource_id"].as_str().unwrap().to_owned();
        let r = app.wait_status(&id, "failed").await;
        assert!(r["error_message"].as_str().unwrap().contains("refused"), "{r}");
        let calls = app.wait_callbacks("sub-1", 1).await;
        assert_eq!(calls[0].status, "failed");
        assert!(app.sims.sim.hosting.obox_nodes().is_empty());
    }
}

on_both! {
    async fn a_node_not_ready_by_its_deadline_fails_and_is_deleted(b: Backend) {
        let app = TestApp::spawn_with(b, slow_nodes(60_000), |c| c.engine.ready_timeout = Duration::from_millis(600)).await;
        let (_, body) = app.provision("u-1", "sub-1").await;
        let id = body["resource_id"].as_str().unwrap().to_owned();
        let r = app.wait_status(&id, "failed").await;
        assert!(r["error_message"].as_str().unwrap().contains("not ready within"), "{r}");
        assert!(wait_until(Duration::from_secs(10), || async { app.sims.sim.hosting.obox_nodes().is_empty() }).await);
        let calls = app.wait_callbacks("sub-1", 1).await;
        assert_eq!(calls[0].status, "failed");
    }
}

on_both! {
    async fn callbacks_wait_out_a_subscription_service_outage_in_order(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.sim.faults.script(Op::Callback, std::iter::repeat_n(Fault::Error(503), 15));
        let (_, body) = app.provision("u-1", "sub-1").await;
        let id = body["resource_id"].as_str().unwrap().to_owned();
        app.wait_status(&id, "active").await;
        app.internal(Method::POST, "/api/internal/deprovision", Some(json!({"subscription_id": "sub-1"}))).await;
        app.wait_status(&id, "deleted").await;
        let calls = app.wait_callbacks("sub-1", 2).await;
        let statuses: Vec<_> = calls.iter().map(|c| c.status.as_str()).collect();
        assert_eq!(statuses, ["active", "deleted"]);
        // The acknowledgement is recorded just after the subscription service got it.
        let store = app.store();
        let drained = wait_until(Duration::from_secs(10), || async { store.outbox_backlog().await.unwrap() == 0 }).await;
        assert!(drained, "every callback is marked delivered");
    }
}

on_both! {
    async fn a_node_can_report_ready_itself_and_only_for_itself(b: Backend) {
        let timing = NodeTiming { creating_ms: 60_000, send_callbacks: false, ..NodeTiming::default() };
        let app = TestApp::spawn_with(b, timing, |_| {}).await;
        let (_, one) = app.provision("u-1", "sub-1").await;
        let (_, two) = app.provision("u-2", "sub-2").await;
        let (one, two) = (one["resource_id"].as_str().unwrap().to_owned(), two["resource_id"].as_str().unwrap().to_owned());
        assert!(wait_until(Duration::from_secs(10), || async { app.sims.sim.hosting.creates().len() == 2 }).await);
        let creates = app.sims.sim.hosting.creates();
        let token_of = |id: &str| creates.iter().find(|c| c.resource_id == id).unwrap().callback_token.clone();
        let report = |id: &str| json!({"resource_id": id, "public_ip": "198.51.100.7", "api_key": "k",
            "vless_port": 443, "ss_port": 8388, "public_key": "pk", "short_id": "ab"});
        let url = app.url("/api/callback/node/ready");

        let r = app.http.post(&url).bearer_auth(token_of(&two)).json(&report(&one)).send().await.unwrap();
        assert_eq!(r.status(), 403, "node two's credential cannot report on node one");
        let r = app.http.post(&url).bearer_auth("not-a-token").json(&report(&one)).send().await.unwrap();
        assert_eq!(r.status(), 403);
        let r = app.http.post(&url).json(&report(&one)).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(app.resource(&one).await["status"], "creating");

        let r = app.http.post(&url).bearer_auth(token_of(&one)).json(&report(&one)).send().await.unwrap();
        assert_eq!(crate::helpers::read(r).await, (200, json!({"status": "ok"})));
        let active = app.resource(&one).await;
        assert_eq!((active["status"].as_str(), active["public_ip"].as_str()), (Some("active"), Some("198.51.100.7")));
        let r = app.http.post(&url).bearer_auth(token_of(&one)).json(&report(&one)).send().await.unwrap();
        assert_eq!(r.status(), 200, "a repeated report is harmless");
        assert_eq!(app.wait_callbacks("sub-1", 1).await.len(), 1);

        // GET with the token in the query works too.
        let get = format!("{url}?resource_id={two}&public_ip=198.51.100.8&api_key=k2&token={}", token_of(&two));
        assert_eq!(app.http.get(&get).send().await.unwrap().status(), 200);
        app.wait_status(&two, "active").await;

        // A report never resurrects a deleted node.
        app.internal(Method::POST, "/api/internal/deprovision", Some(json!({"subscription_id": "sub-1"}))).await;
        app.wait_status(&one, "deleted").await;
        let r = app.http.post(&url).bearer_auth(token_of(&one)).json(&report(&one)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(app.resource(&one).await["status"], "deleted");
        let failed = app.http.post(app.url("/api/callback/node/failed")).bearer_auth(token_of(&one))
            .json(&json!({"resource_id": one, "error_message": "x"})).send().await.unwrap();
        assert_eq!(failed.status(), 200);
        assert_eq!(app.resource(&one).await["status"], "deleted");
    }
}

on_both! {
    async fn the_hosting_service_may_report_with_the_internal_secret(b: Backend) {
        let timing = NodeTiming { creating_ms: 60_000, send_callbacks: false, ..NodeTiming::default() };
        let app = TestApp::spawn_with(b, timing, |_| {}).await;
        let (_, body) = app.provision("u-1", "sub-1").await;
        let id = body["resource_id"].as_str().unwrap().to_owned();
        assert!(wait_until(Duration::from_secs(10), || async { app.sims.sim.hosting.creates().len() == 1 }).await);
        let r = app.http.post(app.url("/api/callback/node/failed"))
            .header("X-Internal-Secret", crate::helpers::INTERNAL_SECRET)
            .json(&json!({"resource_id": id, "error_message": "disk full"})).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let failed = app.wait_status(&id, "failed").await;
        assert_eq!(failed["error_message"], "disk full");
        assert!(wait_until(Duration::from_secs(10), || async { app.sims.sim.hosting.obox_nodes().is_empty() }).await);
    }
}

on_both! {
    async fn an_outage_of_the_subscription_service_never_hides_a_node(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.subscribe("u-1", "sub-1", "premium");
        let (_, created) = app.user(Method::POST, "/api/v1/my/node", "u-1", Some(json!({"region": "us-east-1"}))).await;
        app.wait_status(created["resource_id"].as_str().unwrap(), "active").await;
        app.sims.sim.faults.set_knobs(fulfillment::sim::Knobs { failure_rate: 1.0, ..Default::default() });
        let (status, body) = app.user(Method::GET, "/api/v1/my/node", "u-1", None).await;
        assert_eq!(status, 200);
        assert_eq!(body["hosting_status"], "node_active");
        assert_eq!(body["subscription"]["subscription_id"], "sub-1", "the last snapshot is served");
        // Someone never seen before: nothing to show, so the outage is reported.
        let (status, body) = app.user(Method::GET, "/api/v1/my/node", "stranger", None).await;
        assert_eq!((status, body["code"].as_str()), (503, Some("dependency_unavailable")));
        let (status, body) = app.user(Method::POST, "/api/v1/my/node", "stranger", Some(json!({"region": "us-east-1"}))).await;
        assert_eq!((status, body["success"].as_bool()), (503, Some(false)));
    }
}

on_both! {
    async fn an_expired_subscription_reads_as_expired(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.sim.subscriptions.set("u-1", "obox", "hosting", Some(fulfillment::domain::progress::SubscriptionSnapshot {
            subscription_id: "sub-1".into(),
            status: "active".into(),
            plan_tier: "premium".into(),
            expires_at: Some(chrono::Utc::now() - chrono::Duration::seconds(1)),
            auto_renew: false,
            quantity: None,
        }));
        let (_, body) = app.user(Method::GET, "/api/v1/my/node", "u-1", None).await;
        assert_eq!(body["hosting_status"], "subscribed_no_node");
        app.sims.sim.subscriptions.set("u-1", "obox", "hosting", None);
        let (_, body) = app.user(Method::GET, "/api/v1/my/node", "u-1", None).await;
        assert_eq!(body["hosting_status"], "subscription_expired");
        assert_eq!(body["has_subscription"], false);
        let (status, body) = app.user(Method::POST, "/api/v1/my/node", "u-1", Some(json!({"region": "us-east-1"}))).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("no_subscription")));
        let (_, body) = app.user(Method::GET, "/api/v1/my/node", "never", None).await;
        assert_eq!(body["hosting_status"], "no_subscription");
    }
}

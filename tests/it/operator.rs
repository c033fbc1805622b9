//! The operators' failed-work queue: what shows up, the retry and give-up levers, and the
//! history that records who pulled them.

use std::time::Duration;

use fulfillment::sim::{Fault, NodeTiming, Op};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, wait_until};
use crate::on_both;

async fn queue(app: &TestApp) -> Value {
    let (status, q) = app
        .internal(Method::GET, "/api/internal/operator/queue", None)
        .await;
    assert_eq!(status, 200, "{q}");
    q
}

fn queued<'a>(q: &'a Value, id: &str) -> Option<&'a Value> {
    q["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource_id"] == id)
}

on_both! {
    async fn stuck_work_is_listed_retried_and_given_up_on_with_a_history(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.subscribe("o-1", "sub-o1", "basic");
        // The hosting service keeps failing: the create is retried again and again.
        app.sims.sim.faults.script(Op::CreateNode, std::iter::repeat_n(Fault::Error(503), 10_000));
        let (_, resp) = app.provision("o-1", "sub-o1").await;
        let id = resp["resource_id"].as_str().unwrap().to_owned();
        assert!(wait_until(Duration::from_secs(20), || async {
            queued(&queue(&app).await, &id).is_some()
        }).await, "a resource retried over and over shows up");
        let q = queue(&app).await;
        let item = queued(&q, &id).unwrap();
        assert_eq!((item["why"].as_str(), item["status"].as_str()), (Some("retrying"), Some("creating")), "{item}");
        assert!(item["attempts"].as_i64().unwrap() >= 5);
        assert!(item["last_error"].as_str().unwrap().contains("503"), "{item}");

        let path = format!("/api/internal/operator/resources/{id}/retry");
        let (status, body) = app.internal(Method::POST, &path, Some(json!({"operator": "alice", "reason": "hosting is back"}))).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("ok")), "{body}");

        let path = format!("/api/internal/operator/resources/{id}/fail");
        let (status, body) = app.internal(Method::POST, &path, Some(json!({"operator": "bob", "reason": "region retired"}))).await;
        assert_eq!((status, body["resource"]["status"].as_str()), (200, Some("failed")), "{body}");
        assert_eq!(body["resource"]["error_message"], "failed by an operator: region retired");
        let calls = app.wait_callbacks("sub-o1", 1).await;
        assert_eq!((calls[0].status.as_str(), calls[0].reason.as_deref()), ("failed", Some("provision_failed")));
        // Cleanup runs: a failed resource holds nothing upstream.
        app.sims.sim.faults.clear();
        assert!(wait_until(Duration::from_secs(10), || async {
            app.store().resource(id.parse().unwrap()).await.unwrap().unwrap().upstream_released
        }).await);

        let (status, history) = app.internal(Method::GET, &format!("/api/internal/resources/{id}/events"), None).await;
        assert_eq!(status, 200);
        let events = history["events"].as_array().unwrap();
        let find = |kind: &str| events.iter().find(|e| e["kind"] == kind).cloned().unwrap_or_else(|| panic!("{kind} in {history}"));
        assert_eq!((find("operator_retry")["actor"].as_str(), find("operator_retry")["message"].as_str()),
            (Some("operator:alice"), Some("hosting is back")));
        assert_eq!(find("failed")["actor"], "operator:bob");
        assert_eq!(events[0]["kind"], "provision_requested");
        assert!(events.iter().any(|e| e["kind"] == "attempt_failed"));

        // Failed and still meant to exist: in the queue, as failed.
        let q = queue(&app).await;
        assert_eq!(queued(&q, &id).unwrap()["why"], "failed");

        // Only a resource being created can be given up on.
        let (status, body) = app.internal(Method::POST, &format!("/api/internal/operator/resources/{id}/fail"), None).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("not_in_progress")));
    }
}

on_both! {
    async fn refused_callbacks_show_up_in_the_queue(b: Backend) {
        let app = TestApp::spawn_with(b, NodeTiming::default(), |_| {}).await;
        app.sims.sim.faults.script(Op::Callback, std::iter::repeat_n(Fault::Error(400), 10_000));
        app.sims.subscribe("o-2", "sub-o2", "basic");
        let (_, resp) = app.provision("o-2", "sub-o2").await;
        app.wait_status(resp["resource_id"].as_str().unwrap(), "active").await;
        assert!(wait_until(Duration::from_secs(20), || async {
            queue(&app).await["callbacks"].as_array().unwrap().iter().any(|c| c["subscription_id"] == "sub-o2")
        }).await);
        let q = queue(&app).await;
        let cb = q["callbacks"].as_array().unwrap().iter().find(|c| c["subscription_id"] == "sub-o2").unwrap();
        assert_eq!(cb["callback"]["status"], "active");
        assert!(cb["last_error"].as_str().unwrap().contains("400"), "{cb}");
    }
}

on_both! {
    async fn operator_endpoints_refuse_bad_input(b: Backend) {
        let app = TestApp::spawn(b).await;
        let missing = uuid::Uuid::now_v7();
        for (method, path, body, status, code) in [
            (Method::POST, format!("/api/internal/operator/resources/{missing}/retry"), None, 404, "resource_not_found"),
            (Method::POST, "/api/internal/operator/resources/nope/fail".to_owned(), None, 404, "resource_not_found"),
            (Method::GET, "/api/internal/resources/nope/events".to_owned(), None, 404, "resource_not_found"),
            (Method::POST, format!("/api/internal/operator/resources/{missing}/retry"), Some(json!({"operator": "x".repeat(300)})), 422, "operator_too_long"),
            (Method::POST, format!("/api/internal/operator/resources/{missing}/retry"), Some(json!({"reason": "r".repeat(1001)})), 422, "reason_too_long"),
            (Method::POST, format!("/api/internal/operator/resources/{missing}/retry"), Some(json!({"operator": 7})), 422, "invalid_field"),
        ] {
            let (got, resp) = app.internal(method.clone(), &path, body).await;
            assert_eq!((got, resp["code"].as_str()), (status, Some(code)), "{method} {path}: {resp}");
        }
        let r = app.http.get(app.url("/api/internal/operator/queue")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(queue(&app).await["resources"], json!([]));
    }
}

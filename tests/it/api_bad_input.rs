//! Bad input gets a clear 4xx `{"error", "code"}` and changes nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{INTERNAL_SECRET, TestApp, read};
use crate::on_both;

async fn post_raw(
    app: &TestApp,
    path: &str,
    body: impl Into<reqwest::Body>,
    user: Option<&str>,
) -> (u16, Value) {
    let mut req = app
        .http
        .post(app.url(path))
        .header("Content-Type", "application/json")
        .body(body);
    req = match user {
        Some(u) => req.bearer_auth(app.token(u)),
        None => req.header("X-Internal-Secret", INTERNAL_SECRET),
    };
    read(req.send().await.unwrap()).await
}

on_both! {
    async fn malformed_orders_are_refused_and_record_nothing(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.subscribe("u-1", "sub-1", "premium");
        let long_user = "x".repeat(257);
        let big = format!("{{\"user_id\": \"u-1\", \"pad\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
        let cases: Vec<(String, u16, &str)> = vec![
            ("{not json".into(), 400, "malformed_json"),
            ("[1,2".into(), 400, "malformed_json"),
            ("[1, 2]".into(), 422, "invalid_body"),
            ("\"text\"".into(), 422, "invalid_body"),
            (json!({"user_id": 123, "subscription_id": "sub-1"}).to_string(), 422, "invalid_field"),
            (json!({"user_id": "u-1", "subscription_id": "sub-1", "amount": "ten"}).to_string(), 422, "invalid_field"),
            (json!({"subscription_id": "sub-1"}).to_string(), 422, "missing_user_id"),
            (json!({"user_id": long_user, "subscription_id": "sub-1"}).to_string(), 422, "user_id_too_long"),
            (json!({"user_id": "u-1"}).to_string(), 422, "missing_subscription_id"),
            (json!({"user_id": "u-1", "subscription_id": "s".repeat(10_000)}).to_string(), 422, "subscription_id_too_long"),
            (json!({"user_id": "u-1", "subscription_id": "sub-1", "region": "mars-1"}).to_string(), 422, "unknown_region"),
            (json!({"user_id": "u-1", "app_source": "otun"}).to_string(), 422, "missing_subscription_id"),
            (json!({"user_id": "u-1", "subscription_id": "sub-1", "app_source": "otun", "expire_days": 0}).to_string(), 422, "invalid_expire_days"),
            (json!({"user_id": "u-1", "subscription_id": "sub-1", "app_source": "otun", "expire_days": 99_999}).to_string(), 422, "invalid_expire_days"),
            (json!({"user_id": "u-1", "subscription_id": "sub-1", "resource_type": "vpn_user", "traffic_limit": -1}).to_string(), 422, "invalid_traffic_limit"),
            (json!({"user_id": "u-1", "subscription_id": "sub-1", "app_source": "otun", "user_email": "not-an-address"}).to_string(), 422, "invalid_email"),
            (json!({"user_id": "u-1", "subscription_id": "sub-1", "app_source": "otun", "period_start": "yesterday", "period_end": "today"}).to_string(), 422, "invalid_period"),
            (json!({"user_id": "u-1", "subscription_id": "sub-1", "app_source": "otun", "months": "one"}).to_string(), 422, "invalid_field"),
            (json!({"user_id": "u-1", "subscription_id": "sub-1", "app_source": "otun", "device_id": "d".repeat(300)}).to_string(), 422, "field_too_long"),
            (big, 413, "body_too_large"),
        ];
        for (body, status, code) in cases {
            let preview: String = body.chars().take(60).collect();
            let (got, resp) = post_raw(&app, "/api/internal/provision", body, None).await;
            assert_eq!((got, resp["code"].as_str()), (status, Some(code)), "{preview}: {resp}");
            assert!(resp["error"].as_str().is_some_and(|e| !e.is_empty()), "{resp}");
        }
        let (status, resp) = post_raw(&app, "/api/internal/deprovision", json!({"subscription_id": "sub-1", "reason": "because"}).to_string(), None).await;
        assert_eq!((status, resp["code"].as_str()), (422, Some("invalid_reason")));
        let (status, resp) = post_raw(&app, "/api/internal/deprovision", json!({"reason": "admin"}).to_string(), None).await;
        assert_eq!((status, resp["code"].as_str()), (422, Some("missing_subscription_id")));
        let (status, resp) = post_raw(&app, "/api/internal/deprovision", json!({"subscription_id": "s".repeat(10_000)}).to_string(), None).await;
        assert_eq!((status, resp["code"].as_str()), (422, Some("subscription_id_too_long")));
        let (status, resp) = app.internal(Method::GET, &format!("/api/internal/users/{}/resources", "u".repeat(10_000)), None).await;
        assert_eq!((status, resp["code"].as_str()), (422, Some("user_id_too_long")));

        // The user API keeps its own refusal shape.
        let (status, resp) = post_raw(&app, "/api/v1/my/node", "{\"region\": ", Some("u-1")).await;
        assert_eq!((status, resp["success"].as_bool(), resp["status"].as_str(), resp["code"].as_str()),
            (400, Some(false), Some("failed"), Some("malformed_json")));
        let (status, resp) = post_raw(&app, "/api/v1/my/node", json!({"region": 7}).to_string(), Some("u-1")).await;
        assert_eq!((status, resp["code"].as_str()), (422, Some("invalid_field")));
        let (status, resp) = post_raw(&app, "/api/v1/my/node", json!({"region": "mars-1"}).to_string(), Some("u-1")).await;
        assert_eq!((status, resp["success"].as_bool(), resp["code"].as_str()), (422, Some(false), Some("unknown_region")));

        let (status, resp) = app.internal(Method::GET, "/api/internal/resources/not-a-uuid", None).await;
        assert_eq!((status, resp["code"].as_str()), (404, Some("resource_not_found")));
        let (status, resp) = app.internal(Method::GET, &format!("/api/internal/resources/{}", uuid::Uuid::now_v7()), None).await;
        assert_eq!((status, resp["code"].as_str()), (404, Some("resource_not_found")));

        for (path, body, status, code) in [
            ("/api/callback/node/ready", json!({"resource_id": uuid::Uuid::now_v7().to_string()}), 422, "missing_public_ip"),
            ("/api/callback/node/ready", json!({"resource_id": "x", "public_ip": "not-an-ip"}), 422, "invalid_public_ip"),
            ("/api/callback/node/ready", json!({"resource_id": "x", "public_ip": "1.2.3.4"}), 404, "resource_not_found"),
            ("/api/callback/node/failed", json!({"resource_id": uuid::Uuid::now_v7().to_string()}), 404, "resource_not_found"),
        ] {
            let (got, resp) = post_raw(&app, path, body.to_string(), None).await;
            assert_eq!((got, resp["code"].as_str()), (status, Some(code)), "{path} {body}");
        }

        // Nothing was recorded, nothing was asked of the hosting service.
        let (_, list) = app.internal(Method::GET, "/api/internal/subscriptions/sub-1/resources", None).await;
        assert_eq!(list, json!({"resources": []}));
        let (_, mine) = app.user(Method::GET, "/api/v1/my/node", "u-1", None).await;
        assert_eq!(mine["hosting_status"], "subscribed_no_node");
        assert!(app.sims.sim.hosting.creates().is_empty());
        assert!(app.sims.sim.vpn.creates().is_empty());
        let (_, list) = app.internal(Method::GET, "/api/internal/entitlements?user_id=u-1", None).await;
        assert_eq!(list, json!({"entitlements": []}));
    }
}

on_both! {
    async fn an_idempotency_key_replays_the_first_answer(b: Backend) {
        let app = TestApp::spawn(b).await;
        let order = json!({"user_id": "u-1", "subscription_id": "sub-1", "region": "us-east-1"});
        let send = |body: Value| {
            let app = &app;
            async move {
                let r = app.http.post(app.url("/api/internal/provision"))
                    .header("X-Internal-Secret", INTERNAL_SECRET)
                    .header("Idempotency-Key", "order-42")
                    .json(&body).send().await.unwrap();
                read(r).await
            }
        };
        let first = send(order.clone()).await;
        assert_eq!(first.0, 202);
        crate::helpers::wait_until(std::time::Duration::from_secs(10), || async {
            app.resource(first.1["resource_id"].as_str().unwrap()).await["status"] == "active"
        })
        .await;
        let again = send(order.clone()).await;
        assert_eq!(again, first, "the same key and body get the same answer, even after progress");
        let other = send(json!({"user_id": "u-1", "subscription_id": "sub-2"})).await;
        assert_eq!((other.0, other.1["code"].as_str()), (422, Some("idempotency_key_reused")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_json() {
    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let (status, body) = read(app.http.get(app.url("/nope")).send().await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = read(app.http.put(app.url("/health")).send().await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
}

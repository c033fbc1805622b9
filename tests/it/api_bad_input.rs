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
    send_raw(app, Method::POST, path, body, user).await
}

async fn send_raw(
    app: &TestApp,
    method: Method,
    path: &str,
    body: impl Into<reqwest::Body>,
    user: Option<&str>,
) -> (u16, Value) {
    let mut req = app
        .http
        .request(method, app.url(path))
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
        let (status, resp) = app.internal(Method::GET, &format!("/api/internal/users/{}/resources", "u".repeat(300)), None).await;
        assert_eq!((status, resp["code"].as_str()), (422, Some("user_id_too_long")));
        // Past 8 KiB the target itself is refused (CONTRACTS.md §4.7).
        let (status, resp) = app.internal(Method::GET, &format!("/api/internal/users/{}/resources", "u".repeat(10_000)), None).await;
        assert_eq!((status, resp["code"].as_str()), (414, Some("uri_too_long")));

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

on_both! {
    async fn bad_input_on_the_vpn_endpoints_changes_nothing(b: Backend) {
        let app = TestApp::spawn(b).await;
        let order = json!({"user_id": "v-1", "subscription_id": "sub-v", "app_source": "otun",
            "plan_tier": "premium", "channel": "stripe", "expire_days": 30});
        let (_, vpn) = app.internal(Method::POST, "/api/internal/provision", Some(order)).await;
        let vpn_id = vpn["resource_id"].as_str().unwrap().to_owned();
        let uuid = vpn["vpn_user_id"].as_str().unwrap().to_owned();
        app.sims.subscribe("h-1", "sub-h", "basic");
        let (_, node) = app.provision("h-1", "sub-h").await;
        let node_id = node["resource_id"].as_str().unwrap().to_owned();
        let before = app.sims.sim.vpn.user(&uuid).unwrap();
        let entitlements_before = app.internal(Method::GET, "/api/internal/entitlements", None).await;

        let long = "x".repeat(300);
        let adjust = format!("/api/internal/resources/{vpn_id}/vpn");
        let cases: Vec<(Method, String, String, u16, &str)> = vec![
            (Method::PUT, adjust.clone(), "{oops".into(), 400, "malformed_json"),
            (Method::PUT, adjust.clone(), "{}".into(), 422, "nothing_to_change"),
            (Method::PUT, adjust.clone(), json!({"traffic_limit": "big"}).to_string(), 422, "invalid_field"),
            (Method::PUT, adjust.clone(), json!({"traffic_limit": -5}).to_string(), 422, "invalid_traffic_limit"),
            (Method::PUT, adjust.clone(), json!({"extend_days": 0}).to_string(), 422, "invalid_extend_days"),
            (Method::PUT, "/api/internal/resources/nope/vpn".into(), json!({"extend_days": 1}).to_string(), 404, "resource_not_found"),
            (Method::PUT, format!("/api/internal/resources/{node_id}/vpn"), json!({"extend_days": 1}).to_string(), 422, "not_a_vpn_user"),
            (Method::PUT, "/api/internal/users/v-1/email".into(), "{}".into(), 422, "missing_email"),
            (Method::PUT, "/api/internal/users/v-1/email".into(), json!({"email": "nobody"}).to_string(), 422, "invalid_email"),
            (Method::PUT, "/api/internal/users/v-1/email".into(), json!({"email": 7}).to_string(), 422, "invalid_field"),
            (Method::PUT, format!("/api/internal/users/{long}/email"), json!({"email": "a@b.c"}).to_string(), 422, "user_id_too_long"),
            (Method::POST, "/api/internal/entitlements/gift".into(), json!({"traffic_gb": 1, "duration_days": 1}).to_string(), 422, "missing_user_id"),
            (Method::POST, "/api/internal/entitlements/gift".into(), json!({"user_id": "v-1", "traffic_gb": 0, "duration_days": 1}).to_string(), 422, "invalid_traffic_gb"),
            (Method::POST, "/api/internal/entitlements/gift".into(), json!({"user_id": "v-1", "traffic_gb": 1, "duration_days": 0}).to_string(), 422, "invalid_duration_days"),
            (Method::POST, "/api/internal/entitlements/gift".into(), json!({"user_id": "v-1", "traffic_gb": 1, "duration_days": 1, "service_tier": "gold"}).to_string(), 422, "invalid_service_tier"),
            (Method::POST, "/api/internal/entitlements/gift".into(), json!({"user_id": "v-1", "traffic_gb": "1", "duration_days": 1}).to_string(), 422, "invalid_field"),
            (Method::POST, "/api/internal/entitlements/gift".into(), json!({"user_id": "v-1", "traffic_gb": 1, "duration_days": 1, "note": "n".repeat(1001)}).to_string(), 422, "note_too_long"),
            (Method::POST, "/api/internal/entitlements/gift".into(), format!("{{\"user_id\": \"{}\"}}", "x".repeat(100_000)), 413, "body_too_large"),
            (Method::GET, "/api/internal/entitlements?status=bogus".into(), String::new(), 422, "invalid_status"),
            (Method::GET, format!("/api/internal/entitlements?user_id={long}"), String::new(), 422, "user_id_too_long"),
            (Method::GET, "/api/internal/vpn/user/nobody/status".into(), String::new(), 404, "no_vpn"),
            (Method::GET, "/api/internal/vpn/user/nobody/subscribe".into(), String::new(), 404, "no_vpn"),
        ];
        for (method, path, body, status, code) in cases {
            let (got, resp) = send_raw(&app, method.clone(), &path, body, None).await;
            let short: String = path.chars().take(60).collect();
            assert_eq!((got, resp["code"].as_str()), (status, Some(code)), "{method} {short}: {resp}");
            assert!(resp["error"].as_str().is_some_and(|e| !e.is_empty()), "{resp}");
        }
        // The internal VPN lookups keep their `success: false` shape.
        let (_, resp) = app.internal(Method::GET, "/api/internal/vpn/user/nobody/status", None).await;
        assert_eq!(resp["success"], false);
        // Without the secret, nothing.
        for (method, path) in [(Method::GET, "/api/internal/entitlements"), (Method::POST, "/api/internal/entitlements/gift"),
            (Method::PUT, "/api/internal/users/v-1/email"), (Method::GET, "/api/internal/vpn/user/v-1/status")] {
            let r = app.http.request(method, app.url(path)).json(&json!({})).send().await.unwrap();
            assert_eq!(r.status(), 401, "{path}");
        }
        // The user API: no VPN, no config; no token, nothing.
        let (status, resp) = app.user(Method::GET, "/api/v1/my/vpn/subscribe", "nobody", None).await;
        assert_eq!((status, resp["code"].as_str()), (404, Some("no_vpn")));
        let (status, resp) = app.user(Method::GET, "/api/v1/my/vpn", "nobody", None).await;
        assert_eq!((status, resp["vpn_status"].as_str(), resp["has_vpn_user"].as_bool()), (200, Some("no_subscription"), Some(false)));
        let r = app.http.get(app.url("/api/v1/my/vpn")).send().await.unwrap();
        assert_eq!(r.status(), 401);

        // Nothing changed.
        assert_eq!(app.sims.sim.vpn.user(&uuid).unwrap(), before);
        assert_eq!(app.sims.sim.vpn.users().len(), 1);
        assert_eq!(app.internal(Method::GET, "/api/internal/entitlements", None).await, entitlements_before);
    }
}

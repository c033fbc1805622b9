//! What a hostile client and a careless caller found (issue 9), each pinned by a test:
//! absurd counters, control characters, forged token claims, path encodings, nonsense
//! values, node-supplied text, and a dead engine loop.

use std::time::Duration;

use fulfillment::sim::NodeTiming;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, INTERNAL_SECRET, JWT_SECRET, TestApp, quiet_node, read, wait_until};
use crate::on_both;

/// Far beyond what any interface moves between reboots (`domain::input::MAX_COUNTER`).
const MAX_COUNTER: i64 = 1 << 60;

async fn post_as_node(app: &TestApp, token: &str, path: &str, body: Value) -> (u16, Value) {
    let req = app.http.post(app.url(path)).bearer_auth(token).json(&body);
    read(req.send().await.unwrap()).await
}

/// The node can still be read, shown and deleted through the API.
async fn assert_node_still_deletable(app: &TestApp, id: &str, user: &str) {
    let (status, r) = app
        .internal(Method::GET, &format!("/api/internal/resources/{id}"), None)
        .await;
    assert_eq!(status, 200, "{r}");
    let (status, mine) = app.user(Method::GET, "/api/v1/my/node", user, None).await;
    assert_eq!(
        (status, mine["hosting_status"].as_str()),
        (200, Some("node_active")),
        "{mine}"
    );
    let (status, resp) = app
        .user(Method::DELETE, "/api/v1/my/node", user, None)
        .await;
    assert_eq!(status, 200, "{resp}");
    app.wait_status(id, "deleted").await;
}

on_both! {
    async fn absurd_counters_are_refused_and_huge_ones_never_break_the_row(b: Backend) {
        let (app, id, token) = quiet_node(b, "h-1").await;
        let stats = |rx: i64, tx: i64| json!({"resource_id": id, "rx_bytes": rx, "tx_bytes": tx});
        for (rx, tx) in [(i64::MAX, 0), (0, i64::MAX), (MAX_COUNTER + 1, 0), (-1, 0)] {
            let (status, resp) = post_as_node(&app, &token, "/api/callback/node/stats", stats(rx, tx)).await;
            assert_eq!((status, resp["code"].as_str()), (422, Some("invalid_counter")), "{rx} {tx}: {resp}");
        }
        let (status, resp) = post_as_node(&app, &token, "/api/callback/node/stats",
            json!({"resource_id": id, "rx_bytes": 1e300, "tx_bytes": 0})).await;
        assert_eq!(status, 422, "{resp}");
        // The largest counters accepted, reset and grown again and again: the total would
        // overflow an i64 after four rounds; it saturates instead, and every report is taken.
        for round in 0..12 {
            let (rx, tx) = if round % 2 == 0 { (MAX_COUNTER, MAX_COUNTER) } else { (0, 0) };
            let (status, resp) = post_as_node(&app, &token, "/api/callback/node/stats", stats(rx, tx)).await;
            assert_eq!(status, 200, "round {round}: {resp}");
        }
        let r = app.resource(&id).await;
        let used = r["traffic_used_gb"].as_f64().unwrap();
        assert!((used - i64::MAX as f64 / (1u64 << 30) as f64).abs() < 1.0, "saturated: {r}");
        // Later reports still count (they add nothing to a saturated total, and fail nothing).
        let (status, _) = post_as_node(&app, &token, "/api/callback/node/stats", stats(5, 5)).await;
        assert_eq!(status, 200);
        assert_node_still_deletable(&app, &id, "h-1").await;
    }
}

on_both! {
    async fn a_stored_counter_out_of_integer_range_still_decodes_and_deletes(b: Backend) {
        let (app, id, token) = quiet_node(b, "h-2").await;
        // What the earlier SQL arithmetic left behind on SQLite: a REAL past i64::MAX.
        // PostgreSQL's bigint cannot hold it, so there the largest value stands in.
        let value = if b == Backend::Sqlite { "9.3e18" } else { "9223372036854775807" };
        let sql = format!("update resources set traffic_used = {value} where id = '{id}'");
        assert_eq!(app.db.exec(&sql).await, Ok(1));
        // Metering goes on from the saturated value, and the node can still be deleted.
        let stats = json!({"resource_id": id, "rx_bytes": 7, "tx_bytes": 7});
        let (status, resp) = post_as_node(&app, &token, "/api/callback/node/stats", stats).await;
        assert_eq!(status, 200, "{resp}");
        assert_node_still_deletable(&app, &id, "h-2").await;
    }
}

/// Every string a provision order carries, each with a NUL, a CR/LF and an ESC.
fn poisoned_orders() -> Vec<(String, Value)> {
    let base = json!({"user_id": "u-c", "subscription_id": "sub-c", "user_email": "c@example.com",
        "app_source": "otun", "channel": "stripe", "plan_tier": "premium", "expire_days": 30,
        "channel_tx_id": "tx-1", "period_start": "2026-01-01T00:00:00Z",
        "period_end": "2026-02-01T00:00:00Z", "device_id": "dev-1", "product_id": "p",
        "currency": "usd", "region": "ap-northeast-1"});
    let fields = [
        "user_id",
        "subscription_id",
        "user_email",
        "channel_tx_id",
        "period_start",
        "period_end",
        "device_id",
        "product_id",
        "currency",
        "channel",
        "region",
    ];
    let mut cases = Vec::new();
    for app_source in ["otun", "obox"] {
        for field in fields {
            for poison in ["\u{0}", "\r\n", "\u{1b}[31m"] {
                let mut body = base.clone();
                body["app_source"] = json!(app_source);
                body[field] = json!(format!("{}{poison}", body[field].as_str().unwrap()));
                cases.push((format!("{app_source} {field} {poison:?}"), body));
            }
        }
    }
    // A NUL first (SQLite's `length()` once choked on it) and in a key.
    cases.push((
        "leading NUL".into(),
        json!({"user_id": "\u{0}u", "subscription_id": "s"}),
    ));
    cases.push((
        "NUL in a key".into(),
        json!({"user_id": "u", "subscription_id": "s", "x\u{0}": 1}),
    ));
    cases
}

on_both! {
    async fn control_characters_are_refused_everywhere_and_change_nothing(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.subscribe("u-c", "sub-c", "premium");
        app.sims.subscribe_vpn("u-c", "sub-c", "premium");
        let before = app.db.row_counts().await;
        for (what, body) in poisoned_orders() {
            let (status, resp) = app.internal(Method::POST, "/api/internal/provision", Some(body)).await;
            assert_eq!((status, resp["code"].as_str()), (422, Some("control_characters")), "{what}: {resp}");
        }
        let bodies = [
            ("/api/internal/deprovision", json!({"subscription_id": "sub\u{0}"})),
            ("/api/internal/entitlements/gift", json!({"user_id": "u\u{0}", "traffic_gb": 1, "duration_days": 1})),
            ("/api/internal/entitlements/gift", json!({"user_id": "u", "email": "a@b\r\n", "traffic_gb": 1, "duration_days": 1})),
            ("/api/internal/entitlements/gift", json!({"user_id": "u", "service_tier": "premium\u{0}", "traffic_gb": 1, "duration_days": 1})),
        ];
        for (path, body) in bodies {
            let (status, resp) = app.internal(Method::POST, path, Some(body.clone())).await;
            assert_eq!((status, resp["code"].as_str()), (422, Some("control_characters")), "{path} {body}: {resp}");
        }
        let (status, resp) = app.internal(Method::PUT, "/api/internal/users/u-c/email", Some(json!({"email": "x@y\u{0}"}))).await;
        assert_eq!((status, resp["code"].as_str()), (422, Some("control_characters")), "{resp}");
        let (status, resp) = app.internal(Method::GET, "/api/internal/entitlements?user_id=u%00&status=active", None).await;
        assert_eq!((status, resp["code"].as_str()), (422, Some("control_characters")), "{resp}");
        // Path ids: a control character names nothing we have.
        for path in ["/api/internal/users/u%00c/resources", "/api/internal/subscriptions/s%00/resources",
            "/api/internal/vpn/user/u%0D%0A/status", "/api/internal/vpn/user/%00/subscribe",
            "/api/internal/resources/%00", "/api/internal/resources/%1B/events"] {
            let (status, resp) = app.internal(Method::GET, path, None).await;
            assert_eq!(status, 404, "{path}: {resp}");
            assert!(resp["error"].is_string() && resp["code"].is_string(), "{path}: {resp}");
        }
        let (status, resp) = app.internal(Method::PUT, "/api/internal/users/u%00/email", Some(json!({"email": "a@b.c"}))).await;
        assert_eq!(status, 404, "{resp}");
        // A validly signed token whose user holds a NUL.
        let token = sign(json!({"uid": "u\u{0}c", "exp": now() + 600}), hs256());
        assert_eq!(call_with_token(&app, &token).await.0, 401);
        assert_eq!(app.db.row_counts().await, before, "nothing was written");
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An HS256 token with any claims and header fields, signed with the service's secret.
fn sign(claims: Value, header: jsonwebtoken::Header) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn hs256() -> jsonwebtoken::Header {
    jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
}

async fn call_with_token(app: &TestApp, token: &str) -> (u16, Value) {
    let req = app.http.get(app.url("/api/v1/my/vpn")).bearer_auth(token);
    read(req.send().await.unwrap()).await
}

#[tokio::test]
async fn token_claims_are_checked_to_the_letter() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let header = hs256();
    let crit = jsonwebtoken::Header {
        crit: Some(vec!["exp".into()]),
        ..hs256()
    };
    let good = sign(json!({"uid": "u-t", "exp": now() + 600}), header.clone());
    assert_eq!(
        call_with_token(&app, &good).await.0,
        200,
        "the signer is right"
    );
    let sub_only = sign(json!({"sub": "u-t", "exp": now() + 600}), header.clone());
    assert_eq!(
        call_with_token(&app, &sub_only).await.0,
        200,
        "sub alone names the user"
    );
    let refused = [
        (
            "nbf in the future",
            json!({"uid": "u-t", "exp": now() + 600, "nbf": now() + 300}),
            header.clone(),
        ),
        (
            "crit header",
            json!({"uid": "u-t", "exp": now() + 600}),
            crit,
        ),
        (
            "numeric uid",
            json!({"uid": 42, "sub": "u-t", "exp": now() + 600}),
            header.clone(),
        ),
        (
            "array uid",
            json!({"uid": ["u-t"], "sub": "u-t", "exp": now() + 600}),
            header.clone(),
        ),
        (
            "object uid",
            json!({"uid": {"id": "u-t"}, "sub": "u-t", "exp": now() + 600}),
            header.clone(),
        ),
        (
            "numeric sub",
            json!({"sub": 42, "exp": now() + 600}),
            header.clone(),
        ),
        (
            "blank uid",
            json!({"uid": " ", "exp": now() + 600}),
            header.clone(),
        ),
        (
            "uid with LF",
            json!({"uid": "u\nt", "exp": now() + 600}),
            header.clone(),
        ),
        ("no exp", json!({"uid": "u-t"}), header.clone()),
    ];
    for (what, claims, header) in refused {
        let (status, resp) = call_with_token(&app, &sign(claims, header)).await;
        assert_eq!(status, 401, "{what}: {resp}");
        assert!(resp["code"].is_string(), "{what}: {resp}");
    }
    let nbf_passed = sign(
        json!({"uid": "u-t", "exp": now() + 600, "nbf": now() - 5}),
        header,
    );
    assert_eq!(
        call_with_token(&app, &nbf_passed).await.0,
        200,
        "nbf in the past is fine"
    );
}

#[tokio::test]
async fn every_extractor_rejection_is_our_json() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for path in [
        "/api/internal/resources/%ff",
        "/api/internal/users/%C3%28/resources",
        "/api/internal/subscriptions/%ff%fe/resources",
        "/api/internal/resources/%ff/events",
    ] {
        let resp = app
            .http
            .get(app.url(path))
            .header("X-Internal-Secret", INTERNAL_SECRET)
            .send()
            .await
            .unwrap();
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        let (status, body) = read(resp).await;
        assert_eq!(
            (status, content_type.as_str()),
            (400, "application/json"),
            "{path}: {body}"
        );
        assert_eq!(body["code"], "invalid_path", "{path}: {body}");
    }
    let resp = app
        .http
        .post(app.url("/api/internal/operator/resources/%ff/retry"))
        .header("X-Internal-Secret", INTERNAL_SECRET)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(read(resp).await.1["code"], "invalid_path");
}

on_both! {
    async fn nonsense_values_are_refused_on_every_path(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.subscribe("u-n", "sub-n", "premium");
        app.sims.subscribe_vpn("u-v", "sub-v", "premium");
        let (status, vpn) = app.internal(Method::POST, "/api/internal/provision", Some(json!({
            "user_id": "u-v", "subscription_id": "sub-v", "app_source": "otun", "channel": "stripe",
            "plan_tier": "premium", "expire_days": 30}))).await;
        assert_eq!(status, 200, "{vpn}");
        let id = vpn["resource_id"].as_str().unwrap().to_owned();
        let before = app.db.row_counts().await;
        let change = format!("/api/internal/resources/{id}/vpn");
        for (body, code) in [
            (json!({"plan_tier": "gold-ultra"}), "invalid_plan_tier"),
            (json!({"plan_tier": "p".repeat(5000)}), "invalid_plan_tier"),
            (json!({"traffic_limit": i64::MAX}), "invalid_traffic_limit"),
            (json!({"extend_days": i64::MAX}), "invalid_extend_days"),
        ] {
            let (status, resp) = app.internal(Method::PUT, &change, Some(body.clone())).await;
            assert_eq!((status, resp["code"].as_str()), (422, Some(code)), "{body}: {resp}");
        }
        let (_, status_now) = app.internal(Method::GET, "/api/internal/vpn/user/u-v/status", None).await;
        assert_eq!(status_now["data"]["plan_tier"], "premium", "the tier is untouched: {status_now}");
        let orders = [
            (json!({"plan_tier": "p".repeat(5000)}), "invalid_plan_tier"),
            (json!({"plan_tier": "gold-ultra"}), "invalid_plan_tier"),
            (json!({"user_email": "not-an-address"}), "invalid_email"),
            (json!({"user_email": "a b@example.com"}), "invalid_email"),
        ];
        for app_source in ["obox", "otun"] {
            for (extra, code) in &orders {
                let mut body = json!({"user_id": "u-n", "subscription_id": "sub-n", "app_source": app_source});
                for (k, v) in extra.as_object().unwrap() {
                    body[k] = v.clone();
                }
                let (status, resp) = app.internal(Method::POST, "/api/internal/provision", Some(body)).await;
                assert_eq!((status, resp["code"].as_str()), (422, Some(*code)), "{app_source} {extra}: {resp}");
            }
        }
        let (status, resp) = app.internal(Method::POST, "/api/internal/provision", Some(json!({
            "user_id": "u-n", "subscription_id": "sub-n", "app_source": "otun", "traffic_limit": i64::MAX}))).await;
        assert_eq!((status, resp["code"].as_str()), (422, Some("invalid_traffic_limit")), "{resp}");
        for gb in [json!(1e-300), json!(0), json!(-1), json!(1e300)] {
            let (status, resp) = app.internal(Method::POST, "/api/internal/entitlements/gift",
                Some(json!({"user_id": "u-g", "traffic_gb": gb, "duration_days": 7}))).await;
            assert_eq!((status, resp["code"].as_str()), (422, Some("invalid_traffic_gb")), "{gb}: {resp}");
        }
        let (status, resp) = app.internal(Method::PUT, "/api/internal/users/u-v/email",
            Some(json!({"email": "a@example.com\r\nBcc: x@y"}))).await;
        assert_eq!(status, 422, "{resp}");
        assert_eq!(app.db.row_counts().await, before, "nothing was written");
    }
}

on_both! {
    async fn a_nodes_failure_text_is_cleaned_before_anyone_sees_it(b: Backend) {
        let timing = NodeTiming {
            creating_ms: 60_000,
            stats_interval_ms: 0,
            ..NodeTiming::default()
        };
        let app = TestApp::spawn_with(b, timing, |_| {}).await;
        app.sims.subscribe("u-f", "sub-f", "premium");
        let (_, resp) = app.provision("u-f", "sub-f").await;
        let id = resp["resource_id"].as_str().unwrap().to_owned();
        assert!(wait_until(Duration::from_secs(10), || async { !app.sims.sim.hosting.creates().is_empty() }).await);
        let token = app.sims.sim.hosting.creates().last().unwrap().callback_token.clone();
        let message = format!("disk full\r\nERROR forged\u{1b}[2J\u{1b}[31m red\u{0}{}", "x".repeat(5000));
        let (status, resp) = post_as_node(&app, &token, "/api/callback/node/failed",
            json!({"resource_id": id, "error_message": message})).await;
        assert_eq!(status, 200, "{resp}");
        let failed = app.wait_status(&id, "failed").await;
        let shown = failed["error_message"].as_str().unwrap().to_owned();
        assert!(shown.starts_with("disk full ERROR forged [2J [31m red"), "{shown}");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.chars().count() <= 1000, "{}", shown.chars().count());
        let (_, mine) = app.user(Method::GET, "/api/v1/my/node", "u-f", None).await;
        let text = mine.to_string();
        assert!(!text.contains("\\u001b") && !text.contains("\\r") && !text.contains("\\u0000"), "{mine}");
    }
}

//! Golden snapshots of every response shape (`CONTRACTS.md` §1.2–1.4). Ids and
//! timestamps are replaced by placeholders; everything else is compared byte for byte.

use std::time::Duration;

use fulfillment::domain::progress::SubscriptionSnapshot;
use fulfillment::sim::{Fault, NodeTiming, Op};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, INTERNAL_SECRET, TestApp, read, wait_until};

const VOLATILE: [&str; 12] = [
    "resource_id",
    "created_at",
    "started_at",
    "expires_at",
    "ready_at",
    "subscription_id",
    "expire_at",
    "vpn_user_id",
    "otun_uuid",
    "entitlement_id",
    "url",
    "subscribe_url",
];

/// The moment the service reads during the golden tests, so a node's traffic period (a
/// calendar month, CONTRACTS.md §4.8) and its days are the same whenever they run.
pub(crate) fn pin_clock(app: &TestApp) {
    app.clock.shift_to(
        chrono::DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .unwrap()
            .to_utc(),
    );
}

/// Replaces ids and timestamps with placeholders (keeping their presence and type).
pub(crate) fn redact(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, val) in map.iter_mut() {
                    if VOLATILE.contains(&k.as_str()) && val.is_string() {
                        let s = val.as_str().unwrap();
                        let placeholder = if k == "subscription_id" {
                            s.to_owned()
                        } else if s.contains("://") {
                            "[url]".into()
                        } else if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
                            assert!(
                                s.ends_with('Z') && !s.contains('.'),
                                "timestamps are whole seconds in UTC: {s}"
                            );
                            "[timestamp]".into()
                        } else {
                            "[id]".into()
                        };
                        *val = Value::String(placeholder);
                    } else {
                        walk(val);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

pub(crate) fn snapshot(expires_in: chrono::Duration) -> SubscriptionSnapshot {
    SubscriptionSnapshot {
        subscription_id: "sub_123".into(),
        status: "active".into(),
        plan_tier: "premium".into(),
        expires_at: Some(chrono::Utc::now() + expires_in),
        auto_renew: true,
        quantity: None,
    }
}

async fn my_node(app: &TestApp, user: &str) -> Value {
    let (status, body) = app.user(Method::GET, "/api/v1/my/node", user, None).await;
    assert_eq!(status, 200, "{body}");
    redact(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_api_shapes() {
    let timing = NodeTiming {
        creating_ms: 60_000,
        send_callbacks: false,
        ..NodeTiming::default()
    };
    let app = TestApp::spawn_with(Backend::Sqlite, timing, |_| {}).await;
    pin_clock(&app);
    let subs = &app.sims.sim.subscriptions;

    insta::assert_json_snapshot!("my_node_no_subscription", my_node(&app, "u-none").await);
    subs.set(
        "u-1",
        "obox",
        "hosting",
        Some(snapshot(chrono::Duration::days(30))),
    );
    insta::assert_json_snapshot!("my_node_subscribed_no_node", my_node(&app, "u-1").await);

    let (status, created) = app
        .user(
            Method::POST,
            "/api/v1/my/node",
            "u-1",
            Some(json!({"region": "ap-northeast-1"})),
        )
        .await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("create_node_success", redact(created.clone()));
    let id = created["resource_id"].as_str().unwrap().to_owned();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            app.resource(&id).await["status"] == "creating"
        })
        .await
    );
    insta::assert_json_snapshot!("my_node_creating", my_node(&app, "u-1").await);

    // `creating` is committed before the create call: wait for the call itself.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            !app.sims.sim.hosting.creates().is_empty()
        })
        .await
    );
    let token = app.sims.sim.hosting.creates()[0].callback_token.clone();
    let r = app.http.post(app.url("/api/callback/node/ready")).bearer_auth(&token)
        .json(&json!({"resource_id": id, "public_ip": "1.2.3.4", "api_port": 8080, "api_key": "agent-key",
            "vless_port": 443, "ss_port": 8388, "public_key": "pubkey", "short_id": "abcd"}))
        .send().await.unwrap();
    insta::assert_json_snapshot!("node_callback_ok", read(r).await.1);
    insta::assert_json_snapshot!("my_node_active", my_node(&app, "u-1").await);

    // A usage report taken the day before, and the node's days (§4.8).
    let r = app
        .http
        .post(app.url("/api/callback/node/stats"))
        .bearer_auth(&token)
        .json(
            &json!({"resource_id": id, "rx_bytes": 3_000_000, "tx_bytes": 1_000_000,
            "reported_at": "2026-12-05T23:59:00Z"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(read(r).await.0, 200);
    let path = format!("/api/v1/my/nodes/{id}/usage?days=3");
    let (status, usage) = app.user(Method::GET, &path, "u-1", None).await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("my_node_usage", redact(usage));
    let path = format!("/api/internal/resources/{id}/usage?days=2");
    let (status, usage) = app.internal(Method::GET, &path, None).await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("resource_usage", redact(usage));
    let (status, refused) = app
        .user(
            Method::GET,
            &format!("/api/v1/my/nodes/{id}/usage?days=91"),
            "u-1",
            None,
        )
        .await;
    assert_eq!(status, 422);
    insta::assert_json_snapshot!("usage_invalid_days", refused);

    let (status, conflict) = app
        .user(
            Method::POST,
            "/api/v1/my/node",
            "u-1",
            Some(json!({"region": "us-east-1"})),
        )
        .await;
    assert_eq!(status, 409);
    insta::assert_json_snapshot!("create_node_conflict", conflict);
    let (status, refused) = app
        .user(
            Method::POST,
            "/api/v1/my/node",
            "u-none",
            Some(json!({"region": "us-east-1"})),
        )
        .await;
    assert_eq!(status, 403);
    insta::assert_json_snapshot!("create_node_no_subscription", refused);
    let (status, refused) = app
        .user(
            Method::POST,
            "/api/v1/my/node",
            "u-1",
            Some(json!({"region": "mars-1"})),
        )
        .await;
    assert_eq!(status, 422);
    insta::assert_json_snapshot!("create_node_unknown_region", refused);
    // No region (CONTRACTS.md §4.7): never the default one.
    let (status, refused) = app
        .user(
            Method::POST,
            "/api/v1/my/node",
            "u-1",
            Some(json!({"region": ""})),
        )
        .await;
    assert_eq!(status, 422);
    insta::assert_json_snapshot!("create_node_missing_region", refused);

    let (_, deleted) = app
        .user(Method::DELETE, "/api/v1/my/node", "u-1", None)
        .await;
    insta::assert_json_snapshot!("delete_node_success", deleted);
    let (status, missing) = app
        .user(Method::DELETE, "/api/v1/my/node", "u-none", None)
        .await;
    assert_eq!(status, 404);
    insta::assert_json_snapshot!("delete_node_not_found", missing);

    // A failed node.
    app.sims.sim.hosting.set_timing(NodeTiming {
        fail_rate: 1.0,
        send_callbacks: false,
        ..NodeTiming::default()
    });
    subs.set(
        "u-2",
        "obox",
        "hosting",
        Some(snapshot(chrono::Duration::days(30))),
    );
    let (_, created) = app
        .user(
            Method::POST,
            "/api/v1/my/node",
            "u-2",
            Some(json!({"region": "us-east-1"})),
        )
        .await;
    app.wait_status(created["resource_id"].as_str().unwrap(), "failed")
        .await;
    insta::assert_json_snapshot!("my_node_failed", my_node(&app, "u-2").await);

    // An expired subscription.
    subs.set(
        "u-3",
        "obox",
        "hosting",
        Some(snapshot(-chrono::Duration::days(1))),
    );
    my_node(&app, "u-3").await;
    subs.set("u-3", "obox", "hosting", None);
    insta::assert_json_snapshot!("my_node_subscription_expired", my_node(&app, "u-3").await);

    // The subscription service is down and we know nothing of this user.
    app.sims.sim.faults.script(
        Op::ActiveSubscription,
        [Fault::Error(503), Fault::Error(503)],
    );
    let (status, down) = app
        .user(
            Method::POST,
            "/api/v1/my/node",
            "u-new",
            Some(json!({"region": "us-east-1"})),
        )
        .await;
    assert_eq!(status, 503);
    insta::assert_json_snapshot!("create_node_subscription_service_down", down);

    let (_, regions) = app.user(Method::GET, "/api/v1/regions", "u-1", None).await;
    let (_, public) = read(
        app.http
            .get(app.url("/api/v1/public/regions"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(regions, public);
    insta::assert_json_snapshot!("regions", regions);
    let (_, health) = read(app.http.get(app.url("/health")).send().await.unwrap()).await;
    insta::assert_json_snapshot!("health", health);
    let (_, unauthorized) = read(
        app.http
            .get(app.url("/api/v1/my/node"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    insta::assert_json_snapshot!("error_unauthorized", unauthorized);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_api_shapes() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    pin_clock(&app);
    app.sims.sim.subscriptions.set(
        "u-1",
        "obox",
        "hosting",
        Some(snapshot(chrono::Duration::days(30))),
    );
    let order = json!({"user_id": "u-1", "subscription_id": "sub_123", "app_source": "obox",
        "business_type": "subscription", "channel": "stripe", "plan_tier": "premium",
        "region": "ap-northeast-1", "amount": 999, "currency": "USD", "months": 1});
    let (status, first) = app
        .internal(Method::POST, "/api/internal/provision", Some(order.clone()))
        .await;
    assert_eq!(status, 202);
    insta::assert_json_snapshot!("provision_accepted", redact(first.clone()));
    let id = first["resource_id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "active").await;
    let (_, repeat) = app
        .internal(Method::POST, "/api/internal/provision", Some(order))
        .await;
    insta::assert_json_snapshot!("provision_repeat", redact(repeat));

    let (_, resource) = app
        .internal(Method::GET, &format!("/api/internal/resources/{id}"), None)
        .await;
    insta::assert_json_snapshot!("resource_status_active", redact(resource));
    let (_, list) = app
        .internal(
            Method::GET,
            "/api/internal/subscriptions/sub_123/resources",
            None,
        )
        .await;
    insta::assert_json_snapshot!("subscription_resources", redact(list));
    let (_, user) = app
        .internal(Method::GET, "/api/internal/users/u-1/resources", None)
        .await;
    insta::assert_json_snapshot!("user_resources", redact(user));

    let (_, gone) = app
        .internal(
            Method::POST,
            "/api/internal/deprovision",
            Some(json!({"subscription_id": "sub_123", "reason": "admin"})),
        )
        .await;
    insta::assert_json_snapshot!("deprovision", redact(gone));
    app.wait_status(&id, "deleted").await;
    let (_, deleted) = app
        .internal(Method::GET, &format!("/api/internal/resources/{id}"), None)
        .await;
    insta::assert_json_snapshot!("resource_status_deleted", redact(deleted));
    let (_, missing) = app
        .internal(
            Method::POST,
            "/api/internal/deprovision",
            Some(json!({"subscription_id": "nope"})),
        )
        .await;
    insta::assert_json_snapshot!("deprovision_not_found", missing);

    // What the subscription service received, in order.
    let calls = app.wait_callbacks("sub_123", 2).await;
    // Each names its node (CONTRACTS.md §4.4): the node provisioned above.
    let mut calls = calls;
    for c in &mut calls {
        assert_eq!(c.resource_id.as_deref(), Some(id.as_str()));
        c.resource_id = Some("[id]".into());
    }
    insta::assert_json_snapshot!("subscription_callbacks", calls);
    let r = app
        .http
        .get(app.url("/api/internal/resources/x"))
        .header("X-Internal-Secret", INTERNAL_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpn_shapes() {
    let app = TestApp::spawn_with(Backend::Sqlite, NodeTiming::default(), |c| {
        c.app.vpn.wait = Duration::from_millis(300);
        c.app.vpn.subscribe_base = Some("https://sub.example.com/s".into());
    })
    .await;
    let internal = |method: Method, path: &'static str, body: Option<Value>| {
        let app = &app;
        async move { app.internal(method, path, body).await }
    };
    let mine = |user: &'static str, path: &'static str| {
        let app = &app;
        async move { redact(app.user(Method::GET, path, user, None).await.1) }
    };
    let order = json!({"user_id": "vpn-1", "subscription_id": "sub_vpn", "app_source": "otun",
        "plan_tier": "premium", "channel": "stripe", "business_type": "subscription",
        "expire_days": 30, "user_email": "vpn-1@example.com", "device_id": "device-1"});
    app.sims.sim.subscriptions.set(
        "vpn-1",
        "otun",
        "vpn",
        Some(SubscriptionSnapshot {
            subscription_id: "sub_vpn".into(),
            ..snapshot(chrono::Duration::days(30))
        }),
    );
    insta::assert_json_snapshot!(
        "my_vpn_no_subscription",
        mine("vpn-1", "/api/v1/my/vpn").await
    );
    let (status, active) =
        internal(Method::POST, "/api/internal/provision", Some(order.clone())).await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("provision_vpn_active", redact(active.clone()));
    let (status, again) = internal(Method::POST, "/api/internal/provision", Some(order)).await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("provision_vpn_repeated", redact(again));
    insta::assert_json_snapshot!("my_vpn_active", mine("vpn-1", "/api/v1/my/vpn").await);
    insta::assert_json_snapshot!(
        "my_vpn_subscribe",
        mine("vpn-1", "/api/v1/my/vpn/subscribe").await
    );
    let (_, sub) = internal(Method::GET, "/api/internal/vpn/user/vpn-1/subscribe", None).await;
    insta::assert_json_snapshot!("internal_vpn_subscribe", redact(sub));
    let (_, status_view) = internal(Method::GET, "/api/internal/vpn/user/vpn-1/status", None).await;
    insta::assert_json_snapshot!("internal_vpn_status", redact(status_view));
    let (_, missing) = internal(Method::GET, "/api/internal/vpn/user/nobody/subscribe", None).await;
    insta::assert_json_snapshot!("internal_vpn_subscribe_not_found", missing);

    let id = active["resource_id"].as_str().unwrap().to_owned();
    let path: &'static str =
        Box::leak(format!("/api/internal/resources/{id}/vpn").into_boxed_str());
    let (_, ok) = internal(Method::PUT, path, Some(json!({"extend_days": 3}))).await;
    insta::assert_json_snapshot!("adjust_vpn_ok", ok);
    app.sims
        .sim
        .faults
        .script(Op::VpnUpdate, [Fault::Error(503); 4]);
    let (_, pending) = internal(
        Method::PUT,
        path,
        Some(json!({"traffic_limit": 300_i64 << 30})),
    )
    .await;
    insta::assert_json_snapshot!("adjust_vpn_pending", pending);
    let (_, email) = internal(
        Method::PUT,
        "/api/internal/users/vpn-1/email",
        Some(json!({"email": "new@example.com"})),
    )
    .await;
    insta::assert_json_snapshot!("email_updated", email);
    let (status, gift) = internal(
        Method::POST,
        "/api/internal/entitlements/gift",
        Some(json!({"user_id": "vpn-2", "traffic_gb": 25, "duration_days": 7, "note": "welcome"})),
    )
    .await;
    assert_eq!(status, 201);
    insta::assert_json_snapshot!("gift_created", redact(gift));
    let (_, list) = internal(
        Method::GET,
        "/api/internal/entitlements?user_id=vpn-2",
        None,
    )
    .await;
    insta::assert_json_snapshot!("entitlements", redact(list));
    let (_, resource) = internal(
        Method::GET,
        Box::leak(format!("/api/internal/resources/{id}").into_boxed_str()),
        None,
    )
    .await;
    insta::assert_json_snapshot!("resource_status_vpn", redact(resource));

    // The VPN manager down: the order is recorded and answered `pending`.
    app.sims.subscribe_vpn("vpn-3", "sub_vpn3", "basic");
    app.sims
        .sim
        .faults
        .script(Op::VpnCreate, [Fault::Error(503); 10]);
    let (status, pending) = internal(
        Method::POST,
        "/api/internal/provision",
        Some(
            json!({"user_id": "vpn-3", "subscription_id": "sub_vpn3", "resource_type": "vpn_user"}),
        ),
    )
    .await;
    assert_eq!(status, 202);
    insta::assert_json_snapshot!("provision_vpn_pending", redact(pending));
    insta::assert_json_snapshot!("my_vpn_being_set_up", mine("vpn-3", "/api/v1/my/vpn").await);

    let (_, gone) = internal(
        Method::POST,
        "/api/internal/deprovision",
        Some(json!({"subscription_id": "sub_vpn"})),
    )
    .await;
    insta::assert_json_snapshot!("deprovision_vpn", redact(gone));
    app.wait_status(&id, "deleted").await;
    insta::assert_json_snapshot!("my_vpn_disabled", mine("vpn-1", "/api/v1/my/vpn").await);
    let (_, refused) = app
        .user(Method::GET, "/api/v1/my/vpn/subscribe", "vpn-1", None)
        .await;
    insta::assert_json_snapshot!("my_vpn_subscribe_refused", refused);
    app.set_vpn_expiry("vpn-2", chrono::Utc::now() - chrono::Duration::days(1))
        .await;
    insta::assert_json_snapshot!("my_vpn_expired", mine("vpn-2", "/api/v1/my/vpn").await);
}

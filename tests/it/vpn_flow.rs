//! VPN users end to end: the service and the simulated VPN manager and subscription
//! service over real HTTP, on both databases.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fulfillment::ports::CreateVpnUser;
use fulfillment::sim::{Fault, Op};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, wait_until};
use crate::on_both;

const GIB: i64 = 1024 * 1024 * 1024;

/// A VPN order: a Stripe premium month unless `extra` says otherwise.
fn order(user: &str, subscription: &str, extra: Value) -> Value {
    let mut body = json!({
        "user_id": user, "subscription_id": subscription, "app_source": "otun",
        "plan_tier": "premium", "channel": "stripe", "business_type": "subscription",
        "expire_days": 30, "user_email": format!("{user}@example.com"),
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// Delivers an order. A paid one lives only while the subscription service has the
/// user's VPN subscription (`CONTRACTS.md` §2.3), so the simulated one is given it first,
/// as the real one would have it before sending the order.
async fn provision(app: &TestApp, body: Value) -> (u16, Value) {
    let free = ["trial", "gift"]
        .iter()
        .any(|f| body["channel"] == *f || body["business_type"] == *f);
    if let (false, Some(user), Some(sub)) = (
        free,
        body["user_id"].as_str(),
        body["subscription_id"].as_str(),
    ) {
        app.sims
            .subscribe_vpn(user, sub, body["plan_tier"].as_str().unwrap_or("basic"));
    }
    app.internal(Method::POST, "/api/internal/provision", Some(body))
        .await
}

async fn entitlements(app: &TestApp, query: &str) -> Vec<Value> {
    let (status, body) = app
        .internal(
            Method::GET,
            &format!("/api/internal/entitlements?{query}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["entitlements"].as_array().unwrap().clone()
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
        .with_timezone(&Utc)
}

/// Within a minute: the service and the test read the clock at different moments.
fn near(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    (a - b).num_seconds().abs() < 60
}

fn in_days(d: i64) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::days(d)
}

on_both! {
    async fn a_new_user_gets_an_active_vpn_user_reported_once(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.subscribe_vpn("u-1", "sub-v1", "premium");
        let (status, resp) = provision(&app, order("u-1", "sub-v1", json!({}))).await;
        assert_eq!((status, resp["status"].as_str()), (200, Some("active")), "{resp}");
        let uuid = resp["vpn_user_id"].as_str().unwrap().to_owned();
        let user = app.sims.sim.vpn.user(&uuid).expect("the VPN manager has the user");
        assert_eq!(user.auth_user_id, "u-1");
        assert_eq!(user.traffic_limit, 500 * GIB);
        assert_eq!(user.service_tier, "premium");
        assert_eq!(user.email, "u-1@example.com");
        assert!(near(user.expire_at, in_days(30)), "{}", user.expire_at);

        let calls = app.wait_callbacks("sub-v1", 1).await;
        assert_eq!(calls[0].app, "otun");
        assert_eq!(calls[0].status, "active");

        let (status, mine) = app.user(Method::GET, "/api/v1/my/vpn", "u-1", None).await;
        assert_eq!(status, 200);
        assert_eq!(mine["vpn_status"], "active");
        assert_eq!(mine["has_subscription"], true);
        assert_eq!(mine["has_vpn_user"], true);
        assert_eq!(mine["vpn_user"]["vpn_user_id"], uuid.as_str());
        assert_eq!(mine["vpn_user"]["traffic_limit_gb"], 500);
        assert_eq!(mine["vpn_user"]["status"], "active");

        let (status, sub) = app.user(Method::GET, "/api/v1/my/vpn/subscribe", "u-1", None).await;
        assert_eq!(status, 200, "{sub}");
        assert_eq!(sub["status"], "active");
        assert_eq!(sub["service_tier"], "premium");
        assert_eq!(sub["channel"], "stripe");
        assert_eq!(sub["traffic_limit"], 500 * GIB);
        let protocols = sub["protocols"].as_array().unwrap();
        assert!(!protocols.is_empty());
        for p in protocols {
            assert_eq!(p["protocol"], p["protocol_name"], "{p}");
        }
        let url = sub["subscribe_url"].as_str().unwrap();
        assert!(!url.contains(&app.sims.url), "no internal URL: {url}");

        let (status, internal) = app.internal(Method::GET, "/api/internal/vpn/user/u-1/status", None).await;
        assert_eq!((status, internal["success"].as_bool()), (200, Some(true)));
        assert_eq!(internal["data"]["status"], "active");
        assert_eq!(internal["data"]["traffic_limit"], 500 * GIB);
        let (status, internal) = app.internal(Method::GET, "/api/internal/vpn/user/u-1/subscribe", None).await;
        assert_eq!((status, internal["data"]["status"].as_str()), (200, Some("active")));

        // Settled: nothing more is sent.
        app.settle().await;
        assert_eq!(app.sims.sim.subscriptions.callbacks_for("sub-v1").len(), 1);
        assert_eq!(app.sims.sim.vpn.creates().len(), 1);
    }
}

on_both! {
    async fn the_vpn_managers_uuid_is_authoritative_and_the_order_is_applied(b: Backend) {
        let app = TestApp::spawn(b).await;
        // The user already has an account (from the old service) with other terms.
        let (existing, _) = app.sims.sim.vpn.create(&CreateVpnUser {
            uuid: "legacy-uuid-1".into(),
            email: "old@example.com".into(),
            auth_user_id: "u-2".into(),
            protocols: vec!["vless".into()],
            ss_password: "pw".into(),
            traffic_limit: GIB,
            expire_at: in_days(-5),
            service_tier: "standard".into(),
        });
        let (status, resp) = provision(&app, order("u-2", "sub-v2", json!({}))).await;
        assert_eq!((status, resp["status"].as_str()), (200, Some("active")), "{resp}");
        assert_eq!(resp["vpn_user_id"], existing.uuid.as_str(), "the returned uuid wins");
        let user = app.sims.sim.vpn.user(&existing.uuid).unwrap();
        assert_eq!(user.traffic_limit, 500 * GIB, "the de-duplicated create was followed by an update");
        assert!(near(user.expire_at, in_days(30)));
        assert!(user.enabled);
        let (_, mine) = app.user(Method::GET, "/api/v1/my/vpn", "u-2", None).await;
        assert_eq!(mine["vpn_user"]["vpn_user_id"], existing.uuid.as_str());
    }
}

on_both! {
    async fn renewals_stack_on_running_paid_time_and_restart_after_a_lapse(b: Backend) {
        let app = TestApp::spawn(b).await;
        let (_, first) = provision(&app, order("u-3", "sub-v3", json!({"channel_tx_id": "tx-1"}))).await;
        let uuid = first["vpn_user_id"].as_str().unwrap().to_owned();
        // A new period on the same subscription: stacked onto the running month.
        let (status, renewed) = provision(&app, order("u-3", "sub-v3", json!({"channel_tx_id": "tx-2"}))).await;
        assert_eq!((status, renewed["status"].as_str()), (200, Some("active")), "{renewed}");
        assert_eq!(renewed["resource_id"], first["resource_id"], "one VPN user per user");
        let user = app.sims.sim.vpn.user(&uuid).unwrap();
        assert!(near(user.expire_at, in_days(60)), "stacked: {}", user.expire_at);
        let rows = entitlements(&app, "user_id=u-3").await;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.iter().filter(|e| e["current"] == true).count(), 1);
        assert_eq!(app.wait_callbacks("sub-v3", 2).await.len(), 2, "each order reported");

        // Time passes: the entitlement lapses; the next order starts from now.
        // Time passes for us and for the VPN manager alike.
        app.set_vpn_expiry("u-3", in_days(-2)).await;
        let lapse = fulfillment::ports::VpnUserUpdate { expire_at: Some(in_days(-2)), ..Default::default() };
        assert!(app.sims.sim.vpn.update(&uuid, &lapse));
        let (_, mine) = app.user(Method::GET, "/api/v1/my/vpn", "u-3", None).await;
        assert_eq!(mine["vpn_status"], "expired", "read as expired without any job");
        let (status, _) = app.user(Method::GET, "/api/v1/my/vpn/subscribe", "u-3", None).await;
        assert_eq!(status, 403, "no config for an expired VPN");
        assert_eq!(entitlements(&app, "user_id=u-3&status=expired").await.len(), 1);
        let (_, fresh) = provision(&app, order("u-3", "sub-v3", json!({"channel_tx_id": "tx-3"}))).await;
        assert_eq!(fresh["status"], "active");
        let user = app.sims.sim.vpn.user(&uuid).unwrap();
        assert!(near(user.expire_at, in_days(30)), "fresh: {}", user.expire_at);
        let (_, mine) = app.user(Method::GET, "/api/v1/my/vpn", "u-3", None).await;
        assert_eq!(mine["vpn_status"], "active");
    }
}

on_both! {
    async fn a_channel_change_keeps_the_history_and_one_current_entitlement(b: Backend) {
        let app = TestApp::spawn(b).await;
        let apple = order("u-4", "sub-apple", json!({"channel": "apple", "plan_tier": "standard"}));
        let (_, first) = provision(&app, apple).await;
        assert_eq!(first["status"], "active");
        let stripe = order("u-4", "sub-stripe", json!({"channel": "stripe", "expire_days": 90}));
        let (_, second) = provision(&app, stripe).await;
        assert_eq!(second["status"], "active");
        assert_eq!(second["vpn_user_id"], first["vpn_user_id"]);

        // The old subscription still lists the VPN user its order applied to.
        let (_, listed) = app.internal(Method::GET, "/api/internal/subscriptions/sub-apple/resources", None).await;
        assert_eq!(listed["resources"][0]["resource_id"], first["resource_id"], "{listed}");
        let rows = entitlements(&app, "user_id=u-4").await;
        let by_sub = |s: &str| rows.iter().find(|e| e["subscription_id"] == s).unwrap().clone();
        let (old, new) = (by_sub("sub-apple"), by_sub("sub-stripe"));
        assert_eq!((old["status"].as_str(), old["current"].as_bool()), (Some("superseded"), Some(false)));
        assert_eq!((new["status"].as_str(), new["current"].as_bool()), (Some("active"), Some(true)));
        assert_eq!(new["plan_tier"], "premium");
        let user = app.sims.sim.vpn.user(first["vpn_user_id"].as_str().unwrap()).unwrap();
        assert_eq!(user.traffic_limit, 500 * GIB);
        // Paid after paid: the apple month (30 days from now) plus 90.
        assert!(near(user.expire_at, in_days(120)), "{}", user.expire_at);

        // The old channel's cancellation does not touch the account the new one pays for.
        let (status, resp) = app.internal(Method::POST, "/api/internal/deprovision",
            Some(json!({"subscription_id": "sub-apple", "reason": "subscription_cancelled"}))).await;
        assert_eq!(status, 200, "{resp}");
        let calls = app.wait_callbacks("sub-apple", 2).await;
        assert_eq!((calls[1].status.as_str(), calls[1].reason.as_deref()), ("deleted", Some("subscription_cancelled")));
        assert!(app.sims.sim.vpn.deletes().is_empty());
        let (_, mine) = app.user(Method::GET, "/api/v1/my/vpn", "u-4", None).await;
        assert_eq!(mine["vpn_status"], "active");
    }
}

on_both! {
    async fn the_same_order_twice_changes_nothing_even_concurrently(b: Backend) {
        let app = TestApp::spawn(b).await;
        let body = order("u-5", "sub-v5", json!({"period_start": "2026-11-01T00:00:00Z", "period_end": "2026-12-01T00:00:00Z"}));
        let (_, first) = provision(&app, body.clone()).await;
        let expire = app.sims.sim.vpn.user(first["vpn_user_id"].as_str().unwrap()).unwrap().expire_at;
        let (status, again) = provision(&app, body.clone()).await;
        assert_eq!((status, &again), (200, &first), "the same order gets the same answer");
        assert_eq!(app.sims.sim.vpn.user(first["vpn_user_id"].as_str().unwrap()).unwrap().expire_at, expire);

        // Twenty deliveries at once of a new period: it extends exactly once.
        let next = order("u-5", "sub-v5", json!({"period_start": "2026-12-01T00:00:00Z", "period_end": "2026-12-31T00:00:00Z"}));
        let answers = futures::future::join_all((0..20).map(|_| provision(&app, next.clone()))).await;
        for (status, a) in &answers {
            assert!(matches!(status, 200 | 202), "{status} {a}");
            assert_eq!(a["resource_id"], first["resource_id"]);
        }
        assert_eq!(entitlements(&app, "user_id=u-5").await.len(), 2);
        assert!(wait_until(Duration::from_secs(10), || async {
            let r = app.resource(first["resource_id"].as_str().unwrap()).await;
            r["status"] == "active"
        }).await);
        let user = app.sims.sim.vpn.user(first["vpn_user_id"].as_str().unwrap()).unwrap();
        assert!(near(user.expire_at, expire + chrono::Duration::days(30)), "once: {} vs {expire}", user.expire_at);
        assert_eq!(app.wait_callbacks("sub-v5", 2).await.len(), 2);
        app.settle().await;
        assert_eq!(app.sims.sim.subscriptions.callbacks_for("sub-v5").len(), 2, "reported once per order");
    }
}

on_both! {
    async fn twenty_concurrent_first_orders_make_one_vpn_user(b: Backend) {
        let app = TestApp::spawn(b).await;
        let body = order("u-6", "sub-v6", json!({"channel_tx_id": "tx-a"}));
        let answers = futures::future::join_all((0..20).map(|_| provision(&app, body.clone()))).await;
        let ids: std::collections::HashSet<String> = answers.iter()
            .map(|(_, a)| a["resource_id"].as_str().unwrap_or_else(|| panic!("{a}")).to_owned())
            .collect();
        assert_eq!(ids.len(), 1, "{answers:?}");
        assert_eq!(entitlements(&app, "user_id=u-6").await.len(), 1);
        app.wait_callbacks("sub-v6", 1).await;
        app.settle().await;
        assert_eq!(app.sims.sim.subscriptions.callbacks_for("sub-v6").len(), 1);
        assert_eq!(app.sims.sim.vpn.users().len(), 1);
    }
}

on_both! {
    async fn a_gift_adds_to_a_paying_user_and_never_shortens(b: Backend) {
        let app = TestApp::spawn(b).await;
        let (_, paid) = provision(&app, order("u-7", "sub-v7", json!({}))).await;
        let uuid = paid["vpn_user_id"].as_str().unwrap().to_owned();
        let before = app.sims.sim.vpn.user(&uuid).unwrap();
        let (status, gift) = app.internal(Method::POST, "/api/internal/entitlements/gift",
            Some(json!({"user_id": "u-7", "traffic_gb": 10, "duration_days": 7, "note": "sorry for the outage"}))).await;
        assert_eq!(status, 201, "{gift}");
        assert_eq!(gift["otun_uuid"], uuid.as_str());
        assert_eq!(gift["traffic_limit"], 510 * GIB);
        let after = app.sims.sim.vpn.user(&uuid).unwrap();
        assert_eq!(after.traffic_limit, 510 * GIB);
        assert_eq!(after.expire_at.timestamp(), (before.expire_at + chrono::Duration::days(7)).timestamp());
        assert_eq!(time(&gift["expire_at"]).timestamp(), after.expire_at.timestamp());
        let gifts = entitlements(&app, "user_id=u-7&business_type=gift").await;
        assert_eq!((gifts.len(), gifts[0]["status"].as_str()), (1, Some("merged")));
        let current: Vec<_> = entitlements(&app, "user_id=u-7").await.into_iter().filter(|e| e["current"] == true).collect();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0]["business_type"], "subscription", "the paid entitlement stays current");

        // A gift to someone with nothing makes an account of its own.
        let (status, gift) = app.internal(Method::POST, "/api/internal/entitlements/gift",
            Some(json!({"user_id": "u-8", "email": "u8@example.com", "traffic_gb": 20, "duration_days": 14, "service_tier": "premium"}))).await;
        assert_eq!(status, 201, "{gift}");
        let user = app.sims.sim.vpn.user(gift["otun_uuid"].as_str().unwrap()).unwrap();
        assert_eq!((user.traffic_limit, user.service_tier.as_str()), (20 * GIB, "premium"));
        assert!(near(user.expire_at, in_days(14)));
        assert_eq!(gift["protocols"], json!(["vless", "shadowsocks"]));
    }
}

on_both! {
    async fn deprovision_deletes_the_account_and_my_vpn_stops_reading_active(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.subscribe_vpn("u-9", "sub-v9", "premium");
        let (_, resp) = provision(&app, order("u-9", "sub-v9", json!({}))).await;
        let uuid = resp["vpn_user_id"].as_str().unwrap().to_owned();
        let id = resp["resource_id"].as_str().unwrap().to_owned();
        let (status, gone) = app.internal(Method::POST, "/api/internal/deprovision",
            Some(json!({"subscription_id": "sub-v9", "reason": "subscription_expired"}))).await;
        assert_eq!((status, gone["resource_id"].as_str()), (200, Some(id.as_str())), "{gone}");
        app.wait_status(&id, "deleted").await;
        assert!(app.sims.sim.vpn.user(&uuid).is_none(), "deleted at the VPN manager");
        let calls = app.wait_callbacks("sub-v9", 2).await;
        assert_eq!((calls[1].app.as_str(), calls[1].status.as_str(), calls[1].reason.as_deref()),
            ("otun", "deleted", Some("subscription_expired")));
        // The subscription service still says active; we know better.
        let (_, mine) = app.user(Method::GET, "/api/v1/my/vpn", "u-9", None).await;
        assert_eq!(mine["vpn_status"], "disabled", "{mine}");
        assert_eq!(mine["has_vpn_user"], false);
        let (status, _) = app.user(Method::GET, "/api/v1/my/vpn/subscribe", "u-9", None).await;
        assert_eq!(status, 403);
        // A retried webhook is answered, and sends nothing new.
        let (status, _) = app.internal(Method::POST, "/api/internal/deprovision",
            Some(json!({"subscription_id": "sub-v9"}))).await;
        assert_eq!(status, 200);
        app.settle().await;
        assert_eq!(app.sims.sim.subscriptions.callbacks_for("sub-v9").len(), 2);

        // A new order later makes a new account.
        let (_, back) = provision(&app, order("u-9", "sub-v9b", json!({}))).await;
        assert_eq!(back["status"], "active");
        assert_ne!(back["resource_id"].as_str(), Some(id.as_str()));
    }
}

on_both! {
    async fn an_email_change_reaches_the_vpn_manager_despite_failures(b: Backend) {
        let app = TestApp::spawn(b).await;
        let (_, resp) = provision(&app, order("u-10", "sub-v10", json!({}))).await;
        let uuid = resp["vpn_user_id"].as_str().unwrap().to_owned();
        app.sims.sim.faults.script(Op::VpnUpdate, [Fault::Error(503), Fault::Hang, Fault::Error(500)]);
        let (status, body) = app.internal(Method::PUT, "/api/internal/users/u-10/email",
            Some(json!({"email": "new@example.com"}))).await;
        assert_eq!((status, body), (200, json!({"message": "email updated"})));
        assert!(wait_until(Duration::from_secs(15), || async {
            app.sims.sim.vpn.user(&uuid).is_some_and(|u| u.email == "new@example.com")
        }).await, "the update is retried until the VPN manager takes it");
    }
}

on_both! {
    async fn one_trial_per_user_device_and_email(b: Backend) {
        let app = TestApp::spawn(b).await;
        let trial = |user: &str, sub: &str, device: &str, email: &str| order(user, sub, json!({
            "channel": "trial", "business_type": "trial", "plan_tier": "basic", "expire_days": 3,
            "device_id": device, "user_email": email,
        }));
        let (status, first) = provision(&app, trial("t-1", "sub-t1", "dev-1", "one@example.com")).await;
        assert_eq!((status, first["status"].as_str()), (200, Some("active")), "{first}");
        for (body, why) in [
            (trial("t-1", "sub-t1b", "dev-9", "nine@example.com"), "same user"),
            (trial("t-2", "sub-t2", "dev-1", "two@example.com"), "same device"),
            (trial("t-3", "sub-t3", "dev-3", "ONE@example.com"), "same email"),
        ] {
            let (status, resp) = provision(&app, body).await;
            assert_eq!((status, resp["code"].as_str()), (409, Some("trial_already_used")), "{why}: {resp}");
        }
        let (status, _) = provision(&app, trial("t-4", "sub-t4", "dev-4", "four@example.com")).await;
        assert_eq!(status, 200);
        assert_eq!(entitlements(&app, "business_type=trial").await.len(), 2);
        assert_eq!(app.sims.sim.vpn.users().len(), 2, "refused trials made no account");
    }
}

on_both! {
    async fn a_vpn_manager_outage_answers_pending_and_completes_later(b: Backend) {
        let app = TestApp::spawn_with(b, Default::default(), |c| c.app.vpn.wait = Duration::from_millis(300)).await;
        app.sims.sim.faults.script(Op::VpnCreate, [Fault::Error(503); 12]);
        let (status, resp) = provision(&app, order("u-11", "sub-v11", json!({}))).await;
        assert_eq!((status, resp["status"].as_str()), (202, Some("pending")), "{resp}");
        assert!(resp.get("vpn_user_id").is_none());
        let id = resp["resource_id"].as_str().unwrap().to_owned();
        app.wait_status(&id, "active").await;
        let calls = app.wait_callbacks("sub-v11", 1).await;
        assert_eq!(calls[0].status, "active");
        app.settle().await;
        assert_eq!(app.sims.sim.subscriptions.callbacks_for("sub-v11").len(), 1, "reported once");
        assert_eq!(app.sims.sim.vpn.users().len(), 1);
        // The repeated webhook now sees it done.
        let (_, again) = provision(&app, order("u-11", "sub-v11", json!({}))).await;
        assert_eq!(again["status"], "active");
    }
}

on_both! {
    async fn a_pending_vpn_order_survives_a_restart(b: Backend) {
        let mut app = TestApp::spawn_with(b, Default::default(), |c| c.app.vpn.wait = Duration::from_millis(200)).await;
        app.sims.sim.faults.script(Op::VpnCreate, [Fault::Hang; 2]);
        let (status, resp) = provision(&app, order("u-12", "sub-v12", json!({}))).await;
        assert_eq!(status, 202, "{resp}");
        app.restart().await;
        app.wait_status(resp["resource_id"].as_str().unwrap(), "active").await;
        app.wait_callbacks("sub-v12", 1).await;
    }
}

on_both! {
    async fn admin_adjustments_are_applied_or_reported_pending(b: Backend) {
        let app = TestApp::spawn_with(b, Default::default(), |c| c.app.vpn.wait = Duration::from_millis(300)).await;
        let (_, resp) = provision(&app, order("u-13", "sub-v13", json!({}))).await;
        let (id, uuid) = (resp["resource_id"].as_str().unwrap().to_owned(), resp["vpn_user_id"].as_str().unwrap().to_owned());
        let before = app.sims.sim.vpn.user(&uuid).unwrap();
        let path = format!("/api/internal/resources/{id}/vpn");
        let (status, body) = app.internal(Method::PUT, &path, Some(json!({"traffic_limit": 7 * GIB, "extend_days": 5}))).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("ok")), "{body}");
        let after = app.sims.sim.vpn.user(&uuid).unwrap();
        assert_eq!(after.traffic_limit, 7 * GIB);
        assert_eq!(after.expire_at.timestamp(), (before.expire_at + chrono::Duration::days(5)).timestamp());

        // The VPN manager failing: saved and said so, never "ok".
        app.sims.sim.faults.script(Op::VpnUpdate, [Fault::Error(503); 8]);
        let (status, body) = app.internal(Method::PUT, &path, Some(json!({"plan_tier": "unlimited"}))).await;
        assert_eq!((status, body["status"].as_str()), (202, Some("pending")), "{body}");
        assert!(wait_until(Duration::from_secs(15), || async {
            app.resource(&id).await["plan_tier"] == "unlimited"
                && app.sims.sim.vpn.updates().len() >= 2
        }).await);
    }
}

on_both! {
    async fn vpn_traffic_is_synced_from_the_vpn_manager(b: Backend) {
        let app = TestApp::spawn_with(b, Default::default(), |c| c.engine.traffic.interval = Duration::from_millis(100)).await;
        let (_, resp) = provision(&app, order("u-14", "sub-v14", json!({"traffic_limit": 200 * GIB}))).await;
        let uuid = resp["vpn_user_id"].as_str().unwrap().to_owned();
        assert!(app.sims.sim.vpn.set_traffic_used(&uuid, 50 * GIB));
        assert!(wait_until(Duration::from_secs(10), || async {
            let (_, mine) = app.user(Method::GET, "/api/v1/my/vpn", "u-14", None).await;
            mine["vpn_user"]["traffic_used_gb"] == 50
        }).await);
        let (_, mine) = app.user(Method::GET, "/api/v1/my/vpn", "u-14", None).await;
        assert_eq!(mine["vpn_user"]["traffic_percent"], 25);
        assert_eq!(mine["vpn_user"]["traffic_limit_gb"], 200);
        let (_, status) = app.internal(Method::GET, "/api/internal/vpn/user/u-14/status", None).await;
        assert_eq!(status["data"]["traffic_used"], 50 * GIB);
        // Reads never change the user's terms upstream.
        assert_eq!(app.sims.sim.vpn.user(&uuid).unwrap().traffic_limit, 200 * GIB);
    }
}

on_both! {
    async fn the_demo_user_has_an_active_vpn_and_reseeding_changes_nothing(b: Backend) {
        let app = TestApp::spawn(b).await;
        let core = &app.running().state.app;
        // The demo's simulated subscription service subscribes everyone; this one is told.
        app.sims.subscribe_vpn("demo-user", "sub_otun_demo-user", "premium");
        fulfillment::server::seed_demo(core).await.unwrap();
        fulfillment::server::seed_demo(core).await.unwrap();
        let (_, mine) = app.user(Method::GET, "/api/v1/my/vpn", "demo-user", None).await;
        assert_eq!(mine["vpn_status"], "active", "{mine}");
        assert_eq!(entitlements(&app, "user_id=demo-user").await.len(), 1);
        assert_eq!(app.sims.sim.vpn.users().len(), 1);
    }
}

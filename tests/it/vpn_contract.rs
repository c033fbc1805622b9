//! The two VPN rules of `CONTRACTS.md` §2.3 the first build got wrong: a paid renewal
//! stacks on the VPN manager's expiry (not our stored copy), and the subscription service
//! decides whether a paid entitlement lives.

use chrono::{DateTime, Utc};
use fulfillment::ports::VpnUserUpdate;
use fulfillment::sim::{Fault, Op};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::on_both;

fn near(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    (a - b).num_seconds().abs() < 60
}

fn in_days(d: i64) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::days(d)
}

fn stripe(user: &str, sub: &str, tx: &str) -> Value {
    json!({"user_id": user, "subscription_id": sub, "app_source": "otun", "channel": "stripe",
        "business_type": "subscription", "plan_tier": "premium", "expire_days": 30,
        "channel_tx_id": tx})
}

async fn order(app: &TestApp, body: Value) -> Value {
    let (status, resp) = app
        .internal(Method::POST, "/api/internal/provision", Some(body))
        .await;
    assert_eq!(
        (status, resp["status"].as_str()),
        (200, Some("active")),
        "{resp}"
    );
    resp
}

async fn current_expiry(app: &TestApp, user: &str) -> DateTime<Utc> {
    let (_, list) = app
        .internal(
            Method::GET,
            &format!("/api/internal/entitlements?user_id={user}&status=active"),
            None,
        )
        .await;
    let rows = list["entitlements"].as_array().unwrap();
    let current = rows
        .iter()
        .find(|e| e["current"] == true)
        .expect("a current entitlement");
    current["expire_at"].as_str().unwrap().parse().unwrap()
}

on_both! {
    async fn a_paid_renewal_stacks_on_the_vpn_managers_expiry(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.subscribe_vpn("u-r", "sub-r", "premium");
        let first = order(&app, stripe("u-r", "sub-r", "tx-1")).await;
        let uuid = first["vpn_user_id"].as_str().unwrap().to_owned();
        // An operator shortens the account at the VPN manager to ten days from now.
        let shorten = VpnUserUpdate { expire_at: Some(in_days(10)), ..Default::default() };
        assert!(app.sims.sim.vpn.update(&uuid, &shorten));
        order(&app, stripe("u-r", "sub-r", "tx-2")).await;
        let upstream = app.sims.sim.vpn.user(&uuid).unwrap().expire_at;
        assert!(near(upstream, in_days(40)), "now + 10 + 30, not now + 60: {upstream}");
        assert!(near(current_expiry(&app, "u-r").await, in_days(40)));

        // The VPN manager cannot be read: our stored copy (40 days) stands in.
        app.sims.sim.faults.script(Op::VpnGet, [Fault::Error(503)]);
        order(&app, stripe("u-r", "sub-r", "tx-3")).await;
        assert!(near(current_expiry(&app, "u-r").await, in_days(70)));
        assert!(near(app.sims.sim.vpn.user(&uuid).unwrap().expire_at, in_days(70)));
    }
}

on_both! {
    async fn the_subscription_service_decides_whether_a_paid_vpn_lives(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.subscribe_vpn("u-p", "sub-p", "premium");
        order(&app, stripe("u-p", "sub-p", "tx-1")).await;
        let read = |user: &'static str, path: &'static str| {
            let app = &app;
            async move { app.user(Method::GET, path, user, None).await }
        };
        assert_eq!(read("u-p", "/api/v1/my/vpn").await.1["vpn_status"], "active");
        assert_eq!(read("u-p", "/api/v1/my/vpn/subscribe").await.0, 200);

        // The subscription service no longer has it: no paid VPN, as the deployed service did.
        app.sims.sim.subscriptions.set("u-p", "otun", "vpn", None);
        let (status, mine) = read("u-p", "/api/v1/my/vpn").await;
        assert_eq!((status, mine["vpn_status"].as_str()), (200, Some("no_subscription")), "{mine}");
        let (status, resp) = read("u-p", "/api/v1/my/vpn/subscribe").await;
        assert_eq!((status, resp["code"].as_str()), (404, Some("no_subscription")), "{resp}");
        let (status, resp) = app.internal(Method::GET, "/api/internal/vpn/user/u-p/subscribe", None).await;
        assert_eq!((status, resp["success"].as_bool()), (404, Some(false)), "{resp}");

        // While it cannot be asked, the entitlement alone decides: never a false answer.
        app.sims.sim.faults.script(Op::ActiveSubscription, [Fault::Error(503); 2]);
        let (status, mine) = read("u-p", "/api/v1/my/vpn").await;
        assert_eq!((status, mine["vpn_status"].as_str()), (200, Some("active")), "{mine}");
        let (status, _) = read("u-p", "/api/v1/my/vpn/subscribe").await;
        assert_eq!(status, 200);

        // Past its expiry it reads expired, subscription or not.
        app.set_vpn_expiry("u-p", in_days(-1)).await;
        assert_eq!(read("u-p", "/api/v1/my/vpn").await.1["vpn_status"], "expired");

        // Free entitlements need no subscription.
        let (status, gift) = app.internal(Method::POST, "/api/internal/entitlements/gift",
            Some(json!({"user_id": "u-g", "traffic_gb": 10, "duration_days": 7}))).await;
        assert_eq!(status, 201, "{gift}");
        assert_eq!(read("u-g", "/api/v1/my/vpn").await.1["vpn_status"], "active");
        assert_eq!(read("u-g", "/api/v1/my/vpn/subscribe").await.0, 200);
    }
}

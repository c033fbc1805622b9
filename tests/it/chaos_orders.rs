//! The chaos run's orders: what each one does through the API (provisions, renewals,
//! deprovisions, deletes by the user, migrations, lowered quantities) and the plan its end
//! state is checked against, sent through a client that retries like a webhook sender.

use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};

use crate::helpers::{INTERNAL_SECRET, JWT_SECRET, read};

/// What the script decided for one order, to check the end state against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    NodeKept,
    NodeDeprovisioned,
    NodeDeletedByUser,
    VpnKept {
        orders: usize,
    },
    VpnDeprovisioned,
    /// Moved to another region once active.
    NodeMigrated,
    /// Ordered with quantity 2, then 1: two nodes stay (nothing is deleted by itself).
    QuantityLowered,
}

/// Calls whichever replica answers, like a webhook sender that retries until it gets an
/// answer: a refused connection or a 503 is tried again.
pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) ports: Vec<u16>,
}

impl Client {
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        user: Option<&str>,
    ) -> (u16, Value) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let port = self.ports[rand::rng().random_range(0..self.ports.len())];
            let mut req = self
                .http
                .request(method.clone(), format!("http://127.0.0.1:{port}{path}"));
            req = match user {
                Some(u) => req.bearer_auth(fulfillment::api::extract::mint_user_token(
                    JWT_SECRET,
                    u,
                    Duration::from_secs(3600),
                )),
                None => req.header("X-Internal-Secret", INTERNAL_SECRET),
            };
            if let Some(b) = &body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(r) if r.status().as_u16() != 503 => return read(r).await,
                _ => {}
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no replica answered {path} for 2 minutes"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits (through kills) until the resource is active.
async fn until_active(client: &Client, id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let path = format!("/api/internal/resources/{id}");
        let (_, r) = client.call(reqwest::Method::GET, &path, None, None).await;
        if r["status"] == "active" {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never became active: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node ordered, then moved to another region once active.
async fn migrated_node(client: &Client, i: usize) -> (String, Plan) {
    let (user, sub) = (format!("m-{i}"), format!("ms-{i}"));
    let order = json!({"user_id": user, "subscription_id": sub, "plan_tier": "basic", "region": "us-east-1"});
    let (status, resp) = client
        .call(
            reqwest::Method::POST,
            "/api/internal/provision",
            Some(order),
            None,
        )
        .await;
    assert!(matches!(status, 200 | 202), "{status} {resp}");
    let id = resp["resource_id"].as_str().unwrap().to_owned();
    until_active(client, &id).await;
    let path = format!("/api/internal/resources/{id}/migrate");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (status, resp) = client
            .call(
                reqwest::Method::POST,
                &path,
                Some(json!({"region": "eu-west-1"})),
                None,
            )
            .await;
        // Active before its VPS's id is known (an agent's report came first): not yet.
        if status == 409 && resp["code"] == "node_not_active" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never migratable: {resp}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        // 409 `migration_in_progress` when a retried request finds the first took effect.
        assert!(
            status == 202 || (status == 409 && resp["code"] == "migration_in_progress"),
            "{status} {resp}"
        );
        break;
    }
    (sub, Plan::NodeMigrated)
}

/// An order for two nodes, then a later one for one.
async fn quantity_lowered(client: &Client, i: usize) -> (String, Plan) {
    let (user, sub) = (format!("q-{i}"), format!("qs-{i}"));
    for (tx, quantity) in [("t1", 2), ("t2", 1)] {
        let order = json!({"user_id": user, "subscription_id": sub, "plan_tier": "basic",
            "region": "us-east-1", "channel_tx_id": tx, "quantity": quantity});
        let (status, resp) = client
            .call(
                reqwest::Method::POST,
                "/api/internal/provision",
                Some(order),
                None,
            )
            .await;
        assert!(matches!(status, 200 | 202), "{status} {resp}");
    }
    (sub, Plan::QuantityLowered)
}

pub(crate) async fn run_order(client: &Client, i: usize) -> (String, Plan) {
    let roll = rand::rng().random_range(0..100);
    if roll < 8 {
        migrated_node(client, i).await
    } else if roll < 14 {
        quantity_lowered(client, i).await
    } else if roll < 40 {
        let (user, sub) = (format!("h-{i}"), format!("hs-{i}"));
        let order = json!({"user_id": user, "subscription_id": sub, "plan_tier": "basic", "region": "us-east-1"});
        let (status, resp) = client
            .call(
                reqwest::Method::POST,
                "/api/internal/provision",
                Some(order),
                None,
            )
            .await;
        assert!(matches!(status, 200 | 202), "{status} {resp}");
        let plan = match roll % 4 {
            0 => {
                tokio::time::sleep(Duration::from_millis(rand::rng().random_range(0..400))).await;
                let (status, resp) = client
                    .call(
                        reqwest::Method::POST,
                        "/api/internal/deprovision",
                        Some(json!({"subscription_id": sub, "reason": "subscription_cancelled"})),
                        None,
                    )
                    .await;
                assert_eq!(status, 200, "{resp}");
                Plan::NodeDeprovisioned
            }
            1 => {
                // 404 when a retried delete finds the first one already took effect.
                let (status, resp) = client
                    .call(
                        reqwest::Method::DELETE,
                        "/api/v1/my/node",
                        None,
                        Some(&user),
                    )
                    .await;
                assert!(matches!(status, 200 | 404), "{status} {resp}");
                Plan::NodeDeletedByUser
            }
            _ => Plan::NodeKept,
        };
        (sub, plan)
    } else {
        let (user, sub) = (format!("v-{i}"), format!("vs-{i}"));
        let order = |tx: &str| {
            json!({"user_id": user, "subscription_id": sub, "app_source": "otun",
            "plan_tier": "premium", "channel": "stripe", "expire_days": 30, "channel_tx_id": tx})
        };
        let (status, resp) = client
            .call(
                reqwest::Method::POST,
                "/api/internal/provision",
                Some(order("t1")),
                None,
            )
            .await;
        assert!(matches!(status, 200 | 202), "{status} {resp}");
        let plan = match roll % 3 {
            0 => {
                let (status, resp) = client
                    .call(
                        reqwest::Method::POST,
                        "/api/internal/provision",
                        Some(order("t2")),
                        None,
                    )
                    .await;
                assert!(matches!(status, 200 | 202), "{status} {resp}");
                Plan::VpnKept { orders: 2 }
            }
            1 => {
                let (status, resp) = client
                    .call(
                        reqwest::Method::POST,
                        "/api/internal/deprovision",
                        Some(json!({"subscription_id": sub})),
                        None,
                    )
                    .await;
                assert_eq!(status, 200, "{resp}");
                Plan::VpnDeprovisioned
            }
            _ => Plan::VpnKept { orders: 1 },
        };
        (sub, plan)
    }
}

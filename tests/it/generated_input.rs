//! Generated input, so the next hole is found by a test rather than by a person. A seeded
//! generator (`FUZZ_SEED`, `FUZZ_CASES` per database; 1,000 by default, on both) sends
//! every JSON endpoint valid bodies with one part replaced (random types, extreme numbers,
//! control characters, deep nesting, very long strings), random bodies, random path
//! segments (percent-encoded bytes, invalid UTF-8 included) and tokens with random claims.
//! For every request it asserts: no 500, no hang, a refusal in our JSON shape, and no row
//! written by a refused request.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::generate::{deep, mutate, query, segment, string, value};
use crate::helpers::{Backend, INTERNAL_SECRET, JWT_SECRET, TestApp, read};
use crate::on_both;

fn seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(9)
}

fn cases() -> usize {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

/// Who calls.
#[derive(Clone, Copy)]
enum Caller {
    Internal,
    User,
    Node,
    Nobody,
}

struct Case {
    method: Method,
    path: String,
    body: Option<String>,
    caller: Caller,
    token: Option<String>,
}

fn token_with_claims(rng: &mut StdRng) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = Map::new();
    for (key, typical) in [
        ("uid", json!("u-1")),
        ("sub", json!("u-1")),
        ("exp", json!(now + 600)),
        ("nbf", json!(now - 5)),
    ] {
        match rng.random_range(0..4) {
            0 => {}
            1 => {
                claims.insert(key.into(), typical);
            }
            _ => {
                claims.insert(key.into(), value(rng, 2));
            }
        }
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    if rng.random_bool(0.1) {
        header.crit = Some(vec![string(rng)]);
    }
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    jsonwebtoken::encode(&header, &Value::Object(claims), &key).unwrap()
}

fn case(rng: &mut StdRng, resource_id: &str) -> Case {
    let provision = json!({"user_id": "u-1", "subscription_id": "sub-1", "user_email": "u@example.com",
        "app_source": "otun", "business_type": "subscription", "channel": "stripe", "plan_tier": "premium",
        "region": "ap-northeast-1", "traffic_limit": 0, "expire_days": 30, "channel_tx_id": "tx-1",
        "period_start": "2026-01-01T00:00:00Z", "period_end": "2026-02-01T00:00:00Z", "amount": 999,
        "currency": "usd", "quantity": 1, "months": 1, "device_id": "d-1", "resource_type": "vpn_user"});
    let node_report = json!({"resource_id": resource_id, "public_ip": "203.0.113.9", "api_port": 8080,
        "api_key": "k", "vless_port": 443, "ss_port": 8388, "public_key": "pk", "short_id": "s",
        "error_message": "boom"});
    let stats = json!({"resource_id": resource_id, "rx_bytes": 10, "tx_bytes": 10, "load1": 0.5,
        "cpu_percent": 10.0, "mem_percent": 20.0, "reported_at": "2026-01-01T00:00:00Z"});
    let internal =
        |method: Method, path: String, template: Option<&Value>, rng: &mut StdRng| Case {
            method,
            path,
            body: template.map(|t| mutate(rng, t)),
            caller: Caller::Internal,
            token: None,
        };
    let id = if rng.random_bool(0.5) {
        resource_id.to_owned()
    } else {
        segment(rng)
    };
    let seg = segment(rng);
    match rng.random_range(0..23) {
        0..=3 => internal(
            Method::POST,
            "/api/internal/provision".into(),
            Some(&provision),
            rng,
        ),
        4 => {
            let mut hosting = provision.clone();
            hosting["app_source"] = json!("obox");
            hosting["resource_type"] = json!("hosting_node");
            internal(
                Method::POST,
                "/api/internal/provision".into(),
                Some(&hosting),
                rng,
            )
        }
        5 => internal(
            Method::POST,
            "/api/internal/deprovision".into(),
            Some(
                &json!({"subscription_id": "sub-x", "resource_id": resource_id, "reason": "admin"}),
            ),
            rng,
        ),
        6 => internal(
            Method::PUT,
            format!("/api/internal/resources/{id}/vpn"),
            Some(&json!({"traffic_limit": 1024, "extend_days": 3, "plan_tier": "basic"})),
            rng,
        ),
        7 => internal(
            Method::PUT,
            format!("/api/internal/users/{seg}/email"),
            Some(&json!({"email": "n@example.com"})),
            rng,
        ),
        8 => internal(
            Method::POST,
            "/api/internal/entitlements/gift".into(),
            Some(
                &json!({"user_id": "u-g", "email": "g@example.com", "traffic_gb": 10, "duration_days": 7,
                "service_tier": "standard", "note": "hi"}),
            ),
            rng,
        ),
        9 => internal(
            Method::POST,
            format!(
                "/api/internal/operator/resources/{id}/{}",
                if rng.random_bool(0.5) {
                    "retry"
                } else {
                    "fail"
                }
            ),
            Some(&json!({"operator": "op", "reason": "why"})),
            rng,
        ),
        10 => {
            let paths = [
                format!("/api/internal/resources/{id}"),
                format!("/api/internal/subscriptions/{seg}/resources"),
                format!("/api/internal/users/{seg}/resources"),
                format!("/api/internal/vpn/user/{seg}/status"),
                format!("/api/internal/vpn/user/{seg}/subscribe"),
                format!("/api/internal/resources/{id}/events"),
                format!(
                    "/api/internal/entitlements?{}",
                    query(rng, &["user_id", "business_type", "status"])
                ),
            ];
            internal(
                Method::GET,
                paths[rng.random_range(0..paths.len())].clone(),
                None,
                rng,
            )
        }
        11 | 12 => {
            let (path, template) = match rng.random_range(0..3) {
                0 => ("/api/callback/node/ready", &node_report),
                1 => ("/api/callback/node/failed", &node_report),
                _ => ("/api/callback/node/stats", &stats),
            };
            Case {
                method: Method::POST,
                path: path.into(),
                body: Some(mutate(rng, template)),
                caller: Caller::Node,
                token: None,
            }
        }
        13 => {
            let q = query(
                rng,
                &[
                    "resource_id",
                    "public_ip",
                    "api_port",
                    "token",
                    "error_message",
                ],
            );
            let which = if rng.random_bool(0.5) {
                "ready"
            } else {
                "failed"
            };
            Case {
                method: Method::GET,
                path: format!("/api/callback/node/{which}?{q}"),
                body: None,
                caller: Caller::Nobody,
                token: None,
            }
        }
        14 | 15 => {
            let paths = [
                "/api/v1/my/node",
                "/api/v1/my/nodes",
                "/api/v1/my/vpn",
                "/api/v1/my/vpn/subscribe",
                "/api/v1/regions",
            ];
            Case {
                method: Method::GET,
                path: paths[rng.random_range(0..paths.len())].into(),
                body: None,
                caller: Caller::User,
                token: Some(token_with_claims(rng)),
            }
        }
        16 => Case {
            method: Method::POST,
            path: "/api/v1/my/node".into(),
            body: Some(mutate(rng, &json!({"region": "ap-northeast-1"}))),
            caller: Caller::User,
            token: None,
        },
        17 => Case {
            method: Method::DELETE,
            path: "/api/v1/my/node".into(),
            body: None,
            caller: Caller::User,
            token: Some(token_with_claims(rng)),
        },
        18 => Case {
            method: Method::GET,
            path: format!("/api/{seg}/{}", segment(rng)),
            body: None,
            caller: Caller::Internal,
            token: None,
        },
        20 => internal(
            Method::POST,
            format!("/api/internal/resources/{id}/migrate"),
            Some(&json!({"region": "eu-west-1", "plan_tier": "basic"})),
            rng,
        ),
        21 => Case {
            method: Method::POST,
            path: if rng.random_bool(0.5) {
                "/api/v1/my/nodes".into()
            } else {
                format!("/api/v1/my/nodes/{id}/migrate")
            },
            body: Some(mutate(rng, &json!({"region": "ap-northeast-1"}))),
            caller: Caller::User,
            token: None,
        },
        22 => Case {
            method: if rng.random_bool(0.5) {
                Method::GET
            } else {
                Method::DELETE
            },
            path: format!("/api/v1/my/nodes/{id}"),
            body: None,
            caller: Caller::User,
            token: Some(token_with_claims(rng)),
        },
        _ => Case {
            method: Method::POST,
            path: "/api/internal/provision".into(),
            body: Some(deep(rng.random_range(100..400)).to_string()),
            caller: Caller::Internal,
            token: None,
        },
    }
}

/// Rows of the tables only requests insert into (the engine writes the history and the
/// callbacks on its own time, after an accepted request; `hardening.rs` checks those on a
/// quiet service).
async fn request_rows(app: &TestApp) -> Vec<i64> {
    let mut rows = Vec::new();
    for table in [
        "resources",
        "entitlements",
        "idempotency_keys",
        "hosting_orders",
    ] {
        rows.push(app.db.count(table, "true").await);
    }
    rows
}

on_both! {
    async fn generated_input_never_gets_a_500_a_hang_or_a_write(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.subscribe("u-1", "sub-1", "premium");
        app.sims.subscribe_vpn("u-1", "sub-1", "premium");
        let (_, node) = app.provision("u-h", "sub-h").await;
        let resource_id = node["resource_id"].as_str().unwrap().to_owned();
        app.wait_status(&resource_id, "active").await;
        let node_token = app.sims.sim.hosting.creates().last().unwrap().callback_token.clone();
        let http = fulfillment::upstream::http_client(Duration::from_secs(20));
        let mut rng = StdRng::seed_from_u64(seed() ^ (b == Backend::Sqlite) as u64);
        let mut before = request_rows(&app).await;
        let mut refused = 0;
        let n = cases();
        for i in 0..n {
            let c = case(&mut rng, &resource_id);
            let mut req = http.request(c.method.clone(), app.url(&c.path));
            req = match c.caller {
                Caller::Internal => req.header("X-Internal-Secret", INTERNAL_SECRET),
                Caller::User => req.bearer_auth(c.token.clone().unwrap_or_else(|| app.token("u-1"))),
                Caller::Node => req.bearer_auth(&node_token),
                Caller::Nobody => req,
            };
            if let Some(body) = &c.body {
                req = req.header("Content-Type", "application/json").body(body.clone());
            }
            let what = format!("case {i} (seed {}): {} {} {}", seed(), c.method, c.path.chars().take(200).collect::<String>(),
                c.body.as_deref().unwrap_or("").chars().take(300).collect::<String>());
            let resp = tokio::time::timeout(Duration::from_secs(25), req.send()).await
                .unwrap_or_else(|_| panic!("hung: {what}"))
                .unwrap_or_else(|e| panic!("no answer ({e}): {what}"));
            let (status, body) = read(resp).await;
            assert!(status < 500, "{status} {body}: {what}");
            let after = request_rows(&app).await;
            if (400..500).contains(&status) {
                refused += 1;
                assert!(body["code"].is_string(), "a refusal in our shape: {body}: {what}");
                assert_eq!(after, before, "a refused request wrote: {what}");
            }
            before = after;
        }
        assert!(refused > n / 2, "most generated input is refused ({refused} of {n})");
    }
}

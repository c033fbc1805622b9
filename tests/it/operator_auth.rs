//! Operator tokens (CONTRACTS.md §4.6): a JWT with `"role": "operator"` opens the operator
//! endpoints and the internal reads beside `X-Internal-Secret`, and its name is what the
//! history records; a user token there is 403; the subscription service's writes stay
//! secret-only; and the user API refuses an operator token.

use std::time::Duration;

use fulfillment::api::extract::{mint_operator_token, mint_user_token};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{JWT_SECRET, TestApp, read};
use crate::on_both;

async fn bearer(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    read(req.send().await.unwrap()).await
}

fn hour() -> Duration {
    Duration::from_secs(3600)
}

on_both! {
    async fn an_operator_token_opens_the_console_endpoints_and_signs_every_action(b: Backend) {
        let app = TestApp::spawn(b).await;
        let (_, body) = app.provision("u-1", "sub-1").await;
        let id = body["resource_id"].as_str().unwrap().to_owned();
        app.wait_status(&id, "active").await;
        let alice = mint_operator_token(JWT_SECRET, "alice", hour());
        for path in [
            "/api/internal/operator/queue".to_owned(),
            format!("/api/internal/resources/{id}"),
            format!("/api/internal/resources/{id}/events"),
            "/api/internal/subscriptions/sub-1/resources".to_owned(),
            "/api/internal/users/u-1/resources".to_owned(),
            "/api/internal/nodes/load".to_owned(),
        ] {
            let (status, body) = bearer(&app, Method::GET, &path, &alice, None).await;
            assert_eq!(status, 200, "{path}: {body}");
        }
        // The token's name is recorded, whatever the body claims.
        let path = format!("/api/internal/operator/resources/{id}/retry");
        let (status, body) = bearer(&app, Method::POST, &path, &alice, Some(json!({"operator": "mallory", "reason": "look again"}))).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = bearer(&app, Method::POST, &format!("/api/internal/resources/{id}/migrate"), &alice, None).await;
        assert_eq!(status, 202, "{body}");
        let (_, history) = app.internal(Method::GET, &format!("/api/internal/resources/{id}/events"), None).await;
        let actors: Vec<(&str, &str)> = history["events"].as_array().unwrap().iter()
            .map(|e| (e["kind"].as_str().unwrap(), e["actor"].as_str().unwrap())).collect();
        assert!(actors.contains(&("operator_retry", "operator:alice")), "{actors:?}");
        assert!(actors.contains(&("migration_requested", "operator:alice")), "{actors:?}");
        assert!(actors.iter().all(|(_, a)| !a.contains("mallory")));
    }
}

on_both! {
    async fn user_and_operator_tokens_never_pass_for_each_other(b: Backend) {
        let app = TestApp::spawn(b).await;
        app.sims.subscribe("u-1", "sub-1", "premium");
        let (_, body) = app.provision("u-1", "sub-1").await;
        let id = body["resource_id"].as_str().unwrap().to_owned();
        // Quiet: the node is up and reported, so whatever changes next was a request's doing.
        app.wait_status(&id, "active").await;
        app.wait_callbacks("sub-1", 1).await;
        let store = app.store();
        assert!(crate::helpers::wait_until(Duration::from_secs(10), || async {
            store.outbox_backlog().await.unwrap() == 0
                && store.resource(id.parse().unwrap()).await.unwrap().unwrap().node_id.is_some()
        }).await);
        let user = mint_user_token(JWT_SECRET, "u-1", hour());
        let alice = mint_operator_token(JWT_SECRET, "alice", hour());
        let before = app.db.row_counts().await;

        // A user token on the console's endpoints: 403.
        for (method, path) in [
            (Method::GET, "/api/internal/operator/queue".to_owned()),
            (Method::GET, format!("/api/internal/resources/{id}")),
            (Method::GET, "/api/internal/nodes/load".to_owned()),
            (Method::POST, format!("/api/internal/operator/resources/{id}/retry")),
            (Method::POST, format!("/api/internal/resources/{id}/migrate")),
        ] {
            let (status, body) = bearer(&app, method, &path, &user, Some(json!({}))).await;
            assert_eq!((status, body["code"].as_str()), (403, Some("not_an_operator")), "{path}");
        }
        // An operator token on the user API and the ticket: 401.
        for (method, path) in [
            (Method::GET, "/api/v1/my/node"),
            (Method::POST, "/api/v1/my/nodes"),
            (Method::POST, "/api/v1/my/events/ticket"),
            (Method::GET, "/api/v1/my/vpn"),
        ] {
            let (status, body) = bearer(&app, method, path, &alice, Some(json!({}))).await;
            assert_eq!((status, body["code"].as_str()), (401, Some("operator_token")), "{path}");
        }
        // The subscription service's writes take the secret only.
        for path in [
            "/api/internal/provision",
            "/api/internal/deprovision",
            "/api/internal/entitlements/gift",
        ] {
            let body = json!({"user_id": "u-9", "subscription_id": "sub-9", "traffic_gb": 1, "duration_days": 1});
            let (status, answer) = bearer(&app, Method::POST, path, &alice, Some(body)).await;
            assert_eq!(status, 401, "{path}: {answer}");
        }
        let (status, _) = bearer(&app, Method::PUT, "/api/internal/users/u-1/email", &alice, Some(json!({"email": "a@b.c"}))).await;
        assert_eq!(status, 401);
        // Forged, expired, or nameless operator tokens.
        let forged = mint_operator_token("another-secret-0123456789abcdef0123", "alice", hour());
        let (status, _) = bearer(&app, Method::GET, "/api/internal/operator/queue", &forged, None).await;
        assert_eq!(status, 401);
        let (status, body) = bearer(&app, Method::GET, "/api/internal/operator/queue", "", None).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("missing_secret")));
        let nameless = mint_operator_token(JWT_SECRET, "", hour());
        let (status, _) = bearer(&app, Method::GET, "/api/internal/operator/queue", &nameless, None).await;
        assert_eq!(status, 401);
        assert_eq!(app.db.row_counts().await, before, "no refusal wrote anything");
    }
}

/// What `fulfillment token --operator NAME` prints, configured as `app` is and with `env`.
fn cli_operator_token(app: &TestApp, name: &str, env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fulfillment"))
        .args(["token", "--operator", name])
        .env_clear()
        .envs(crate::helpers::test_env(&app.db.url, &app.sims.url))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An HS256 token with `claims` and an hour to live.
fn signed(secret: &str, mut claims: Value) -> String {
    claims["exp"] = (chrono::Utc::now().timestamp() + 3600).into();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_claim_alone_or_the_users_key_makes_no_operator() {
    const OPS: &str = "operator-secret-0123456789abcdef0123";
    let app = TestApp::spawn_with(crate::helpers::Backend::Sqlite, Default::default(), |c| {
        c.secrets.operator_jwt = Some(fulfillment::config::Secret::new(OPS));
    })
    .await;
    let queue = "/api/internal/operator/queue";
    // What an auth service may put in its users' tokens: the user API takes it.
    let role_only = signed(JWT_SECRET, json!({"uid": "u-role", "role": "operator"}));
    let (status, body) = bearer(&app, Method::GET, queue, &role_only, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_an_operator"))
    );
    let (status, _) = bearer(&app, Method::GET, "/api/v1/my/node", &role_only, None).await;
    assert_eq!(status, 200);
    // The operators' claims under the users' key, when operators have a key of their own.
    let users_key = mint_operator_token(JWT_SECRET, "mallory", hour());
    let (status, _) = bearer(&app, Method::GET, queue, &users_key, None).await;
    assert_eq!(status, 403);
    // The operators' key, audience and role: the console opens.
    let alice = mint_operator_token(OPS, "alice", hour());
    let (status, body) = bearer(&app, Method::GET, queue, &alice, None).await;
    assert_eq!(status, 200, "{body}");
    // `fulfillment token --operator` signs with OPERATOR_JWT_SECRET when it is set.
    let dave = cli_operator_token(&app, "dave", &[("OPERATOR_JWT_SECRET", OPS)]);
    let (status, body) = bearer(&app, Method::GET, queue, &dave, None).await;
    assert_eq!(status, 200, "{body}");
    // A user token with any audience is still a user's.
    let with_aud = signed(JWT_SECRET, json!({"uid": "u-aud", "aud": ["the-app", "x"]}));
    let (status, body) = bearer(&app, Method::GET, "/api/v1/my/node", &with_aud, None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_an_operator_token_the_service_accepts() {
    let app = TestApp::spawn(crate::helpers::Backend::Sqlite).await;
    let token = cli_operator_token(&app, "carol", &[]);
    let (status, body) = bearer(
        &app,
        Method::GET,
        "/api/internal/operator/queue",
        &token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = bearer(&app, Method::GET, "/api/v1/my/node", &token, None).await;
    assert_eq!(status, 401);
    // Neither or both of --user and --operator is a usage error.
    let none = std::process::Command::new(env!("CARGO_BIN_EXE_fulfillment"))
        .args(["token"])
        .env_clear()
        .envs(crate::helpers::test_env(&app.db.url, &app.sims.url))
        .output()
        .unwrap();
    assert!(!none.status.success());
}

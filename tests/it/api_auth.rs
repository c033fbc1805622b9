//! Authentication of every surface: user JWTs, the internal secret, node credentials.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, INTERNAL_SECRET, JWT_SECRET, TestApp, read};

pub(crate) fn sign(claims: Value, secret: &str, alg: Algorithm) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub(crate) fn exp(offset_secs: i64) -> i64 {
    chrono::Utc::now().timestamp() + offset_secs
}

async fn my_node_with(app: &TestApp, token: Option<&str>) -> (u16, Value) {
    let mut req = app.http.get(app.url("/api/v1/my/node"));
    if let Some(t) = token {
        req = req.header("Authorization", t);
    }
    read(req.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_user_tokens_are_refused_with_a_reason() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(json!({"uid": "u-1", "exp": exp(3600)}).to_string())
    );
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "missing_token"),
        (Some("Bearer".into()), "missing_token"),
        (Some("Basic dTpw".into()), "missing_token"),
        (Some("Bearer not.a.jwt".into()), "invalid_token"),
        (
            Some(format!(
                "Bearer {}",
                sign(
                    json!({"uid": "u-1", "exp": exp(-3600)}),
                    JWT_SECRET,
                    Algorithm::HS256
                )
            )),
            "token_expired",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(
                    json!({"uid": "u-1", "exp": exp(3600)}),
                    "another-secret-of-enough-length!!",
                    Algorithm::HS256
                )
            )),
            "invalid_token",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(
                    json!({"uid": "u-1", "exp": exp(3600)}),
                    JWT_SECRET,
                    Algorithm::HS512
                )
            )),
            "invalid_token",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(json!({"uid": "u-1"}), JWT_SECRET, Algorithm::HS256)
            )),
            "invalid_token",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(
                    json!({"uid": "", "sub": "", "exp": exp(3600)}),
                    JWT_SECRET,
                    Algorithm::HS256
                )
            )),
            "invalid_token",
        ),
        (Some(format!("Bearer {alg_none}")), "invalid_token"),
    ];
    for (header, code) in cases {
        let (status, body) = my_node_with(&app, header.as_deref()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some(code)),
            "{header:?}: {body}"
        );
        assert!(body["error"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_is_uid_when_present_else_sub() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.sims.subscribe("alice", "sub-a", "premium");
    let status_for = |claims: Value| {
        let token = format!("Bearer {}", sign(claims, JWT_SECRET, Algorithm::HS256));
        let app = &app;
        async move { my_node_with(app, Some(&token)).await.1["hosting_status"].clone() }
    };
    assert_eq!(
        status_for(json!({"uid": "alice", "sub": "bob", "exp": exp(60)})).await,
        "subscribed_no_node"
    );
    assert_eq!(
        status_for(json!({"sub": "alice", "exp": exp(60)})).await,
        "subscribed_no_node"
    );
    assert_eq!(
        status_for(json!({"uid": "bob", "sub": "alice", "exp": exp(60)})).await,
        "no_subscription"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_api_needs_the_exact_secret() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let url = app.url("/api/internal/subscriptions/sub-1/resources");
    for (secret, code) in [
        (None, "missing_secret"),
        (Some(""), "invalid_secret"),
        (Some("wrong"), "invalid_secret"),
        (
            Some(&INTERNAL_SECRET[..INTERNAL_SECRET.len() - 1]),
            "invalid_secret",
        ),
    ] {
        let mut req = app.http.get(&url);
        if let Some(s) = secret {
            req = req.header("X-Internal-Secret", s);
        }
        let (status, body) = read(req.send().await.unwrap()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some(code)),
            "{secret:?}"
        );
    }
    let (status, body) = app
        .internal(
            Method::GET,
            "/api/internal/subscriptions/sub-1/resources",
            None,
        )
        .await;
    assert_eq!((status, body), (200, json!({"resources": []})));
    // A user token is no internal credential: on the reads operators also make, it is a
    // known caller who may not (403, CONTRACTS.md §4.6); on the writes, no credential.
    let r = app
        .http
        .get(&url)
        .bearer_auth(app.token("u-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .http
        .post(app.url("/api/internal/deprovision"))
        .bearer_auth(app.token("u-1"))
        .json(&json!({"subscription_id": "sub-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_routes_need_no_credentials_and_user_routes_do() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for path in ["/health", "/ready", "/api/v1/public/regions"] {
        assert_eq!(
            app.http.get(app.url(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    assert_eq!(
        app.http
            .get(app.url("/api/v1/regions"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let (status, _) = app.user(Method::GET, "/api/v1/regions", "u-1", None).await;
    assert_eq!(status, 200);
    let r = app
        .http
        .post(app.url("/api/callback/node/ready"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

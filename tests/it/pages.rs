//! The pages over plain HTTP (the browser tests are in `browser_*.rs`): headers, assets,
//! sessions, and refusals that change nothing (CONTRACTS.md §4.6).

use std::time::Duration;

use fulfillment::api::extract::mint_operator_token;
use reqwest::Method;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use serde_json::json;

use jsonwebtoken::Algorithm;

use crate::api_auth::{exp, sign};
use crate::helpers::{Backend, JWT_SECRET, TestApp};

/// `application/x-www-form-urlencoded`, as a browser sends a form.
fn encoded(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

trait Form {
    fn form_of(self, fields: &[(&str, &str)]) -> Self;
}

impl Form for reqwest::RequestBuilder {
    fn form_of(self, fields: &[(&str, &str)]) -> Self {
        self.header("Content-Type", "application/x-www-form-urlencoded")
            .body(encoded(fields))
    }
}

/// A client that does not follow redirects, so the sign-in's answer can be read.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in at `path` with `token`; the status and the cookie (`name=value`) set.
async fn sign_in(
    app: &TestApp,
    path: &str,
    token: &str,
) -> (u16, Option<String>, reqwest::header::HeaderMap) {
    let r = client()
        .post(app.url(path))
        .header("Origin", app.base.as_str())
        .form_of(&[("token", token)])
        .send()
        .await
        .unwrap();
    let headers = r.headers().clone();
    let cookie = headers
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    (r.status().as_u16(), cookie, headers)
}

async fn page(
    app: &TestApp,
    method: Method,
    path: &str,
    cookie: &str,
    origin: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, String) {
    let mut req = client()
        .request(method, app.url(path))
        .header("Cookie", cookie);
    if let Some(o) = origin {
        req = req.header("Origin", o);
    }
    if !form.is_empty() {
        req = req.form_of(form);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_load_nothing_from_elsewhere_and_their_assets_are_versioned() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for path in ["/", "/console", "/api/docs"] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()[CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
        let html = r.text().await.unwrap();
        assert!(
            !html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"),
            "{path}"
        );
        assert!(
            !html.contains("<script>") && !html.contains(" style="),
            "{path}: inline script or style"
        );
        // Every asset it links is ours, under the current version.
        for link in html
            .split(['"', '\''])
            .filter(|s| s.starts_with("/assets/"))
        {
            let a = app.http.get(app.url(link)).send().await.unwrap();
            assert_eq!(a.status(), 200, "{link}");
            assert!(
                a.headers()["cache-control"]
                    .to_str()
                    .unwrap()
                    .contains("immutable")
            );
            let stale = link.replacen("/assets/", "/assets/0", 1);
            assert_eq!(
                app.http.get(app.url(&stale)).send().await.unwrap().status(),
                404
            );
        }
    }
    let r = app
        .http
        .get(app.url("/assets/x/nothing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_sets_a_signed_strict_cookie_and_a_bad_token_sets_none() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.sims.subscribe("pg-1", "sub-p1", "basic");
    let (status, cookie, headers) = sign_in(&app, "/signin", &app.token("pg-1")).await;
    assert_eq!(status, 303);
    assert_eq!(headers[LOCATION], "/");
    let set = headers[SET_COOKIE].to_str().unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(flag), "{set}");
    }
    let cookie = cookie.unwrap();
    let (status, html) = page(&app, Method::GET, "/app/nodes", &cookie, None, &[]).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Create a node in"), "{html}");

    // An altered cookie, and tokens that do not sign in, open nothing.
    let altered = format!("{}x", cookie);
    assert_eq!(
        page(&app, Method::GET, "/app/nodes", &altered, None, &[])
            .await
            .0,
        401
    );
    let expired = sign(
        json!({"uid": "pg-1", "exp": exp(-3600)}),
        JWT_SECRET,
        Algorithm::HS256,
    );
    let foreign = sign(
        json!({"uid": "pg-1", "exp": exp(3600)}),
        "another-secret",
        Algorithm::HS256,
    );
    let operator = mint_operator_token(JWT_SECRET, "op", Duration::from_secs(600));
    for token in ["", "garbage", &expired, &foreign, &operator] {
        let (status, cookie, _) = sign_in(&app, "/signin", token).await;
        assert!(status == 400 || status == 401, "{token}: {status}");
        assert_eq!(cookie, None, "{token}");
    }
    // The console takes operator tokens only.
    let (status, cookie, _) = sign_in(&app, "/console/signin", &app.token("pg-1")).await;
    assert_eq!((status, cookie), (403, None));
    let (status, cookie, headers) = sign_in(&app, "/console/signin", &operator).await;
    assert_eq!(
        (status, headers[LOCATION].to_str().unwrap()),
        (303, "/console")
    );
    assert!(
        headers[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Path=/console")
    );
    let (status, html) = page(
        &app,
        Method::GET,
        "/console/queue",
        &cookie.unwrap(),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_change_from_another_origin_or_none_is_refused_and_changes_nothing() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.sims.subscribe("pg-2", "sub-p2", "basic");
    let (_, cookie, _) = sign_in(&app, "/signin", &app.token("pg-2")).await;
    let cookie = cookie.unwrap();
    let form = [("region", "eu-west-1")];
    for origin in [Some("http://evil.example"), Some("null"), None] {
        let (status, html) = page(&app, Method::POST, "/app/nodes", &cookie, origin, &form).await;
        assert_eq!(status, 403, "{origin:?}");
        assert!(html.contains("another site"), "{html}");
    }
    let (_, mine) = app
        .user(Method::GET, "/api/v1/my/nodes", "pg-2", None)
        .await;
    assert_eq!(mine["nodes"], json!([]));
    // Signing in from elsewhere is refused too (a login CSRF).
    let r = client()
        .post(app.url("/signin"))
        .header("Origin", "http://evil.example")
        .form_of(&[("token", &app.token("pg-2"))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get(SET_COOKIE).is_none());
    // From this origin, it goes through.
    let (status, html) = page(
        &app,
        Method::POST,
        "/app/nodes",
        &cookie,
        Some(&app.base),
        &form,
    )
    .await;
    assert_eq!(status, 200, "{html}");
    let (_, mine) = app
        .user(Method::GET, "/api/v1/my/nodes", "pg-2", None)
        .await;
    assert_eq!(mine["nodes"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_never_cross_between_users_or_into_the_console() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.sims.subscribe("pg-3", "sub-p3", "basic");
    app.sims.subscribe("pg-4", "sub-p4", "basic");
    let (_, other) = app.provision("pg-4", "sub-p4").await;
    let other = other["resource_id"].as_str().unwrap().to_owned();
    let (_, cookie, _) = sign_in(&app, "/signin", &app.token("pg-3")).await;
    let cookie = cookie.unwrap();
    let origin = Some(app.base.as_str());
    // Another user's node: not found, and untouched.
    for path in [
        format!("/app/nodes/{other}/delete"),
        format!("/app/nodes/{other}/migrate"),
    ] {
        let (status, html) = page(
            &app,
            Method::POST,
            &path,
            &cookie,
            origin,
            &[("region", "eu-west-1")],
        )
        .await;
        assert_eq!(status, 404, "{path}: {html}");
    }
    assert_ne!(app.resource(&other).await["status"], "deleting");
    assert!(app.resource(&other).await.get("migration").is_none());
    // A user's session opens no console page, even renamed to the console's cookie.
    assert_eq!(
        page(&app, Method::GET, "/console/queue", &cookie, None, &[])
            .await
            .0,
        401
    );
    let renamed = cookie.replacen("fs_session", "fs_console", 1);
    assert_eq!(
        page(&app, Method::GET, "/console/queue", &renamed, None, &[])
            .await
            .0,
        401
    );
    let (status, _) = page(
        &app,
        Method::POST,
        "/console/queue",
        &renamed,
        origin,
        &[("id", &other), ("op", "fail")],
    )
    .await;
    assert_eq!(status, 401);
    assert_ne!(app.resource(&other).await["status"], "failed");
    // An operator's session is no user's.
    let operator = mint_operator_token(JWT_SECRET, "op", Duration::from_secs(600));
    let (_, op_cookie, _) = sign_in(&app, "/console/signin", &operator).await;
    let as_user = op_cookie.unwrap().replacen("fs_console", "fs_session", 1);
    assert_eq!(
        page(&app, Method::GET, "/app/nodes", &as_user, None, &[])
            .await
            .0,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_forms_are_refused_in_words_and_change_nothing() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.sims.subscribe("pg-5", "sub-p5", "basic");
    let (_, cookie, _) = sign_in(&app, "/signin", &app.token("pg-5")).await;
    let cookie = cookie.unwrap();
    let origin = Some(app.base.as_str());
    // An unknown region: the fragment says so, in a sentence.
    let (status, html) = page(
        &app,
        Method::POST,
        "/app/nodes",
        &cookie,
        origin,
        &[("region", "mars-1")],
    )
    .await;
    assert_eq!(status, 422, "{html}");
    assert!(
        html.contains("role=\"alert\"") && !html.contains("\"code\""),
        "{html}"
    );
    // Too large a form.
    let big = "x".repeat(100 * 1024);
    let (status, html) = page(
        &app,
        Method::POST,
        "/app/nodes",
        &cookie,
        origin,
        &[("region", &big)],
    )
    .await;
    assert_eq!(status, 413, "{html}");
    assert!(html.contains("too large"), "{html}");
    let (_, mine) = app
        .user(Method::GET, "/api/v1/my/nodes", "pg-5", None)
        .await;
    assert_eq!(mine["nodes"], json!([]));
    // The console's bulk action with nothing ticked does nothing.
    let operator = mint_operator_token(JWT_SECRET, "op", Duration::from_secs(600));
    let (_, op_cookie, _) = sign_in(&app, "/console/signin", &operator).await;
    let op_cookie = op_cookie.unwrap();
    let (status, html) = page(
        &app,
        Method::POST,
        "/console/queue",
        &op_cookie,
        origin,
        &[("op", "fail")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(html.contains("Tick at least one row."), "{html}");
    let (status, html) = page(
        &app,
        Method::POST,
        "/console/queue",
        &op_cookie,
        origin,
        &[("op", "explode"), ("id", "x")],
    )
    .await;
    assert_eq!(status, 422, "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_carry_the_product_name_and_a_node_card_says_how_to_connect() {
    let app = TestApp::spawn_with(Backend::Sqlite, Default::default(), |c| {
        c.http.product_name = "Obox <Cloud>".into();
    })
    .await;
    let body = client().get(app.url("/")).send().await.unwrap();
    let html = body.text().await.unwrap();
    assert!(
        html.contains("Obox &#60;Cloud&#62;") && !html.contains("<Cloud>"),
        "the sign-in page names the product, escaped: {html}"
    );
    assert!(!html.contains("My service"));

    app.sims.subscribe("pg-9", "sub-p9", "premium");
    let (_, resp) = app.provision("pg-9", "sub-p9").await;
    let id = resp["resource_id"].as_str().unwrap().to_owned();
    let node = app.wait_status(&id, "active").await;
    let (_, cookie, _) = sign_in(&app, "/signin", &app.token("pg-9")).await;
    let cookie = cookie.unwrap();
    let (status, html) = page(&app, Method::GET, "/", &cookie, None, &[]).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("<title>Obox &#60;Cloud&#62;: my nodes and VPN</title>"),
        "{html}"
    );
    // Every detail a client needs, each with its copy button; the agent key behind a reveal.
    let facts = [
        ("Address", node["public_ip"].as_str().unwrap().to_owned()),
        ("VLESS port", node["vless_port"].to_string()),
        ("Shadowsocks port", node["ss_port"].to_string()),
        (
            "Public key",
            node["public_key"].as_str().unwrap().to_owned(),
        ),
        ("Short ID", node["short_id"].as_str().unwrap().to_owned()),
    ];
    for (label, value) in facts {
        let row = format!(
            "<dt>{label}</dt><dd><span class=\"mono\">{value}</span> <button type=\"button\" class=\"copy\" data-copy=\"{value}\""
        );
        assert!(html.contains(&row), "{label}: {html}");
    }
    let key = node["api_key"].as_str().unwrap();
    let secret = html
        .split("<details class=\"secret\">")
        .nth(1)
        .expect("the agent key is behind a reveal");
    assert!(secret.contains(&format!("data-copy=\"{key}\"")), "{secret}");
    assert_eq!(
        html.matches(key).count(),
        2,
        "the key appears only inside the reveal (text and copy)"
    );
}

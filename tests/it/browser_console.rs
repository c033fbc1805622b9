//! The operator console and the API's docs page in a real browser.

use std::time::Duration;

use fulfillment::api::extract::mint_operator_token;
use fulfillment::sim::NodeTiming;
use reqwest::Method;
use serde_json::json;

use crate::browser::{Browser, serial, sign_in};
use crate::helpers::{Backend, JWT_SECRET, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_retries_a_failed_resource_and_the_history_names_them() {
    let _serial = serial().await;
    let timing = NodeTiming {
        creating_ms: 60_000,
        send_callbacks: false,
        ..NodeTiming::default()
    };
    let app = TestApp::spawn_with(Backend::Sqlite, timing, |_| {}).await;
    // Two failed resources; the operator ticks one.
    let mut ids = Vec::new();
    for n in 1..=2 {
        let (user, sub) = (format!("ops-{n}"), format!("sub-ops-{n}"));
        app.sims.subscribe(&user, &sub, "basic");
        let (_, order) = app.provision(&user, &sub).await;
        let id = order["resource_id"].as_str().unwrap().to_owned();
        // Only a resource being created can be failed: wait for the engine's first step.
        app.wait_status(&id, "creating").await;
        let (status, body) = app
            .internal(
                Method::POST,
                &format!("/api/internal/operator/resources/{id}/fail"),
                Some(json!({"operator": "setup", "reason": "for the test"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        ids.push(id);
    }
    let b = Browser::start().await;
    let token = mint_operator_token(JWT_SECRET, "alice", Duration::from_secs(600));
    b.goto(&app.url(&format!("/console#token={token}"))).await;
    b.wait_text("This link signs in as alice.").await;
    b.click("#signin button[type=submit]").await;
    b.wait_js(
        "the console",
        "return document.body.dataset.page === 'console'",
    )
    .await;
    let url = b.client.current_url().await.unwrap();
    assert_eq!((url.path(), url.fragment()), ("/console", None));
    b.wait_text(&ids[1][ids[1].len() - 8..]).await;
    b.screenshot("console-queue").await;

    // Tick the first, wait for a refresh of the live queue (the tick survives it), retry.
    b.click(&format!("input[name=id][value='{}']", ids[0]))
        .await;
    b.js("window.sameDocument = true; return true").await;
    // Mark the table shown now, and wait until the live refresh has replaced it.
    b.js("document.querySelector('#queue table').dataset.before = '1'; return true")
        .await;
    b.wait_js(
        "a refresh of the queue",
        "const t = document.querySelector('#queue table'); return !!t && !t.dataset.before",
    )
    .await;
    let ticked = b.js("return [...document.querySelectorAll('#queue input[name=id]:checked')].map(c => c.value)").await;
    assert_eq!(
        ticked,
        json!([ids[0]]),
        "the tick survives the live refresh"
    );
    b.js("document.getElementById('reason').value = 'upstream fixed'; return true")
        .await;
    b.click("#queue button[name=op][value=retry]").await;
    b.wait_text("Retried 1 as alice.").await;
    // Only the ticked resource was touched.
    let history = |id: String| {
        let app = &app;
        async move {
            let (_, h) = app
                .internal(
                    Method::GET,
                    &format!("/api/internal/resources/{id}/events"),
                    None,
                )
                .await;
            h["events"].as_array().unwrap().clone()
        }
    };
    let first = history(ids[0].clone()).await;
    let retry = first
        .iter()
        .find(|e| e["kind"] == "operator_retry")
        .expect("a retry event");
    assert_eq!(retry["actor"], "operator:alice");
    assert!(
        !history(ids[1].clone())
            .await
            .iter()
            .any(|e| e["kind"] == "operator_retry")
    );

    // The resource's history in the console: the row under the operator's name.
    b.js(&format!(
        "document.getElementById('q').value = '{}'; return true",
        ids[0]
    ))
    .await;
    b.click("form.search button").await;
    b.click(&format!("#detail a[href='/console/resources/{}']", ids[0]))
        .await;
    b.wait_text("operator:alice").await;
    assert!(b.text().await.contains("operator_retry"));
    b.screenshot("console-history").await;
    assert_eq!(
        b.js("return window.sameDocument === true").await,
        json!(true)
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_token_or_session_never_reaches_the_console() {
    let _serial = serial().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.sims.subscribe("web-6", "sub-w6", "premium");
    let b = Browser::start().await;
    // A user's token at the console's sign-in is refused.
    b.goto(&app.url(&format!("/console#token={}", app.token("web-6"))))
        .await;
    b.wait_text("This link signs in as web-6.").await;
    b.click("#signin button[type=submit]").await;
    b.wait_text("The console takes an operator token").await;
    assert_ne!(
        b.js("return document.body.dataset.page").await,
        json!("console")
    );
    // A signed-in user's session does not open the console's data either.
    sign_in(&b, &app, "web-6").await;
    let status = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/console/queue').then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(401));
    b.goto(&app.url("/console")).await;
    b.wait_text("Paste an operator token").await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_docs_page_lists_every_operation_renders_markdown_and_tries_a_call() {
    let _serial = serial().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let b = Browser::start().await;
    b.goto(&app.url("/api/docs")).await;
    b.wait_text("/api/v1/my/node").await;
    let doc: serde_json::Value = app
        .http
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expected: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    // Every operation is listed (the renderer ran: its script was allowed, and fetched the
    // document from this origin).
    b.wait_js(
        "every operation listed",
        &format!("return document.querySelectorAll('.opblock').length === {expected}"),
    )
    .await;
    // The descriptions' Markdown is rendered, not printed.
    let code = b
        .js("return [...document.querySelectorAll('.info .description code')].map(c => c.textContent)")
        .await;
    assert!(
        code.as_array().is_some_and(|c| !c.is_empty()),
        "the description's code spans are rendered: {code}"
    );
    // Every URL the page loads is its own (no CDN, no online validator badge).
    let external = b
        .js("return performance.getEntriesByType('resource').map(e => e.name).filter(u => !u.startsWith(location.origin))")
        .await;
    assert_eq!(external, json!([]));
    // A call can be tried from the page, and its answer is shown.
    b.click("#operations-public-health .opblock-summary-control")
        .await;
    b.click("#operations-public-health .try-out__btn").await;
    b.click("#operations-public-health .execute").await;
    b.wait_js(
        "the tried call's answer shown",
        "return [...document.querySelectorAll('#operations-public-health .live-responses-table .response-col_status')].some(c => c.textContent.trim() === '200')",
    )
    .await;
    b.screenshot("api-docs").await;
    b.stop().await;
}

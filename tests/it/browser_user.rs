//! The user's page in a real browser: the demo link, a node created with its steps
//! advancing live, deleted, migrated; the VPN's QR codes; refusals.

use std::time::Duration;

use fulfillment::sim::NodeTiming;
use reqwest::Method;
use serde_json::{Value, json};

use crate::browser::{Browser, decode_qr, serial, sign_in};
use crate::db_outage::Proxy;
use crate::helpers::{Backend, TestApp, quiet_node_with, wait_until};

/// The nodes the page shows: id, status and the state of each creation step.
const NODES: &str = "return [...document.querySelectorAll('#nodes article.node')].map(a => ({
    id: a.dataset.id, status: a.dataset.status,
    region: a.querySelector('h3').innerText,
    migration: (a.querySelector('[data-migration]') || {dataset: {}}).dataset.migration || null,
    steps: [...a.querySelectorAll('li.step')].map(l => l.className.replace('step ', ''))}))";

async fn nodes(b: &Browser) -> Vec<Value> {
    b.js(NODES).await.as_array().cloned().unwrap_or_default()
}

fn slow_nodes() -> NodeTiming {
    NodeTiming {
        creating_ms: 1500,
        installing_ms: 1500,
        ..NodeTiming::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signs_in_by_the_demo_link_watches_a_node_being_created_live_and_deletes_it() {
    let _serial = serial().await;
    let app = TestApp::spawn_with(Backend::Sqlite, slow_nodes(), |_| {}).await;
    app.sims.subscribe("web-1", "sub-w1", "premium");
    let b = Browser::start().await;
    sign_in(&b, &app, "web-1").await;

    // The token left the URL, and scripts cannot read the session cookie.
    let url = b.client.current_url().await.unwrap();
    assert_eq!(
        (url.path(), url.query(), url.fragment()),
        ("/", None, None),
        "{url}"
    );
    assert_eq!(
        b.script_cookies().await,
        "",
        "the session cookie is HttpOnly"
    );
    b.wait_text("Create a node in").await;
    b.js("window.sameDocument = true; return true").await;

    b.js("document.getElementById('region').value = 'eu-west-1'; return true")
        .await;
    b.click("form.create button").await;
    // Watch the steps advance without a reload: record the first step not yet completed.
    let mut seen: Vec<usize> = Vec::new();
    let mut active = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        let shown = nodes(&b).await;
        if let Some(node) = shown.first() {
            if node["status"] == "active" {
                active = true;
                break;
            }
            let steps = node["steps"].as_array().cloned().unwrap_or_default();
            let completed = steps.iter().take_while(|s| *s == "completed").count();
            if seen.last() != Some(&completed) {
                seen.push(completed);
                if completed == 2 {
                    b.screenshot("user-node-creating").await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(active, "the node never showed active; steps seen {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "steps went backwards: {seen:?}"
    );
    assert!(
        seen.contains(&1) && seen.contains(&2),
        "steps seen advancing: {seen:?}"
    );
    assert_eq!(
        b.js("return window.sameDocument === true").await,
        json!(true),
        "the page reloaded"
    );
    b.wait_text("Europe (Ireland)").await;
    b.screenshot("user-node-active").await;
    // On a phone's screen too.
    b.client.set_window_size(390, 844).await.unwrap();
    b.screenshot("user-node-active-phone").await;
    let overflow = b
        .js("return document.documentElement.scrollWidth > window.innerWidth")
        .await;
    assert_eq!(
        overflow,
        json!(false),
        "the page is wider than a phone's screen"
    );
    b.client.set_window_size(1280, 1000).await.unwrap();

    // Delete, confirmed in the dialog.
    let id = nodes(&b).await[0]["id"].as_str().unwrap().to_owned();
    b.click("article.node form[action$='/delete'] button").await;
    b.client.accept_alert().await.unwrap();
    b.wait_js(
        "the node gone from the page",
        "return document.querySelectorAll('#nodes article.node').length === 0",
    )
    .await;
    let r = app.resource(&id).await;
    assert!(
        ["deleting", "deleted"].contains(&r["status"].as_str().unwrap()),
        "{r}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_migrates_a_node_and_sees_the_switch() {
    let _serial = serial().await;
    let app = TestApp::spawn_with(Backend::Sqlite, slow_nodes(), |_| {}).await;
    app.sims.subscribe("web-2", "sub-w2", "premium");
    let (_, order) = app.provision("web-2", "sub-w2").await;
    let id = order["resource_id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "active").await;
    let b = Browser::start().await;
    sign_in(&b, &app, "web-2").await;
    b.wait_text("Asia Pacific (Tokyo)").await;
    b.js("window.sameDocument = true; return true").await;

    let select = format!("#to-{id}");
    b.js(&format!(
        "document.querySelector('{select}').value = 'us-west-2'; return true"
    ))
    .await;
    b.click(&format!("form[action='/app/nodes/{id}/migrate'] button"))
        .await;
    b.wait_js(
        "the migration shown",
        "return !!document.querySelector('#nodes [data-migration]')",
    )
    .await;
    b.screenshot("user-node-migrating").await;
    // The switch: the same node, now in Oregon, and no migration left.
    b.wait_js(
        "the node switched",
        "const a = document.querySelector('#nodes article.node');
         return !!a && a.querySelector('h3').innerText === 'US West (Oregon)'
             && !a.querySelector('[data-migration]') && a.dataset.status === 'active'",
    )
    .await;
    assert_eq!(nodes(&b).await[0]["id"], id.as_str());
    assert_eq!(app.resource(&id).await["region"], "us-west-2");
    assert_eq!(
        b.js("return window.sameDocument === true").await,
        json!(true)
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vpn_qr_codes_decode_to_their_links() {
    let _serial = serial().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.sims.subscribe_vpn("web-3", "sub-w3", "premium");
    let order = json!({"user_id": "web-3", "subscription_id": "sub-w3", "app_source": "otun",
        "plan_tier": "premium", "channel": "stripe", "business_type": "subscription", "expire_days": 30});
    let (status, body) = app
        .internal(Method::POST, "/api/internal/provision", Some(order))
        .await;
    assert_eq!(status, 200, "{body}");
    let b = Browser::start().await;
    sign_in(&b, &app, "web-3").await;
    b.wait_js(
        "a QR code",
        "return document.querySelectorAll('#vpn .qr svg').length > 0",
    )
    .await;
    // The section is replaced whenever the account changes (the live feed), so an element
    // found may be gone by the time it is photographed: the reading is taken again then.
    let mut read = None;
    for _ in 0..20 {
        match read_qr_links(&b).await {
            Ok(pairs) => {
                read = Some(pairs);
                break;
            }
            Err(e) => {
                eprintln!("reading the QR codes again: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let pairs = read.expect("the VPN section held still long enough to be read");
    assert!(!pairs.is_empty());
    for (decoded, link) in &pairs {
        assert_eq!(decoded, link, "the QR code decodes to its link");
    }
    b.screenshot("user-vpn").await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_link_names_its_account_and_never_replaces_a_session() {
    let _serial = serial().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let b = Browser::start().await;
    // Outside demo mode a link signs no one in by itself.
    b.goto(&app.url(&format!("/#token={}", app.token("victim-1"))))
        .await;
    b.wait_text("This link signs in as victim-1.").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b.js("return document.body.dataset.page").await,
        json!("signin")
    );
    let url = b.client.current_url().await.unwrap();
    assert_eq!(url.fragment(), None, "the token left the address bar");
    // The visitor confirms: signed in.
    b.click("#signin button[type=submit]").await;
    b.wait_js(
        "the user's page",
        "return document.body.dataset.page === 'user'",
    )
    .await;
    b.wait_text("victim-1").await;
    // Another account's link, with a session open: the session stays.
    b.goto(&app.url(&format!("/#token={}", app.token("attacker-1"))))
        .await;
    b.wait_js(
        "the user's page",
        "return document.body.dataset.page === 'user'",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = b.text().await;
    assert!(
        text.contains("victim-1") && !text.contains("attacker-1"),
        "{text}"
    );
    b.stop().await;
}

/// Each QR code of the VPN section, decoded from a photograph of it, with the link written
/// beside it.
async fn read_qr_links(b: &Browser) -> Result<Vec<(String, String)>, fantoccini::error::CmdError> {
    let rows = b
        .client
        .find_all(fantoccini::Locator::Css("#vpn .link-row"))
        .await?;
    let mut pairs = Vec::new();
    for row in rows {
        let link = row
            .find(fantoccini::Locator::Css("input"))
            .await?
            .prop("value")
            .await?
            .unwrap_or_default();
        let png = row
            .find(fantoccini::Locator::Css(".qr"))
            .await?
            .screenshot()
            .await?;
        pairs.push((decode_qr(&png), link));
    }
    Ok(pairs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_from_another_origin_is_refused_and_changes_nothing() {
    let _serial = serial().await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.sims.subscribe("web-4", "sub-w4", "premium");
    // Another origin (same host, another port: the browser sends the session cookie
    // along, SameSite or not), whose page posts a form to ours.
    let evil = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_url = format!("http://{}", evil.local_addr().unwrap());
    let target = app.url("/app/nodes");
    let page = format!(
        "<!doctype html><form id=f method=post action='{target}'><input name=region value=eu-west-1></form>\
         <script>document.getElementById('f').submit()</script>"
    );
    let server = tokio::spawn(async move {
        let router = axum::Router::new().route(
            "/",
            axum::routing::get(move || async move { axum::response::Html(page) }),
        );
        axum::serve(evil, router).await.unwrap();
    });
    let b = Browser::start().await;
    sign_in(&b, &app, "web-4").await;
    b.goto(&evil_url).await;
    b.wait_text("another site").await;
    let (_, mine) = app
        .user(Method::GET, "/api/v1/my/nodes", "web-4", None)
        .await;
    assert_eq!(
        mine["nodes"],
        json!([]),
        "the cross-origin post made a node"
    );
    // The same form from our own page goes through.
    b.goto(&app.url("/")).await;
    b.wait_text("Create a node in").await;
    b.click("form.create button").await;
    b.wait_js(
        "a node",
        "return document.querySelectorAll('#nodes article.node').length === 1",
    )
    .await;
    server.abort();
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_says_when_the_database_is_away_and_recovers_by_itself() {
    let _serial = serial().await;
    let proxy = Proxy::start().await;
    let app = TestApp::spawn_with(Backend::Postgres, NodeTiming::default(), |c| {
        let name = c.db.url.rsplit('/').next().unwrap().to_owned();
        c.db.url = format!("postgres://postgres@127.0.0.1:{}/{name}", proxy.port);
    })
    .await;
    app.sims.subscribe("web-5", "sub-w5", "premium");
    let (_, order) = app.provision("web-5", "sub-w5").await;
    app.wait_status(order["resource_id"].as_str().unwrap(), "active")
        .await;
    let b = Browser::start().await;
    sign_in(&b, &app, "web-5").await;
    b.wait_text("Asia Pacific (Tokyo)").await;
    b.js("window.sameDocument = true; return true").await;

    proxy.cut().await;
    // The event stream may break first ("Live updates paused"); the sections' own
    // refreshes then say that the service is retrying.
    b.wait_js(
        "the outage shown as retrying",
        "const b = document.getElementById('banner'); return !b.hidden && b.innerText.includes('Retrying')",
    )
    .await;
    b.screenshot("user-database-away").await;
    assert!(
        b.text().await.contains("Asia Pacific (Tokyo)"),
        "the node stays on the page"
    );

    proxy.restore().await;
    b.wait_js(
        "recovered",
        "return document.getElementById('banner').hidden",
    )
    .await;
    // A change made after the outage reaches the page. The page recovers on its first
    // good read, while a pooled connection may still meet the cut: such a write answers
    // 503 with Retry-After, and is retried as any client would.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = app
            .user(Method::DELETE, "/api/v1/my/node", "web-5", None)
            .await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the delete never got through"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone = wait_until(Duration::from_secs(20), || async {
        nodes(&b).await.is_empty()
    })
    .await;
    assert!(gone, "the page never caught up: {}", b.text().await);
    assert_eq!(
        b.js("return window.sameDocument === true").await,
        json!(true)
    );
    b.stop().await;
}

/// What `cargo run` does with nothing configured, to the click: the real binary in a
/// fresh directory, the link it prints opened in the browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_the_demo_prints_opens_the_product() {
    let _serial = serial().await;
    let dir = std::env::temp_dir().join(format!("ft-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = dir.join("stdout.txt");
    // Ended by its pid when the test ends, however it ends.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _demo = Reap(
        std::process::Command::new(env!("CARGO_BIN_EXE_fulfillment"))
            .env_clear()
            .env("SERVER_PORT", port.to_string())
            .env("METRICS_ADDR", "")
            .current_dir(&dir)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let link = |needle: &str| {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("http://") && l.contains(needle))
            .map(str::to_owned)
    };
    let printed = wait_until(Duration::from_secs(30), || async {
        link("/#token=").is_some() && link("/console#token=").is_some()
    })
    .await;
    assert!(
        printed,
        "the demo printed no links:\n{}",
        std::fs::read_to_string(&out).unwrap_or_default()
    );
    let b = Browser::start().await;
    b.goto(&link("/#token=").unwrap()).await;
    b.wait_js(
        "the user's page",
        "return document.body.dataset.page === 'user'",
    )
    .await;
    b.wait_text("demo-user").await;
    b.wait_js(
        "the demo's VPN with its QR codes",
        "return document.querySelectorAll('#vpn .qr svg').length > 0",
    )
    .await;
    b.goto(&link("/console#token=").unwrap()).await;
    b.wait_js(
        "the console",
        "return document.body.dataset.page === 'console'",
    )
    .await;
    b.wait_text("demo-operator").await;
    b.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each node card's chart: every bar's day and bytes, oldest first.
const BARS: &str =
    "return [...document.querySelectorAll('#nodes article.node svg.usage-chart rect')]
    .map(r => [r.dataset.date, Number(r.dataset.bytes), Number(r.getAttribute('height'))])";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_card_charts_its_days_as_the_api_reads_them_and_updates_live() {
    const GIB: i64 = 1024 * 1024 * 1024;
    let _serial = serial().await;
    let at = chrono::DateTime::parse_from_rfc3339("2031-05-20T12:00:00Z")
        .unwrap()
        .to_utc();
    let (app, id, token) = quiet_node_with(
        Backend::Sqlite,
        "web-9",
        |_| {},
        |app| app.clock.shift_to(at),
    )
    .await;
    let report = |rx: i64, tx: i64, taken: &'static str| {
        let body = json!({"resource_id": id, "rx_bytes": rx, "tx_bytes": tx, "reported_at": taken});
        let req = app
            .http
            .post(app.url("/api/callback/node/stats"))
            .bearer_auth(&token)
            .json(&body);
        async move { assert_eq!(req.send().await.unwrap().status(), 200) }
    };
    report(2 * GIB, GIB, "2031-05-18T10:00:00Z").await;
    report(3 * GIB, GIB, "2031-05-20T09:00:00Z").await;

    let b = Browser::start().await;
    sign_in(&b, &app, "web-9").await;
    b.wait_js(
        "thirty bars",
        "return document.querySelectorAll('svg.usage-chart rect').length === 30",
    )
    .await;
    b.js("window.sameDocument = true; return true").await;
    let (_, api) = app
        .user(
            Method::GET,
            &format!("/api/v1/my/nodes/{id}/usage"),
            "web-9",
            None,
        )
        .await;
    let from_api: Vec<(String, i64)> = api["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap().to_owned(),
                d["rx_bytes"].as_i64().unwrap() + d["tx_bytes"].as_i64().unwrap(),
            )
        })
        .collect();
    let bars = b.js(BARS).await;
    let drawn: Vec<(String, i64)> = bars
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b[0].as_str().unwrap().to_owned(), b[1].as_i64().unwrap()))
        .collect();
    assert_eq!(
        drawn, from_api,
        "one bar per day of the API's window, same bytes"
    );
    assert_eq!(drawn[27], ("2031-05-18".to_owned(), 3 * GIB));
    assert_eq!(drawn[29], ("2031-05-20".to_owned(), GIB));
    // The busiest day fills the chart; a day without use has no height.
    assert_eq!(bars[27][2], json!(60));
    assert_eq!(bars[28][2], json!(0));
    let used = b
        .js("return document.querySelector('#nodes article.node .used').innerText")
        .await;
    assert_eq!(
        used,
        json!("4 of 3072 GB"),
        "the month's use against the allowance"
    );
    let label = b.js("return document.querySelector('#nodes article.node dt').parentElement.parentElement.innerText").await;
    assert!(
        label.as_str().unwrap().contains("this month (since May 1)"),
        "{label}"
    );
    b.screenshot("user-node-usage").await;

    // Another report: the chart follows the node's document without a reload.
    report(3 * GIB, 3 * GIB, "2031-05-20T11:00:00Z").await;
    b.wait_js(
        "today's bar grown",
        "return [...document.querySelectorAll('svg.usage-chart rect')].pop().dataset.bytes == String(3 * 1024 ** 3)",
    )
    .await;
    assert_eq!(
        b.js("return window.sameDocument === true").await,
        json!(true),
        "no reload"
    );
    let external = b
        .js("return performance.getEntriesByType('resource').map(e => e.name).filter(u => !u.startsWith(location.origin))")
        .await;
    assert_eq!(external, json!([]), "nothing from another origin");
    b.stop().await;
}

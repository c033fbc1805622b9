//! Live updates (`/api/v1/my/events`, `/ws`, `/ticket`), over real HTTP against the
//! simulators: what a stream shows as a node comes up, that it shows only its user's
//! documents, that a change through one replica reaches a stream on another, that a lost
//! listener converges, the limits, the tickets, and shutdown with streams open.

use std::time::Duration;

use fulfillment::api::Session;
use fulfillment::api::extract::mint_user_token;
use fulfillment::api::tickets::Tickets;
use fulfillment::sim::NodeTiming;
use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::helpers::{Backend, JWT_SECRET, TestApp};
use crate::on_both;
use crate::sse_client::{Cred, EventStream, PUSHED_WITHIN, initial, open_sse, stream_client};

async fn get_body(app: &TestApp, path: &str, user: &str) -> String {
    let resp = app
        .http
        .get(app.url(path))
        .bearer_auth(app.token(user))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// Nodes that take a few hundred milliseconds per step, so each step is its own state.
fn slow_steps() -> NodeTiming {
    NodeTiming {
        creating_ms: 400,
        installing_ms: 400,
        stats_interval_ms: 0,
        ..NodeTiming::default()
    }
}

on_both! {
    async fn a_nodes_creation_is_pushed_step_by_step_and_each_body_is_the_gets(b: Backend) {
        let app = TestApp::spawn_with(b, slow_steps(), |_| {}).await;
        app.sims.subscribe("u-live", "sub-live", "premium");
        let mut stream = EventStream::open(&app, "u-live").await;
        let (node, vpn) = initial(&mut stream).await;
        assert_eq!(node.json()["hosting_status"], "subscribed_no_node");
        assert_eq!(node.data, get_body(&app, "/api/v1/my/node", "u-live").await);
        assert_eq!(vpn.data, get_body(&app, "/api/v1/my/vpn", "u-live").await);

        let (status, _) = app.provision("u-live", "sub-live").await;
        assert_eq!(status, 202);
        let mut statuses = Vec::new();
        let mut steps = Vec::new();
        let last = loop {
            let e = stream
                .next_of("node", PUSHED_WITHIN)
                .await
                .unwrap_or_else(|| panic!("the stream stalled after {statuses:?} {steps:?}"));
            let doc = e.json();
            let status = doc["hosting_status"].as_str().unwrap().to_owned();
            if let Some(step) = doc["creation_progress"]["current_step"].as_i64() {
                steps.push(step);
            }
            if statuses.last() != Some(&status) {
                statuses.push(status.clone());
            }
            if status == "node_active" {
                break e;
            }
        };
        assert_eq!(statuses, ["subscribed_no_node", "node_creating", "node_active"][1..]);
        assert!(steps.windows(2).all(|w| w[0] <= w[1]), "steps only advance: {steps:?}");
        let distinct: std::collections::BTreeSet<_> = steps.iter().collect();
        assert!(distinct.len() >= 2, "creation steps were pushed one by one: {steps:?}");
        assert_eq!(last.json()["node"]["status"], "active");
        assert!(last.json()["node"]["public_ip"].is_string(), "connection details pushed");
        // The pushed body is the GET body, byte for byte.
        assert_eq!(last.data, get_body(&app, "/api/v1/my/node", "u-live").await);
        // Nothing was pushed without a change.
        assert!(stream.next_of("node", Duration::from_millis(500)).await.is_none());
    }
}

on_both! {
    async fn a_stream_never_carries_another_users_documents(b: Backend) {
        let app = TestApp::spawn_with(b, slow_steps(), |_| {}).await;
        app.sims.subscribe("u-a", "sub-a", "premium");
        app.sims.subscribe("u-b", "sub-b", "premium");
        let mut a = EventStream::open(&app, "u-a").await;
        let mut other = EventStream::open(&app, "u-b").await;
        initial(&mut a).await;
        let (b_node, _) = initial(&mut other).await;
        let (_, created) = app.provision("u-a", "sub-a").await;
        let id = created["resource_id"].as_str().unwrap().to_owned();
        while a.next_of("node", PUSHED_WITHIN).await.expect("u-a's node pushed").json()
            ["hosting_status"] != "node_active"
        {}
        assert!(
            other.next(Duration::from_millis(500)).await.is_none(),
            "u-b heard nothing of u-a's node"
        );
        assert!(!b_node.data.contains(&id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_replica_reaches_a_stream_on_another() {
    let app = TestApp::spawn_with(Backend::Postgres, slow_steps(), |_| {}).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = fulfillment::server::start(&app.config, listener, None)
        .await
        .unwrap();
    let other_base = format!("http://{}", other.addr);
    app.sims.subscribe("u-two", "sub-two", "premium");
    let resp = stream_client()
        .get(format!("{other_base}/api/v1/my/events"))
        .bearer_auth(app.token("u-two"))
        .send()
        .await
        .unwrap();
    let mut stream = EventStream::from(resp);
    initial(&mut stream).await;
    // The order goes to the first replica; the stream is held by the second.
    let (status, _) = app.provision("u-two", "sub-two").await;
    assert_eq!(status, 202);
    let first = stream
        .next_of("node", PUSHED_WITHIN)
        .await
        .expect("pushed across replicas");
    assert_eq!(first.json()["hosting_status"], "node_creating");
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_converges_after_the_listener_connection_is_killed() {
    let app = TestApp::spawn_with(Backend::Postgres, NodeTiming::default(), |_| {}).await;
    app.sims.subscribe("u-cut", "sub-cut", "premium");
    let mut stream = EventStream::open(&app, "u-cut").await;
    initial(&mut stream).await;
    app.kill_listener().await;
    // Committed while the listener may still be reconnecting.
    let (status, _) = app.provision("u-cut", "sub-cut").await;
    assert_eq!(status, 202);
    let mut seen = Vec::new();
    loop {
        let e = stream
            .next_of("node", PUSHED_WITHIN)
            .await
            .unwrap_or_else(|| panic!("the stream never converged: {seen:?}"));
        let s = e.json()["hosting_status"].as_str().unwrap().to_owned();
        seen.push(s.clone());
        if s == "node_active" {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_is_spared_what_it_has() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut first = EventStream::open(&app, "u-resume").await;
    let (node, _) = initial(&mut first).await;
    drop(first);
    let token = app.token("u-resume");
    let resp = open_sse(&app, Cred::Bearer(&token), Some(&node.id)).await;
    let mut again = EventStream::from(resp);
    assert!(
        again.next(Duration::from_millis(700)).await.is_none(),
        "nothing changed"
    );
    let resp = open_sse(&app, Cred::Bearer(&token), Some("0-0")).await;
    let mut stale = EventStream::from(resp);
    initial(&mut stale).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_carry_the_documents() {
    let app = TestApp::spawn_with(Backend::Sqlite, slow_steps(), |_| {}).await;
    app.sims.subscribe("u-ws", "sub-ws", "premium");
    let url = app.url("/api/v1/my/events/ws").replacen("http", "ws", 1);
    let mut req = url.as_str().into_client_request().unwrap();
    let auth = format!("Bearer {}", app.token("u-ws"));
    req.headers_mut()
        .insert("authorization", auth.parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    let mut frame = async || loop {
        let msg = tokio::time::timeout(PUSHED_WITHIN, ws.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .unwrap();
        if let tungstenite::Message::Text(t) = msg {
            return serde_json::from_str::<Value>(&t).unwrap();
        }
    };
    let mut kinds = vec![];
    for _ in 0..2 {
        let f = frame().await;
        assert!(f["id"].is_string());
        let path = format!("/api/v1/my/{}", f["event"].as_str().unwrap());
        let body: Value = serde_json::from_str(&get_body(&app, &path, "u-ws").await).unwrap();
        assert_eq!(f["data"], body, "the frame's data is the GET body");
        kinds.push(f["event"].as_str().unwrap().to_owned());
    }
    kinds.sort();
    assert_eq!(kinds, ["node", "vpn"]);
    app.provision("u-ws", "sub-ws").await;
    let f = frame().await;
    assert_eq!(f["event"], "node");
    assert_eq!(f["data"]["hosting_status"], "node_creating");
    ws.close(None).await.unwrap();

    // With a ticket instead of a header.
    let (_, t) = app
        .user(
            reqwest::Method::POST,
            "/api/v1/my/events/ticket",
            "u-ws",
            None,
        )
        .await;
    let with_ticket = format!("{url}?ticket={}", t["ticket"].as_str().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(with_ticket).await.unwrap();
    let first = tokio::time::timeout(PUSHED_WITHIN, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(first, tungstenite::Message::Text(_)));
    // Not a WebSocket handshake: our error body, not a plain-text rejection.
    let (status, body) = crate::helpers::read(
        app.http
            .get(app.url("/api/v1/my/events/ws"))
            .bearer_auth(app.token("u-ws"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("not_a_websocket"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_opens_only_the_streams_and_only_while_valid() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (status, t) = app
        .user(
            reqwest::Method::POST,
            "/api/v1/my/events/ticket",
            "u-t",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(t["expires_in"], 60);
    let ticket = t["ticket"].as_str().unwrap().to_owned();
    let mut ok = EventStream::from(open_sse(&app, Cred::Ticket(&ticket), None).await);
    let (node, _) = initial(&mut ok).await;
    assert_eq!(
        node.data,
        get_body(&app, "/api/v1/my/node", "u-t").await,
        "u-t's own"
    );

    let now = chrono::Utc::now().timestamp();
    let session = Session {
        user: "u-t".into(),
        until: now + 3_600,
    };
    let expired = Tickets::new(JWT_SECRET).mint(&session, now - 61);
    let foreign = Tickets::new("another-secret-0123456789abcdef0123").mint(&session, now);
    let mut altered = ticket.clone().into_bytes();
    let n = altered.len() - 3;
    altered[n] = if altered[n] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let jwt = app.token("u-t");
    for (what, bad, code) in [
        ("expired", expired.as_str(), "ticket_expired"),
        ("minted with another secret", &foreign, "invalid_ticket"),
        ("altered", &altered, "invalid_ticket"),
        ("a JWT passed as a ticket", &jwt, "invalid_ticket"),
        ("empty", "", "invalid_ticket"),
    ] {
        let (status, body) =
            crate::helpers::read(open_sse(&app, Cred::Ticket(bad), None).await).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some(code)),
            "{what}: {body}"
        );
    }
    // On another path, a ticket is no credential, in the query or as a Bearer token.
    let on_node = app
        .http
        .get(app.url("/api/v1/my/node"))
        .query(&[("ticket", &ticket)]);
    let (status, body) = crate::helpers::read(on_node.send().await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("missing_token"))
    );
    let as_bearer = app
        .http
        .get(app.url("/api/v1/my/node"))
        .bearer_auth(&ticket);
    let (status, _) = crate::helpers::read(as_bearer.send().await.unwrap()).await;
    assert_eq!(status, 401);
    // No credential at all.
    let bare = stream_client()
        .get(app.url("/api/v1/my/events"))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::helpers::read(bare).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("missing_token"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_session_expires() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let now = chrono::Utc::now().timestamp();
    // A ticket from a session that has two seconds left.
    let session = Session {
        user: "u-exp".into(),
        until: now + 2,
    };
    let ticket = Tickets::new(JWT_SECRET).mint(&session, now);
    let mut stream = EventStream::from(open_sse(&app, Cred::Ticket(&ticket), None).await);
    initial(&mut stream).await;
    assert!(
        stream.ends_within(Duration::from_secs(10)).await,
        "ended at the session's expiry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sixth_stream_of_a_user_and_the_process_limit_are_refused() {
    let app = TestApp::spawn_with(Backend::Sqlite, NodeTiming::default(), |c| {
        c.app.events_max_streams = 7;
    })
    .await;
    let token = app.token("u-many");
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(EventStream::from(
            open_sse(&app, Cred::Bearer(&token), None).await,
        ));
    }
    // The fifth over a WebSocket: both transports count together.
    let url = app.url("/api/v1/my/events/ws").replacen("http", "ws", 1);
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (_ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let sixth = open_sse(&app, Cred::Bearer(&token), None).await;
    assert!(sixth.headers().contains_key("retry-after"));
    let (status, body) = crate::helpers::read(sixth).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_streams"))
    );
    // Two more users fill the process's seven.
    let other = mint_user_token(JWT_SECRET, "u-else", Duration::from_secs(600));
    for _ in 0..2 {
        open.push(EventStream::from(
            open_sse(&app, Cred::Bearer(&other), None).await,
        ));
    }
    let over = open_sse(&app, Cred::Bearer(&other), None).await;
    assert!(over.headers().contains_key("retry-after"));
    let (status, body) = crate::helpers::read(over).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("streams_full")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_and_the_process_exits() {
    let db = crate::helpers::TestDb::new(Backend::Postgres).await;
    let sims = crate::helpers::SimServer::start(NodeTiming::default()).await;
    let port = crate::crash::free_port();
    // Debug logs: every request is logged (with its span), so a credential in a URL would be.
    let mut service =
        crate::crash::Service::start_with(&db, &sims, port, &[("RUST_LOG", "debug")]).await;
    let token = mint_user_token(JWT_SECRET, "u-term", Duration::from_secs(600));
    let url = format!("http://127.0.0.1:{port}/api/v1/my/events");
    let mut streams = Vec::new();
    for _ in 0..3 {
        let resp = stream_client()
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let mut s = EventStream::from(resp);
        initial(&mut s).await;
        streams.push(s);
    }
    // One with a ticket, as a browser opens it.
    let ticket = stream_client()
        .post(format!("{url}/ticket"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = stream_client()
        .get(&url)
        .query(&[("ticket", &ticket)])
        .send()
        .await
        .unwrap();
    let mut s = EventStream::from(resp);
    initial(&mut s).await;
    streams.push(s);
    // A WebSocket too.
    let ws_url = url.replacen("http", "ws", 1) + "/ws";
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    // The shutdown grace is 30 s: a process that waited on its streams would take that.
    let exit = service.terminate(Duration::from_secs(20));
    assert!(
        exit.is_some_and(|s| s.success()),
        "exited cleanly and promptly: {exit:?}"
    );
    for s in &mut streams {
        assert!(
            s.ends_within(Duration::from_secs(1)).await,
            "every stream ended"
        );
    }
    let mut closed = false;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
        if matches!(msg, Ok(tungstenite::Message::Close(_)) | Err(_)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the WebSocket was closed");
    // The service logged every request, and no credential with them.
    let log =
        std::fs::read_to_string(std::env::temp_dir().join(format!("ft-crash-{port}.log"))).unwrap();
    assert!(
        log.contains("/api/v1/my/events"),
        "the requests were logged"
    );
    assert!(!log.contains(&ticket), "a ticket never reaches the log");
    assert!(!log.contains(&token), "a token never reaches the log");
}

on_both! {
    async fn a_node_stats_report_pushes_nothing(b: Backend) {
        let (app, id, token) = crate::helpers::quiet_node(b, "u-stats").await;
        let mut stream = EventStream::open(&app, "u-stats").await;
        let (node, _) = initial(&mut stream).await;
        let stats = serde_json::json!({"resource_id": id, "rx_bytes": 5_000_000_000_i64,
            "tx_bytes": 0, "cpu_percent": 10.0});
        let resp = app.http.post(app.url("/api/callback/node/stats")).bearer_auth(&token)
            .json(&stats).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        // The document did change (traffic), and waits for the periodic re-read.
        let now = get_body(&app, "/api/v1/my/node", "u-stats").await;
        assert_ne!(now, node.data, "the report changed the traffic figures");
        assert!(stream.next(Duration::from_secs(2)).await.is_none(), "no push for a usage report");
    }
}

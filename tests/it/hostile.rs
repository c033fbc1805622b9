//! What a hostile or careless client meets (CONTRACTS.md §4.7, issue 23), over real HTTP:
//! WebSocket frames, heads and URIs, the stream budget, single-use tickets, the budgets
//! of what creates a VPS, empty regions, and the smaller gaps.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, TestApp, read};
use crate::on_both;
use crate::sse_client::{Cred, open_sse};

/// A WebSocket on the event stream over a raw socket, the handshake done.
async fn raw_ws(app: &TestApp, user: &str) -> TcpStream {
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /api/v1/my/events/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {}\r\n\r\n",
        app.token(user)
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            s.read(&mut byte).await.unwrap(),
            1,
            "the handshake is answered"
        );
        seen.push(byte[0]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    s
}

/// A client frame (masked with a zero key): `opcode` with FIN or not, `len` bytes of
/// payload announced, `payload` sent.
fn frame(opcode: u8, fin: bool, len: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![opcode | if fin { 0x80 } else { 0 }];
    match len {
        0..=125 => f.push(0x80 | len as u8),
        126..=0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            f.push(0x80 | 127);
            f.extend_from_slice(&len.to_be_bytes());
        }
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Reads server frames until a close frame; its code. Panics if the socket ends without
/// one or nothing comes within 10 s.
async fn close_code(s: &mut TcpStream) -> u16 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut head = [0u8; 2];
        tokio::time::timeout_at(deadline, s.read_exact(&mut head))
            .await
            .expect("a frame within 10 s")
            .expect("a close frame before the socket ends");
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.unwrap();
            len = u64::from(u16::from_be_bytes(b));
        } else if len == 127 {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await.unwrap();
            len = u64::from_be_bytes(b);
        }
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).await.unwrap();
        if head[0] & 0x0f == 0x8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_takes_no_data_and_reads_no_large_frame() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    // A finished text frame, a binary one, and an unfinished fragment: 1008.
    for (what, f) in [
        ("text", frame(0x1, true, 5, b"hello")),
        ("binary", frame(0x2, true, 3, b"abc")),
        ("an unfinished fragment", frame(0x1, false, 4, b"frag")),
        ("an empty text frame", frame(0x1, true, 0, b"")),
    ] {
        let mut s = raw_ws(&app, "ws-hostile").await;
        s.write_all(&f).await.unwrap();
        assert_eq!(close_code(&mut s).await, 1008, "{what}");
    }
    // A frame announcing 1 MiB: refused on its header, before the payload (1009).
    let mut s = raw_ws(&app, "ws-hostile").await;
    s.write_all(&frame(0x1, false, 1 << 20, &[b'a'; 1000]))
        .await
        .unwrap();
    assert_eq!(close_code(&mut s).await, 1009);
    // A ping is answered and the stream goes on.
    let mut s = raw_ws(&app, "ws-hostile").await;
    s.write_all(&frame(0x9, true, 2, b"hi")).await.unwrap();
    let mut pong = false;
    for _ in 0..4 {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await.unwrap();
        let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
        if head[1] & 0x7f == 126 {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.unwrap();
            payload = vec![0u8; usize::from(u16::from_be_bytes(b))];
        }
        s.read_exact(&mut payload).await.unwrap();
        if head[0] & 0x0f == 0xA {
            assert_eq!(payload, b"hi");
            pong = true;
            break;
        }
    }
    assert!(pong, "the ping was answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_over_32_kib_and_uris_over_8_kib_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // A 40 KiB head: 431, and the connection ends.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let pad = format!("X-Pad: {}\r\n", "a".repeat(4000));
    let mut head = String::from("GET /health HTTP/1.1\r\nHost: x\r\n");
    for _ in 0..10 {
        head.push_str(&pad);
    }
    let _ = s.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // A 9 KiB URI: 414 with the error body.
    let long = format!("/api/v1/public/regions?x={}", "a".repeat(9 * 1024));
    let (status, body) = read(app.http.get(app.url(&long)).send().await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (414, Some("uri_too_long")));
    // Under both limits, all is well.
    let fine = format!("/api/v1/public/regions?x={}", "a".repeat(7 * 1024));
    let (status, _) = read(app.http.get(app.url(&fine)).send().await.unwrap()).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_never_take_more_than_half_the_connections() {
    let app = TestApp::spawn_with(Backend::Sqlite, Default::default(), |c| {
        c.http.max_connections = 30;
        c.app.events_max_streams = 10_000;
    })
    .await;
    assert_eq!(app.running().state.app.live.max_streams(), 15);
    // Six users with five streams each (SSE and WebSockets): 15 held, the rest 503.
    let mut held_sse = Vec::new();
    let mut held_ws = Vec::new();
    let mut refused = 0;
    for u in 0..6 {
        let user = format!("slots-{u}");
        for i in 0..5 {
            if i % 2 == 0 {
                let r = open_sse(&app, Cred::Bearer(&app.token(&user)), None).await;
                match r.status().as_u16() {
                    200 => held_sse.push(r),
                    503 => refused += 1,
                    other => panic!("{other}"),
                }
            } else {
                let url = format!("{}/api/v1/my/events/ws", app.base.replace("http", "ws"));
                let mut req =
                    tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                        url,
                    )
                    .unwrap();
                req.headers_mut().insert(
                    "authorization",
                    format!("Bearer {}", app.token(&user)).parse().unwrap(),
                );
                match tokio_tungstenite::connect_async(req).await {
                    Ok((ws, _)) => held_ws.push(ws),
                    Err(_) => refused += 1,
                }
            }
        }
    }
    assert_eq!(held_sse.len() + held_ws.len(), 15);
    assert_eq!(refused, 15);
    // With every stream slot taken, the rest of the service answers.
    for _ in 0..5 {
        let (status, _) = read(app.http.get(app.url("/health")).send().await.unwrap()).await;
        assert_eq!(status, 200);
        let (status, _) = app
            .internal(Method::GET, "/api/internal/users/slots-0/resources", None)
            .await;
        assert_eq!(status, 200);
    }
}

async fn new_ticket(app: &TestApp) -> String {
    let (status, t) = app
        .user(Method::POST, "/api/v1/my/events/ticket", "tk-1", None)
        .await;
    assert_eq!(status, 200);
    t["ticket"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_opens_one_stream_once_on_any_replica() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = fulfillment::server::start(&app.config, listener, None)
        .await
        .unwrap();
    let other_base = format!("http://{}", other.addr);
    let t = new_ticket(&app).await;
    let first = open_sse(&app, Cred::Ticket(&t), None).await;
    assert_eq!(first.status(), 200);
    // Again, here and on the other replica: 401.
    let again = open_sse(&app, Cred::Ticket(&t), None).await;
    let (status, body) = read(again).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("ticket_used")));
    let on_other = crate::sse_client::stream_client()
        .get(format!("{other_base}/api/v1/my/events"))
        .query(&[("ticket", &t)])
        .send()
        .await
        .unwrap();
    let (status, body) = read(on_other).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("ticket_used")));
    // A fresh ticket opens a stream on the other replica, once.
    let t2 = new_ticket(&app).await;
    let url = format!(
        "{}/api/v1/my/events/ws?ticket={t2}",
        other_base.replace("http", "ws")
    );
    assert!(tokio_tungstenite::connect_async(url.as_str()).await.is_ok());
    assert!(
        tokio_tungstenite::connect_async(url.as_str())
            .await
            .is_err()
    );
    drop(first);
    other.stop().await;
}

/// Starts a migration of the user's node to its own region (a rebuild), waiting out a
/// cancelled one still being taken down (409, which spends no budget).
async fn started(app: &TestApp, path: &str, user: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, resp) = app
            .user(
                Method::POST,
                path,
                user,
                Some(json!({"region": "eu-west-1"})),
            )
            .await;
        match status {
            202 => return,
            409 if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => panic!("{status}: {resp}"),
        }
    }
}

/// The node's `migration`, as its user sees it (`null` when there is none).
async fn migration_of(app: &TestApp, id: &str) -> Value {
    let (status, node) = app
        .user(
            Method::GET,
            &format!("/api/v1/my/nodes/{id}"),
            &owner_of(app, id).await,
            None,
        )
        .await;
    assert_eq!(status, 200, "{node}");
    node.get("migration").cloned().unwrap_or(Value::Null)
}

async fn owner_of(app: &TestApp, id: &str) -> String {
    app.resource(id).await["user_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

on_both! {
    async fn an_empty_region_is_no_region_and_refusals_spend_no_budget(b: Backend) {
        let app = TestApp::spawn_with(b, Default::default(), |c| {
            c.limits.node_creates_per_minute = 2;
        })
        .await;
        app.sims.subscribe("rg-1", "sub-rg-1", "premium");
        let refusals: [(Option<Value>, u16); 6] = [
            (Some(json!({"region": ""})), 422),
            (Some(json!({"region": "   "})), 422),
            (Some(json!({})), 422),
            (None, 422),
            (Some(json!({"region": "mars-1"})), 422),
            (Some(json!({"region": 7})), 422),
        ];
        for (body, want) in refusals {
            let (status, resp) = app.user(Method::POST, "/api/v1/my/node", "rg-1", body.clone()).await;
            assert_eq!(status, want, "{body:?}: {resp}");
            assert_eq!(resp["success"], false);
        }
        let malformed = app
            .http
            .post(app.url("/api/v1/my/node"))
            .bearer_auth(app.token("rg-1"))
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(malformed.status(), 400);
        assert_eq!(app.db.count("resources", "user_id = 'rg-1'").await, 0);
        // Seven refusals spent nothing of a budget of two.
        let (status, created) = app
            .user(Method::POST, "/api/v1/my/node", "rg-1", Some(json!({"region": "eu-west-1"})))
            .await;
        assert_eq!(status, 200, "{created}");
        // The same again is a refusal by rule (one node): no budget spent either.
        for _ in 0..3 {
            let (status, _) = app
                .user(Method::POST, "/api/v1/my/nodes", "rg-1", Some(json!({"region": "eu-west-1"})))
                .await;
            assert_ne!(status, 429);
        }
        let id = created["resource_id"].as_str().unwrap().to_owned();
        app.wait_status(&id, "active").await;
        // A migration with an empty region is no rebuild.
        for body in [json!({"region": ""}), json!({})] {
            let (status, resp) = app
                .user(Method::POST, &format!("/api/v1/my/nodes/{id}/migrate"), "rg-1", Some(body))
                .await;
            assert_eq!((status, resp["code"].as_str()), (422, Some("missing_region")));
        }
        assert!(migration_of(&app, &id).await.is_null());
    }
}

on_both! {
    async fn a_user_may_start_only_so_many_migrations_of_a_node_a_day(b: Backend) {
        let app = TestApp::spawn_with(b, Default::default(), |c| {
            c.app.migrations_per_day = 2;
            c.limits.node_creates_per_minute = 100;
        })
        .await;
        app.sims.subscribe("mb-1", "sub-mb-1", "premium");
        let (_, created) = app
            .user(Method::POST, "/api/v1/my/node", "mb-1", Some(json!({"region": "eu-west-1"})))
            .await;
        let id = created["resource_id"].as_str().unwrap().to_owned();
        app.wait_status(&id, "active").await;
        // New VPSes take long to come up: each rebuild is still running when cancelled.
        app.sims.sim.hosting.set_timing(fulfillment::sim::NodeTiming {
            creating_ms: 60_000,
            ..Default::default()
        });
        let path = format!("/api/v1/my/nodes/{id}/migrate");
        // Two rebuilds, each cancelled: both count.
        for _ in 0..2 {
            started(&app, &path, "mb-1").await;
            let (status, resp) = app.user(Method::DELETE, &path, "mb-1", None).await;
            assert_eq!(status, 200, "{resp}");
        }
        let resp = app
            .http
            .post(app.url(&path))
            .bearer_auth(app.token("mb-1"))
            .json(&json!({"region": "eu-west-1"}))
            .send()
            .await
            .unwrap();
        let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry_after > 23 * 3600 && retry_after <= 24 * 3600, "{retry_after}");
        let (status, body) = read(resp).await;
        assert_eq!((status, body["code"].as_str()), (429, Some("migration_budget")));
        assert!(migration_of(&app, &id).await.is_null(), "nothing started");
        // Operators and the internal API are not limited by it (once the cancelled
        // rebuild's VPS is gone: 409 until then).
        let internal = format!("/api/internal/resources/{id}/migrate");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, resp) = app.internal(Method::POST, &internal, Some(json!({}))).await;
            if status == 409 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            assert_eq!(status, 202, "{resp}");
            break;
        }
    }
}

on_both! {
    async fn an_email_for_a_user_we_do_not_know_is_404(b: Backend) {
        let app = TestApp::spawn(b).await;
        let (status, body) = app
            .internal(Method::PUT, "/api/internal/users/nobody-at-all/email", Some(json!({"email": "a@b.co"})))
            .await;
        assert_eq!((status, body["code"].as_str()), (404, Some("user_not_found")));
        app.sims.subscribe("em-1", "sub-em-1", "premium");
        app.provision("em-1", "sub-em-1").await;
        let (status, body) = app
            .internal(Method::PUT, "/api/internal/users/em-1/email", Some(json!({"email": "a@b.co"})))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(app.db.count("resources", "user_id = 'em-1' and user_email = 'a@b.co'").await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_has_a_small_cap_and_answers_errors_in_json() {
    let app = TestApp::spawn_with(Backend::Sqlite, Default::default(), |c| {
        c.http.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let at = app.running().metrics_addr.expect("a metrics listener");
    let (status, body) = read(
        app.http
            .post(format!("http://{at}/metrics"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    // 24 idle connections: the oldest are closed to keep 16.
    let mut idle = Vec::new();
    for _ in 0..24 {
        idle.push(TcpStream::connect(at).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Wait (up to 10 s) until the service has closed at least eight of them.
    let mut open: Vec<bool> = vec![true; idle.len()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut closed = 0;
    while closed < 8 && tokio::time::Instant::now() < deadline {
        for (s, open) in idle.iter_mut().zip(open.iter_mut()).filter(|(_, o)| **o) {
            let mut buf = [0u8; 256];
            let read = tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf)).await;
            if let Ok(Ok(0) | Err(_)) = read {
                *open = false;
                closed += 1;
            }
        }
    }
    assert!(closed >= 8, "only {closed} of 24 were closed");
    let scrape = app
        .http
        .get(format!("http://{at}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200);
}

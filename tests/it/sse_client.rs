//! A client of the event streams for the tests: opens `GET /api/v1/my/events` and reads
//! it event by event.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::TestApp;

/// How long a test waits for a pushed document: far over the 1 s the contract promises
/// (CI machines are slow), far under the 60 s re-read that would hide a lost notification.
pub const PUSHED_WITHIN: Duration = Duration::from_secs(10);

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub event: String,
    pub id: String,
    pub data: String,
}

impl Pushed {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// An open `GET /api/v1/my/events`, read event by event.
pub struct EventStream {
    resp: reqwest::Response,
    buf: String,
}

/// How a stream authenticates.
pub enum Cred<'a> {
    Bearer(&'a str),
    Ticket(&'a str),
}

pub fn stream_client() -> reqwest::Client {
    // No overall timeout: a stream lives as long as it likes.
    fulfillment::upstream::http_client(Duration::from_secs(3_600))
}

pub async fn open_sse(
    app: &TestApp,
    cred: Cred<'_>,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut req = match cred {
        Cred::Bearer(token) => stream_client()
            .get(app.url("/api/v1/my/events"))
            .bearer_auth(token),
        Cred::Ticket(t) => stream_client()
            .get(app.url("/api/v1/my/events"))
            .query(&[("ticket", t)]),
    };
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    req.send().await.unwrap()
}

impl EventStream {
    pub async fn open(app: &TestApp, user: &str) -> EventStream {
        Self::from(open_sse(app, Cred::Bearer(&app.token(user)), None).await)
    }

    pub fn from(resp: reqwest::Response) -> EventStream {
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(h["content-type"], "text/event-stream");
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(h["x-accel-buffering"], "no");
        EventStream {
            resp,
            buf: String::new(),
        }
    }

    /// The next event within `within`; `None` on timeout or when the stream ends.
    pub async fn next(&mut self, within: Duration) -> Option<Pushed> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                // A block without an event is a comment (`: keep-alive`).
                if let Some(e) = parse(&block) {
                    return Some(e);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                _ => return None,
            }
        }
    }

    /// The next `event` document within `within`, skipping others.
    pub async fn next_of(&mut self, event: &str, within: Duration) -> Option<Pushed> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let e = self.next(left).await?;
            if e.event == event {
                return Some(e);
            }
        }
    }

    /// Whether the server ended the stream within `within`.
    pub async fn ends_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) | Ok(Err(_)) => return true,
                Err(_) => return false,
            }
        }
    }
}

fn parse(block: &str) -> Option<Pushed> {
    let (mut event, mut id, mut data) = (None, None, None);
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event: ") {
            event = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data = Some(v.to_owned());
        }
    }
    Some(Pushed {
        event: event?,
        id: id?,
        data: data?,
    })
}

/// The initial documents of a fresh stream, by kind.
pub async fn initial(stream: &mut EventStream) -> (Pushed, Pushed) {
    let a = stream.next(PUSHED_WITHIN).await.expect("a first document");
    let b = stream.next(PUSHED_WITHIN).await.expect("a second document");
    assert_eq!(a.id, b.id, "both documents belong to one state");
    match (a.event.as_str(), b.event.as_str()) {
        ("node", "vpn") => (a, b),
        ("vpn", "node") => (b, a),
        other => panic!("expected a node and a vpn document, got {other:?}"),
    }
}

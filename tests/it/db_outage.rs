//! PostgreSQL going away mid-run: the service answers (503 with `Retry-After` where it
//! needs the database, never a 500 or a hang), reconnects by itself, and loses nothing.
//! The outage is a TCP proxy between the service and PostgreSQL that drops every
//! connection and refuses new ones, as a restarting server does, without disturbing the
//! other tests' databases.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::helpers::{Backend, TestApp};

/// A TCP proxy to PostgreSQL that can be cut: while it is down, its port refuses
/// connections and every open one is gone.
struct Proxy {
    port: u16,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            port: listener.local_addr().unwrap().port(),
            links: Arc::default(),
            accept: std::sync::Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let links = self.links.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                links.lock().await.push(link);
            }
        });
        *self.accept.lock().unwrap() = Some(task);
    }

    /// The server goes down: open connections drop, new ones are refused.
    async fn cut(&self) {
        if let Some(task) = self.accept.lock().unwrap().take() {
            task.abort();
        }
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    /// The server is back on the same port.
    async fn restore(&self) {
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = self.accept.lock().unwrap().take() {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_answered_503_and_nothing_is_lost() {
    let proxy = Proxy::start().await;
    let app = TestApp::spawn_with(Backend::Postgres, Default::default(), |c| {
        // The service reaches PostgreSQL through the proxy.
        let name = c.db_url.rsplit('/').next().unwrap().to_owned();
        c.db_url = format!("postgres://postgres@127.0.0.1:{}/{name}", proxy.port);
    })
    .await;
    app.sims.subscribe("d-1", "sub-d1", "basic");
    let (_, a) = app.provision("d-1", "sub-d1").await;
    let a = a["resource_id"].as_str().unwrap().to_owned();
    app.wait_status(&a, "active").await;
    // An order recorded just before the outage, its work still to do.
    app.sims.subscribe("d-2", "sub-d2", "basic");
    let (status, b) = app.provision("d-2", "sub-d2").await;
    assert_eq!(status, 202);
    let b = b["resource_id"].as_str().unwrap().to_owned();

    proxy.cut().await;
    let (status, health) = app.internal(Method::GET, "/health", None).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("ok")),
        "liveness needs no database"
    );
    for (method, path, body, user) in [
        (Method::GET, "/ready".to_owned(), None, None),
        (
            Method::GET,
            format!("/api/internal/resources/{a}"),
            None,
            None,
        ),
        (
            Method::POST,
            "/api/internal/provision".to_owned(),
            Some(json!({"user_id": "d-3", "subscription_id": "sub-d3", "region": "us-east-1"})),
            None,
        ),
        (Method::GET, "/api/v1/my/node".to_owned(), None, Some("d-1")),
        (Method::GET, "/api/v1/my/vpn".to_owned(), None, Some("d-1")),
    ] {
        let mut req = app
            .http
            .request(method.clone(), app.url(&path))
            .timeout(Duration::from_secs(20));
        req = match user {
            Some(u) => req.bearer_auth(app.token(u)),
            None => req.header("X-Internal-Secret", crate::helpers::INTERNAL_SECRET),
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} hung or failed: {e}"));
        assert_eq!(r.status(), 503, "{method} {path}");
        assert!(
            r.headers().get("retry-after").is_some(),
            "{method} {path}: Retry-After"
        );
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body["code"].as_str().is_some() && body["error"].as_str().is_some(),
            "{path}: {body}"
        );
    }

    proxy.restore().await;
    // The subscription service retries its webhook until it is taken.
    let order = json!({"user_id": "d-3", "subscription_id": "sub-d3", "region": "us-east-1"});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let c = loop {
        let (status, body) = app
            .internal(Method::POST, "/api/internal/provision", Some(order.clone()))
            .await;
        if matches!(status, 200 | 202) {
            break body["resource_id"].as_str().unwrap().to_owned();
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the service did not reconnect by itself"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    app.sims.subscribe("d-3", "sub-d3", "basic");
    for id in [&a, &b, &c] {
        app.wait_status(id, "active").await;
    }
    for sub in ["sub-d1", "sub-d2", "sub-d3"] {
        let calls = app.wait_callbacks(sub, 1).await;
        assert_eq!(calls[0].status, "active", "{sub}");
    }
    assert_eq!(
        app.sims.sim.hosting.obox_nodes().len(),
        3,
        "one node per order, nothing lost"
    );
    let (status, _) = app.internal(Method::GET, "/ready", None).await;
    assert_eq!(status, 200);
}

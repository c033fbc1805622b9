//! PostgreSQL going away mid-run: the service answers (503 with `Retry-After` where it
//! needs the database, never a 500 or a hang), reconnects by itself, and loses nothing.
//! Two outages, so the other tests' databases are not disturbed: a TCP proxy between the
//! service and the shared server that drops every connection and refuses new ones, and a
//! PostgreSQL server of the test's own, stopped the hard way (`pg_ctl stop -m immediate`,
//! as a crash) and started again (crash recovery).

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
pub(crate) struct Proxy {
    pub(crate) port: u16,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    pub(crate) async fn start() -> Proxy {
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
    pub(crate) async fn cut(&self) {
        if let Some(task) = self.accept.lock().unwrap().take() {
            task.abort();
        }
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    /// The server is back on the same port.
    pub(crate) async fn restore(&self) {
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }
}

/// A PostgreSQL server of the test's own, in a temporary directory, on a free port; run
/// as the `postgres` user when the tests run as root (PostgreSQL refuses root).
struct PrivatePg {
    dir: std::path::PathBuf,
    port: u16,
    as_postgres: bool,
    /// Where PostgreSQL's programs are (`pg_config --bindir`).
    bin: String,
}

impl PrivatePg {
    fn start() -> PrivatePg {
        let as_postgres = command("id", &["-u"], false).unwrap().trim() == "0";
        let dir = std::env::temp_dir().join(format!("ft-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        if as_postgres {
            command("chown", &["postgres", dir.to_str().unwrap()], false).unwrap();
        }
        let bin = command("pg_config", &["--bindir"], false).unwrap();
        let pg = PrivatePg {
            port: crate::crash::free_port(),
            dir,
            as_postgres,
            bin: bin.trim().to_owned(),
        };
        let data = pg.data();
        pg.pg(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )
        .unwrap();
        pg.up();
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs one of PostgreSQL's programs.
    fn pg(&self, program: &str, args: &[&str]) -> Result<String, String> {
        command(&format!("{}/{program}", self.bin), args, self.as_postgres)
    }

    fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        let data = self.data();
        self.pg(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        )
        .unwrap();
    }

    /// Stops the server as a crash would: no shutdown checkpoint, connections cut.
    fn crash(&self) -> Result<String, String> {
        let data = self.data();
        self.pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a program (as the `postgres` user if asked): its output, or why it failed.
fn command(program: &str, args: &[&str], as_postgres: bool) -> Result<String, String> {
    let mut cmd = if as_postgres {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        std::process::Command::new(program)
    };
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| format!("running {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How the database goes away and comes back.
enum Outage {
    Proxy(Proxy),
    Restart(PrivatePg),
}

impl Outage {
    /// The URL the service reaches PostgreSQL at, given its test database's URL.
    fn db_url(&self, test_db: &str) -> String {
        match self {
            Outage::Proxy(p) => {
                let name = test_db.rsplit('/').next().unwrap();
                format!("postgres://postgres@127.0.0.1:{}/{name}", p.port)
            }
            Outage::Restart(pg) => pg.url(),
        }
    }

    async fn begin(&self) {
        match self {
            Outage::Proxy(p) => p.cut().await,
            Outage::Restart(pg) => {
                pg.crash().unwrap();
            }
        }
    }

    async fn end(&self) {
        match self {
            Outage::Proxy(p) => p.restore().await,
            Outage::Restart(pg) => pg.up(),
        }
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
    outage_mid_run(Outage::Proxy(Proxy::start().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashing_and_restarting_mid_run_loses_nothing() {
    outage_mid_run(Outage::Restart(PrivatePg::start())).await;
}

async fn outage_mid_run(outage: Outage) {
    let app = TestApp::spawn_with(Backend::Postgres, Default::default(), |c| {
        c.db.url = outage.db_url(&c.db.url);
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
    // The app showed d-1 their node and d-v their VPN just before.
    let (status, before) = app.user(Method::GET, "/api/v1/my/node", "d-1", None).await;
    assert_eq!(status, 200, "{before}");
    app.sims.subscribe_vpn("d-v", "sub-dv", "premium");
    let vpn_order = json!({"user_id": "d-v", "subscription_id": "sub-dv", "app_source": "otun",
        "plan_tier": "premium", "channel": "stripe", "expire_days": 30});
    let (status, body) = app
        .internal(Method::POST, "/api/internal/provision", Some(vpn_order))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, vpn_before) = app.user(Method::GET, "/api/v1/my/vpn", "d-v", None).await;
    assert_eq!(
        (status, vpn_before["vpn_status"].as_str()),
        (200, Some("active")),
        "{vpn_before}"
    );

    outage.begin().await;
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
        // Reads nothing is known for: d-2 never looked, d-1 has no VPN.
        (Method::GET, "/api/v1/my/node".to_owned(), None, Some("d-2")),
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

    // Reads answer: the last answer this process gave, while the database is down.
    let (status, during) = app.user(Method::GET, "/api/v1/my/node", "d-1", None).await;
    assert_eq!(
        (status, &during),
        (200, &before),
        "my node is served from memory"
    );
    let (status, during) = app.user(Method::GET, "/api/v1/my/vpn", "d-v", None).await;
    assert_eq!(
        (status, &during),
        (200, &vpn_before),
        "my VPN is served from memory"
    );

    outage.end().await;
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

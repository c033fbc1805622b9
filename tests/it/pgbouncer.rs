//! Behind PgBouncer (issue 24): in session mode the service works, orders, engine and live
//! updates across replicas included; in transaction mode it refuses to start, naming the
//! fix; without `ignore_startup_parameters` the refusal says what to add. Each test runs a
//! PgBouncer of its own (Debian's, installed by `scripts/test`) on a free port, ended by
//! its pid.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fulfillment::sim::NodeTiming;

use crate::crash::free_port;
use crate::helpers::{Backend, TestApp, wait_until};
use crate::sse_client::EventStream;

/// A PgBouncer in front of the local PostgreSQL.
struct Bouncer {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Bouncer {
    async fn start(pool_mode: &str, ignore_extra_float_digits: bool) -> Bouncer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("ft-pgbouncer-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let ignore = if ignore_extra_float_digits {
            "ignore_startup_parameters = extra_float_digits"
        } else {
            ""
        };
        let ini = format!(
            "[databases]\n* = host=127.0.0.1 port=5432\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/users.txt\npool_mode = {pool_mode}\n\
             {ignore}\nmax_client_conn = 400\ndefault_pool_size = 60\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        // PgBouncer will not run as root: it runs as PostgreSQL's own user, which must be
        // able to read its files.
        let _ = Command::new("chown")
            .args(["-R", "postgres", &dir.display().to_string()])
            .status();
        let program = if std::path::Path::new("/usr/sbin/pgbouncer").exists() {
            "/usr/sbin/pgbouncer"
        } else {
            "pgbouncer"
        };
        let mut cmd = Command::new(program);
        if rustix::process::getuid().is_root() {
            cmd.args(["-u", "postgres"]);
        }
        let child = cmd
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer is installed (scripts/test installs Debian's)");
        let up = wait_until(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "pgbouncer listens on {port}");
        Bouncer {
            child,
            port,
            _dir: TempDir(dir),
        }
    }

    /// `url` (a database on 127.0.0.1:5432) through this PgBouncer.
    fn route(&self, url: &str) -> String {
        url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", self.port))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_session_mode_orders_the_engine_and_live_updates_work_across_replicas() {
    let bouncer = Bouncer::start("session", true).await;
    let mut app = TestApp::prepare(Backend::Postgres, NodeTiming::default(), |_| {}).await;
    app.config.db.url = bouncer.route(&app.db.url);
    assert_ne!(app.config.db.url, app.db.url, "through PgBouncer");
    app.start().await;
    // A second replica, through the same PgBouncer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = fulfillment::server::start(&app.config, listener, None)
        .await
        .unwrap();
    let other_base = format!("http://{}", other.addr);
    // A stream on the other replica hears what this one's engine does.
    app.sims.subscribe("pgb-1", "sub-pgb-1", "premium");
    let resp = crate::sse_client::stream_client()
        .get(format!("{other_base}/api/v1/my/events"))
        .bearer_auth(app.token("pgb-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = EventStream::from(resp);
    let (status, body) = app.provision("pgb-1", "sub-pgb-1").await;
    assert_eq!(status, 202, "{body}");
    let id = body["resource_id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "active").await;
    let mut heard = false;
    while let Some(m) = stream.next_of("node", Duration::from_secs(20)).await {
        if m.json()["hosting_status"] == "node_active" {
            heard = true;
            break;
        }
    }
    assert!(
        heard,
        "the other replica's stream heard the node become active"
    );
    app.wait_callbacks("sub-pgb-1", 1).await;
    other.stop().await;
}

/// Why a start of the service through `bouncer` is refused (panics if it is not).
async fn refusal_through(bouncer: &Bouncer) -> String {
    let app = TestApp::prepare(Backend::Postgres, NodeTiming::default(), |_| {}).await;
    let mut config = app.config.clone();
    config.db.url = bouncer.route(&app.db.url);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = fulfillment::server::start(&config, listener, None).await;
    format!("{:#}", refused.err().expect("the start is refused"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_transaction_mode_the_service_refuses_to_start_and_names_the_fix() {
    let message = refusal_through(&Bouncer::start("transaction", true).await).await;
    assert!(
        message.contains("transaction") && message.contains("pool_mode = session"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_startup_parameter_is_explained() {
    let message = refusal_through(&Bouncer::start("session", false).await).await;
    assert!(
        message.contains("ignore_startup_parameters = extra_float_digits"),
        "{message}"
    );
}

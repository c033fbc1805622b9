//! Crash safety with the real binary: SIGKILL at the dangerous moments (a node create in
//! flight, a callback not yet delivered, a VPN order answered `pending`), restart, and
//! check from the simulators' records that exactly one node or account exists and the
//! callback arrives once.

use std::process::{Child, Command};
use std::time::Duration;

use fulfillment::sim::{Fault, NodeTiming, Op};
use serde_json::{Value, json};

use crate::helpers::{SimServer, TestDb, call_internal, test_env, wait_until};
use crate::on_both;

/// The service as a child process.
pub(crate) struct Service {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Service {
    pub(crate) async fn start(db: &TestDb, sims: &SimServer, port: u16) -> Service {
        Self::start_with(db, sims, port, &[]).await
    }

    /// `start`, with some settings of the test environment replaced.
    pub(crate) async fn start_with(
        db: &TestDb,
        sims: &SimServer,
        port: u16,
        env: &[(&str, &str)],
    ) -> Service {
        // Appended to, so the history of every restart on this port is kept.
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(std::env::temp_dir().join(format!("ft-crash-{port}.log")))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fulfillment"));
        cmd.arg("serve")
            .env_clear()
            .env("RUST_LOG", "info")
            .envs(test_env(&db.url, &sims.url))
            .env("SERVER_PORT", port.to_string())
            // Long enough that a create in flight is still waiting when we kill.
            .env("UPSTREAM_TIMEOUT_SECS", "10")
            .env("VPN_WAIT_SECS", "0.3")
            .envs(env.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().expect("the binary is built by cargo test");
        let service = Service {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: fulfillment::upstream::http_client(Duration::from_secs(5)),
        };
        let up = wait_until(Duration::from_secs(20), || async {
            service
                .http
                .get(format!("{}/ready", service.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(up, "the service came up");
        service
    }

    /// SIGTERM, then waits at most `within` for the process to exit.
    pub(crate) fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGKILL: no cleanup, no graceful anything.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub(crate) async fn internal(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        call_internal(&self.http, &self.base, method, path, body).await
    }

    pub(crate) async fn status_of(&self, id: &str) -> String {
        let (_, r) = self
            .internal(
                reqwest::Method::GET,
                &format!("/api/internal/resources/{id}"),
                None,
            )
            .await;
        r["status"].as_str().unwrap_or_default().to_owned()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn provision(service: &Service) -> String {
    let order = json!({"user_id": "u-1", "subscription_id": "sub-1", "plan_tier": "standard", "region": "us-east-1"});
    let (status, body) = service
        .internal(
            reqwest::Method::POST,
            "/api/internal/provision",
            Some(order),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body["resource_id"].as_str().unwrap().to_owned()
}

on_both! {
    async fn killed_between_create_requested_and_node_id_stored(b: Backend) {
        let db = TestDb::new(b).await;
        let sims = SimServer::start(NodeTiming { send_callbacks: false, ..NodeTiming::default() }).await;
        // The create takes effect at once, but its answer takes 3 s to come back.
        sims.sim.faults.script(Op::CreateNode, [Fault::LostResponse]);
        let port = free_port();
        let service = Service::start(&db, &sims, port).await;
        let id = provision(&service).await;
        assert!(wait_until(Duration::from_secs(10), || async { sims.sim.hosting.creates().len() == 1 }).await);
        service.kill();
        let before = db.store().await.resource(id.parse().unwrap()).await.unwrap().unwrap();
        assert_eq!(before.node_id, None, "killed before the node id was stored");

        let service = Service::start(&db, &sims, port).await;
        assert!(wait_until(Duration::from_secs(20), || async { service.status_of(&id).await == "active" }).await);
        assert_eq!(sims.sim.hosting.creates().len(), 1, "no second create");
        assert_eq!(sims.sim.hosting.obox_nodes().len(), 1, "exactly one node exists");
        assert!(wait_until(Duration::from_secs(20), || async { !sims.sim.subscriptions.callbacks_for("sub-1").is_empty() }).await);
        let calls = sims.sim.subscriptions.callbacks_for("sub-1");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].status, "active");
    }
}

on_both! {
    async fn killed_between_active_and_callback_delivered(b: Backend) {
        let db = TestDb::new(b).await;
        let sims = SimServer::start(NodeTiming::default()).await;
        sims.sim.faults.script(Op::Callback, std::iter::repeat_n(Fault::Error(503), 10_000));
        let port = free_port();
        let service = Service::start(&db, &sims, port).await;
        let id = provision(&service).await;
        assert!(wait_until(Duration::from_secs(20), || async { service.status_of(&id).await == "active" }).await);
        service.kill();
        assert!(sims.sim.subscriptions.callbacks_for("sub-1").is_empty());
        assert_eq!(db.store().await.outbox_backlog().await.unwrap(), 1, "the callback waits in the outbox");

        sims.sim.faults.clear();
        let _service = Service::start(&db, &sims, port).await;
        assert!(wait_until(Duration::from_secs(20), || async { !sims.sim.subscriptions.callbacks_for("sub-1").is_empty() }).await,
            "the callback arrives after the restart");
        let store = db.store().await;
        assert!(wait_until(Duration::from_secs(10), || async { store.outbox_backlog().await.unwrap() == 0 }).await);
        let calls = sims.sim.subscriptions.callbacks_for("sub-1");
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].status, "active");
        assert_eq!(sims.sim.hosting.obox_nodes().len(), 1);
    }
}

on_both! {
    async fn killed_while_a_vpn_order_is_pending(b: Backend) {
        let db = TestDb::new(b).await;
        let sims = SimServer::start(NodeTiming::default()).await;
        // The VPN manager takes the create but its answer is lost; the request answers
        // `pending` and the process dies before anything is recorded as applied.
        sims.sim.faults.script(Op::VpnCreate, [Fault::LostResponse]);
        let port = free_port();
        let service = Service::start(&db, &sims, port).await;
        let order = json!({"user_id": "v-1", "subscription_id": "sub-v", "app_source": "otun",
            "plan_tier": "premium", "channel": "stripe", "expire_days": 30});
        let (status, body) = service.internal(reqwest::Method::POST, "/api/internal/provision", Some(order.clone())).await;
        assert_eq!((status, body["status"].as_str()), (202, Some("pending")), "{body}");
        let id = body["resource_id"].as_str().unwrap().to_owned();
        assert!(wait_until(Duration::from_secs(10), || async { sims.sim.vpn.creates().len() == 1 }).await);
        service.kill();
        let before = db.store().await.resource(id.parse().unwrap()).await.unwrap().unwrap();
        assert_eq!(before.vpn.applied_version, 0, "killed before the VPN manager's answer was recorded");

        let service = Service::start(&db, &sims, port).await;
        assert!(wait_until(Duration::from_secs(20), || async { service.status_of(&id).await == "active" }).await);
        assert_eq!(sims.sim.vpn.users().len(), 1, "one account");
        assert!(wait_until(Duration::from_secs(20), || async { !sims.sim.subscriptions.callbacks_for("sub-v").is_empty() }).await);
        let (_, again) = service.internal(reqwest::Method::POST, "/api/internal/provision", Some(order)).await;
        assert_eq!(again["status"], "active", "the repeated webhook sees it done");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let calls = sims.sim.subscriptions.callbacks_for("sub-v");
        assert_eq!((calls.len(), calls[0].status.as_str(), calls[0].app.as_str()), (1, "active", "otun"));
    }
}

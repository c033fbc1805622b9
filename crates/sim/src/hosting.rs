//! The simulated hosting service: nodes that go creating → installing → active (or failed)
//! on a timer, a node agent that calls back when ready, and a record of every create and
//! delete so tests can count what a customer would be billed for.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Fault, Faults, Op};
use ports::{CreateNode, Hosting, HostingNode, UpstreamError, UpstreamResult};
use upstream::node_from_json;

/// How simulated nodes come up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeTiming {
    /// Time spent `creating` (the VPS boots).
    pub creating_ms: u64,
    /// Time spent `installing` (the agent installs sing-box).
    pub installing_ms: u64,
    /// Fraction of nodes that end `failed` instead of `active`.
    pub fail_rate: f64,
    /// Whether the node agent calls `callback_url` when ready (or failed).
    pub send_callbacks: bool,
    /// Whether node listings echo our `resource_id` (the real service may not).
    pub echo_resource_id: bool,
    /// How often a ready node's agent reports its traffic and load (0: never).
    pub stats_interval_ms: u64,
}

impl Default for NodeTiming {
    fn default() -> Self {
        NodeTiming {
            creating_ms: 0,
            installing_ms: 0,
            fail_rate: 0.0,
            send_callbacks: true,
            echo_resource_id: true,
            stats_interval_ms: 10_000,
        }
    }
}

/// One node as the simulator holds it.
#[derive(Debug, Clone, Serialize)]
pub struct SimNode {
    pub node_id: String,
    pub purpose: String,
    pub cloud_provider: String,
    pub region: String,
    pub bundle_id: String,
    pub subscription_id: String,
    pub user_id: String,
    pub resource_id: String,
    pub created_at: DateTime<Utc>,
    pub ready_at: DateTime<Utc>,
    pub installing_at: DateTime<Utc>,
    pub fails: bool,
    pub public_ip: String,
    pub api_key: String,
    pub public_key: String,
    pub short_id: String,
    #[serde(skip)]
    callback: Option<(String, String)>,
}

impl SimNode {
    pub fn status_at(&self, now: DateTime<Utc>) -> &'static str {
        if now < self.installing_at {
            "creating"
        } else if now < self.ready_at {
            "installing"
        } else if self.fails {
            "failed"
        } else {
            "active"
        }
    }

    /// The node as the hosting service reports it. Like the real (Go) service, unknown
    /// fields are `""` and `0` until the node is active.
    pub fn view(&self, now: DateTime<Utc>, echo_resource_id: bool) -> serde_json::Value {
        let status = self.status_at(now);
        let ready = status == "active";
        let s = |v: &str| if ready { v.to_owned() } else { String::new() };
        let p = |v: u16| if ready { v } else { 0 };
        let mut v = serde_json::json!({
            "node_id": self.node_id,
            "public_ip": s(&self.public_ip),
            "cloud_provider": self.cloud_provider,
            "cloud_region": self.region,
            "status": status,
            "node_api_key": s(&self.api_key),
            "vless_port": p(443),
            "ss_port": p(8388),
            "public_key": s(&self.public_key),
            "short_id": s(&self.short_id),
            "error_message": if status == "failed" { "simulated provisioning failure" } else { "" },
            "created_at": self.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "subscription_id": self.subscription_id,
            "user_id": self.user_id,
            "purpose": self.purpose,
        });
        if echo_resource_id {
            v["resource_id"] = self.resource_id.clone().into();
        }
        v
    }
}

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, SimNode>,
    creates: Vec<CreateNode>,
    deletes: Vec<String>,
    serial: u64,
}

pub struct HostingSim {
    faults: Arc<Faults>,
    timing: Mutex<NodeTiming>,
    state: Mutex<State>,
    me: Weak<HostingSim>,
}

impl HostingSim {
    /// A simulator, shared as `Arc` so created nodes can run their agent.
    pub fn new(faults: Arc<Faults>, timing: NodeTiming) -> Arc<HostingSim> {
        Arc::new_cyclic(|me| HostingSim {
            faults,
            timing: Mutex::new(timing),
            state: Mutex::new(State::default()),
            me: me.clone(),
        })
    }

    pub fn timing(&self) -> NodeTiming {
        self.timing.lock().unwrap().clone()
    }

    pub fn set_timing(&self, timing: NodeTiming) {
        *self.timing.lock().unwrap() = timing;
    }

    /// Creates a node (the effect of `POST /api/admin/nodes`).
    pub fn create(self: &Arc<Self>, req: &CreateNode) -> SimNode {
        let timing = self.timing();
        let now = Utc::now();
        let node = {
            let mut st = self.state.lock().unwrap();
            st.serial += 1;
            let n = st.serial;
            let installing_at = now + chrono::Duration::milliseconds(timing.creating_ms as i64);
            let node = SimNode {
                node_id: format!(
                    "node-{n:06}-{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                ),
                purpose: "obox".into(),
                cloud_provider: req.cloud_provider.clone(),
                region: req.region.clone(),
                bundle_id: req.bundle_id.clone(),
                subscription_id: req.subscription_id.clone(),
                user_id: req.user_id.clone(),
                resource_id: req.resource_id.clone(),
                created_at: now,
                installing_at,
                ready_at: installing_at
                    + chrono::Duration::milliseconds(timing.installing_ms as i64),
                fails: rand::random::<f64>() < timing.fail_rate,
                // Addresses from TEST-NET-3 (RFC 5737): documentation only, never routed.
                public_ip: format!("203.0.113.{}", n % 254 + 1),
                api_key: format!("agent-key-{n}"),
                public_key: format!("pubkey-{n}"),
                short_id: format!("{n:08x}"),
                callback: (!req.callback_url.is_empty())
                    .then(|| (req.callback_url.clone(), req.callback_token.clone())),
            };
            st.creates.push(req.clone());
            st.nodes.insert(node.node_id.clone(), node.clone());
            node
        };
        if timing.send_callbacks && node.callback.is_some() {
            tokio::spawn(agent_reports(Arc::downgrade(self), node.clone()));
        }
        node
    }

    /// Adds a node that is not ours (another purpose, such as a shared VPN node).
    pub fn add_foreign_node(&self, purpose: &str) -> String {
        self.add_node(purpose, "", "", "", chrono::Duration::zero())
    }

    /// Adds a ready node as if created `age` ago, with the given purpose and correlation
    /// (an orphan, a node another deployment made, a shared node…).
    pub fn add_node(
        &self,
        purpose: &str,
        resource_id: &str,
        subscription_id: &str,
        user_id: &str,
        age: chrono::Duration,
    ) -> String {
        let mut st = self.state.lock().unwrap();
        st.serial += 1;
        let at = Utc::now() - age;
        let id = format!("added-{:06}", st.serial);
        st.nodes.insert(
            id.clone(),
            SimNode {
                node_id: id.clone(),
                purpose: purpose.into(),
                cloud_provider: "lightsail".into(),
                region: "us-east-1".into(),
                bundle_id: "nano_3_0".into(),
                subscription_id: subscription_id.into(),
                user_id: user_id.into(),
                resource_id: resource_id.into(),
                created_at: at,
                installing_at: at,
                ready_at: at,
                fails: false,
                public_ip: "203.0.113.254".into(),
                api_key: "added".into(),
                public_key: "added".into(),
                short_id: "added".into(),
                callback: None,
            },
        );
        id
    }

    /// Makes an added node one still coming up: `creating` for the first half of
    /// `ready_in`, then `installing`, then `active` (a VPS another service asked for).
    pub fn set_coming_up(&self, node_id: &str, ready_in: chrono::Duration) -> bool {
        let mut st = self.state.lock().unwrap();
        let Some(node) = st.nodes.get_mut(node_id) else {
            return false;
        };
        let now = Utc::now();
        node.installing_at = now + ready_in / 2;
        node.ready_at = now + ready_in;
        true
    }

    pub fn node(&self, node_id: &str) -> Option<SimNode> {
        self.state.lock().unwrap().nodes.get(node_id).cloned()
    }

    /// Deletes a node; `false` when it does not exist.
    pub fn delete(&self, node_id: &str) -> bool {
        let mut st = self.state.lock().unwrap();
        st.deletes.push(node_id.to_owned());
        st.nodes.remove(node_id).is_some()
    }

    /// Every node that exists now (what would be billed).
    pub fn nodes(&self) -> Vec<SimNode> {
        self.state.lock().unwrap().nodes.values().cloned().collect()
    }

    /// Our nodes (purpose `obox`) that exist now.
    pub fn obox_nodes(&self) -> Vec<SimNode> {
        self.nodes()
            .into_iter()
            .filter(|n| n.purpose == "obox")
            .collect()
    }

    /// Every create request received, in order.
    pub fn creates(&self) -> Vec<CreateNode> {
        self.state.lock().unwrap().creates.clone()
    }

    /// Every delete request received, in order.
    pub fn deletes(&self) -> Vec<String> {
        self.state.lock().unwrap().deletes.clone()
    }

    pub fn views(&self, purpose: Option<&str>, status: Option<&str>) -> Vec<serde_json::Value> {
        let now = Utc::now();
        let echo = self.timing().echo_resource_id;
        self.nodes()
            .into_iter()
            .filter(|n| purpose.is_none_or(|p| n.purpose == p))
            .filter(|n| status.is_none_or(|s| n.status_at(now) == s))
            .map(|n| n.view(now, echo))
            .collect()
    }

    /// Runs `effect` under the fault plan for `op`, as the in-process port does.
    async fn faulty<T>(&self, op: Op, effect: impl FnOnce() -> T) -> UpstreamResult<T> {
        run_with_faults(&self.faults, op, effect).await
    }
}

/// Applies the fault plan around an in-process call: latency, then either the effect or
/// the fault (a hang surfaces as the timeout the HTTP client would report).
pub(super) async fn run_with_faults<T>(
    faults: &Faults,
    op: Op,
    effect: impl FnOnce() -> T,
) -> UpstreamResult<T> {
    let latency = faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match faults.next(op) {
        None => Ok(effect()),
        Some(Fault::Error(status)) => Err(UpstreamError::Status {
            status,
            body: "simulated failure".into(),
        }),
        Some(Fault::Hang) => Err(UpstreamError::Timeout),
        Some(Fault::Garbage) => {
            effect();
            Err(UpstreamError::InvalidBody("simulated garbage".into()))
        }
        Some(Fault::LostResponse) => {
            effect();
            Err(UpstreamError::Timeout)
        }
    }
}

/// The node agent: once the node is up, report ready (or failed) to `callback_url`,
/// retrying a few times like a real agent would.
async fn agent_reports(sim: Weak<HostingSim>, node: SimNode) {
    let weak = sim.clone();
    let wait = (node.ready_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let Some((base, token)) = node.callback.clone() else {
        return;
    };
    let http = upstream::http_client(Duration::from_secs(5));
    for attempt in 0..5u32 {
        // The node may have been deleted meanwhile; a deleted node reports nothing.
        let Some(sim) = sim.upgrade() else { return };
        let Some(current) = sim.node(&node.node_id) else {
            return;
        };
        drop(sim);
        let (path, body) = if current.fails {
            (
                "failed",
                serde_json::json!({"resource_id": node.resource_id,
                    "error_message": "simulated provisioning failure"}),
            )
        } else {
            (
                "ready",
                serde_json::json!({"resource_id": node.resource_id, "public_ip": node.public_ip,
                    "api_port": 8080, "api_key": node.api_key, "vless_port": 443, "ss_port": 8388,
                    "public_key": node.public_key, "short_id": node.short_id}),
            )
        };
        let url = format!("{}/{path}", base.trim_end_matches('/'));
        match http.post(url).bearer_auth(&token).json(&body).send().await {
            Ok(r) if r.status().is_success() && !current.fails => {
                let to = Reporter {
                    url: format!("{}/stats", base.trim_end_matches('/')),
                    token,
                    http,
                };
                return report_stats(weak, to, node).await;
            }
            Ok(r) if r.status().is_success() || r.status().is_client_error() => return,
            _ => tokio::time::sleep(Duration::from_millis(200 << attempt)).await,
        }
    }
}

/// Where an agent reports.
struct Reporter {
    url: String,
    token: String,
    http: reqwest::Client,
}

/// A ready node's agent reports cumulative counters (and a made-up load) until the node is
/// deleted or its reports are refused.
async fn report_stats(sim: Weak<HostingSim>, to: Reporter, node: SimNode) {
    let (mut rx, mut tx) = (0i64, 0i64);
    loop {
        let interval = match sim.upgrade() {
            Some(sim) if sim.node(&node.node_id).is_some() => sim.timing().stats_interval_ms,
            _ => return,
        };
        if interval == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(interval)).await;
        rx += 40 * 1024 * 1024;
        tx += 8 * 1024 * 1024;
        let body = serde_json::json!({"resource_id": node.resource_id, "rx_bytes": rx,
            "tx_bytes": tx, "load1": 0.12, "cpu_percent": 3.5, "mem_percent": 21.0,
            "reported_at": Utc::now()});
        match to
            .http
            .post(&to.url)
            .bearer_auth(&to.token)
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status().is_client_error() => return,
            _ => {}
        }
    }
}

#[async_trait]
impl Hosting for HostingSim {
    async fn create_node(&self, req: &CreateNode) -> UpstreamResult<String> {
        let me = self
            .me
            .upgrade()
            .expect("a HostingSim is always held in an Arc");
        self.faulty(Op::CreateNode, || me.create(req).node_id).await
    }

    async fn get_node(&self, node_id: &str) -> UpstreamResult<Option<HostingNode>> {
        let echo = self.timing().echo_resource_id;
        self.faulty(Op::GetNode, || {
            self.node(node_id)
                .map(|n| node_from_json(n.view(Utc::now(), echo)))
        })
        .await
    }

    async fn delete_node(&self, node_id: &str) -> UpstreamResult<()> {
        self.faulty(Op::DeleteNode, || {
            self.delete(node_id);
        })
        .await
    }

    async fn list_nodes(&self) -> UpstreamResult<Vec<HostingNode>> {
        self.faulty(Op::ListNodes, || {
            self.views(Some("obox"), None)
                .iter()
                .cloned()
                .map(node_from_json)
                .collect()
        })
        .await
    }
}

//! The hosting service client (`CONTRACTS.md` §2.1).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::{Method, Url};
use serde::Deserialize;

use super::Endpoint;
use ports::{CreateNode, Hosting, HostingNode, UpstreamResult};

/// Calls `HOSTING_SERVICE_URL` with `X-Admin-Key`.
#[derive(Clone)]
pub struct HostingClient {
    api: Endpoint,
}

impl HostingClient {
    pub fn new(http: reqwest::Client, base: Url, admin_key: String) -> Self {
        HostingClient {
            api: Endpoint::new(http, base, "X-Admin-Key", admin_key),
        }
    }

    /// Allows at most `n` calls in flight at once (64 by default).
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.api = self.api.max_in_flight(n);
        self
    }
}

/// The nodes collection.
const NODES: &[&str] = &["api", "admin", "nodes"];

#[derive(Deserialize)]
struct Created {
    #[serde(default)]
    node_id: String,
}

/// A node as the (Go) hosting service sends it: absent fields, `""` and `0` all mean
/// "not known yet".
#[derive(Deserialize, Default)]
#[serde(default)]
struct WireNode {
    node_id: String,
    status: String,
    public_ip: Option<String>,
    node_api_key: Option<String>,
    vless_port: Option<i64>,
    ss_port: Option<i64>,
    public_key: Option<String>,
    short_id: Option<String>,
    error_message: Option<String>,
    subscription_id: Option<String>,
    user_id: Option<String>,
    resource_id: Option<String>,
    purpose: Option<String>,
    cloud_provider: Option<String>,
    cloud_region: Option<String>,
    created_at: Option<String>,
}

fn text(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

fn port(v: Option<i64>) -> Option<i32> {
    v.filter(|p| (1..=65535).contains(p)).map(|p| p as i32)
}

impl From<WireNode> for HostingNode {
    fn from(w: WireNode) -> Self {
        HostingNode {
            node_id: w.node_id,
            status: w.status,
            public_ip: text(w.public_ip),
            node_api_key: text(w.node_api_key),
            vless_port: port(w.vless_port),
            ss_port: port(w.ss_port),
            public_key: text(w.public_key),
            short_id: text(w.short_id),
            error_message: text(w.error_message),
            subscription_id: text(w.subscription_id),
            user_id: text(w.user_id),
            resource_id: text(w.resource_id),
            purpose: text(w.purpose),
            cloud_provider: text(w.cloud_provider),
            cloud_region: text(w.cloud_region),
            created_at: text(w.created_at)
                .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

/// Reads one node from its JSON form (also used by the in-process simulator, so both
/// paths normalise placeholders the same way).
pub fn node_from_json(v: serde_json::Value) -> HostingNode {
    serde_json::from_value::<WireNode>(v)
        .unwrap_or_default()
        .into()
}

#[derive(Deserialize)]
struct NodeList {
    #[serde(default)]
    nodes: Vec<WireNode>,
}

#[async_trait]
impl Hosting for HostingClient {
    async fn create_node(&self, req: &CreateNode) -> UpstreamResult<String> {
        let post = self.api.request(Method::POST, NODES).json(req);
        let created: Created = self.api.fetch(post).await?;
        if created.node_id.trim().is_empty() {
            return Err(ports::UpstreamError::InvalidBody(
                "create answered without a node_id".into(),
            ));
        }
        Ok(created.node_id)
    }

    async fn get_node(&self, node_id: &str) -> UpstreamResult<Option<HostingNode>> {
        let get = self
            .api
            .request(Method::GET, &["api", "admin", "nodes", node_id]);
        let node: Option<WireNode> = self.api.fetch_optional(get).await?;
        Ok(node.map(HostingNode::from))
    }

    async fn delete_node(&self, node_id: &str) -> UpstreamResult<()> {
        self.api.delete(&["api", "admin", "nodes", node_id]).await
    }

    async fn list_nodes(&self) -> UpstreamResult<Vec<HostingNode>> {
        let get = self
            .api
            .request(Method::GET, NODES)
            .query(&[("purpose", "obox")]);
        let list: NodeList = self.api.fetch(get).await?;
        Ok(list.nodes.into_iter().map(HostingNode::from).collect())
    }
}

//! The hosting service (dedicated VPS nodes), as the engine needs it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::UpstreamResult;

/// `POST /api/admin/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateNode {
    pub cloud_provider: String,
    pub region: String,
    pub bundle_id: String,
    pub subscription_id: String,
    pub user_id: String,
    /// Our resource id, for correlation.
    #[serde(default)]
    pub resource_id: String,
    /// Where the node agent reports: `{callback_url}/ready` and `{callback_url}/failed`.
    #[serde(default)]
    pub callback_url: String,
    /// The node's credential for those reports (a bearer token).
    #[serde(default)]
    pub callback_token: String,
}

/// A node as the hosting service describes it, with its placeholder values (`""`, `0`)
/// already turned into `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostingNode {
    pub node_id: String,
    pub status: String,
    pub public_ip: Option<String>,
    pub node_api_key: Option<String>,
    pub vless_port: Option<i32>,
    pub ss_port: Option<i32>,
    pub public_key: Option<String>,
    pub short_id: Option<String>,
    pub error_message: Option<String>,
    pub subscription_id: Option<String>,
    pub user_id: Option<String>,
    pub resource_id: Option<String>,
    pub purpose: Option<String>,
    pub cloud_provider: Option<String>,
    pub cloud_region: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
}

/// The hosting service (dedicated VPS nodes).
#[async_trait]
pub trait Hosting: Send + Sync {
    /// Asks for a new node and returns its id.
    async fn create_node(&self, req: &CreateNode) -> UpstreamResult<String>;
    /// `None` when the hosting service does not know the node.
    async fn get_node(&self, node_id: &str) -> UpstreamResult<Option<HostingNode>>;
    /// Deletes a node; an unknown node counts as deleted.
    async fn delete_node(&self, node_id: &str) -> UpstreamResult<()>;
    /// Our (`purpose=obox`) nodes.
    async fn list_nodes(&self) -> UpstreamResult<Vec<HostingNode>>;
}

//! The seams between the core and the world: storage, the three upstream services and the
//! clock. The engine and the application services depend on these traits only; adapters
//! (`store`, `upstream`, `sim`) implement them.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::domain::progress::SubscriptionSnapshot;
pub use crate::store::Store;

/// Time, injectable so tests can move past deadlines without sleeping.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Why an upstream call failed, and whether trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("timed out")]
    Timeout,
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("answered with an unreadable body: {0}")]
    InvalidBody(String),
}

impl UpstreamError {
    /// Server errors, throttling, timeouts, lost connections and garbage are transient:
    /// the call may even have taken effect. Other 4xx answers will not change on retry.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout | Self::Connect(_) | Self::InvalidBody(_) => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
        }
    }
}

pub type UpstreamResult<T> = Result<T, UpstreamError>;

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

/// `POST /api/internal/fulfillment/callback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfillmentCallback {
    pub subscription_id: String,
    pub app: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The subscription service.
#[async_trait]
pub trait Subscriptions: Send + Sync {
    /// The user's active subscription for (`app`, `service_type`), `None` when there is none.
    async fn active(
        &self,
        user_id: &str,
        app: &str,
        service_type: &str,
    ) -> UpstreamResult<Option<SubscriptionSnapshot>>;
    /// Delivers one callback; `Ok` means acknowledged (any 2xx).
    async fn callback(&self, cb: &FulfillmentCallback) -> UpstreamResult<()>;
}

/// `POST /api/users` on the VPN manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateVpnUser {
    /// The uuid we propose; the VPN manager's answer is authoritative.
    pub uuid: String,
    pub email: String,
    /// Our user id; the VPN manager de-duplicates on it.
    pub auth_user_id: String,
    pub protocols: Vec<String>,
    pub ss_password: String,
    pub traffic_limit: i64,
    pub expire_at: DateTime<Utc>,
    pub service_tier: String,
}

/// A VPN user as the VPN manager describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct VpnUser {
    pub uuid: String,
    pub email: Option<String>,
    pub ss_password: Option<String>,
    pub traffic_limit: i64,
    pub traffic_used: i64,
    pub expire_at: Option<DateTime<Utc>>,
    pub enabled: bool,
}

/// `PUT /api/users/{uuid}`: the fields to change, the rest left as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VpnUserUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_used: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// One way to connect, as `subscribe` and `sync` list them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtocolLink {
    pub protocol: String,
    pub url: String,
    pub node: String,
}

/// The answer of `POST /api/subscribe` and `GET /api/users/{uuid}/sync`.
#[derive(Debug, Clone, PartialEq)]
pub struct VpnSubscription {
    pub uuid: String,
    pub traffic_limit: i64,
    pub traffic_used: i64,
    pub expire_at: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub protocols: Vec<ProtocolLink>,
}

/// The VPN manager (otun-manager). Reads never change a user's expiry or limits.
#[async_trait]
pub trait VpnManager: Send + Sync {
    /// Creates a user, or returns the existing user of the same `auth_user_id` (whose
    /// uuid then differs from the one proposed, and to whom the order was not applied).
    async fn create_user(&self, req: &CreateVpnUser) -> UpstreamResult<VpnUser>;
    /// `None` when the VPN manager does not know the user.
    async fn get_user(&self, uuid: &str) -> UpstreamResult<Option<VpnUser>>;
    async fn update_user(&self, uuid: &str, update: &VpnUserUpdate) -> UpstreamResult<()>;
    /// Deletes a user; an unknown user counts as deleted.
    async fn delete_user(&self, uuid: &str) -> UpstreamResult<()>;
    /// The connection config for our user id.
    async fn subscribe(&self, device_id: &str) -> UpstreamResult<VpnSubscription>;
    /// The same for a known uuid.
    async fn sync(&self, uuid: &str) -> UpstreamResult<VpnSubscription>;
}

/// Everything the core talks to, bundled so wiring passes one value around.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub hosting: Arc<dyn Hosting>,
    pub subscriptions: Arc<dyn Subscriptions>,
    pub vpn: Arc<dyn VpnManager>,
    pub clock: Arc<dyn Clock>,
}

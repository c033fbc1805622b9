//! The VPN manager (otun-manager): VPN user accounts, their terms and their traffic.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::UpstreamResult;

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

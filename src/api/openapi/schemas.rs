//! The response and request shapes of the user, public and event-stream surfaces, as the
//! document describes them. They are descriptions, never built: the views in `api::views`
//! write the bytes, and `tests/it/openapi.rs` validates every golden response against these
//! schemas, so the two cannot drift apart. Objects are closed (`deny_unknown_fields`), so a
//! field the service starts sending without describing it fails that test too.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use utoipa::ToSchema;

pub use super::refusals::{
    BodyRefusals, CallbackRefusals, CreateRefusals, RateLimited, Refusals, StreamRefusals,
    SuccessRefusals,
};

use crate::api::views::{MigrationView, NodeStatus, SubscriptionView};
pub use crate::api::vpn_views::VpnSubscribeView as VpnSubscribe;

/// The subscription view, named for the twins that still embed it.
type Subscription = SubscriptionView<'static>;
/// The migration view, likewise.
pub type Migration = MigrationView<'static>;
use crate::domain::entitlement::VpnStatus;
use crate::domain::progress::{CreationProgress, HostingStatus};

/// Every refusal: a human message and a stable code.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Error {
    /// For people.
    pub error: String,
    /// For programs: stable snake_case.
    pub code: String,
}

/// The refusals of `POST /my/node` and `POST /my/nodes`, in their success shape.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNodeRefusal {
    /// Always `false`.
    pub success: bool,
    /// Always `failed`.
    pub status: String,
    pub message: String,
    pub error: String,
    pub code: String,
}

/// The refusals of endpoints that answer `{"success": …}`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuccessRefusal {
    /// Always `false`.
    pub success: bool,
    pub message: String,
    pub error: String,
    pub code: String,
}

/// A plain refusal or the endpoint's own shape (which one depends on where it was refused).
#[derive(ToSchema)]
#[serde(untagged)]
pub enum CreateNodeOrPlainRefusal {
    Shaped(CreateNodeRefusal),
    Plain(Error),
}

/// A plain refusal or the endpoint's own shape.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum SuccessOrPlainRefusal {
    Shaped(SuccessRefusal),
    Plain(Error),
}

/// `{"success": true, "message"}`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuccessMessage {
    pub success: bool,
    pub message: String,
}

/// `{"status": "ok"}` and its kin.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusMessage {
    pub status: String,
    pub message: Option<String>,
}

node_schema! {
    /// A hosting node as its owner sees it. Connection fields are omitted until known.
    pub struct Node {
        pub resource_id: String,
        pub region: String,
        pub region_name: Option<String>,
        pub status: NodeStatus,
        pub plan_tier: String,
        pub created_at: DateTime<Utc>,
        pub migration: Option<Migration>,
        /// In the lists of `/my/nodes` (and `/my/nodes/{id}`), while the node is created.
        pub creation_progress: Option<CreationProgress>,
    }
}

/// `GET /api/v1/my/node`, and each `node` message of the event streams.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MyNode {
    pub hosting_status: HostingStatus,
    pub has_subscription: bool,
    pub subscription: Option<Subscription>,
    pub has_node: bool,
    pub node: Option<Node>,
    /// Only while `node_creating`.
    pub creation_progress: Option<CreationProgress>,
    pub message: String,
}

/// `GET /api/v1/my/nodes`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MyNodes {
    pub hosting_status: HostingStatus,
    pub has_subscription: bool,
    pub subscription: Option<Subscription>,
    /// How many live nodes the subscription pays for.
    pub node_limit: u32,
    pub nodes: Vec<Node>,
    pub message: String,
}

/// `GET /api/v1/my/nodes/{resource_id}`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OneNode {
    pub node: Node,
    pub creation_progress: Option<CreationProgress>,
}

/// A migration accepted (202).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationAccepted {
    pub success: bool,
    pub resource_id: String,
    #[schema(required = true)]
    pub migration: Option<Migration>,
    pub message: String,
}

/// A migration cancelled.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationCancelled {
    pub success: bool,
    pub resource_id: String,
    pub message: String,
}

/// A VPN account as its owner sees it.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VpnUser {
    pub resource_id: String,
    pub vpn_user_id: String,
    /// The account's lifecycle status, or `expired`/`disabled` for an active one.
    pub status: String,
    pub plan_tier: String,
    pub traffic_limit_gb: f64,
    pub traffic_used_gb: f64,
    pub traffic_percent: f64,
    pub expire_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// `GET /api/v1/my/vpn`, and each `vpn` message of the event streams.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MyVpn {
    pub vpn_status: VpnStatus,
    pub has_subscription: bool,
    pub subscription: Option<Subscription>,
    pub has_vpn_user: bool,
    pub vpn_user: Option<VpnUser>,
    pub message: String,
}

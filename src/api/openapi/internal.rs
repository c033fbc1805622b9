//! The shapes of the internal API, the operator endpoints and the node callbacks (see
//! `schemas.rs` for why these are descriptions, never built).
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use utoipa::ToSchema;

use super::schemas::{Migration, MyNode, VpnSubscribe};
pub use crate::api::vpn_views::GiftView as Gifted;
use crate::api::vpn_views::{EntitlementView as Entitlement, VpnRecordView as VpnRecord};
use crate::domain::{ResourceKind, Status};

resource_schema! {
    /// A resource's true lifecycle, for internal callers and operators.
    pub struct Resource {
    }
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub resources: Vec<Resource>,
}

/// `GET /api/internal/users/{user_id}/resources`: the user's `/my/node` document.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserResources {
    pub success: bool,
    pub data: MyNode,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageOnly {
    pub message: String,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InternalVpnSubscribe {
    pub success: bool,
    pub data: VpnSubscribe,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InternalVpnStatus {
    pub success: bool,
    /// `null` when the user never had VPN access.
    #[schema(required = true)]
    pub data: Option<VpnRecord>,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Entitlements {
    pub entitlements: Vec<Entitlement>,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorDone {
    pub status: String,
    pub message: String,
    pub resource: Resource,
}

resource_schema! {
    /// A resource in the failed-work queue.
    pub struct QueueItem {
        /// `failed`, `past_deadline` or `retrying`.
        pub why: String,
        pub desired_state: String,
        pub attempts: i32,
        pub last_error: Option<String>,
        pub deadline_at: Option<DateTime<Utc>>,
        pub next_attempt_at: Option<DateTime<Utc>>,
        pub updated_at: DateTime<Utc>,
    }
}

/// A callback to the subscription service that keeps failing.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueCallback {
    pub outbox_id: i64,
    pub subscription_id: String,
    pub callback: serde_json::Value,
    pub attempts: i32,
    #[schema(required = true)]
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
}

/// A subscription with more live nodes than it pays for.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueSubscription {
    pub subscription_id: String,
    pub user_id: String,
    /// `over_node_limit`.
    pub why: String,
    pub live_nodes: i64,
    pub node_limit: i64,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    pub resources: Vec<QueueItem>,
    pub callbacks: Vec<QueueCallback>,
    pub subscriptions: Vec<QueueSubscription>,
    pub stuck_after_attempts: i32,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeLoad {
    pub resource_id: String,
    pub user_id: String,
    pub region: String,
    pub public_ip: Option<String>,
    pub cpu_percent: Option<f64>,
    pub mem_percent: Option<f64>,
    pub load1: Option<f64>,
    pub traffic_used_gb: Option<f64>,
    pub traffic_limit_gb: f64,
    pub traffic_percent: Option<f64>,
    pub reported_at: Option<DateTime<Utc>>,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodesLoad {
    pub nodes: Vec<NodeLoad>,
}

//! Hosting nodes as a subscription's set: the orders that say how many it pays for, the
//! live nodes of a user or a subscription, and the subscriptions over their limit.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{NewResource, StoreResult};
use domain::Resource;

/// A hosting order to record: its identity, how many nodes it pays for, and the nodes to
/// make when the subscription has fewer live ones (in this order; each takes a free slot).
#[derive(Debug, Clone)]
pub struct HostingOrder {
    pub order_key: String,
    pub subscription_id: String,
    pub user_id: String,
    pub quantity: u32,
    pub plan_tier: String,
    /// Candidates for the missing nodes, `quantity` of them; only as many as are missing
    /// are used.
    pub nodes: Vec<NewResource>,
    /// The deadline a plan change's migration gets (the order's plan differs from a live
    /// node's: the node is migrated in place to the new plan).
    pub migration_deadline: DateTime<Utc>,
}

/// What recording a hosting order did.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRecorded {
    /// False for a repeat of an order already recorded: nothing changed.
    pub new_order: bool,
    /// The nodes this order created.
    pub created: Vec<Uuid>,
    /// The nodes a plan change started migrating.
    pub migrating: Vec<Uuid>,
    /// The subscription's live nodes after the order, oldest first.
    pub live: Vec<Resource>,
}

/// What the latest hosting order of a subscription says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestOrder {
    pub quantity: i64,
    pub plan_tier: String,
}

/// Whose live nodes.
#[derive(Debug, Clone, Copy)]
pub enum NodesOf<'a> {
    User(&'a str),
    Subscription(&'a str),
}

/// A subscription with more live nodes than it pays for (a later order lowered the
/// quantity): an operator decides which go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    pub subscription_id: String,
    pub user_id: String,
    pub live_nodes: i64,
    pub node_limit: i64,
}

#[async_trait]
pub trait Nodes: Send + Sync {
    /// Records a hosting order once (a repeat changes nothing), in one transaction with
    /// the nodes it creates and the plan-change migrations it starts.
    async fn record_hosting_order(
        &self,
        order: &HostingOrder,
        now: DateTime<Utc>,
    ) -> StoreResult<OrderRecorded>;
    /// The latest hosting order recorded for the subscription: how many nodes it pays for
    /// and on which plan.
    async fn latest_order(&self, subscription_id: &str) -> StoreResult<Option<LatestOrder>>;
    /// Live hosting nodes that are meant to exist (not being deleted), oldest first.
    async fn live_nodes(&self, of: NodesOf<'_>) -> StoreResult<Vec<Resource>>;
    /// Every active hosting node with a VPS, meant to stay: the orphan sweep compares them
    /// with the hosting service's listing.
    async fn serving_nodes(&self) -> StoreResult<Vec<Resource>>;
    /// Subscriptions with more live nodes than their latest order's quantity.
    async fn over_node_limit(&self, limit: i64) -> StoreResult<Vec<OverLimit>>;
    /// Makes a resource due now (something outside the engine has news for its step).
    async fn wake_resource(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<()>;
}

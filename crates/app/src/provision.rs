//! The subscription service's orders: a paid hosting order becomes a node (VPN orders
//! are in `vpn_orders`). A repeated order is answered with what the first one made.

use serde::Deserialize;
use uuid::Uuid;

use super::ids::{SubscriptionId, UserId};
use super::{App, AppError};
use domain::input;
use domain::resource::order_key;
use domain::slots::SlotChoice;
use domain::{PlanTier, Resource, ResourceKind};
use ports::store::{HostingOrder, NewResource};

/// `POST /api/internal/provision` (every field of the contract; the ones hosting does not
/// use are accepted and ignored).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Provision {
    #[schema(required = true, min_length = 1, max_length = 256)]
    pub user_id: String,
    #[schema(required = true, nullable = false, min_length = 1, max_length = 256)]
    pub subscription_id: Option<String>,
    /// An address (`local@domain`), or blank.
    #[schema(
        max_length = 254,
        pattern = r"^[^\S\x00-\x1f\x7f-\x9f]*([^\s@\x00-\x1f\x7f-\x9f]+@[^\s@\x00-\x1f\x7f-\x9f]+)?[^\S\x00-\x1f\x7f-\x9f]*$"
    )]
    pub user_email: Option<String>,
    pub app_source: Option<String>,
    pub business_type: Option<String>,
    pub channel: Option<String>,
    pub resource_type: Option<String>,
    pub plan_tier: Option<String>,
    pub region: Option<String>,
    /// Bytes (VPN orders: from 0 to 10^6 GiB; hosting orders do not read it).
    pub traffic_limit: Option<i64>,
    /// Days a VPN order buys (1 to 3650; hosting orders do not read it).
    pub expire_days: Option<i64>,
    pub product_id: Option<String>,
    pub purchase_type: Option<String>,
    pub channel_sub_id: Option<String>,
    pub channel_tx_id: Option<String>,
    /// The paid period's start, RFC 3339 as the subscription service writes it; read as
    /// part of the order's identity, never parsed (at most 256 characters).
    #[schema(max_length = 256)]
    pub period_start: Option<String>,
    #[schema(max_length = 256)]
    pub period_end: Option<String>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    /// Hosting nodes the order pays for (1 when absent; at most `MAX_NODES_PER_SUBSCRIPTION`).
    #[schema(minimum = 1)]
    pub quantity: Option<i64>,
    pub months: Option<i64>,
    pub device_id: Option<String>,
}

impl Provision {
    /// VPN orders are those for the otun app or of the legacy `vpn_user` type.
    pub fn is_vpn(&self) -> bool {
        self.app_source.as_deref() == Some("otun")
            || self.resource_type.as_deref() == Some("vpn_user")
    }
}

/// What a provision call did.
#[derive(Debug, Clone)]
pub struct ProvisionOutcome {
    /// The first node the order made (or, for a repeat, the subscription's oldest).
    pub resource: Resource,
    /// False when the order made no node (a repeat, or all its nodes existed).
    pub created: bool,
    /// Every live node of the subscription, oldest first.
    pub resource_ids: Vec<Uuid>,
}

/// The plan an order names (hosting and VPN alike) (`basic` when it names none); an unknown tier is refused.
pub(super) fn order_plan(req: &Provision) -> Result<PlanTier, AppError> {
    match req
        .plan_tier
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        None => Ok(PlanTier::Basic),
        Some(p) => Ok(input::plan_tier(p)?),
    }
}

impl App {
    /// Records a hosting order for `quantity` nodes (default 1). A repeated order returns
    /// the subscription's live nodes and changes nothing; a new one creates the nodes
    /// missing up to its quantity, and migrates live nodes on another plan to its plan.
    /// The database's slots make that true under concurrency too.
    pub async fn provision(&self, req: Provision) -> Result<ProvisionOutcome, AppError> {
        let user = UserId::parse(&req.user_id)?;
        let subscription =
            SubscriptionId::parse(req.subscription_id.as_deref().unwrap_or_default())?;
        let region = self.available_region(req.region.as_deref()).await?;
        let plan = order_plan(&req)?;
        let user_email = input::email(req.user_email.as_deref())?;
        let quantity = self.order_quantity(req.quantity)?;
        for (value, name) in [
            (&req.channel_tx_id, "channel_tx_id"),
            (&req.period_start, "period_start"),
            (&req.period_end, "period_end"),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
                input::id(v, name, "invalid_field", "field_too_long")?;
            }
        }
        let period = req.period_start.as_deref().zip(req.period_end.as_deref());
        let key = order_key(subscription.as_str(), req.channel_tx_id.as_deref(), period);
        let node = |_| NewResource {
            id: Uuid::now_v7(),
            kind: ResourceKind::HostingNode,
            subscription_id: subscription.to_string(),
            user_id: user.to_string(),
            user_email: user_email.clone(),
            order_key: key.clone(),
            provider: self.config.cloud_provider.clone(),
            region: region.code.clone(),
            plan_tier: plan.as_str().to_owned(),
            traffic_limit: plan.node_traffic_limit(),
            actor: "subscription_service".into(),
            slots: SlotChoice::UpTo(quantity),
            recovered_node: None,
        };
        let now = self.ports.clock.now();
        let order = HostingOrder {
            order_key: key.clone(),
            subscription_id: subscription.to_string(),
            user_id: user.to_string(),
            quantity,
            plan_tier: plan.as_str().to_owned(),
            nodes: (0..quantity).map(node).collect(),
            migration_deadline: domain::units::after(now, self.engine.config.ready_timeout),
        };
        let recorded = self.ports.store.record_hosting_order(&order, now).await?;
        // The first node this order made, else the subscription's oldest live one.
        let first = recorded
            .created
            .first()
            .and_then(|id| recorded.live.iter().find(|r| r.id == *id))
            .or_else(|| recorded.live.first())
            .cloned();
        let resource = match first {
            Some(r) => r,
            // A repeat whose nodes are all gone: answer with what the order made.
            None => self
                .ports
                .store
                .resources_for_subscription(subscription.as_str())
                .await?
                .into_iter()
                .rfind(|r| r.kind == ResourceKind::HostingNode)
                .ok_or_else(|| {
                    AppError::conflict("no_node", "the order was recorded but has no node")
                })?,
        };
        Ok(ProvisionOutcome {
            created: !recorded.created.is_empty(),
            resource,
            resource_ids: recorded.live.iter().map(|r| r.id).collect(),
        })
    }

    /// The `quantity` of an order: 1 when absent, else from 1 to the configured maximum.
    fn order_quantity(&self, quantity: Option<i64>) -> Result<u32, AppError> {
        let max = self.config.max_nodes_per_subscription;
        match quantity {
            None => Ok(1),
            Some(q) if (1..=i64::from(max)).contains(&q) => Ok(q as u32),
            Some(q) => Err(AppError::invalid(
                "invalid_quantity",
                format!("quantity must be from 1 to {max} (got {q})"),
            )),
        }
    }
}

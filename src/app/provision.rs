//! The subscription service's orders: a paid hosting order becomes a node (VPN orders
//! are in `vpn_orders`). A repeated order is answered with what the first one made.

use serde::Deserialize;
use uuid::Uuid;

use super::ids::{SubscriptionId, UserId};
use super::{App, AppError};
use crate::domain::input;
use crate::domain::resource::order_key;
use crate::domain::{PlanTier, Resource, ResourceKind};
use crate::ports::store::{Inserted, NewResource};

/// `POST /api/internal/provision` (every field of the contract; the ones hosting does not
/// use are accepted and ignored).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Provision {
    pub user_id: String,
    pub subscription_id: Option<String>,
    pub user_email: Option<String>,
    pub app_source: Option<String>,
    pub business_type: Option<String>,
    pub channel: Option<String>,
    pub resource_type: Option<String>,
    pub plan_tier: Option<String>,
    pub region: Option<String>,
    pub traffic_limit: Option<i64>,
    pub expire_days: Option<i64>,
    pub product_id: Option<String>,
    pub purchase_type: Option<String>,
    pub channel_sub_id: Option<String>,
    pub channel_tx_id: Option<String>,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
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
    pub resource: Resource,
    /// False when the order was a repeat and the existing resource is returned.
    pub created: bool,
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
    /// Records a hosting order. A repeated order (same subscription) returns the live
    /// resource; the database's uniqueness makes that true under concurrency too.
    pub async fn provision(&self, req: Provision) -> Result<ProvisionOutcome, AppError> {
        let user = UserId::parse(&req.user_id)?;
        let subscription =
            SubscriptionId::parse(req.subscription_id.as_deref().unwrap_or_default())?;
        let region = self.available_region(req.region.as_deref()).await?;
        let plan = order_plan(&req)?;
        let user_email = input::email(req.user_email.as_deref())?;
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
        let new = NewResource {
            id: Uuid::now_v7(),
            kind: ResourceKind::HostingNode,
            subscription_id: subscription.to_string(),
            user_id: user.to_string(),
            user_email,
            order_key: order_key(subscription.as_str(), req.channel_tx_id.as_deref(), period),
            provider: self.config.cloud_provider.clone(),
            region: region.code,
            plan_tier: plan.as_str().to_owned(),
            traffic_limit: plan.node_traffic_limit(),
            actor: "subscription_service".into(),
        };
        let now = self.ports.clock.now();
        match self.ports.store.insert_resource(&new, now).await? {
            Inserted::Created(resource) => Ok(ProvisionOutcome {
                resource,
                created: true,
            }),
            Inserted::ExistingForSubscription(resource) => Ok(ProvisionOutcome {
                resource,
                created: false,
            }),
            Inserted::ExistingForUser(other) => Err(AppError::conflict(
                "user_has_node",
                format!(
                    "user already has a live hosting node ({}) on another subscription",
                    other.id
                ),
            )),
        }
    }
}

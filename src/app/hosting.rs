//! Hosting-node use cases: provisioning orders from the subscription service, the user's
//! own node and deprovisioning (node agents' reports are in `node_reports`).

use std::sync::Arc;

use serde::Deserialize;
use uuid::Uuid;

use super::subscriptions::subscription_of;
use super::{App, AppError};
use crate::domain::input;
use crate::domain::progress::{self, HostingStatus, SubscriptionState};
use crate::domain::resource::order_key;
use crate::domain::{DeleteReason, Event, PlanTier, Resource, ResourceKind, Status};
use crate::ports::store::{Inserted, NewResource, Region};

/// The app name and service type of hosting subscriptions.
pub const HOSTING: (&str, &str) = ("obox", "hosting");

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

/// `POST /api/internal/deprovision`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Deprovision {
    pub subscription_id: String,
    pub resource_id: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DeprovisionOutcome {
    pub resource: Resource,
}

/// Everything `GET /my/node` shows.
#[derive(Debug, Clone)]
pub struct MyNode {
    pub status: HostingStatus,
    pub subscription: SubscriptionState,
    pub node: Option<Resource>,
    pub region: Option<Region>,
    /// The node's history, loaded only while it is being created (for the progress bar).
    pub events: Vec<Event>,
}

pub(super) fn parse_id(id: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(id).map_err(|_| AppError::not_found("resource_not_found", "resource not found"))
}

/// Ids are opaque strings of 1 to 256 characters without control characters (see
/// `domain::input::id`).
pub(super) fn valid_id(
    value: &str,
    missing: &'static str,
    too_long: &'static str,
    name: &str,
) -> Result<(), AppError> {
    input::id(value, name, missing, too_long)?;
    Ok(())
}

pub(super) fn valid_user_id(user_id: &str) -> Result<(), AppError> {
    valid_id(user_id, "missing_user_id", "user_id_too_long", "user_id")
}

pub(super) fn valid_subscription_id(subscription_id: &str) -> Result<(), AppError> {
    valid_id(
        subscription_id,
        "missing_subscription_id",
        "subscription_id_too_long",
        "subscription_id",
    )
}

/// The plan an order names (`basic` when it names none); an unknown tier is refused.
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
    async fn region(&self, code: &str) -> Result<Region, AppError> {
        match self.regions.get(code).await? {
            Some(r) if r.available => Ok(r),
            Some(_) => Err(AppError::invalid(
                "region_unavailable",
                format!("region {code} is not available"),
            )),
            None => Err(AppError::invalid(
                "unknown_region",
                format!("unknown region {code}"),
            )),
        }
    }

    /// Records a hosting order. A repeated order (same subscription) returns the live
    /// resource; the database's uniqueness makes that true under concurrency too.
    pub async fn provision(&self, req: Provision) -> Result<ProvisionOutcome, AppError> {
        valid_user_id(&req.user_id)?;
        let subscription_id = req.subscription_id.as_deref().unwrap_or_default();
        valid_subscription_id(subscription_id)?;
        let region = req
            .region
            .as_deref()
            .filter(|r| !r.is_empty())
            .unwrap_or(&self.config.default_region);
        let region = self.region(region).await?;
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
            subscription_id: subscription_id.to_owned(),
            user_id: req.user_id.clone(),
            user_email,
            order_key: order_key(subscription_id, req.channel_tx_id.as_deref(), period),
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

    /// Asks for the subscription's resources (or the one named) to be deleted.
    pub async fn deprovision(&self, req: Deprovision) -> Result<DeprovisionOutcome, AppError> {
        valid_subscription_id(&req.subscription_id)?;
        let reason = match req.reason.as_deref().filter(|r| !r.is_empty()) {
            None => DeleteReason::SubscriptionCancelled,
            Some(r) => DeleteReason::parse(r).map_err(|_| {
                AppError::invalid("invalid_reason", format!("unknown reason {r:?}"))
            })?,
        };
        let wanted = req.resource_id.as_deref().map(parse_id).transpose()?;
        if let Some(resource) = self
            .deprovision_vpn(&req.subscription_id, wanted, reason)
            .await?
        {
            return Ok(DeprovisionOutcome { resource });
        }
        let matching: Vec<Resource> = self
            .ports
            .store
            .resources_for_subscription(&req.subscription_id)
            .await?
            .into_iter()
            .filter(|r| r.kind == ResourceKind::HostingNode)
            .filter(|r| wanted.is_none_or(|id| r.id == id))
            .collect();
        let not_found = || AppError::not_found("resource_not_found", "no resource matches");
        let now = self.ports.clock.now();
        let mut answer = None;
        for r in matching.iter().filter(|r| r.status != Status::Deleted) {
            let updated = self
                .ports
                .store
                .request_deletion(r.id, reason, "subscription_service", now)
                .await?
                .ok_or_else(not_found)?;
            answer.get_or_insert(updated);
        }
        // Everything matching is already deleted: answer with it, so a retried webhook
        // sees success rather than a 404.
        let resource = answer
            .or_else(|| matching.into_iter().last())
            .ok_or_else(not_found)?;
        Ok(DeprovisionOutcome { resource })
    }

    pub async fn resource(&self, id: &str) -> Result<Resource, AppError> {
        self.ports
            .store
            .resource(parse_id(id)?)
            .await?
            .ok_or_else(|| AppError::not_found("resource_not_found", "resource not found"))
    }

    pub async fn subscription_resources(
        &self,
        subscription_id: &str,
    ) -> Result<Vec<Resource>, AppError> {
        Ok(self
            .ports
            .store
            .resources_for_subscription(subscription_id)
            .await?)
    }

    /// `GET /my/node`: the user's node (never hidden by a subscription service outage),
    /// their subscription, and the creation progress while the node comes up.
    pub async fn my_node(&self, user_id: &str) -> Result<Arc<MyNode>, AppError> {
        valid_user_id(user_id)?;
        let answer = self
            .last_nodes
            .read(user_id, self.read_my_node(user_id))
            .await?;
        if !answer.remembered {
            return Ok(answer.value);
        }
        // Served from memory while the database is down: the status still follows the clock
        // (a subscription that ran out meanwhile reads as expired).
        let mut last = MyNode::clone(&answer.value);
        last.status = progress::hosting_status(
            &last.subscription,
            last.node.as_ref(),
            self.ports.clock.now(),
        )
        .unwrap_or(last.status);
        Ok(Arc::new(last))
    }

    async fn read_my_node(&self, user_id: &str) -> Result<MyNode, AppError> {
        let (node, subscription) = tokio::join!(
            self.ports.store.current_hosting_node(user_id),
            self.subscriptions.state(user_id, HOSTING.0, HOSTING.1),
        );
        let node = node?;
        let subscription = subscription?;
        let now = self.ports.clock.now();
        let status =
            progress::hosting_status(&subscription, node.as_ref(), now).ok_or_else(|| {
                AppError::Unavailable(
                    "the subscription service is unreachable; try again shortly".into(),
                )
            })?;
        let events = match &node {
            Some(n) if status == HostingStatus::NodeCreating => {
                self.ports.store.events(n.id).await?
            }
            _ => Vec::new(),
        };
        let region = match &node {
            Some(n) => self.regions.get(&n.region).await?,
            None => None,
        };
        Ok(MyNode {
            status,
            subscription,
            node,
            region,
            events,
        })
    }

    /// `POST /my/node`: create the user's node in `region`. A repeat while it is being
    /// created returns the same resource; a failed node is replaced.
    pub async fn create_my_node(
        &self,
        user_id: &str,
        region: Option<&str>,
    ) -> Result<(Resource, Vec<Event>), AppError> {
        let region = self
            .region(
                region
                    .filter(|r| !r.is_empty())
                    .unwrap_or(&self.config.default_region),
            )
            .await?;
        let subscription = self
            .subscriptions
            .state(user_id, HOSTING.0, HOSTING.1)
            .await?;
        let Some(snapshot) = subscription_of(&subscription).cloned() else {
            return Err(match subscription {
                SubscriptionState::Unknown => AppError::Unavailable(
                    "the subscription service is unreachable; try again shortly".into(),
                ),
                _ => AppError::forbidden("no_subscription", "no active hosting subscription"),
            });
        };
        let now = self.ports.clock.now();
        if let Some(existing) = self.ports.store.current_hosting_node(user_id).await? {
            match existing.status {
                Status::Pending | Status::Creating => {
                    let events = self.ports.store.events(existing.id).await?;
                    return Ok((existing, events));
                }
                Status::Failed => {
                    self.ports
                        .store
                        .request_deletion(existing.id, DeleteReason::UserInitiated, "user", now)
                        .await?;
                }
                _ => return Err(AppError::conflict("node_exists", "you already have a node")),
            }
        }
        let plan = PlanTier::parse(&snapshot.plan_tier);
        let new = NewResource {
            id: Uuid::now_v7(),
            kind: ResourceKind::HostingNode,
            subscription_id: snapshot.subscription_id.clone(),
            user_id: user_id.to_owned(),
            user_email: None,
            order_key: order_key(&snapshot.subscription_id, None, None),
            provider: self.config.cloud_provider.clone(),
            region: region.code,
            plan_tier: plan.as_str().to_owned(),
            traffic_limit: plan.node_traffic_limit(),
            actor: "user".into(),
        };
        let resource = match self.ports.store.insert_resource(&new, now).await? {
            Inserted::Created(r) => r,
            // A concurrent request (or the subscription service) got there first.
            Inserted::ExistingForSubscription(r) | Inserted::ExistingForUser(r) => {
                if !matches!(r.status, Status::Pending | Status::Creating) {
                    return Err(AppError::conflict("node_exists", "you already have a node"));
                }
                r
            }
        };
        let events = self.ports.store.events(resource.id).await?;
        Ok((resource, events))
    }

    /// `DELETE /my/node`: accepted in every live state, creation included.
    pub async fn delete_my_node(&self, user_id: &str) -> Result<Resource, AppError> {
        let node = self
            .ports
            .store
            .current_hosting_node(user_id)
            .await?
            .ok_or_else(|| AppError::not_found("no_node", "you have no node"))?;
        let now = self.ports.clock.now();
        self.ports
            .store
            .request_deletion(node.id, DeleteReason::UserInitiated, "user", now)
            .await?
            .ok_or_else(|| AppError::not_found("no_node", "you have no node"))
    }
}

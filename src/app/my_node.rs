//! The user's own node: what `GET /my/node` shows (with live creation progress), and
//! creating and deleting it.

use std::sync::Arc;

use uuid::Uuid;

use super::ids::UserId;
use super::subscriptions::{HOSTING, subscription_of};
use super::{App, AppError};
use crate::domain::progress::{self, HostingStatus, SubscriptionState};
use crate::domain::resource::order_key;
use crate::domain::{DeleteReason, Event, PlanTier, Resource, ResourceKind, Status};
use crate::ports::store::{Inserted, NewResource, Region};

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

impl App {
    /// `GET /my/node`: the user's node (never hidden by a subscription service outage),
    /// their subscription, and the creation progress while the node comes up.
    pub async fn my_node(&self, user: &UserId) -> Result<Arc<MyNode>, AppError> {
        let user_id = user.as_str();
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
        user: &UserId,
        region: Option<&str>,
    ) -> Result<(Resource, Vec<Event>), AppError> {
        let user_id = user.as_str();
        let region = self.available_region(region).await?;
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
    pub async fn delete_my_node(&self, user: &UserId) -> Result<Resource, AppError> {
        let user_id = user.as_str();
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

//! A user's several nodes (CONTRACTS.md §4.4): the list with the subscription's node
//! limit, one node, creating one more (up to the limit, enforced by the database's slots),
//! and deleting one. Another user's node reads exactly like an unknown one.

use uuid::Uuid;

use super::ids::{ResourceId, UserId};
use super::subscriptions::subscription_of;
use super::{App, AppError};
use domain::input;
use domain::product::HOSTING;
use domain::progress::{self, HostingStatus, SubscriptionSnapshot, SubscriptionState};
use domain::resource::order_key;
use domain::slots::{self, SlotChoice};
use domain::{DeleteReason, Desired, Event, PlanTier, Resource, ResourceKind, Status};
use ports::store::{Inserted, LatestOrder, NewResource, NodesOf, Region};

/// Which create a user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCreate {
    /// `POST /my/node`: only when the user has no node (it takes slot 1, so concurrent
    /// requests make one node).
    First,
    /// `POST /my/nodes`: one more, up to the subscription's limit.
    More,
}

/// One of the user's nodes, with what its view needs.
#[derive(Debug, Clone)]
pub struct NodeEntry {
    pub node: Resource,
    pub region: Option<Region>,
    /// The history, loaded only while the node is being created (its progress bar).
    pub events: Vec<Event>,
}

/// Everything `GET /my/nodes` shows.
#[derive(Debug, Clone)]
pub struct MyNodes {
    pub status: HostingStatus,
    pub subscription: SubscriptionState,
    pub node_limit: u32,
    pub nodes: Vec<NodeEntry>,
}

impl App {
    /// The subscription's latest hosting order, if one was recorded.
    async fn latest_order(
        &self,
        snapshot: &SubscriptionSnapshot,
    ) -> Result<Option<LatestOrder>, AppError> {
        Ok(self
            .ports
            .store
            .latest_order(&snapshot.subscription_id)
            .await?)
    }

    /// How many nodes the subscription pays for (`domain::slots::node_limit`).
    fn node_limit(&self, snapshot: &SubscriptionSnapshot, ordered: Option<&LatestOrder>) -> u32 {
        let max = self.config.max_nodes_per_subscription;
        slots::node_limit(snapshot.quantity, ordered.map(|o| o.quantity), max)
    }

    /// A node with its region and, while it is being created, its history.
    async fn entry(&self, node: Resource) -> Result<NodeEntry, AppError> {
        let creating = matches!(node.status, Status::Pending | Status::Creating);
        let events = if creating {
            self.ports.store.events(node.id).await?
        } else {
            Vec::new()
        };
        let region = self.regions.get(&node.region).await?;
        Ok(NodeEntry {
            node,
            region,
            events,
        })
    }

    /// `GET /my/nodes`.
    pub async fn my_nodes(&self, user: &UserId) -> Result<MyNodes, AppError> {
        let (nodes, subscription) = tokio::join!(
            self.ports.store.live_nodes(NodesOf::User(user.as_str())),
            self.subscriptions.state(user.as_str(), HOSTING),
        );
        let (nodes, subscription) = (nodes?, subscription?);
        let now = self.ports.clock.now();
        let status = progress::hosting_status(&subscription, nodes.first(), now)
            .ok_or_else(subscriptions_unreachable)?;
        let node_limit = match subscription_of(&subscription) {
            Some(s) => self.node_limit(s, self.latest_order(s).await?.as_ref()),
            None => 0,
        };
        let mut entries = Vec::with_capacity(nodes.len());
        for node in nodes {
            entries.push(self.entry(node).await?);
        }
        Ok(MyNodes {
            status,
            subscription,
            node_limit,
            nodes: entries,
        })
    }

    /// The user's own live node `id`; anything else (unknown, another user's, a VPN user,
    /// deleted or being deleted) is the same 404.
    pub(super) async fn own_node(&self, user: &UserId, id: &str) -> Result<Resource, AppError> {
        let not_found = || AppError::not_found("node_not_found", "no such node");
        let id = ResourceId::parse(id).map_err(|_| not_found())?.0;
        match self.ports.store.resource(id).await? {
            Some(r)
                if r.user_id == user.as_str()
                    && r.kind == ResourceKind::HostingNode
                    && r.desired == Desired::Active
                    && r.status.is_live() =>
            {
                Ok(r)
            }
            _ => Err(not_found()),
        }
    }

    /// `GET /my/nodes/{id}`.
    pub async fn my_node_by_id(&self, user: &UserId, id: &str) -> Result<NodeEntry, AppError> {
        let node = self.own_node(user, id).await?;
        self.entry(node).await
    }

    /// `DELETE /my/nodes/{id}`: accepted in every live state, creation included.
    pub async fn delete_my_node_by_id(
        &self,
        user: &UserId,
        id: &str,
    ) -> Result<Resource, AppError> {
        let node = self.own_node(user, id).await?;
        let now = self.ports.clock.now();
        self.ports
            .store
            .request_deletion(node.id, DeleteReason::UserInitiated, "user", now)
            .await?
            .ok_or_else(|| AppError::not_found("node_not_found", "no such node"))
    }

    /// Creates a node for the user on their hosting subscription, in `region`.
    pub async fn create_node(
        &self,
        user: &UserId,
        region: Option<&str>,
        how: NodeCreate,
    ) -> Result<(Resource, Vec<Event>), AppError> {
        let user_id = user.as_str();
        let region = self
            .available_region(Some(input::chosen_region(region)?))
            .await?;
        let subscription = self.subscriptions.state(user_id, HOSTING).await?;
        let Some(snapshot) = subscription_of(&subscription).cloned() else {
            return Err(match subscription {
                SubscriptionState::Unknown => subscriptions_unreachable(),
                _ => AppError::forbidden("no_subscription", "no active hosting subscription"),
            });
        };
        // The latest order names the plan (else the subscription service) and, with the
        // subscription service's quantity, the limit.
        let ordered = self.latest_order(&snapshot).await?;
        let slots = match how {
            NodeCreate::First => {
                if let Some(existing) = self.first_node_stands(user).await? {
                    let events = self.ports.store.events(existing.id).await?;
                    return Ok((existing, events));
                }
                SlotChoice::Exactly(1)
            }
            NodeCreate::More => SlotChoice::UpTo(self.node_limit(&snapshot, ordered.as_ref())),
        };
        let plan = PlanTier::parse(
            ordered
                .as_ref()
                .map_or(&snapshot.plan_tier, |o| &o.plan_tier),
        );
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
            slots,
            recovered_node: None,
        };
        let now = self.ports.clock.now();
        let resource = match (self.ports.store.insert_resource(&new, now).await?, how) {
            (Inserted::Created(r), _) => *r,
            // A concurrent request (or the subscription service) got there first.
            (Inserted::Full(live), NodeCreate::First) => match live.into_iter().next() {
                Some(r) if matches!(r.status, Status::Pending | Status::Creating) => r,
                _ => return Err(AppError::conflict("node_exists", "you already have a node")),
            },
            (Inserted::Full(_), NodeCreate::More) => {
                return Err(AppError::conflict(
                    "node_limit_reached",
                    "your subscription's node limit is reached",
                ));
            }
        };
        let events = self.ports.store.events(resource.id).await?;
        Ok((resource, events))
    }

    /// For `POST /my/node`: the node being created that a repeat returns, or a 409 when
    /// the user has a node; a failed one is deleted to make room.
    async fn first_node_stands(&self, user: &UserId) -> Result<Option<Resource>, AppError> {
        let live = self
            .ports
            .store
            .live_nodes(NodesOf::User(user.as_str()))
            .await?;
        let exists = || AppError::conflict("node_exists", "you already have a node");
        let Some(first) = live.first() else {
            return Ok(None);
        };
        match first.status {
            Status::Pending | Status::Creating => Ok(Some(first.clone())),
            Status::Failed if live.len() == 1 => {
                let now = self.ports.clock.now();
                self.ports
                    .store
                    .request_deletion(first.id, DeleteReason::UserInitiated, "user", now)
                    .await?;
                Ok(None)
            }
            _ => Err(exists()),
        }
    }
}

fn subscriptions_unreachable() -> AppError {
    AppError::Unavailable("the subscription service is unreachable; try again shortly".into())
}

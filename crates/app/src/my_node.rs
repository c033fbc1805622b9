//! The user's own node: what `GET /my/node` shows (with live creation progress), and
//! creating and deleting it.

use std::sync::Arc;
use std::time::Instant;

use super::ids::UserId;
use super::reads::{Document, Shelves};
use super::{App, AppError};
use domain::product::HOSTING;
use domain::progress::{self, HostingStatus, SubscriptionState};
use domain::{DeleteReason, Event, Resource};
use ports::store::Region;

/// Everything `GET /my/node` shows.
#[derive(Debug, Clone)]
pub struct MyNode {
    pub status: HostingStatus,
    pub subscription: SubscriptionState,
    pub node: Option<Resource>,
    pub region: Option<Region>,
    /// The node's history, loaded only while it is being created (for the progress bar).
    pub events: Vec<Event>,
    /// Until when this answer holds with no change committed (its subscription answer
    /// expires then); `None`: it may not be kept (the subscription service did not answer).
    pub fresh_until: Option<Instant>,
}

impl Document for MyNode {
    fn fresh_until(&self) -> Option<Instant> {
        self.fresh_until
    }
}

impl App {
    /// `GET /my/node`: the user's node (never hidden by a subscription service outage),
    /// their subscription, and the creation progress while the node comes up.
    pub async fn my_node(&self, user: &UserId) -> Result<Arc<MyNode>, AppError> {
        let user_id = user.as_str();
        let shelves = Shelves {
            model: &self.read_nodes,
            last: &self.last_nodes,
        };
        self.read_through(
            shelves,
            user_id,
            |kept| self.node_now(kept),
            async |kept| self.renew_node(user_id, kept).await,
            self.read_my_node(user_id),
        )
        .await
    }

    /// An answer read earlier, its status brought up to the clock (a subscription that ran
    /// out since reads as expired).
    fn node_now(&self, kept: Arc<MyNode>) -> Arc<MyNode> {
        let status = progress::hosting_status(
            &kept.subscription,
            kept.node.as_ref(),
            self.ports.clock.now(),
        )
        .unwrap_or(kept.status);
        if status == kept.status {
            return kept;
        }
        Arc::new(MyNode {
            status,
            ..MyNode::clone(&kept)
        })
    }

    /// A kept answer whose subscription part expired, with a new subscription answer and
    /// the node as the database last said (no change heard since): what a full read would
    /// answer, without the database read. `None` when only a full read will do (the node
    /// now reads as coming up, and its history is needed).
    async fn renew_node(&self, user_id: &str, kept: &MyNode) -> Result<Option<MyNode>, AppError> {
        let (subscription, _, fresh_until) =
            self.subscriptions.lookup_until(user_id, HOSTING).await?;
        let now = self.ports.clock.now();
        let status = progress::hosting_status(&subscription, kept.node.as_ref(), now)
            .ok_or_else(unreachable)?;
        if status == HostingStatus::NodeCreating && kept.status != HostingStatus::NodeCreating {
            return Ok(None);
        }
        Ok(Some(MyNode {
            status,
            subscription,
            fresh_until,
            ..kept.clone()
        }))
    }

    async fn read_my_node(&self, user_id: &str) -> Result<MyNode, AppError> {
        let (node, subscription) = tokio::join!(
            self.ports.store.current_hosting_node(user_id),
            self.subscriptions.lookup_until(user_id, HOSTING),
        );
        let node = node?;
        let (subscription, _, fresh_until) = subscription?;
        let now = self.ports.clock.now();
        let status =
            progress::hosting_status(&subscription, node.as_ref(), now).ok_or_else(unreachable)?;
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
            fresh_until,
        })
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

/// Neither the subscription service nor what we last heard from it can tell.
fn unreachable() -> AppError {
    AppError::Unavailable("the subscription service is unreachable; try again shortly".into())
}

//! The user's own node: what `GET /my/node` shows (with live creation progress), and
//! creating and deleting it.

use std::sync::Arc;

use super::ids::UserId;
use super::subscriptions::HOSTING;
use super::{App, AppError};
use crate::domain::progress::{self, HostingStatus, SubscriptionState};
use crate::domain::{DeleteReason, Event, Resource};
use crate::ports::store::Region;

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

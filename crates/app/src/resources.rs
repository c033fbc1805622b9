//! Reading our record of resources (the internal API and the operator console).

use super::ids::{ResourceId, SubscriptionId, UserId};
use super::{App, AppError};
use domain::{Event, Resource};
use ports::store::{CallbackRecord, NodesOf};

impl App {
    pub async fn resource(&self, id: ResourceId) -> Result<Resource, AppError> {
        self.ports
            .store
            .resource(id.0)
            .await?
            .ok_or_else(|| AppError::not_found("resource_not_found", "resource not found"))
    }

    pub async fn subscription_resources(
        &self,
        subscription: &SubscriptionId,
    ) -> Result<Vec<Resource>, AppError> {
        Ok(self
            .ports
            .store
            .resources_for_subscription(subscription.as_str())
            .await?)
    }

    /// A resource's whole history: who did what, when, and why.
    pub async fn history(&self, id: ResourceId) -> Result<Vec<Event>, AppError> {
        let r = self.resource(id).await?;
        Ok(self.ports.store.events(r.id).await?)
    }

    /// The callbacks that reported on a resource, oldest first (the console's history).
    pub async fn callbacks_of(&self, id: ResourceId) -> Result<Vec<CallbackRecord>, AppError> {
        Ok(self
            .ports
            .store
            .callbacks_of(&id.0.to_string(), 200)
            .await?)
    }

    /// Every resource of a user's subscriptions, as far as their live nodes and VPN lead to
    /// them (the console's search by user).
    pub async fn user_resources(&self, user: &UserId) -> Result<Vec<Resource>, AppError> {
        let store = &self.ports.store;
        let (nodes, vpn) = tokio::join!(
            store.live_nodes(NodesOf::User(user.as_str())),
            store.vpn_of_user(user.as_str())
        );
        let mut subscriptions: Vec<String> = nodes?
            .into_iter()
            .chain(vpn?.resource)
            .map(|r| r.subscription_id)
            .collect();
        subscriptions.sort();
        subscriptions.dedup();
        let mut out = Vec::new();
        for s in subscriptions {
            out.extend(store.resources_for_subscription(&s).await?);
        }
        Ok(out)
    }
}

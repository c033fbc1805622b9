//! Reading our record of resources (the internal API and the operator console).

use super::ids::{ResourceId, SubscriptionId};
use super::{App, AppError};
use crate::domain::{Event, Resource};

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
}

//! The subscription service ending what it paid for: the subscription's node (or the one
//! named) is deleted, and its VPN entitlement ended. A repeat answers with the result.

use serde::Deserialize;
use uuid::Uuid;

use super::ids::{ResourceId, SubscriptionId};
use super::{App, AppError};
use domain::{DeleteReason, Resource, ResourceKind, Status};

/// `POST /api/internal/deprovision`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Deprovision {
    #[schema(required = true, min_length = 1, max_length = 256)]
    pub subscription_id: String,
    pub resource_id: Option<String>,
    /// `subscription_cancelled` when absent or empty.
    #[schema(
        pattern = "^(user_initiated|subscription_cancelled|subscription_expired|provision_failed|admin)?$"
    )]
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DeprovisionOutcome {
    pub resource: Resource,
}

impl App {
    /// Asks for the subscription's resources (or the one named) to be deleted.
    pub async fn deprovision(&self, req: Deprovision) -> Result<DeprovisionOutcome, AppError> {
        let subscription = SubscriptionId::parse(&req.subscription_id)?;
        let reason = match req.reason.as_deref().filter(|r| !r.is_empty()) {
            None => DeleteReason::SubscriptionCancelled,
            Some(r) => DeleteReason::parse(r).map_err(|_| {
                AppError::invalid("invalid_reason", format!("unknown reason {r:?}"))
            })?,
        };
        let wanted = req
            .resource_id
            .as_deref()
            .map(ResourceId::parse)
            .transpose()?
            .map(|id| id.0);
        if let Some(resource) = self.deprovision_vpn(&subscription, wanted, reason).await? {
            return Ok(DeprovisionOutcome { resource });
        }
        let matching: Vec<Resource> = self
            .ports
            .store
            .resources_for_subscription(subscription.as_str())
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

    /// Ends the VPN access a subscription gave, when it has any (`None` otherwise).
    async fn deprovision_vpn(
        &self,
        subscription: &SubscriptionId,
        wanted: Option<Uuid>,
        reason: DeleteReason,
    ) -> Result<Option<Resource>, AppError> {
        let entitlements = self
            .ports
            .store
            .entitlements_for_subscription(subscription.as_str())
            .await?;
        if entitlements.is_empty()
            || wanted.is_some_and(|id| entitlements.iter().all(|e| e.resource_id != id))
        {
            return Ok(None);
        }
        let now = self.ports.clock.now();
        Ok(self
            .ports
            .store
            .cancel_vpn_subscription(subscription.as_str(), reason, "subscription_service", now)
            .await?)
    }
}

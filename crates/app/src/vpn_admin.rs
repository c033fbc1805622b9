//! Operators' and the payment pipeline's changes to a user's VPN: adjusted terms, a new
//! email, and the entitlement listing.

use serde::Deserialize;

use super::ids::{ResourceId, UserId};
use super::{App, AppError};
use domain::entitlement::Entitlement;
use domain::{ResourceKind, input};
use ports::store::{EntitlementFilter, VpnAdjustment};

/// `PUT /api/internal/resources/{id}/vpn`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct VpnChange {
    pub traffic_limit: Option<i64>,
    pub extend_days: Option<i64>,
    pub plan_tier: Option<String>,
}

impl App {
    /// `PUT /resources/{id}/vpn`: changes the current terms; `true` when the VPN manager
    /// already holds them, `false` when they are saved and will be applied.
    pub async fn change_vpn(&self, id: ResourceId, ch: VpnChange) -> Result<bool, AppError> {
        let resource = self.resource(id).await?;
        if resource.kind != ResourceKind::VpnUser {
            return Err(AppError::invalid(
                "not_a_vpn_user",
                "the resource is not a VPN user",
            ));
        }
        if let Some(t) = ch.traffic_limit {
            input::traffic_bytes(t, "traffic_limit")?;
        }
        if let Some(d) = ch.extend_days {
            input::days(d, "extend_days", "invalid_extend_days")?;
        }
        let plan = ch
            .plan_tier
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(input::plan_tier)
            .transpose()?;
        if ch.traffic_limit.is_none() && ch.extend_days.is_none() && plan.is_none() {
            return Err(AppError::invalid(
                "nothing_to_change",
                "give traffic_limit, extend_days or plan_tier",
            ));
        }
        let adjustment = VpnAdjustment {
            traffic_limit: ch.traffic_limit,
            extend_days: ch.extend_days,
            service_tier: plan.as_ref().map(|p| p.service_tier().to_owned()),
            plan_tier: plan.map(|p| p.as_str().to_owned()),
        };
        let now = self.ports.clock.now();
        let Some((_, resource)) = self
            .ports
            .store
            .adjust_vpn(resource.id, &adjustment, self.vpn_due_at(), now)
            .await?
        else {
            return Err(AppError::conflict(
                "vpn_not_live",
                "the VPN user is being deleted or has no current entitlement",
            ));
        };
        let version = resource.vpn.spec_version;
        let after = self
            .engine
            .drive_vpn(resource.id, version, self.config.vpn.wait)
            .await?;
        Ok(after.is_some_and(|r| r.vpn.applied_version >= version))
    }

    /// `PUT /users/{id}/email`: recorded now, pushed to the VPN manager by the engine
    /// (retried until it is accepted).
    pub async fn set_email(&self, user: &UserId, email: Option<&str>) -> Result<(), AppError> {
        let Some(email) = input::email(email)? else {
            return Err(AppError::invalid("missing_email", "email is required"));
        };
        let now = self.ports.clock.now();
        let known = self
            .ports
            .store
            .set_user_email(user.as_str(), &email, now)
            .await?;
        if !known {
            return Err(AppError::not_found(
                "user_not_found",
                "no resource or entitlement of this user is known",
            ));
        }
        Ok(())
    }

    /// `GET /entitlements`.
    pub async fn entitlements(
        &self,
        mut filter: EntitlementFilter,
    ) -> Result<Vec<Entitlement>, AppError> {
        if let Some(u) = &filter.user_id {
            UserId::parse(u)?;
        }
        if let Some(s) = filter.status.as_deref()
            && !matches!(
                s,
                "active" | "expired" | "superseded" | "merged" | "cancelled"
            )
        {
            return Err(AppError::invalid(
                "invalid_status",
                format!("unknown status {s:?}"),
            ));
        }
        if let Some(b) = &filter.business_type {
            input::id(
                b,
                "business_type",
                "invalid_business_type",
                "business_type_too_long",
            )?;
        }
        filter.limit = 500;
        Ok(self
            .ports
            .store
            .entitlements(&filter, self.ports.clock.now())
            .await?)
    }
}

//! VPN orders and gifts: recorded as entitlements, then pushed to the VPN manager by the
//! engine, first from inside the request under a short wait.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::ids::{SubscriptionId, UserId, optional_field};
use super::provision::{Provision, order_plan};
use super::{App, AppError};
use domain::entitlement::{Entitlement, OrderTerms};
use domain::expiry::OrderKind;
use domain::input;
use domain::vpn_order::UpstreamExpiry;
use domain::{Resource, Status};
use ports::store::{VpnOrder, VpnOrderOutcome};

/// What a VPN order (or gift) did.
#[derive(Debug, Clone)]
pub struct VpnOutcome {
    pub entitlement: Entitlement,
    /// The VPN user resource, as it is when the request stopped waiting.
    pub resource: Resource,
    /// False when the order was a repeat and nothing changed.
    pub created: bool,
}

impl VpnOutcome {
    /// Whether the VPN manager holds this order's terms.
    pub fn is_applied(&self) -> bool {
        self.resource.status == Status::Active
            && self.resource.vpn.applied_version >= self.entitlement.spec_version
    }
}

/// `POST /api/internal/entitlements/gift`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Gift {
    #[schema(required = true, min_length = 1, max_length = 256)]
    pub user_id: String,
    /// An address (`local@domain`), or blank.
    #[schema(
        max_length = 254,
        pattern = r"^[^\S\x00-\x1f\x7f-\x9f]*([^\s@\x00-\x1f\x7f-\x9f]+@[^\s@\x00-\x1f\x7f-\x9f]+)?[^\S\x00-\x1f\x7f-\x9f]*$"
    )]
    pub email: Option<String>,
    /// GiB, at least 1 MiB's worth (`1/1024`).
    #[schema(
        required = true,
        nullable = false,
        minimum = 0.0009765625,
        maximum = 1000000
    )]
    pub traffic_gb: Option<f64>,
    #[schema(required = true, nullable = false, minimum = 1, maximum = 3650)]
    pub duration_days: Option<i64>,
    /// `standard` when absent.
    #[schema(pattern = "^(standard|premium)$")]
    pub service_tier: Option<String>,
    pub note: Option<String>,
}

/// Days an order buys: `expire_days`, else `months` × 30, else its period, else 30.
fn order_days(req: &Provision) -> Result<i64, AppError> {
    if let Some(days) = req.expire_days {
        return Ok(input::days(days, "expire_days", "invalid_expire_days")?);
    }
    if let Some(months) = req.months {
        return Ok(input::days(
            months.saturating_mul(30),
            "months × 30 days",
            "invalid_months",
        )?);
    }
    if let (Some(start), Some(end)) = (&req.period_start, &req.period_end) {
        let parse = |s: &str| {
            DateTime::parse_from_rfc3339(s).map_err(|_| {
                AppError::invalid(
                    "invalid_period",
                    "period_start and period_end must be RFC 3339",
                )
            })
        };
        let days = (parse(end)? - parse(start)?).num_days();
        return Ok(input::days(days, "the period in days", "invalid_period")?);
    }
    Ok(30)
}

impl App {
    /// Records a VPN order and tries to finish it within the request. A repeated order
    /// changes nothing and answers with what the first one recorded.
    pub async fn provision_vpn(&self, req: Provision) -> Result<VpnOutcome, AppError> {
        let user = UserId::parse(&req.user_id)?;
        let subscription =
            SubscriptionId::parse(req.subscription_id.as_deref().unwrap_or_default())?;
        let subscription_id = subscription.to_string();
        let days = order_days(&req)?;
        if let Some(t) = req.traffic_limit {
            input::traffic_bytes(t, "traffic_limit")?;
        }
        let email = input::email(req.user_email.as_deref())?;
        let channel = optional_field(req.channel.as_deref(), "channel")?;
        let business_type = optional_field(req.business_type.as_deref(), "business_type")?;
        let device_id = optional_field(req.device_id.as_deref(), "device_id")?;
        for v in [&req.channel_tx_id, &req.period_start, &req.period_end] {
            optional_field(v.as_deref(), "order identity")?;
        }
        let kind = OrderKind::of(channel.as_deref(), business_type.as_deref());
        let is_trial =
            channel.as_deref() == Some("trial") || business_type.as_deref() == Some("trial");
        let plan = order_plan(&req)?;
        let period = req.period_start.as_deref().zip(req.period_end.as_deref());
        let order = VpnOrder {
            resource_id: Uuid::now_v7(),
            entitlement_id: Uuid::now_v7(),
            user_id: user.to_string(),
            email,
            order_key: Some(domain::resource::order_key(
                &subscription_id,
                req.channel_tx_id.as_deref(),
                period,
            )),
            subscription_id: Some(subscription_id),
            channel: channel.unwrap_or_else(|| "unknown".into()),
            business_type: business_type.unwrap_or_else(|| "subscription".into()),
            plan_tier: plan.as_str().to_owned(),
            service_tier: plan.service_tier().to_owned(),
            terms: OrderTerms {
                kind,
                days,
                traffic_limit: plan.vpn_traffic_limit(req.traffic_limit),
            },
            upstream_expiry: UpstreamExpiry::NotAsked,
            is_trial,
            traffic_reset: self.config.vpn.traffic_reset,
            device_id,
            note: None,
            actor: "subscription_service".into(),
            due_at: self.vpn_due_at(),
        };
        self.record_vpn(order).await
    }

    /// `POST /entitlements/gift`: free access that adds to whatever the user has.
    pub async fn gift(&self, g: Gift) -> Result<VpnOutcome, AppError> {
        let user = UserId::parse(&g.user_id)?;
        let days = input::days(
            g.duration_days.unwrap_or_default(),
            "duration_days",
            "invalid_duration_days",
        )?;
        let traffic_limit = input::traffic_gib(g.traffic_gb.unwrap_or_default(), "traffic_gb")?;
        let service_tier = match g.service_tier.as_deref().unwrap_or("standard") {
            t @ ("standard" | "premium") => t.to_owned(),
            other => {
                return Err(AppError::invalid(
                    "invalid_service_tier",
                    format!("unknown service_tier {other:?} (standard or premium)"),
                ));
            }
        };
        if g.note.as_ref().is_some_and(|n| n.chars().count() > 1000) {
            return Err(AppError::invalid(
                "note_too_long",
                "note is over 1000 characters",
            ));
        }
        let note = g.note.as_deref().and_then(input::free_text);
        let order = VpnOrder {
            resource_id: Uuid::now_v7(),
            entitlement_id: Uuid::now_v7(),
            user_id: user.to_string(),
            email: input::email(g.email.as_deref())?,
            subscription_id: None,
            order_key: None,
            channel: "gift".into(),
            business_type: "gift".into(),
            plan_tier: service_tier.clone(),
            service_tier,
            upstream_expiry: UpstreamExpiry::NotAsked,
            terms: OrderTerms {
                kind: OrderKind::Free,
                days,
                traffic_limit,
            },
            is_trial: false,
            traffic_reset: self.config.vpn.traffic_reset,
            device_id: None,
            note,
            actor: "admin".into(),
            due_at: self.vpn_due_at(),
        };
        self.record_vpn(order).await
    }

    /// The expiry the VPN manager holds for the account `uuid` now (`CONTRACTS.md` §2.3: a
    /// paid renewal stacks on it). `None` when the VPN manager cannot be read: our stored
    /// copy stands in then.
    async fn upstream_expiry(&self, uuid: &str) -> Option<DateTime<Utc>> {
        match self.ports.vpn.get_user(uuid).await {
            Ok(user) => user.and_then(|u| u.expire_at),
            Err(e) => {
                tracing::warn!(error = %e, "the VPN manager's expiry could not be read; renewing on our stored copy");
                None
            }
        }
    }

    /// When the engine may take over a VPN change the request is making: the request takes
    /// the first step itself, and the engine only finishes what it did not (or what a
    /// process that died left).
    pub(super) fn vpn_due_at(&self) -> DateTime<Utc> {
        let wait = self.config.vpn.wait + std::time::Duration::from_secs(1);
        domain::units::after(self.ports.clock.now(), wait)
    }

    async fn record_vpn(&self, mut order: VpnOrder) -> Result<VpnOutcome, AppError> {
        let mut recorded = self
            .ports
            .store
            .record_vpn_order(&order, self.ports.clock.now())
            .await?;
        if let VpnOrderOutcome::AskUpstream { vpn_user_id } = &recorded {
            // Asked only when it matters (a paid order on an account the VPN manager holds).
            let expiry = self.upstream_expiry(vpn_user_id).await;
            order.upstream_expiry = UpstreamExpiry::Asked(expiry);
            recorded = self
                .ports
                .store
                .record_vpn_order(&order, self.ports.clock.now())
                .await?;
        }
        let (entitlement, resource) = match recorded {
            VpnOrderOutcome::AskUpstream { .. } => {
                return Err(AppError::Store(ports::store::StoreError::Corrupt(
                    "the store asked twice for the VPN manager's expiry".into(),
                )));
            }
            VpnOrderOutcome::TrialUsed => {
                return Err(AppError::conflict(
                    "trial_already_used",
                    "a trial was already used by this user, device or email",
                ));
            }
            VpnOrderOutcome::Duplicate {
                entitlement,
                resource,
            } => {
                return Ok(VpnOutcome {
                    entitlement,
                    resource,
                    created: false,
                });
            }
            VpnOrderOutcome::Recorded {
                entitlement,
                resource,
            } => (entitlement, resource),
        };
        let resource = self
            .engine
            .drive_vpn(resource.id, entitlement.spec_version, self.config.vpn.wait)
            .await?
            .unwrap_or(resource);
        Ok(VpnOutcome {
            entitlement,
            resource,
            created: true,
        })
    }
}

//! What recording a VPN order writes, and what adjusting a user's terms does, decided
//! here as pure functions. The store reads the user's account and current entitlement
//! under lock, asks `plan_order` (or `adjust`), and executes the plan it gets.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::entitlement::{Entitlement, EntitlementStatus, OrderTerms, Placement, place_order};
use super::usage::VpnTrafficReset;
use super::{EventKind, Resource, Status};

/// A VPN order (or gift) to record.
#[derive(Debug, Clone)]
pub struct VpnOrder {
    /// The id of the VPN user resource, if the user needs a new one.
    pub resource_id: Uuid,
    pub entitlement_id: Uuid,
    pub user_id: String,
    pub email: Option<String>,
    /// `None` for gifts.
    pub subscription_id: Option<String>,
    /// The order's identity (`None` for gifts): a second delivery changes nothing.
    pub order_key: Option<String>,
    pub channel: String,
    pub business_type: String,
    pub plan_tier: String,
    pub service_tier: String,
    pub terms: OrderTerms,
    /// The account's expiry as the VPN manager reports it (a paid renewal stacks on it).
    pub upstream_expiry: UpstreamExpiry,
    pub is_trial: bool,
    /// Whether a renewal sets the account's usage back to 0 (`VPN_TRAFFIC_RESET`).
    pub traffic_reset: VpnTrafficReset,
    pub device_id: Option<String>,
    pub note: Option<String>,
    pub actor: String,
    /// When the engine may take the resource over (the request tries first, and the engine
    /// finishes what the request did not).
    pub due_at: DateTime<Utc>,
}

/// Changes to a VPN user's current entitlement (`PUT /resources/{id}/vpn`).
#[derive(Debug, Clone, Default)]
pub struct VpnAdjustment {
    pub traffic_limit: Option<i64>,
    pub extend_days: Option<i64>,
    pub plan_tier: Option<String>,
    pub service_tier: Option<String>,
}

/// The terms the VPN manager is to enforce on the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTerms {
    pub expire_at: DateTime<Utc>,
    pub traffic_limit: i64,
    pub plan_tier: String,
    pub service_tier: String,
}

/// What happens to the user's VPN account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    /// The live account takes the new terms and now serves `subscription_id`.
    Update { id: Uuid, subscription_id: String },
    /// A new account (any failed one, refused by the VPN manager, is replaced).
    Create {
        subscription_id: String,
        order_key: String,
    },
}

/// The entitlement row an order leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntitlement {
    pub traffic_limit: i64,
    pub expire_at: DateTime<Utc>,
    pub is_current: bool,
    pub status: EntitlementStatus,
    /// Gifts answer to no subscription: nothing is reported for them.
    pub reported: bool,
}

/// Everything recording an order writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPlan {
    pub terms: AccountTerms,
    /// Folded into the current entitlement (which takes the new expiry and limit) rather
    /// than replacing it (which is then superseded).
    pub merged: bool,
    pub account: Account,
    /// The history entry on the account, and its message.
    pub event: (EventKind, Option<String>),
    pub entitlement: NewEntitlement,
    /// The push of these terms also sets the account's usage to 0 (a renewal under
    /// `VPN_TRAFFIC_RESET=on_renewal`).
    pub reset_traffic: bool,
}

/// What the VPN manager said of the account's expiry when the order arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamExpiry {
    /// Not asked yet: only a paid order for a user whose account the VPN manager holds
    /// needs it (`ask_upstream`), and most orders are for new accounts.
    NotAsked,
    /// Asked; `None` when there is no account or it could not be read (our stored copy
    /// stands in then).
    Asked(Option<DateTime<Utc>>),
}

/// The account (its VPN manager uuid) whose expiry must be asked before `order` can be
/// placed: a paid order stacks on what the VPN manager holds. `None` when the order can
/// be placed now.
pub fn ask_upstream<'a>(order: &VpnOrder, live: Option<&'a Resource>) -> Option<&'a str> {
    if order.terms.kind != super::expiry::OrderKind::Paid
        || order.upstream_expiry != UpstreamExpiry::NotAsked
    {
        return None;
    }
    live.and_then(|r| r.vpn.vpn_user_id.as_deref())
}

/// How `order` lands, given the user's current entitlement and live VPN account (read
/// under lock) and the time.
pub fn plan_order(
    order: &VpnOrder,
    current: Option<&Entitlement>,
    live: Option<&Resource>,
    now: DateTime<Utc>,
) -> OrderPlan {
    let upstream = match order.upstream_expiry {
        UpstreamExpiry::Asked(expiry) => expiry,
        UpstreamExpiry::NotAsked => None,
    };
    let placement = place_order(&order.terms, current, upstream, now);
    let (expire_at, traffic_limit, merged) = match placement {
        Placement::Current {
            expire_at,
            traffic_limit,
        } => (expire_at, traffic_limit, false),
        Placement::MergeIntoCurrent {
            expire_at,
            traffic_limit,
        } => (expire_at, traffic_limit, true),
    };
    // A merged gift keeps the current plan; anything else brings its own.
    let (plan_tier, service_tier) = match (current, merged) {
        (Some(c), true) => (c.plan_tier.clone(), c.service_tier.clone()),
        _ => (order.plan_tier.clone(), order.service_tier.clone()),
    };
    // A gift answers to no subscription; its account still needs one to be filed under.
    let subscription_id = order
        .subscription_id
        .clone()
        .unwrap_or_else(|| format!("gift:{}", order.entitlement_id));
    let usable = live.filter(|r| r.status != Status::Failed);
    let (account, event) = match usable {
        Some(r) => {
            let message = order.order_key.clone().unwrap_or_else(|| "gift".into());
            let serves = if merged {
                r.subscription_id.clone()
            } else {
                subscription_id
            };
            let account = Account::Update {
                id: r.id,
                subscription_id: serves,
            };
            (account, (EventKind::OrderRecorded, Some(message)))
        }
        None => {
            let order_key = order
                .order_key
                .clone()
                .unwrap_or_else(|| subscription_id.clone());
            let account = Account::Create {
                subscription_id,
                order_key,
            };
            (account, (EventKind::ProvisionRequested, None))
        }
    };
    // A merged grant is kept as a record of what it added.
    let entitlement = NewEntitlement {
        traffic_limit: if merged {
            order.terms.traffic_limit
        } else {
            traffic_limit
        },
        expire_at,
        is_current: !merged,
        status: if merged {
            EntitlementStatus::Merged
        } else {
            EntitlementStatus::Active
        },
        reported: order.subscription_id.is_none(),
    };
    // A new period for a live account: a paid order that replaces the current entitlement.
    // (A repeated delivery never gets here: the store answers it with what it recorded.)
    let reset_traffic = order.traffic_reset == VpnTrafficReset::OnRenewal
        && order.terms.kind != super::expiry::OrderKind::Free
        && !merged
        && matches!(account, Account::Update { .. });
    OrderPlan {
        reset_traffic,
        terms: AccountTerms {
            expire_at,
            traffic_limit,
            plan_tier,
            service_tier,
        },
        merged,
        account,
        event,
        entitlement,
    }
}

/// The current entitlement's terms after an operator's adjustment: days are added to
/// what is left (or to now, once it lapsed); what is not given stays.
pub fn adjust(current: &Entitlement, a: &VpnAdjustment, now: DateTime<Utc>) -> AccountTerms {
    AccountTerms {
        traffic_limit: a.traffic_limit.unwrap_or(current.traffic_limit),
        expire_at: match a.extend_days {
            Some(d) => super::units::add_days(current.expire_at.max(now), d),
            None => current.expire_at,
        },
        plan_tier: a
            .plan_tier
            .clone()
            .unwrap_or_else(|| current.plan_tier.clone()),
        service_tier: a
            .service_tier
            .clone()
            .unwrap_or_else(|| current.service_tier.clone()),
    }
}

#[cfg(test)]
#[path = "vpn_order_tests.rs"]
mod tests;

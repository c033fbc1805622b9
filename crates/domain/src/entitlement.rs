//! VPN entitlements: what an order (or a gift) grants, how a new one lands on top of what
//! the user already has, and what the user's VPN reads as.
//!
//! Every order becomes an entitlement row. At most one row per user is *current*: it is what
//! the VPN manager must enforce (traffic limit, expiry). A new order either replaces the
//! current row (which is kept as history, `superseded`) or, for a free grant on top of a
//! running paid entitlement, is folded into it (`merged`): a gift adds days and traffic to
//! what a paying user has and never shortens or lowers it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::expiry::{self, OrderKind, Previous};
use super::progress::SubscriptionState;
use super::resource::{Desired, Resource, Status, wire_enum};

wire_enum! {
    /// Where an entitlement row stands. `expired` is never stored: an `active` row past its
    /// `expire_at` reads as expired everywhere, without waiting for a job.
    EntitlementStatus {
        Active => "active",
        Superseded => "superseded",
        Merged => "merged",
        Cancelled => "cancelled",
    }
}

wire_enum! {
    /// `vpn_status` in `GET /my/vpn` (a closed enum in the apps).
    VpnStatus {
        NoSubscription => "no_subscription",
        Active => "active",
        Expired => "expired",
        Disabled => "disabled",
    }
}

/// One grant of VPN access.
#[derive(Debug, Clone, PartialEq)]
pub struct Entitlement {
    pub id: Uuid,
    pub user_id: String,
    /// The VPN user resource it applies to.
    pub resource_id: Uuid,
    /// `None` for gifts, which come from no subscription.
    pub subscription_id: Option<String>,
    pub order_key: Option<String>,
    pub channel: String,
    pub business_type: String,
    pub plan_tier: String,
    pub service_tier: String,
    pub traffic_limit: i64,
    pub expire_at: DateTime<Utc>,
    pub email: Option<String>,
    pub device_id: Option<String>,
    pub note: Option<String>,
    pub is_trial: bool,
    pub is_current: bool,
    pub status: EntitlementStatus,
    /// The resource's `spec_version` this entitlement produced.
    pub spec_version: i64,
    /// Whether its `active` callback has been queued.
    pub reported: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Entitlement {
    pub fn kind(&self) -> OrderKind {
        OrderKind::of(Some(&self.channel), Some(&self.business_type))
    }

    /// The status as read at `now`: an active row past its expiry is `expired`.
    pub fn status_at(&self, now: DateTime<Utc>) -> &'static str {
        match self.status {
            EntitlementStatus::Active if self.expire_at <= now => "expired",
            s => s.as_str(),
        }
    }

    /// Whether it still grants access at `now`.
    pub fn is_running(&self, now: DateTime<Utc>) -> bool {
        self.status == EntitlementStatus::Active && self.expire_at > now
    }
}

/// What an order asks for, before it meets what the user has.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderTerms {
    pub kind: OrderKind,
    /// Days of access bought (ignored for app stores, which renew monthly).
    pub days: i64,
    /// Bytes of traffic for the period.
    pub traffic_limit: i64,
}

/// How an order lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The order becomes the current entitlement (the old one, if any, is superseded).
    Current {
        expire_at: DateTime<Utc>,
        traffic_limit: i64,
    },
    /// A free grant on a running paid entitlement: the current one is extended to these
    /// values and the grant is kept as a `merged` record.
    MergeIntoCurrent {
        expire_at: DateTime<Utc>,
        traffic_limit: i64,
    },
}

/// Places an order on top of the user's current entitlement (if any), following the expiry
/// policy in `expiry`. `upstream_expiry` is what the VPN manager reports for the account
/// as the order arrives: the current expiry a paid renewal stacks on (an operator may have
/// changed it there). Only when it could not be read does our stored copy stand in.
pub fn place_order(
    terms: &OrderTerms,
    current: Option<&Entitlement>,
    upstream_expiry: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Placement {
    let running = current.filter(|c| c.is_running(now));
    if let (OrderKind::Free, Some(paid)) = (terms.kind, running)
        && paid.kind() != OrderKind::Free
    {
        return Placement::MergeIntoCurrent {
            expire_at: super::units::add_days(paid.expire_at, terms.days),
            traffic_limit: paid.traffic_limit.saturating_add(terms.traffic_limit),
        };
    }
    let previous = match current {
        None => Previous::Nothing,
        Some(c) if c.kind() == OrderKind::Free => Previous::Free,
        Some(c) if c.status == EntitlementStatus::Cancelled => Previous::Nothing,
        Some(c) => Previous::Paid {
            expires_at: upstream_expiry.unwrap_or(c.expire_at),
        },
    };
    Placement::Current {
        expire_at: expiry::new_expiry(terms.kind, previous, terms.days, now),
        traffic_limit: terms.traffic_limit,
    }
}

/// What the user's VPN reads as: nothing bought, running, past its expiry, or switched off
/// (deprovisioned, or the account could not be made).
pub fn vpn_status(
    entitlement: Option<&Entitlement>,
    resource: Option<&Resource>,
    now: DateTime<Utc>,
) -> VpnStatus {
    let Some(e) = entitlement else {
        return match resource {
            Some(_) => VpnStatus::Disabled,
            None => VpnStatus::NoSubscription,
        };
    };
    let live = resource.is_some_and(|r| {
        r.desired == Desired::Active && !matches!(r.status, Status::Failed | Status::Deleting)
    });
    if !e.is_current || e.status != EntitlementStatus::Active || !live {
        VpnStatus::Disabled
    } else if e.expire_at <= now {
        VpnStatus::Expired
    } else {
        VpnStatus::Active
    }
}

/// What the subscription service says of the user's `otun`/`vpn` subscription: it decides
/// whether a paid entitlement lives (`CONTRACTS.md` §2.3, last paragraph).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaidBy {
    /// An active subscription.
    Subscription,
    /// It answered that there is none.
    Nothing,
    /// It could not be asked: the entitlement alone decides.
    Unknown,
}

impl PaidBy {
    /// From a subscription lookup; `live` is whether the subscription service itself
    /// answered (not the last snapshot on record, served while it is unreachable).
    pub fn of(state: &SubscriptionState, live: bool) -> Self {
        match state {
            SubscriptionState::Active(_) => PaidBy::Subscription,
            SubscriptionState::Inactive { .. } if live => PaidBy::Nothing,
            _ => PaidBy::Unknown,
        }
    }
}

/// `vpn_status`, with the subscription service's word on paid entitlements: one from a
/// paid order (app stores, Stripe, credit, …) reads `no_subscription` once the
/// subscription service says there is no subscription (or `expired` past its expiry).
/// Free entitlements (trials, gifts) need no subscription.
pub fn gated_vpn_status(
    entitlement: Option<&Entitlement>,
    resource: Option<&Resource>,
    paid_by: PaidBy,
    now: DateTime<Utc>,
) -> VpnStatus {
    let status = vpn_status(entitlement, resource, now);
    match entitlement {
        Some(e)
            if status == VpnStatus::Active
                && paid_by == PaidBy::Nothing
                && e.kind() != OrderKind::Free =>
        {
            VpnStatus::NoSubscription
        }
        _ => status,
    }
}

#[cfg(test)]
impl Entitlement {
    /// A current, active, reported entitlement for unit tests (premium, 500 bytes).
    pub(crate) fn fixture(
        channel: &str,
        business_type: &str,
        expire_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Entitlement {
        Entitlement {
            id: Uuid::nil(),
            user_id: "u".into(),
            resource_id: Uuid::nil(),
            subscription_id: Some("s".into()),
            order_key: Some("s|sub".into()),
            channel: channel.into(),
            business_type: business_type.into(),
            plan_tier: "premium".into(),
            service_tier: "premium".into(),
            traffic_limit: 500,
            expire_at,
            email: None,
            device_id: None,
            note: None,
            is_trial: false,
            is_current: true,
            status: EntitlementStatus::Active,
            spec_version: 1,
            reported: true,
            created_at: now,
            updated_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ResourceKind;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
    }

    fn days(d: i64) -> DateTime<Utc> {
        now() + chrono::Duration::days(d)
    }

    fn entitlement(channel: &str, business_type: &str, expire_at: DateTime<Utc>) -> Entitlement {
        Entitlement::fixture(channel, business_type, expire_at, now())
    }

    fn resource(status: Status, desired: Desired) -> Resource {
        Resource::fixture(ResourceKind::VpnUser, status, desired, now())
    }

    fn terms(kind: OrderKind, days: i64, traffic: i64) -> OrderTerms {
        OrderTerms {
            kind,
            days,
            traffic_limit: traffic,
        }
    }

    #[test]
    fn a_gift_adds_to_a_running_paid_entitlement() {
        let paid = entitlement("stripe", "subscription", days(20));
        assert_eq!(
            place_order(&terms(OrderKind::Free, 7, 100), Some(&paid), None, now()),
            Placement::MergeIntoCurrent {
                expire_at: days(27),
                traffic_limit: 600
            }
        );
        let store = entitlement("apple", "subscription", days(20));
        assert!(matches!(
            place_order(&terms(OrderKind::Free, 7, 100), Some(&store), None, now()),
            Placement::MergeIntoCurrent { .. }
        ));
    }

    #[test]
    fn a_gift_on_lapsed_or_free_time_starts_from_now() {
        let lapsed = entitlement("stripe", "subscription", days(-1));
        let trial = entitlement("trial", "trial", days(3));
        for current in [None, Some(&lapsed), Some(&trial)] {
            assert_eq!(
                place_order(&terms(OrderKind::Free, 7, 100), current, None, now()),
                Placement::Current {
                    expire_at: days(7),
                    traffic_limit: 100
                }
            );
        }
    }

    #[test]
    fn paid_orders_follow_the_expiry_table() {
        let paid = entitlement("stripe", "subscription", days(10));
        let trial = entitlement("trial", "trial", days(5));
        let cancelled = EntitlementStatus::Cancelled;
        let mut ended = paid.clone();
        ended.status = cancelled;
        let cases = [
            (None, days(30)),
            (Some(&paid), days(40)),
            (Some(&trial), days(30)),
            (Some(&ended), days(30)),
        ];
        for (current, expected) in cases {
            assert_eq!(
                place_order(&terms(OrderKind::Paid, 30, 9), current, None, now()),
                Placement::Current {
                    expire_at: expected,
                    traffic_limit: 9
                },
                "{current:?}"
            );
        }
        assert_eq!(
            place_order(
                &terms(OrderKind::AppStore, 365, 9),
                Some(&paid),
                None,
                now()
            ),
            Placement::Current {
                expire_at: days(30),
                traffic_limit: 9
            }
        );
    }

    #[test]
    fn a_paid_renewal_stacks_on_the_vpn_managers_expiry_not_ours() {
        let paid = entitlement("stripe", "subscription", days(20));
        let at = |upstream| match place_order(
            &terms(OrderKind::Paid, 30, 9),
            Some(&paid),
            upstream,
            now(),
        ) {
            Placement::Current { expire_at, .. } => expire_at,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            at(Some(days(10))),
            days(40),
            "an operator shortened it upstream"
        );
        assert_eq!(at(Some(days(50))), days(80), "or lengthened it");
        assert_eq!(at(Some(days(-2))), days(30), "over upstream: from now");
        assert_eq!(at(None), days(50), "unreadable: our stored copy stands in");
    }

    #[test]
    fn an_active_row_past_its_expiry_reads_as_expired() {
        let e = entitlement("stripe", "subscription", days(-1));
        assert_eq!(e.status_at(now()), "expired");
        assert!(!e.is_running(now()));
        let e = entitlement("stripe", "subscription", days(1));
        assert_eq!(e.status_at(now()), "active");
        let mut e = e;
        e.status = EntitlementStatus::Superseded;
        assert_eq!(e.status_at(now()), "superseded");
    }

    #[test]
    fn the_subscription_service_decides_whether_a_paid_entitlement_lives() {
        use PaidBy::*;
        let live = resource(Status::Active, Desired::Active);
        let paid = entitlement("stripe", "subscription", days(3));
        let store = entitlement("apple", "subscription", days(3));
        let lapsed = entitlement("stripe", "subscription", days(-3));
        let gift = entitlement("gift", "gift", days(3));
        let trial = entitlement("trial", "trial", days(3));
        let cases = [
            (&paid, Subscription, VpnStatus::Active),
            (&paid, Nothing, VpnStatus::NoSubscription),
            (&paid, Unknown, VpnStatus::Active),
            (&store, Nothing, VpnStatus::NoSubscription),
            (&lapsed, Nothing, VpnStatus::Expired),
            (&gift, Nothing, VpnStatus::Active),
            (&trial, Nothing, VpnStatus::Active),
        ];
        for (e, paid_by, expected) in cases {
            assert_eq!(
                gated_vpn_status(Some(e), Some(&live), paid_by, now()),
                expected,
                "{} {paid_by:?}",
                e.channel
            );
        }
        let snapshot = crate::progress::SubscriptionSnapshot {
            subscription_id: "s".into(),
            status: "active".into(),
            plan_tier: "premium".into(),
            expires_at: None,
            auto_renew: false,
            quantity: None,
        };
        let none = SubscriptionState::Inactive { last_known: None };
        assert_eq!(
            PaidBy::of(&SubscriptionState::Active(snapshot), false),
            Subscription
        );
        assert_eq!(PaidBy::of(&none, true), Nothing);
        assert_eq!(
            PaidBy::of(&none, false),
            Unknown,
            "a remembered answer during an outage"
        );
        assert_eq!(PaidBy::of(&SubscriptionState::Unknown, false), Unknown);
    }

    #[test]
    fn vpn_status_covers_every_case() {
        let running = entitlement("stripe", "subscription", days(3));
        let lapsed = entitlement("stripe", "subscription", days(-3));
        let mut cancelled = running.clone();
        cancelled.status = EntitlementStatus::Cancelled;
        cancelled.is_current = false;
        let live = resource(Status::Active, Desired::Active);
        let pending = resource(Status::Pending, Desired::Active);
        let deleting = resource(Status::Deleting, Desired::Deleted);
        let failed = resource(Status::Failed, Desired::Active);
        let cases = [
            (None, None, VpnStatus::NoSubscription),
            (Some(&running), Some(&live), VpnStatus::Active),
            (Some(&running), Some(&pending), VpnStatus::Active),
            (Some(&lapsed), Some(&live), VpnStatus::Expired),
            (Some(&cancelled), Some(&deleting), VpnStatus::Disabled),
            (Some(&running), Some(&deleting), VpnStatus::Disabled),
            (Some(&running), Some(&failed), VpnStatus::Disabled),
            (Some(&running), None, VpnStatus::Disabled),
            (None, Some(&live), VpnStatus::Disabled),
        ];
        for (e, r, expected) in cases {
            assert_eq!(vpn_status(e, r, now()), expected, "{e:?} {r:?}");
        }
    }
}

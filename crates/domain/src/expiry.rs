//! When a VPN entitlement expires after an order: the policy of `CONTRACTS.md` §2.3 as one
//! table, a row per case.
//!
//! | order | before it | new expiry |
//! |---|---|---|
//! | app store (`apple`, `google`) | anything | now + 30 days |
//! | free (`trial`, `gift`) | anything | now + days |
//! | paid | nothing, or free time | now + days (free time is not stacked onto paid) |
//! | paid | paid, still running | current expiry + days |
//! | paid | paid, already over | now + days |
//!
//! One refinement sits on top, in `entitlement::place_order`: a free grant (gift, trial)
//! on top of running paid time is added to it rather than replacing it, so a gift never
//! shortens a paying user's expiry or lowers their limit.

use chrono::{DateTime, Utc};

/// What kind of order this is, for the expiry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKind {
    /// Apple or Google: the store renews monthly.
    AppStore,
    /// A trial or a gift.
    Free,
    /// Anything else that was paid for (Stripe, credit, …).
    Paid,
}

impl OrderKind {
    /// Classifies an order by its `channel` and `business_type`.
    pub fn of(channel: Option<&str>, business_type: Option<&str>) -> Self {
        let free = |v: Option<&str>| matches!(v, Some("trial" | "gift"));
        if free(channel) || free(business_type) {
            OrderKind::Free
        } else if matches!(channel, Some("apple" | "google")) {
            OrderKind::AppStore
        } else {
            OrderKind::Paid
        }
    }
}

/// What the user had before the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Previous {
    Nothing,
    /// A trial or gift entitlement.
    Free,
    /// A paid entitlement, expiring at the VPN manager's current expiry.
    Paid {
        expires_at: DateTime<Utc>,
    },
}

/// The new expiry for an order of `days` (ignored for app stores, which renew monthly).
pub fn new_expiry(
    kind: OrderKind,
    previous: Previous,
    days: i64,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    use super::units::add_days;
    match (kind, previous) {
        (OrderKind::AppStore, _) => add_days(now, 30),
        (OrderKind::Free, _) => add_days(now, days),
        (OrderKind::Paid, Previous::Paid { expires_at }) if expires_at > now => {
            add_days(expires_at, days)
        }
        (OrderKind::Paid, _) => add_days(now, days),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
    }

    fn in_days(d: i64) -> DateTime<Utc> {
        now() + chrono::Duration::days(d)
    }

    #[test]
    fn app_store_orders_run_thirty_days_from_now_whatever_came_before() {
        for previous in [
            Previous::Nothing,
            Previous::Free,
            Previous::Paid {
                expires_at: in_days(10),
            },
        ] {
            assert_eq!(
                new_expiry(OrderKind::AppStore, previous, 365, now()),
                in_days(30),
                "{previous:?}"
            );
        }
    }

    #[test]
    fn free_orders_run_their_days_from_now() {
        assert_eq!(
            new_expiry(OrderKind::Free, Previous::Nothing, 7, now()),
            in_days(7)
        );
        assert_eq!(
            new_expiry(
                OrderKind::Free,
                Previous::Paid {
                    expires_at: in_days(20)
                },
                7,
                now()
            ),
            in_days(7)
        );
    }

    #[test]
    fn a_paid_order_after_free_time_does_not_stack_it() {
        assert_eq!(
            new_expiry(OrderKind::Paid, Previous::Free, 30, now()),
            in_days(30)
        );
    }

    #[test]
    fn a_first_paid_order_runs_from_now() {
        assert_eq!(
            new_expiry(OrderKind::Paid, Previous::Nothing, 30, now()),
            in_days(30)
        );
    }

    #[test]
    fn a_paid_renewal_extends_a_running_paid_entitlement() {
        assert_eq!(
            new_expiry(
                OrderKind::Paid,
                Previous::Paid {
                    expires_at: in_days(10)
                },
                30,
                now()
            ),
            in_days(40)
        );
    }

    #[test]
    fn a_paid_renewal_after_a_lapse_runs_from_now() {
        assert_eq!(
            new_expiry(
                OrderKind::Paid,
                Previous::Paid {
                    expires_at: in_days(-3)
                },
                30,
                now()
            ),
            in_days(30)
        );
        assert_eq!(
            new_expiry(
                OrderKind::Paid,
                Previous::Paid { expires_at: now() },
                30,
                now()
            ),
            in_days(30)
        );
    }

    #[test]
    fn orders_are_classified_by_channel_and_business_type() {
        assert_eq!(
            OrderKind::of(Some("apple"), Some("subscription")),
            OrderKind::AppStore
        );
        assert_eq!(OrderKind::of(Some("google"), None), OrderKind::AppStore);
        assert_eq!(OrderKind::of(Some("trial"), None), OrderKind::Free);
        assert_eq!(OrderKind::of(Some("stripe"), Some("gift")), OrderKind::Free);
        assert_eq!(
            OrderKind::of(Some("stripe"), Some("subscription")),
            OrderKind::Paid
        );
        assert_eq!(
            OrderKind::of(Some("credit"), Some("purchase")),
            OrderKind::Paid
        );
        assert_eq!(OrderKind::of(None, None), OrderKind::Paid);
    }

    #[test]
    fn negative_days_never_move_expiry_backwards() {
        assert_eq!(
            new_expiry(OrderKind::Free, Previous::Nothing, -5, now()),
            now()
        );
    }
}

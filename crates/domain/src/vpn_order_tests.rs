use chrono::TimeZone;

use super::*;
use crate::expiry::OrderKind;
use crate::{Desired, ResourceKind};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

fn days(d: i64) -> DateTime<Utc> {
    now() + chrono::Duration::days(d)
}

fn paid_entitlement(expire_at: DateTime<Utc>) -> Entitlement {
    Entitlement {
        id: Uuid::from_u128(1),
        resource_id: Uuid::from_u128(2),
        subscription_id: Some("sub-paid".into()),
        order_key: Some("sub-paid|o".into()),
        service_tier: "gold".into(),
        ..Entitlement::fixture("stripe", "subscription", expire_at, now())
    }
}

fn account(status: Status) -> Resource {
    let mut r = Resource::fixture(ResourceKind::VpnUser, status, Desired::Active, now());
    r.id = Uuid::from_u128(2);
    r.subscription_id = "sub-paid".into();
    r
}

fn order(kind: OrderKind, subscription: Option<&str>) -> VpnOrder {
    let (channel, business_type) = match kind {
        OrderKind::Free => ("gift", "gift"),
        OrderKind::AppStore => ("apple", "subscription"),
        OrderKind::Paid => ("stripe", "subscription"),
    };
    VpnOrder {
        resource_id: Uuid::from_u128(3),
        entitlement_id: Uuid::from_u128(4),
        user_id: "u".into(),
        email: None,
        subscription_id: subscription.map(Into::into),
        order_key: subscription.map(|s| format!("{s}|o")),
        channel: channel.into(),
        business_type: business_type.into(),
        plan_tier: "basic".into(),
        service_tier: "silver".into(),
        terms: OrderTerms {
            kind,
            days: 7,
            traffic_limit: 100,
        },
        upstream_expiry: UpstreamExpiry::NotAsked,
        is_trial: false,
        traffic_reset: VpnTrafficReset::Never,
        device_id: None,
        note: None,
        actor: "subscription_service".into(),
        due_at: now(),
    }
}

#[test]
fn a_first_order_creates_an_account_with_its_own_terms() {
    let o = order(OrderKind::Paid, Some("sub-1"));
    let plan = plan_order(&o, None, None, now());
    assert!(!plan.merged);
    assert_eq!(
        plan.account,
        Account::Create {
            subscription_id: "sub-1".into(),
            order_key: "sub-1|o".into()
        }
    );
    assert_eq!(plan.event, (EventKind::ProvisionRequested, None));
    assert_eq!(
        plan.terms,
        AccountTerms {
            expire_at: days(7),
            traffic_limit: 100,
            plan_tier: "basic".into(),
            service_tier: "silver".into(),
        }
    );
    assert_eq!(
        plan.entitlement,
        NewEntitlement {
            traffic_limit: 100,
            expire_at: days(7),
            is_current: true,
            status: EntitlementStatus::Active,
            reported: false,
        }
    );
}

#[test]
fn only_a_paid_order_on_a_live_account_resets_its_usage_and_only_when_asked_to() {
    let current = paid_entitlement(days(3));
    let live = account(Status::Active);
    let renewal = |kind, reset| VpnOrder {
        traffic_reset: reset,
        ..order(kind, Some("sub-2"))
    };
    let plan = |o: &VpnOrder, live| plan_order(o, Some(&current), live, now());
    let on = VpnTrafficReset::OnRenewal;
    assert!(plan(&renewal(OrderKind::Paid, on), Some(&live)).reset_traffic);
    assert!(plan(&renewal(OrderKind::AppStore, on), Some(&live)).reset_traffic);
    assert!(
        !plan(
            &renewal(OrderKind::Paid, VpnTrafficReset::Never),
            Some(&live)
        )
        .reset_traffic,
        "never, as the deployed service"
    );
    assert!(
        !plan(&renewal(OrderKind::Free, on), Some(&live)).reset_traffic,
        "a gift adds to the period"
    );
    assert!(
        !plan(&renewal(OrderKind::Paid, on), None).reset_traffic,
        "a new account starts at 0 anyway"
    );
    let failed = account(Status::Failed);
    assert!(!plan(&renewal(OrderKind::Paid, on), Some(&failed)).reset_traffic);
}

#[test]
fn a_merged_gift_keeps_the_current_plan_and_subscription_and_records_what_it_added() {
    let current = paid_entitlement(days(20));
    let live = account(Status::Active);
    let gift = order(OrderKind::Free, None);
    let plan = plan_order(&gift, Some(&current), Some(&live), now());
    assert!(plan.merged);
    assert_eq!(plan.terms.plan_tier, "premium");
    assert_eq!(plan.terms.service_tier, "gold");
    assert_eq!(
        (plan.terms.expire_at, plan.terms.traffic_limit),
        (days(27), 600)
    );
    assert_eq!(
        plan.account,
        Account::Update {
            id: live.id,
            subscription_id: "sub-paid".into()
        }
    );
    assert_eq!(plan.event, (EventKind::OrderRecorded, Some("gift".into())));
    // The row records the grant itself; the current entitlement takes the sum.
    assert_eq!(
        plan.entitlement,
        NewEntitlement {
            traffic_limit: 100,
            expire_at: days(27),
            is_current: false,
            status: EntitlementStatus::Merged,
            reported: true,
        }
    );
}

#[test]
fn a_gift_without_paid_time_gets_a_gift_subscription_of_its_own() {
    let gift = order(OrderKind::Free, None);
    let plan = plan_order(&gift, None, None, now());
    assert!(!plan.merged);
    let sub = format!("gift:{}", gift.entitlement_id);
    assert_eq!(
        plan.account,
        Account::Create {
            subscription_id: sub.clone(),
            order_key: sub
        }
    );
    assert_eq!(plan.terms.plan_tier, "basic");
    assert!(plan.entitlement.reported, "nobody to report a gift to");
}

#[test]
fn a_new_paid_order_moves_the_live_account_to_its_subscription() {
    let current = paid_entitlement(days(20));
    let live = account(Status::Active);
    let o = order(OrderKind::Paid, Some("sub-2"));
    let plan = plan_order(&o, Some(&current), Some(&live), now());
    assert!(!plan.merged);
    assert_eq!(
        plan.account,
        Account::Update {
            id: live.id,
            subscription_id: "sub-2".into()
        }
    );
    assert_eq!(
        plan.event,
        (EventKind::OrderRecorded, Some("sub-2|o".into()))
    );
    assert_eq!(plan.terms.plan_tier, "basic");
    assert!(plan.entitlement.is_current);
}

#[test]
fn a_failed_account_is_replaced_not_updated() {
    let live = account(Status::Failed);
    let o = order(OrderKind::Paid, Some("sub-3"));
    let plan = plan_order(&o, None, Some(&live), now());
    assert!(matches!(plan.account, Account::Create { .. }));
    assert_eq!(plan.event.0, EventKind::ProvisionRequested);
}

#[test]
fn adjusting_extends_from_what_is_left_or_from_now_and_keeps_what_is_not_given() {
    let running = paid_entitlement(days(5));
    let extend = VpnAdjustment {
        extend_days: Some(10),
        ..Default::default()
    };
    let t = adjust(&running, &extend, now());
    assert_eq!(t.expire_at, days(15));
    assert_eq!((t.traffic_limit, t.plan_tier.as_str()), (500, "premium"));

    let lapsed = paid_entitlement(days(-3));
    assert_eq!(adjust(&lapsed, &extend, now()).expire_at, days(10));

    let change = VpnAdjustment {
        traffic_limit: Some(9),
        plan_tier: Some("basic".into()),
        service_tier: Some("bronze".into()),
        extend_days: None,
    };
    let t = adjust(&running, &change, now());
    assert_eq!(
        t,
        AccountTerms {
            expire_at: days(5),
            traffic_limit: 9,
            plan_tier: "basic".into(),
            service_tier: "bronze".into(),
        }
    );
}

#[test]
fn only_a_paid_order_for_an_account_the_vpn_manager_holds_asks_its_expiry() {
    let paid = order(OrderKind::Paid, Some("sub-1"));
    let mut held = account(Status::Active);
    held.vpn.vpn_user_id = Some("vpn-uuid".into());
    assert_eq!(ask_upstream(&paid, Some(&held)), Some("vpn-uuid"));
    assert_eq!(
        ask_upstream(&paid, None),
        None,
        "a new account stacks on nothing"
    );
    let unknown = account(Status::Pending);
    assert_eq!(
        ask_upstream(&paid, Some(&unknown)),
        None,
        "no account upstream yet"
    );
    let asked = VpnOrder {
        upstream_expiry: UpstreamExpiry::Asked(None),
        ..paid.clone()
    };
    assert_eq!(ask_upstream(&asked, Some(&held)), None, "asked once");
    for kind in [OrderKind::Free, OrderKind::AppStore] {
        assert_eq!(ask_upstream(&order(kind, Some("sub-1")), Some(&held)), None);
    }
}

#[test]
fn a_paid_renewal_stacks_on_the_expiry_the_vpn_manager_reported() {
    let later = now() + chrono::Duration::days(100);
    let o = VpnOrder {
        upstream_expiry: UpstreamExpiry::Asked(Some(later)),
        ..order(OrderKind::Paid, Some("sub-paid"))
    };
    let current = paid_entitlement(now() + chrono::Duration::days(3));
    let plan = plan_order(&o, Some(&current), Some(&account(Status::Active)), now());
    assert_eq!(plan.terms.expire_at, later + chrono::Duration::days(7));
}

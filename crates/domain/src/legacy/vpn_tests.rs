//! The VPN rows' rules, user by user.

use super::*;
use crate::legacy::tests::{days_ago, id, kinds, now};

fn vpn(n: u128, business_type: &str, status: &str, is_current: bool) -> LegacyVpnRow {
    LegacyVpnRow {
        id: id(n),
        user_id: "user-1".into(),
        subscription_id: Some(format!("vsub-{n}")),
        channel: Some("apple".into()),
        business_type: business_type.into(),
        service_tier: "premium".into(),
        otun_uuid: Some("acc-1".into()),
        plan_tier: Some("premium".into()),
        status: status.into(),
        traffic_limit: Some(0),
        traffic_used: Some(7),
        expire_at: Some(days_ago(-20)),
        email: Some("U@example.com".into()),
        device_id: Some("dev-1".into()),
        note: None,
        is_current,
        created_at: Some(days_ago(30 - n as i64)),
        updated_at: None,
    }
}

#[test]
fn the_newest_current_active_row_is_current_and_names_the_resource() {
    let rows = [
        vpn(1, "subscription", "converted", false),
        vpn(2, "gift", "active", true),
        vpn(3, "subscription", "active", true),
        vpn(4, "purchase", "disabled", true),
    ];
    let mut trials = TrialsTaken::default();
    let plan = plan_vpn_user(&rows, &HashSet::new(), false, &mut trials, now());
    let r = plan.resource.unwrap();
    assert_eq!(r.id, id(3));
    assert_eq!(r.subscription_id, "vsub-3");
    assert_eq!((r.status, r.desired), (Status::Active, Desired::Active));
    assert_eq!(r.vpn_user_id.as_deref(), Some("acc-1"));
    assert!(r.adopt_upstream_terms && !r.due);
    let placed: Vec<(Uuid, bool, EntitlementStatus)> = plan
        .entitlements
        .iter()
        .map(|e| (e.id, e.is_current, e.status))
        .collect();
    assert_eq!(
        placed,
        [
            (id(1), false, EntitlementStatus::Superseded),
            (id(2), false, EntitlementStatus::Superseded),
            (id(3), true, EntitlementStatus::Active),
            (id(4), false, EntitlementStatus::Cancelled),
        ]
    );
    assert_eq!(kinds(&plan.findings), [FindingKind::SeveralCurrentVpnRows]);
    assert_eq!(plan.findings[0].ids, [id(2), id(3), id(4)]);
    assert!(plan.findings[0].detail.contains(&id(3).to_string()));
}

#[test]
fn a_user_with_nothing_current_gets_history_only() {
    let rows = [vpn(1, "subscription", "disabled", false)];
    let plan = plan_vpn_user(
        &rows,
        &HashSet::new(),
        false,
        &mut TrialsTaken::default(),
        now(),
    );
    let r = plan.resource.unwrap();
    assert_eq!((r.status, r.desired), (Status::Deleted, Desired::Deleted));
    assert!(!r.adopt_upstream_terms);
    assert!(!plan.entitlements[0].is_current);
}

#[test]
fn a_current_row_without_an_account_is_created_by_the_engine() {
    let mut row = vpn(1, "subscription", "active", true);
    row.otun_uuid = None;
    let plan = plan_vpn_user(
        &[row],
        &HashSet::new(),
        false,
        &mut TrialsTaken::default(),
        now(),
    );
    let r = plan.resource.unwrap();
    assert_eq!(r.status, Status::Pending);
    assert!(r.due && !r.adopt_upstream_terms);
    assert_eq!(kinds(&plan.findings), [FindingKind::UnfinishedCreation]);
}

#[test]
fn vpn_rows_take_their_plans_defaults_and_blank_means_absent() {
    let mut row = vpn(1, "gift", "active", true);
    row.channel = None;
    row.subscription_id = Some(String::new());
    row.traffic_limit = None;
    row.expire_at = None;
    row.service_tier = String::new();
    row.plan_tier = Some("basic".into());
    let plan = plan_vpn_user(
        &[row.clone()],
        &HashSet::new(),
        false,
        &mut TrialsTaken::default(),
        now(),
    );
    let e = &plan.entitlements[0];
    assert_eq!(e.channel, "gift");
    assert_eq!(e.subscription_id, None);
    assert_eq!(e.traffic_limit, 50 * 1024 * 1024 * 1024);
    assert_eq!(e.service_tier, "standard");
    assert_eq!(e.expire_at, row.created_at.unwrap());
    assert_eq!(plan.resource.unwrap().subscription_id, "");
}

#[test]
fn trials_collide_by_user_device_and_email_across_users() {
    let mut trials = TrialsTaken::default();
    let first = vpn(1, "trial", "active", true);
    let plan = plan_vpn_user(&[first], &HashSet::new(), false, &mut trials, now());
    assert!(plan.refused.is_empty() && plan.entitlements[0].is_trial);
    // Another user on the same device.
    let mut other = vpn(2, "trial", "active", true);
    other.user_id = "user-2".into();
    other.email = None;
    let plan = plan_vpn_user(&[other.clone()], &HashSet::new(), false, &mut trials, now());
    assert!(plan.refused[0].detail.contains("device \"dev-1\""));
    assert!(plan.resource.is_none());
    // The same email, any case.
    other.device_id = None;
    other.email = Some("u@EXAMPLE.com".into());
    let plan = plan_vpn_user(&[other.clone()], &HashSet::new(), false, &mut trials, now());
    assert!(plan.refused[0].detail.contains("email"));
    // A fresh device and email pass.
    other.email = Some("v@example.com".into());
    let plan = plan_vpn_user(&[other], &HashSet::new(), false, &mut trials, now());
    assert!(plan.refused.is_empty());
    // The first user's second trial.
    let mut again = vpn(5, "trial", "active", true);
    again.device_id = Some("dev-9".into());
    again.email = None;
    let plan = plan_vpn_user(&[again], &HashSet::new(), true, &mut trials, now());
    assert!(plan.refused[0].detail.contains("second trial"));
}

#[test]
fn vpn_rows_breaking_our_rules_are_refused_one_by_one() {
    let mut bad_plan = vpn(1, "subscription", "active", false);
    bad_plan.plan_tier = None;
    let mut bad_type = vpn(2, "lease", "active", false);
    bad_type.is_current = false;
    let mut bad_email = vpn(3, "subscription", "active", false);
    bad_email.email = Some("not an email".into());
    let good = vpn(4, "subscription", "active", true);
    let plan = plan_vpn_user(
        &[bad_plan, bad_type, bad_email, good],
        &HashSet::new(),
        false,
        &mut TrialsTaken::default(),
        now(),
    );
    let refused: Vec<Uuid> = plan.refused.iter().flat_map(|f| f.ids.clone()).collect();
    assert_eq!(refused, [id(1), id(2), id(3)]);
    assert!(plan.refused[0].detail.contains("plan_tier is empty"));
    assert!(plan.refused[1].detail.contains("lease"));
    assert!(plan.refused[2].detail.contains("email"));
    assert_eq!(plan.entitlements.len(), 1);
    assert_eq!(plan.resource.unwrap().id, id(4));
}

#[test]
fn rows_added_for_a_user_imported_before_become_history() {
    let rows = [
        vpn(1, "subscription", "active", true),
        vpn(2, "gift", "active", true),
    ];
    let imported: HashSet<Uuid> = [id(1)].into();
    let plan = plan_vpn_user(&rows, &imported, true, &mut TrialsTaken::default(), now());
    assert_eq!(plan.already_imported, 1);
    assert!(plan.resource.is_none());
    assert_eq!(plan.entitlements.len(), 1);
    assert!(!plan.entitlements[0].is_current);
    assert_eq!(plan.entitlements[0].status, EntitlementStatus::Superseded);
}

#[test]
fn the_import_notes_a_vpn_user_only_when_the_engine_creates_its_account() {
    let mut no_account = vpn(1, "subscription", "active", true);
    no_account.otun_uuid = None;
    let plan = |row: LegacyVpnRow| {
        plan_vpn_user(
            &[row],
            &HashSet::new(),
            false,
            &mut TrialsTaken::default(),
            now(),
        )
        .resource
        .unwrap()
    };
    assert!(
        plan(no_account)
            .arrival_note()
            .unwrap()
            .contains("creates it")
    );
    assert_eq!(
        plan(vpn(1, "subscription", "active", true)).arrival_note(),
        None
    );
}

//! The import's rules, row by row.

use super::*;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap()
}

fn days_ago(n: i64) -> DateTime<Utc> {
    now() - chrono::Duration::days(n)
}

const TIMEOUT: Duration = Duration::from_secs(600);

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn node(n: u128, status: &str) -> LegacyNode {
    LegacyNode {
        id: id(n),
        subscription_id: "sub-1".into(),
        user_id: "user-1".into(),
        hosting_node_id: Some(format!("node-{n}")),
        provider: "lightsail".into(),
        region: "ap-northeast-1".into(),
        public_ip: Some("1.2.3.4".into()),
        api_port: Some(8080),
        api_key: Some("agent-key".into()),
        vless_port: Some(443),
        ss_port: Some(8388),
        public_key: Some("pk".into()),
        short_id: Some("sid".into()),
        status: status.into(),
        error_message: None,
        plan_tier: "premium".into(),
        traffic_limit: None,
        traffic_used: None,
        needs_cleanup: false,
        created_at: days_ago(30 - n as i64),
        updated_at: days_ago(1),
        ready_at: None,
        deleted_at: None,
    }
}

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

fn kinds(findings: &[Finding]) -> Vec<FindingKind> {
    findings.iter().map(|f| f.kind).collect()
}

#[test]
fn every_go_status_has_its_fate() {
    let cases = [
        ("active", Status::Active, Desired::Active),
        ("pending", Status::Creating, Desired::Active),
        ("creating", Status::Creating, Desired::Active),
        ("running", Status::Creating, Desired::Active),
        ("installing", Status::Creating, Desired::Active),
        ("stopping", Status::Deleting, Desired::Deleted),
        ("failed", Status::Failed, Desired::Active),
        ("deleted", Status::Deleted, Desired::Deleted),
        ("stopped", Status::Failed, Desired::Active),
        ("weird", Status::Failed, Desired::Active),
    ];
    for (legacy, status, desired) in cases {
        let fate = NodeFate::of(legacy, None);
        assert_eq!(
            (fate.status(), fate.desired()),
            (status, desired),
            "{legacy}"
        );
    }
    // deleted_at wins over whatever the status says.
    assert_eq!(NodeFate::of("active", Some(now())), NodeFate::Deleted);
    assert_eq!(
        NodeFate::of("installing", None),
        NodeFate::Creating { phase: 3 }
    );
}

#[test]
fn an_active_row_keeps_its_id_and_connection_and_needs_no_step() {
    let row = node(1, "active");
    let (plan, findings) = plan_node(&row, now(), TIMEOUT).unwrap();
    assert_eq!(plan.id, row.id);
    assert_eq!(plan.status, Status::Active);
    assert_eq!(plan.node_id.as_deref(), Some("node-1"));
    assert_eq!(plan.connection.api_key.as_deref(), Some("agent-key"));
    assert_eq!(plan.connection.api_port, Some(8080));
    assert_eq!(plan.phase, 4);
    assert!(!plan.due && !plan.upstream_released);
    // Premium's node allowance when the row has none.
    assert_eq!(plan.traffic_limit, 3 * 1024 * 1024 * 1024 * 1024);
    assert_eq!(plan.ready_at, Some(row.updated_at));
    assert!(findings.is_empty());
}

#[test]
fn the_go_services_placeholders_read_as_absent() {
    let mut row = node(1, "creating");
    row.hosting_node_id = Some(String::new());
    row.public_ip = Some("  ".into());
    row.api_port = Some(0);
    let (plan, findings) = plan_node(&row, now(), TIMEOUT).unwrap();
    assert_eq!(plan.node_id, None);
    assert_eq!(plan.connection.public_ip, None);
    assert_eq!(plan.connection.api_port, None);
    assert_eq!(kinds(&findings), [FindingKind::UnfinishedCreation]);
    assert!(findings[0].detail.contains("looks for one"));
}

#[test]
fn an_unfinished_creation_gets_its_deadline_from_the_import() {
    let mut row = node(1, "pending");
    row.created_at = days_ago(300);
    let (plan, _) = plan_node(&row, now(), TIMEOUT).unwrap();
    assert_eq!(plan.status, Status::Creating);
    assert!(plan.due);
    assert_eq!(plan.phase, 2);
    assert_eq!(
        plan.deadline_at,
        Some(now() + chrono::Duration::seconds(600))
    );
}

#[test]
fn a_lost_deletion_is_finished() {
    let (plan, findings) = plan_node(&node(1, "stopping"), now(), TIMEOUT).unwrap();
    assert_eq!(
        (plan.status, plan.desired),
        (Status::Deleting, Desired::Deleted)
    );
    assert!(plan.due && !plan.upstream_released);
    assert_eq!(kinds(&findings), [FindingKind::LostDeletion]);
}

#[test]
fn needs_cleanup_deletes_the_vps_of_a_failed_or_deleted_row_only() {
    for status in ["failed", "deleted"] {
        let mut row = node(1, status);
        row.needs_cleanup = true;
        let (plan, findings) = plan_node(&row, now(), TIMEOUT).unwrap();
        assert!(plan.due && !plan.upstream_released, "{status}");
        assert_eq!(plan.status, NodeFate::of(status, None).status());
        assert_eq!(kinds(&findings), [FindingKind::VpsToCleanUp]);
        // Without the flag nothing is left to delete (the sweep judges a leaked VPS).
        row.needs_cleanup = false;
        let (plan, findings) = plan_node(&row, now(), TIMEOUT).unwrap();
        assert!(!plan.due && plan.upstream_released);
        assert!(findings.is_empty());
    }
    // Without a VPS named there is nothing to clean up; an active row's VPS serves.
    let mut row = node(1, "failed");
    row.needs_cleanup = true;
    row.hosting_node_id = None;
    assert!(plan_node(&row, now(), TIMEOUT).unwrap().0.upstream_released);
    let mut row = node(1, "active");
    row.needs_cleanup = true;
    let (plan, findings) = plan_node(&row, now(), TIMEOUT).unwrap();
    assert!(!plan.due && findings.is_empty());
}

#[test]
fn a_failed_row_keeps_its_message_and_an_unknown_status_is_named() {
    let mut row = node(1, "failed");
    row.error_message = Some("quota\nexceeded".into());
    let (plan, _) = plan_node(&row, now(), TIMEOUT).unwrap();
    assert_eq!(plan.error_message.as_deref(), Some("quota exceeded"));
    let (plan, findings) = plan_node(&node(1, "hibernating"), now(), TIMEOUT).unwrap();
    assert_eq!(plan.status, Status::Failed);
    assert!(plan.error_message.unwrap().contains("hibernating"));
    assert_eq!(kinds(&findings), [FindingKind::UnknownStatus]);
}

#[test]
fn rows_breaking_our_rules_are_refused_by_rule() {
    type Breaks = fn(&mut LegacyNode);
    let cases: [(&str, Breaks); 6] = [
        ("subscription_id is required", |r| r.subscription_id.clear()),
        ("user_id contains control characters", |r| {
            r.user_id = "a\u{0}b".into()
        }),
        ("plan_tier is empty", |r| r.plan_tier.clear()),
        ("not a plan we sell", |r| r.plan_tier = "gold".into()),
        ("hosting_node_id contains control characters", |r| {
            r.hosting_node_id = Some("n\r\n".into())
        }),
        ("region is required", |r| r.region.clear()),
    ];
    for (expected, breaks) in cases {
        let mut row = node(1, "active");
        breaks(&mut row);
        let rule = plan_node(&row, now(), TIMEOUT).unwrap_err();
        assert!(rule.contains(expected), "{rule} / {expected}");
    }
}

#[test]
fn duplicate_live_rows_are_kept_in_slots_by_age_and_flagged() {
    let rows = [
        node(1, "active"),
        node(2, "deleted"),
        node(3, "creating"),
        node(4, "failed"),
    ];
    let plan = plan_subscription(&rows, &HashSet::new(), &[], now(), TIMEOUT);
    let slots: Vec<(Uuid, Option<i32>)> = plan.nodes.iter().map(|n| (n.id, n.slot)).collect();
    assert_eq!(
        slots,
        [
            (id(1), Some(1)),
            (id(2), None),
            (id(3), Some(2)),
            (id(4), Some(3))
        ]
    );
    let dup = plan
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::DuplicateLiveNodes)
        .unwrap();
    assert_eq!(dup.ids, [id(1), id(3), id(4)]);
    assert_eq!(dup.subscription_id.as_deref(), Some("sub-1"));
}

#[test]
fn a_second_run_skips_imported_rows_but_tells_the_same() {
    let rows = [node(1, "active"), node(2, "stopping"), node(3, "active")];
    let first = plan_subscription(&rows, &HashSet::new(), &[], now(), TIMEOUT);
    let imported: HashSet<Uuid> = [id(1), id(2)].into();
    // Slot 1 is held by the node imported before.
    let second = plan_subscription(&rows, &imported, &[1], now(), TIMEOUT);
    assert_eq!(second.already_imported, 2);
    assert_eq!(second.nodes.len(), 1);
    assert_eq!(second.nodes[0].slot, Some(2));
    assert_eq!(first.findings, second.findings);
}

#[test]
fn a_refused_row_does_not_stop_its_siblings() {
    let mut bad = node(2, "active");
    bad.plan_tier = "gold".into();
    let rows = [node(1, "active"), bad];
    let plan = plan_subscription(&rows, &HashSet::new(), &[], now(), TIMEOUT);
    assert_eq!(plan.nodes.len(), 1);
    assert_eq!(plan.refused.len(), 1);
    assert_eq!(plan.refused[0].kind, FindingKind::RefusedRow);
    assert_eq!(plan.refused[0].ids, [id(2)]);
    assert!(plan.refused[0].detail.contains("gold"));
    assert!(!kinds(&plan.findings).contains(&FindingKind::DuplicateLiveNodes));
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
fn a_log_carries_its_action_status_and_message() {
    let log = LegacyLog {
        id: id(9),
        provision_id: id(1),
        action: Some("create".into()),
        status: Some("failed".into()),
        message: Some("quota\r\nexceeded".into()),
        created_at: now(),
    };
    assert_eq!(log_message(&log), "create: failed: quota exceeded");
    let empty = LegacyLog {
        action: None,
        status: Some(" ".into()),
        message: None,
        ..log
    };
    assert_eq!(log_message(&empty), "(empty log entry)");
}

#[test]
fn the_import_notes_only_what_it_translated_or_the_engine_does_next() {
    let note = |status: &str, cleanup: bool| {
        let mut row = node(1, status);
        row.needs_cleanup = cleanup;
        plan_node(&row, now(), TIMEOUT).unwrap().0.arrival_note()
    };
    for status in ["active", "failed", "deleted"] {
        assert_eq!(note(status, false), None, "{status}");
    }
    let stopping = note("stopping", false).unwrap();
    assert!(
        stopping.contains("\"stopping\" is deleting") && stopping.contains("finishes"),
        "{stopping}"
    );
    assert!(note("pending", false).unwrap().contains("carries on"));
    assert!(note("creating", false).unwrap().contains("carries on"));
    assert!(
        note("hibernating", false)
            .unwrap()
            .contains("\"hibernating\" is failed")
    );
    assert!(note("deleted", true).unwrap().contains("deletes the VPS"));
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

//! The hosting rows' rules, row by row and subscription by subscription.

use std::time::Duration;

use super::*;
use crate::legacy::tests::{days_ago, id, kinds, now};

const TIMEOUT: Duration = Duration::from_secs(600);

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
        NodeFate::Creating {
            phase: Phase::Installing
        }
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
    assert_eq!(plan.phase, Phase::Finalizing);
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
    assert_eq!(plan.phase, Phase::VpsRequested);
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
}

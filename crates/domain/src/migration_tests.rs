//! The migration rules, every step and refusal.

use super::*;
use MigrationStatus::*;
use chrono::TimeZone;

fn all() -> Vec<Option<MigrationStatus>> {
    std::iter::once(None)
        .chain(MigrationStatus::ALL.iter().copied().map(Some))
        .collect()
}

const ALLOWED: &[(Option<MigrationStatus>, Option<MigrationStatus>)] = &[
    (None, Some(Requested)),
    (Some(Failed), Some(Requested)),
    (Some(Requested), Some(Creating)),
    (Some(Creating), Some(Creating)),
    (Some(Creating), Some(Installing)),
    (Some(Creating), Some(Switching)),
    (Some(Installing), Some(Installing)),
    (Some(Installing), Some(Switching)),
    (Some(Switching), Some(Switching)),
    (Some(Creating), None),
    (Some(Installing), None),
    (Some(Switching), None),
    (Some(Requested), Some(Failing)),
    (Some(Creating), Some(Failing)),
    (Some(Installing), Some(Failing)),
    (Some(Switching), Some(Failing)),
    (Some(Failing), Some(Failed)),
    (Some(Requested), None),
    (Some(Creating), Some(Cancelling)),
    (Some(Installing), Some(Cancelling)),
    (Some(Switching), Some(Cancelling)),
    (Some(Failing), Some(Cancelling)),
    (Some(Cancelling), None),
    (Some(Failed), None),
];

#[test]
fn every_allowed_step_is_accepted_and_every_other_refused() {
    for from in all() {
        for to in all() {
            let allowed = ALLOWED.contains(&(from, to));
            assert_eq!(can_step(from, to), allowed, "{from:?} -> {to:?}");
            assert_eq!(step(from, to).is_ok(), allowed);
        }
    }
}

#[test]
fn no_migration_switches_before_a_vps_was_asked_for_or_after_it_failed() {
    assert!(!can_step(Some(Requested), Some(Switching)));
    assert!(
        !can_step(Some(Failing), None),
        "a failed VPS is deleted first"
    );
    assert!(!can_step(Some(Failed), Some(Creating)));
    assert!(
        !can_step(Some(Cancelling), Some(Creating)),
        "a cancel is final"
    );
    assert!(!can_step(None, Some(Creating)));
}

#[test]
fn the_apps_see_four_statuses_and_never_a_cancelled_migration() {
    let shown: Vec<_> = MigrationStatus::ALL
        .iter()
        .filter_map(|s| s.shown())
        .collect();
    for s in ShownMigration::ALL {
        assert!(shown.contains(s), "{s} is shown for some status");
    }
    assert_eq!(Cancelling.shown(), None);
    assert_eq!(Requested.shown(), Some(ShownMigration::Creating));
    assert_eq!(Failing.shown(), Some(ShownMigration::Failed));
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
}

fn node(status: Status, migration: Option<MigrationStatus>) -> Resource {
    let mut r = Resource::fixture(ResourceKind::HostingNode, status, Desired::Active, at());
    r.node_id = Some("n-old".into());
    r.migration = migration.map(|status| Migration {
        status,
        to_region: "eu-west-1".into(),
        to_plan_tier: "premium".into(),
        node_id: None,
        token_hash: None,
        started_at: at(),
        deadline_at: at(),
        error_message: None,
        actor: "user".into(),
    });
    r
}

#[test]
fn only_an_active_node_without_a_running_migration_may_start_one() {
    assert_eq!(may_start(&node(Status::Active, None)), Ok(()));
    assert_eq!(may_start(&node(Status::Active, Some(Failed))), Ok(()));
    for s in [
        Requested, Creating, Installing, Switching, Failing, Cancelling,
    ] {
        assert_eq!(
            may_start(&node(Status::Active, Some(s))),
            Err(Refusal::InProgress)
        );
    }
    for s in [
        Status::Pending,
        Status::Creating,
        Status::Failed,
        Status::Deleting,
    ] {
        assert_eq!(may_start(&node(s, None)), Err(Refusal::NodeNotActive));
    }
    let mut no_vps = node(Status::Active, None);
    no_vps.node_id = None;
    assert_eq!(may_start(&no_vps), Err(Refusal::NodeNotActive));
    let mut going = node(Status::Active, None);
    going.desired = Desired::Deleted;
    assert_eq!(may_start(&going), Err(Refusal::NodeNotActive));
    let vpn = Resource::fixture(ResourceKind::VpnUser, Status::Active, Desired::Active, at());
    assert_eq!(may_start(&vpn), Err(Refusal::NodeNotActive));
}

#[test]
fn a_plan_change_migrates_an_active_node_on_another_plan_in_place() {
    let mut n = node(Status::Active, None);
    n.plan_tier = "basic".into();
    let m = plan_change(&n, "premium", at(), at(), "subscription_service").unwrap();
    assert_eq!((m.status, m.to_region.as_str()), (Requested, "us-east-1"));
    assert_eq!(
        (m.to_plan_tier.as_str(), m.actor.as_str()),
        ("premium", "subscription_service")
    );
    assert_eq!(plan_change(&n, "basic", at(), at(), "s"), None, "same plan");
    n.migration = node(Status::Active, Some(Creating)).migration;
    assert_eq!(
        plan_change(&n, "premium", at(), at(), "s"),
        None,
        "already migrating"
    );
    let mut creating = node(Status::Creating, None);
    creating.plan_tier = "basic".into();
    assert_eq!(plan_change(&creating, "premium", at(), at(), "s"), None);
}

#[test]
fn a_plan_order_on_a_node_coming_up_or_migrating_is_remembered() {
    for status in [Status::Pending, Status::Creating] {
        let mut n = node(status, None);
        n.plan_tier = "basic".into();
        assert_eq!(
            on_plan_order(&n, "premium", at(), at(), "s"),
            PlanOrder::Remember,
            "{status}"
        );
        assert_eq!(
            on_plan_order(&n, "basic", at(), at(), "s"),
            PlanOrder::Nothing
        );
    }
    let mut busy = node(Status::Active, Some(Installing));
    busy.plan_tier = "basic".into();
    assert_eq!(
        on_plan_order(&busy, "premium", at(), at(), "s"),
        PlanOrder::Remember
    );
    let mut free = node(Status::Active, None);
    free.plan_tier = "basic".into();
    assert!(matches!(
        on_plan_order(&free, "premium", at(), at(), "s"),
        PlanOrder::MigrateNow(_)
    ));
    for status in [Status::Failed, Status::Deleting, Status::Deleted] {
        let mut gone = node(status, None);
        gone.plan_tier = "basic".into();
        assert_eq!(
            on_plan_order(&gone, "premium", at(), at(), "s"),
            PlanOrder::Nothing,
            "{status}"
        );
    }
    let mut leaving = node(Status::Active, None);
    leaving.plan_tier = "basic".into();
    leaving.desired = Desired::Deleted;
    assert_eq!(
        on_plan_order(&leaving, "premium", at(), at(), "s"),
        PlanOrder::Nothing
    );
}

#[test]
fn a_cancel_undoes_only_what_may_exist_upstream() {
    assert_eq!(cancel(None), Err(NothingToCancel));
    assert_eq!(cancel(Some(Requested)), Ok(None));
    assert_eq!(cancel(Some(Failed)), Ok(None));
    for s in [Creating, Installing, Switching, Failing, Cancelling] {
        assert_eq!(cancel(Some(s)), Ok(Some(Cancelling)));
    }
    for s in MigrationStatus::ALL.iter().copied() {
        if let Ok(to) = cancel(Some(s))
            && to != Some(s)
        {
            assert!(can_step(Some(s), to), "{s:?} -> {to:?}");
        }
    }
}

#[test]
fn the_vps_being_prepared_is_wanted_even_before_its_id_is_known() {
    let mut r = node(Status::Active, Some(Creating));
    assert!(wants_node(&r, "n-anything"), "id unknown: fail closed");
    r.migration.as_mut().unwrap().node_id = Some("n-new".into());
    assert!(wants_node(&r, "n-new"));
    assert!(!wants_node(&r, "n-other"));
    for s in [Failing, Failed, Cancelling, Requested] {
        r.migration.as_mut().unwrap().status = s;
        assert!(!wants_node(&r, "n-new"), "{s:?}");
    }
    assert!(!wants_node(&node(Status::Active, None), "n-new"));
}

#[test]
fn a_migration_moves_only_along_the_table() {
    let m = node(Status::Active, Some(Requested)).migration.unwrap();
    let creating = m.to(Creating).unwrap();
    assert_eq!(creating.status, Creating);
    assert!(m.to(Switching).is_err());
    assert!(creating.to(Failed).is_err());
}

#[test]
fn a_migration_counts_against_whoever_started_it() {
    use crate::{Event, EventKind};
    let ev = |kind, actor: &str| Event {
        kind,
        actor: actor.into(),
        message: None,
        at: Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
    };
    assert!(started_by(
        &ev(EventKind::MigrationRequested, "user"),
        "user"
    ));
    assert!(!started_by(
        &ev(EventKind::MigrationRequested, "operator:alice"),
        "user"
    ));
    assert!(!started_by(
        &ev(EventKind::MigrationCancelled, "user"),
        "user"
    ));
    assert!(!started_by(
        &ev(EventKind::ProvisionRequested, "user"),
        "user"
    ));
}

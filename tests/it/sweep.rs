//! The orphan sweep deletes only what is provably ours and unwanted, and nothing when in
//! doubt.

use std::time::Duration;

use fulfillment::domain::EventKind;
use fulfillment::sim::{Fault, Op};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, TestApp, pg_admin_url, wait_until};
use crate::on_both;

fn hours(h: i64) -> chrono::Duration {
    chrono::Duration::hours(h)
}

/// A service whose sweep is driven by the test (the periodic one waits an hour), with a
/// 30-minute grace period and at most `max` deletions a run.
async fn app(b: Backend, max: usize, dry_run: bool) -> TestApp {
    TestApp::spawn_with(b, Default::default(), |c| {
        c.engine.sweep.interval = Duration::from_secs(3600);
        c.engine.sweep.grace = Duration::from_secs(1800);
        c.engine.sweep.max_per_run = max;
        c.engine.sweep.dry_run = dry_run;
    })
    .await
}

/// A node provisioned, made active, then deprovisioned: its resource id and subscription.
async fn deleted_resource(app: &TestApp, user: &str) -> (String, String) {
    let sub = format!("sub-{user}");
    app.sims.subscribe(user, &sub, "basic");
    let (_, resp) = app.provision(user, &sub).await;
    let id = resp["resource_id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "active").await;
    app.internal(
        Method::POST,
        "/api/internal/deprovision",
        Some(json!({"subscription_id": sub})),
    )
    .await;
    app.wait_status(&id, "deleted").await;
    (id, sub)
}

/// An active node of `user` (subscription `sub-{user}`) once the engine knows its VPS:
/// its resource id and VPS.
async fn live_node(app: &TestApp, user: &str) -> (String, String) {
    let sub = format!("sub-{user}");
    app.sims.subscribe(user, &sub, "basic");
    let (_, resp) = app.provision(user, &sub).await;
    let id = resp["resource_id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "active").await;
    let node = app.learned_node_id(&id).await;
    (id, node)
}

on_both! {
    async fn only_old_unwanted_nodes_carrying_our_ids_are_deleted(b: Backend) {
        let app = app(b, 10, false).await;
        let hosting = &app.sims.sim.hosting;
        let (gone, sub) = deleted_resource(&app, "s-1").await;
        let orphan = hosting.add_node("obox", &gone, &sub, "s-1", hours(2));
        let young = hosting.add_node("obox", &gone, &sub, "s-1", chrono::Duration::minutes(1));
        let shared = hosting.add_node("vpn", &gone, &sub, "s-1", hours(48));
        let uncorrelated = hosting.add_node("obox", "", &sub, "s-1", hours(48));
        let stranger = hosting.add_node("obox", &uuid::Uuid::now_v7().to_string(), "x", "y", hours(48));

        // A live node, and a duplicate of it from a create whose answer was lost.
        let (live, live_node_id) = live_node(&app, "s-2").await;
        let duplicate = hosting.add_node("obox", &live, "sub-s-2", "s-2", hours(2));

        let engine = app.running().state.app.engine.clone();
        let report = engine.sweep_orphans().await.unwrap();
        let mut deleted = report.orphans.clone();
        deleted.sort();
        let mut expected = vec![orphan.clone(), duplicate.clone()];
        expected.sort();
        assert_eq!(deleted, expected, "{report:?}");
        assert_eq!(report.deleted, 2);
        for kept in [&young, &shared, &uncorrelated, &stranger, &live_node_id] {
            assert!(hosting.node(kept).is_some(), "{kept} must survive");
        }
        assert!(hosting.node(&orphan).is_none() && hosting.node(&duplicate).is_none());
        let history = app.store().events(gone.parse().unwrap()).await.unwrap();
        assert!(history.iter().any(|e| e.kind == EventKind::OrphanDeleted && e.message.as_deref() == Some(orphan.as_str())));
        let (_, r) = app.internal(Method::GET, &format!("/api/internal/resources/{live}"), None).await;
        assert_eq!(r["status"], "active", "the live node is untouched");
    }
}

on_both! {
    async fn dry_run_reports_and_the_cap_bounds_a_run(b: Backend) {
        let app = app(b, 2, true).await;
        let (gone, sub) = deleted_resource(&app, "s-3").await;
        let hosting = &app.sims.sim.hosting;
        let nodes: Vec<String> = (0..3).map(|_| hosting.add_node("obox", &gone, &sub, "s-3", hours(3))).collect();
        let deletes_before = hosting.deletes().len();
        let engine = app.running().state.app.engine.clone();
        let report = engine.sweep_orphans().await.unwrap();
        assert!(report.dry_run);
        assert_eq!((report.orphans.len(), report.deleted), (2, 0), "{report:?}");
        assert_eq!(hosting.deletes().len(), deletes_before, "a dry run deletes nothing");
        assert!(nodes.iter().all(|n| hosting.node(n).is_some()));
    }
}

on_both! {
    async fn a_failed_listing_deletes_nothing(b: Backend) {
        let app = app(b, 10, false).await;
        let (gone, sub) = deleted_resource(&app, "s-4").await;
        let orphan = app.sims.sim.hosting.add_node("obox", &gone, &sub, "s-4", hours(2));
        app.sims.sim.faults.script(Op::ListNodes, [Fault::Error(503)]);
        let engine = app.running().state.app.engine.clone();
        assert!(engine.sweep_orphans().await.is_err());
        assert!(app.sims.sim.hosting.node(&orphan).is_some());
        // Garbage is no better than an error.
        app.sims.sim.faults.script(Op::ListNodes, [Fault::Garbage]);
        assert!(engine.sweep_orphans().await.is_err());
        assert!(app.sims.sim.hosting.node(&orphan).is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_error_deletes_nothing() {
    let app = app(Backend::Postgres, 10, false).await;
    let (gone, sub) = deleted_resource(&app, "s-5").await;
    let orphan = app
        .sims
        .sim
        .hosting
        .add_node("obox", &gone, &sub, "s-5", hours(2));
    let deletes_before = app.sims.sim.hosting.deletes().len();
    // The database goes away under the running service.
    let name = app.db.url.rsplit('/').next().unwrap().to_owned();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&pg_admin_url())
        .await
        .unwrap();
    sqlx::Executor::execute(
        &mut admin,
        sqlx::AssertSqlSafe(format!("drop database {name} with (force)")),
    )
    .await
    .unwrap();
    let engine = app.running().state.app.engine.clone();
    let err = engine.sweep_orphans().await.unwrap_err();
    assert!(err.to_string().contains("reading resource"), "{err}");
    assert_eq!(app.sims.sim.hosting.deletes().len(), deletes_before);
    assert!(app.sims.sim.hosting.node(&orphan).is_some());
}

on_both! {
    async fn the_vps_a_migration_prepares_is_never_swept(b: Backend) {
        let app = app(b, 10, false).await;
        let hosting = &app.sims.sim.hosting;
        let (id, _) = live_node(&app, "m-1").await;
        let store = app.store();
        // Every create fails, so the migration stays `creating` without a new VPS id, as
        // after a create whose answer was lost; the VPS that create made is this one.
        app.sims.sim.faults.script(Op::CreateNode, std::iter::repeat_n(Fault::Error(503), 10_000));
        let (status, _) = app.internal(Method::POST, &format!("/api/internal/resources/{id}/migrate"), Some(json!({"region": "eu-west-1"}))).await;
        assert_eq!(status, 202);
        assert!(wait_until(Duration::from_secs(20), || async {
            let r = store.resource(id.parse().unwrap()).await.unwrap().unwrap();
            r.migration.is_some_and(|m| m.token_hash.is_some() && m.node_id.is_none())
        }).await);
        let prepared = hosting.add_node("obox", &id, "sub-m-1", "m-1", hours(2));
        let engine = app.running().state.app.engine.clone();
        let report = engine.sweep_orphans().await.unwrap();
        assert!(report.orphans.is_empty(), "{report:?}");
        assert!(hosting.node(&prepared).is_some(), "the VPS being prepared is wanted");
        // Once the migration knows its new VPS, that one stays wanted and a third is not.
        app.sims.sim.faults.clear();
        assert!(wait_until(Duration::from_secs(20), || async {
            let r = store.resource(id.parse().unwrap()).await.unwrap().unwrap();
            r.node_id.as_deref() == Some(prepared.as_str()) && r.retire_node_id.is_none()
        }).await, "the engine adopted the prepared VPS and switched to it");
        assert_eq!(hosting.obox_nodes().len(), 1);
        assert_eq!(hosting.creates().len(), 1, "no second VPS was created for the migration");
    }
}

on_both! {
    async fn a_dry_run_reports_lost_records_and_missing_vpses_and_changes_nothing(b: Backend) {
        let app = TestApp::spawn_with(b, Default::default(), |c| {
            c.engine.sweep.interval = Duration::from_secs(3600);
            c.engine.sweep.grace = Duration::ZERO;
            c.engine.sweep.dry_run = true;
        })
        .await;
        let hosting = &app.sims.sim.hosting;
        // A live node whose VPS was deleted behind our back.
        let (live, node_id) = live_node(&app, "s-9").await;
        let (store, id) = (app.store(), live.parse().unwrap());
        assert!(hosting.delete(&node_id));
        // A VPS carrying an id of ours the database does not know, whose subscription is
        // active (what a restored backup leaves).
        app.sims.subscribe("s-10", "sub-s-10", "standard");
        let lost = uuid::Uuid::now_v7();
        let vps = hosting.add_node("obox", &lost.to_string(), "sub-s-10", "s-10", hours(2));

        let engine = app.running().state.app.engine.clone();
        let report = engine.sweep_orphans().await.unwrap();
        assert_eq!((report.unlisted.clone(), report.recovered.clone()), (vec![id], vec![vps.clone()]), "{report:?}");
        assert!(report.orphans.is_empty() && report.dry_run, "{report:?}");
        assert_eq!(store.resource(lost).await.unwrap(), None, "a dry run records nothing");
        assert!(hosting.node(&vps).is_some());
        let history = store.events(id).await.unwrap();
        assert!(history.iter().all(|e| e.kind != EventKind::NodeVanished), "{history:?}");
        assert_eq!(store.resource(id).await.unwrap().unwrap().status, fulfillment::domain::Status::Active);
    }
}

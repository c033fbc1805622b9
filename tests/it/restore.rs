//! The database goes back in time: a backup taken while orders, a migration and deletions
//! run is restored after the world has moved on (VPSes created and deleted, callbacks
//! acknowledged), and the service, started on it, must converge: every live node on
//! exactly one VPS, no VPS that no live resource holds, nothing stuck, every subscription's
//! last callback its true outcome (a repeat is fine).
//!
//! The backup is what an operator would take: `pg_dump` of the live database, and for
//! SQLite an online copy (`VACUUM INTO`; a plain `cp` of a live WAL database is not one).

use std::path::{Path, PathBuf};
use std::time::Duration;

use fulfillment::domain::{Desired, EventKind, Resource, Status};
use fulfillment::sim::{Fault, NodeTiming, Op};
use reqwest::Method;
use serde_json::json;

use crate::crash::{Service, free_port};
use crate::helpers::{SimServer, TestDb, pg_admin_url, wait_until};
use crate::on_both;

/// The service's settings here: a sweep every second with a one-second grace, so the
/// backstop takes part in converging.
const SWEEP: [(&str, &str); 2] = [
    ("ORPHAN_SWEEP_INTERVAL_SECS", "1"),
    ("ORPHAN_GRACE_SECS", "1"),
];

/// A consistent copy of the live database, taken while the service writes to it.
async fn back_up(db: &TestDb, dir: &Path) -> PathBuf {
    let file = dir.join("backup");
    if db.url.starts_with("postgres") {
        let out = std::process::Command::new("pg_dump")
            .args(["--format=custom", "--file"])
            .arg(&file)
            .arg(&db.url)
            .output()
            .expect("pg_dump is installed with PostgreSQL");
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let sql = format!("vacuum into '{}'", file.display());
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    file
}

/// Puts the backup back in place of the database (the service is stopped).
async fn restore(db: &TestDb, backup: &Path) {
    if db.url.starts_with("postgres") {
        let name = db.url.rsplit('/').next().unwrap();
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&pg_admin_url())
            .await
            .unwrap();
        for sql in [
            format!("drop database {name} with (force)"),
            format!("create database {name}"),
        ] {
            sqlx::Executor::execute(&mut admin, sqlx::AssertSqlSafe(sql))
                .await
                .unwrap();
        }
        let out = std::process::Command::new("pg_restore")
            .args(["--no-owner", "--exit-on-error", "--dbname"])
            .arg(&db.url)
            .arg(backup)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_restore: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        let path = db.url.strip_prefix("sqlite://").unwrap();
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
        std::fs::copy(backup, path).unwrap();
    }
}

/// One customer: a user and the hosting subscription of their own.
struct Customer(&'static str, &'static str);

impl Customer {
    fn user(&self) -> &'static str {
        self.0
    }

    fn sub(&self) -> &'static str {
        self.1
    }
}

const STAYS: Customer = Customer("r-stays", "sub-stays");
const GONE: Customer = Customer("r-gone", "sub-gone");
const MOVES: Customer = Customer("r-moves", "sub-moves");
const MOVES_LATER: Customer = Customer("r-moves-later", "sub-moves-later");
const COMING: Customer = Customer("r-coming", "sub-coming");
const LEAVING: Customer = Customer("r-leaving", "sub-leaving");
const LATE: Customer = Customer("r-late", "sub-late");
const BRIEF: Customer = Customer("r-brief", "sub-brief");

async fn order(service: &Service, sims: &SimServer, c: &Customer) -> String {
    sims.subscribe(c.user(), c.sub(), "standard");
    let body = json!({"user_id": c.user(), "subscription_id": c.sub(), "app_source": "obox",
        "plan_tier": "standard", "region": "us-east-1"});
    let (status, resp) = service
        .internal(Method::POST, "/api/internal/provision", Some(body))
        .await;
    assert_eq!(status, 202, "{resp}");
    resp["resource_id"].as_str().unwrap().to_owned()
}

/// The subscription is cancelled and the service told.
async fn cancel(service: &Service, sims: &SimServer, c: &Customer) {
    sims.sim
        .subscriptions
        .set(c.user(), "obox", "hosting", None);
    let body = json!({"subscription_id": c.sub(), "reason": "subscription_cancelled"});
    let (status, resp) = service
        .internal(Method::POST, "/api/internal/deprovision", Some(body))
        .await;
    assert_eq!(status, 200, "{resp}");
}

async fn migrate(service: &Service, id: &str, region: &str) {
    let path = format!("/api/internal/resources/{id}/migrate");
    let body = json!({"region": region});
    let (status, resp) = service.internal(Method::POST, &path, Some(body)).await;
    assert_eq!(status, 202, "{resp}");
}

async fn wait_status(service: &Service, id: &str, status: &str) {
    let reached = wait_until(Duration::from_secs(20), || async {
        service.status_of(id).await == status
    })
    .await;
    assert!(
        reached,
        "{id} never reached {status}: {}",
        service.status_of(id).await
    );
}

/// What is wrong with the world and our record of it, if anything. `foreign` VPSes are
/// not ours to hold.
async fn discrepancies(
    db: &TestDb,
    sims: &SimServer,
    finals: &[(&Customer, &str)],
    foreign: &[&str],
) -> Vec<String> {
    let store = db.store().await;
    let mut wrong = Vec::new();
    let mut live: Vec<Resource> = Vec::new();
    for (c, _) in finals {
        for r in store.resources_for_subscription(c.sub()).await.unwrap() {
            if matches!(
                r.status,
                Status::Pending | Status::Creating | Status::Deleting
            ) {
                wrong.push(format!("{} is stuck {}", c.sub(), r.status));
            }
            if r.migration.is_some() {
                wrong.push(format!("{} is still migrating", c.sub()));
            }
            if r.desired == Desired::Active && r.status == Status::Active {
                live.push(r);
            }
        }
    }
    let vpses = sims.sim.hosting.obox_nodes();
    for v in vpses
        .iter()
        .filter(|v| !foreign.contains(&v.node_id.as_str()))
    {
        let held = live
            .iter()
            .any(|r| r.node_id.as_deref() == Some(v.node_id.as_str()));
        if !held {
            wrong.push(format!(
                "VPS {} ({}) is held by no live resource",
                v.node_id, v.subscription_id
            ));
        }
    }
    for r in &live {
        let tagged = vpses
            .iter()
            .filter(|v| v.resource_id == r.id.to_string())
            .count();
        let serving = vpses
            .iter()
            .any(|v| Some(v.node_id.as_str()) == r.node_id.as_deref());
        if tagged != 1 || !serving {
            wrong.push(format!(
                "{} is active with {tagged} VPSes (its own present: {serving})",
                r.subscription_id
            ));
        }
    }
    for (c, last) in finals {
        let live_here = live.iter().filter(|r| r.subscription_id == c.sub()).count();
        let want = usize::from(*last == "active");
        if live_here != want {
            wrong.push(format!(
                "{} has {live_here} live nodes, not {want}",
                c.sub()
            ));
        }
        let calls = sims.sim.subscriptions.callbacks_for(c.sub());
        if calls.last().map(|cb| cb.status.as_str()) != Some(last) {
            let seen: Vec<_> = calls.iter().map(|cb| cb.status.as_str()).collect();
            wrong.push(format!("{} heard {seen:?}, last should be {last}", c.sub()));
        }
    }
    if store.outbox_backlog().await.unwrap() > 0 {
        wrong.push("callbacks wait in the outbox".into());
    }
    wrong
}

on_both! {
    async fn a_database_restored_from_a_backup_converges_with_the_world(b: Backend) {
        let db = TestDb::new(b).await;
        let sims = SimServer::start(NodeTiming::default()).await;
        let dir = std::env::temp_dir().join(format!("ft-restore-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        let port = free_port();
        let service = Service::start_with(&db, &sims, port, &SWEEP).await;

        // Before the backup: five settled nodes; then work in flight.
        let stays = order(&service, &sims, &STAYS).await;
        let gone = order(&service, &sims, &GONE).await;
        let moves = order(&service, &sims, &MOVES).await;
        let moves_later = order(&service, &sims, &MOVES_LATER).await;
        let leaving = order(&service, &sims, &LEAVING).await;
        for id in [&stays, &gone, &moves, &moves_later, &leaving] {
            wait_status(&service, id, "active").await;
        }
        let slow = NodeTiming { creating_ms: 1_500, installing_ms: 500, ..NodeTiming::default() };
        sims.sim.hosting.set_timing(slow);
        let coming = order(&service, &sims, &COMING).await;
        migrate(&service, &moves, "eu-west-1").await;
        sims.sim.faults.script(Op::DeleteNode, [Fault::Error(503), Fault::Error(503), Fault::Error(503)]);
        cancel(&service, &sims, &LEAVING).await;
        wait_status(&service, &leaving, "deleting").await;

        let backup = back_up(&db, &dir).await;

        // The world moves on: what was in flight finishes, a node is deleted, another
        // moves to a new VPS, an order comes and stays, another comes and goes, and every
        // callback is acknowledged.
        wait_status(&service, &coming, "active").await;
        sims.sim.hosting.set_timing(NodeTiming::default());
        migrate(&service, &moves_later, "ap-northeast-1").await;
        wait_status(&service, &leaving, "deleted").await;
        cancel(&service, &sims, &GONE).await;
        wait_status(&service, &gone, "deleted").await;
        let late = order(&service, &sims, &LATE).await;
        wait_status(&service, &late, "active").await;
        let brief = order(&service, &sims, &BRIEF).await;
        wait_status(&service, &brief, "active").await;
        cancel(&service, &sims, &BRIEF).await;
        wait_status(&service, &brief, "deleted").await;
        let finals = [(&STAYS, "active"), (&GONE, "deleted"), (&MOVES, "active"), (&MOVES_LATER, "active"),
            (&COMING, "active"), (&LEAVING, "deleted"), (&LATE, "active"), (&BRIEF, "deleted")];
        // A VPS of another deployment on the same hosting account: its resource id is not
        // ours and no subscription of ours backs it. It must survive everything below.
        let stranger = uuid::Uuid::now_v7().to_string();
        let foreign = sims.sim.hosting.add_node("obox", &stranger, "sub-elsewhere", "u-elsewhere", chrono::Duration::hours(2));
        let foreign = [foreign.as_str()];
        let settled = wait_until(Duration::from_secs(30), || async {
            discrepancies(&db, &sims, &finals, &foreign).await.is_empty()
        }).await;
        assert!(settled, "before the restore: {:?}", discrepancies(&db, &sims, &finals, &foreign).await);
        let store = db.store().await;
        let moved = store.resource(moves.parse().unwrap()).await.unwrap().unwrap();
        assert_eq!(moved.region, "eu-west-1");
        let moved_later = store.resource(moves_later.parse().unwrap()).await.unwrap().unwrap();
        assert_eq!(moved_later.region, "ap-northeast-1");
        drop(store);
        let heard: Vec<usize> = finals.iter().map(|(c, _)| sims.sim.subscriptions.callbacks_for(c.sub()).len()).collect();

        // Stop, put the backup back, start.
        let mut service = service;
        assert!(service.terminate(Duration::from_secs(10)).is_some_and(|s| s.success()));
        restore(&db, &backup).await;
        let behind = db.store().await;
        assert!(behind.resources_for_subscription(LATE.sub()).await.unwrap().is_empty(), "the backup predates the late order");
        let r = behind.resource(gone.parse().unwrap()).await.unwrap().unwrap();
        assert_eq!(r.status, Status::Active, "the backup has the deleted node active");
        let r = behind.resource(moves_later.parse().unwrap()).await.unwrap().unwrap();
        assert_eq!((r.region.as_str(), r.migration.is_none()), ("us-east-1", true), "the backup predates the second move");
        drop(behind);
        let service = Service::start_with(&db, &sims, port, &SWEEP).await;

        let converged = wait_until(Duration::from_secs(40), || async {
            discrepancies(&db, &sims, &finals, &foreign).await.is_empty()
        }).await;
        assert!(converged, "after the restore: {:?}", discrepancies(&db, &sims, &finals, &foreign).await);
        assert!(sims.sim.hosting.node(foreign[0]).is_some_and(|n| n.status_at(chrono::Utc::now()) == "active"),
            "another deployment's VPS is left alone");
        // Each lost or stale record was put right, and the history says how.
        let store = db.store().await;
        let history = |id: &str| {
            let store = store.clone();
            let id = id.parse().unwrap();
            async move { store.events(id).await.unwrap().into_iter().map(|e| e.kind).collect::<Vec<_>>() }
        };
        assert!(history(&gone).await.contains(&EventKind::NodeVanished));
        assert!(history(&late).await.contains(&EventKind::NodeRecovered));
        assert!(history(&moves_later).await.contains(&EventKind::NodeAdopted));
        let r = store.resource(moves_later.parse().unwrap()).await.unwrap().unwrap();
        assert_eq!(r.region, "ap-northeast-1", "the node serves from the VPS it moved to");
        let (status, body) = service.internal(Method::GET, &format!("/api/internal/resources/{late}"), None).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("active")), "the late order's node is known again");
        // Repeats are allowed, nothing else: no subscription heard a new outcome.
        for ((c, _), before) in finals.iter().zip(heard) {
            let calls = sims.sim.subscriptions.callbacks_for(c.sub());
            assert!(calls[before..].iter().all(|cb| calls[..before].iter().any(|old| old.status == cb.status)),
                "{}: {calls:?}", c.sub());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Node replacement under SIGKILL of the real binary (CONTRACTS.md §4.5): killed with the
//! new VPS's create in flight, with the new VPS active but the switch not committed,
//! after the switch before the old VPS's delete, and with that delete in flight. After a
//! restart: exactly one VPS for the node, the new one; nothing created twice; the node
//! served from its old VPS until the switch; one `active` callback, never repeated.

use std::time::Duration;

use fulfillment::domain::Resource;
use fulfillment::domain::migration::MigrationStatus;
use fulfillment::sim::{Fault, NodeTiming, Op};
use serde_json::json;

use crate::crash::{Service, free_port};
use crate::helpers::{SimServer, TestDb, wait_until};
use crate::on_both;

struct Setup {
    db: TestDb,
    sims: SimServer,
    port: u16,
    id: String,
    old_node: String,
}

async fn row(db: &TestDb, id: &str) -> Resource {
    db.store()
        .await
        .resource(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap()
}

/// An active node, then `faults` scripted, then a migration to eu-west-1 asked for.
async fn migrating(b: crate::helpers::Backend, faults: Vec<(Op, Vec<Fault>)>) -> (Setup, Service) {
    let db = TestDb::new(b).await;
    let sims = SimServer::start(NodeTiming {
        send_callbacks: false,
        ..NodeTiming::default()
    })
    .await;
    let port = free_port();
    let service = Service::start(&db, &sims, port).await;
    let order = json!({"user_id": "u-1", "subscription_id": "sub-1", "plan_tier": "standard", "region": "us-east-1"});
    let (status, body) = service
        .internal(
            reqwest::Method::POST,
            "/api/internal/provision",
            Some(order),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["resource_id"].as_str().unwrap().to_owned();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            service.status_of(&id).await == "active"
        })
        .await
    );
    let old_node = row(&db, &id).await.node_id.unwrap();
    for (op, f) in faults {
        sims.sim.faults.script(op, f);
    }
    let (status, body) = service
        .internal(
            reqwest::Method::POST,
            &format!("/api/internal/resources/{id}/migrate"),
            Some(json!({"region": "eu-west-1"})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    (
        Setup {
            db,
            sims,
            port,
            id,
            old_node,
        },
        service,
    )
}

impl Setup {
    /// Before the switch: the node is served by its old VPS, which still exists.
    async fn still_served_by_the_old_vps(&self) {
        let r = row(&self.db, &self.id).await;
        assert_eq!(r.node_id.as_deref(), Some(self.old_node.as_str()));
        assert_eq!(r.region, "us-east-1");
        assert!(
            self.sims.sim.hosting.node(&self.old_node).is_some(),
            "the old VPS serves"
        );
    }

    /// Restarts, lets the migration settle, and checks the end state.
    async fn restart_and_settle(self) {
        self.sims.sim.faults.clear();
        let service = Service::start(&self.db, &self.sims, self.port).await;
        let settled = wait_until(Duration::from_secs(30), || async {
            let r = row(&self.db, &self.id).await;
            r.migration.is_none()
                && r.retire_node_id.is_none()
                && r.node_id.as_deref() != Some(&self.old_node)
        })
        .await;
        let r = row(&self.db, &self.id).await;
        assert!(settled, "never settled: {r:?}");
        assert_eq!(service.status_of(&self.id).await, "active");
        assert_eq!(r.region, "eu-west-1");
        let vpses = self.sims.sim.hosting.obox_nodes();
        assert_eq!(vpses.len(), 1, "exactly one VPS for the node: {vpses:?}");
        assert_eq!(Some(vpses[0].node_id.as_str()), r.node_id.as_deref());
        assert_eq!(
            self.sims.sim.hosting.creates().len(),
            2,
            "the new VPS was created once"
        );
        // Nothing more is reported: one `active`, never repeated.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let calls = self.sims.sim.subscriptions.callbacks_for("sub-1");
        assert_eq!(
            calls.iter().map(|c| c.status.as_str()).collect::<Vec<_>>(),
            vec!["active"]
        );
    }
}

on_both! {
    async fn killed_with_the_new_vps_create_in_flight(b: Backend) {
        // The create takes effect at once; its answer takes 3 s.
        let (s, service) = migrating(b, vec![(Op::CreateNode, vec![Fault::LostResponse])]).await;
        assert!(wait_until(Duration::from_secs(10), || async { s.sims.sim.hosting.creates().len() == 2 }).await);
        service.kill();
        let r = row(&s.db, &s.id).await;
        let m = r.migration.clone().unwrap();
        assert_eq!((m.status, m.node_id.as_deref()), (MigrationStatus::Creating, None), "the new VPS's id was not stored");
        s.still_served_by_the_old_vps().await;
        s.restart_and_settle().await;
    }
}

on_both! {
    async fn killed_with_the_new_vps_active_before_the_switch(b: Backend) {
        // The first look after the create fails (its id is stored), the next hangs.
        let gets = vec![Fault::Error(503), Fault::LostResponse, Fault::LostResponse, Fault::LostResponse];
        let (s, service) = migrating(b, vec![(Op::GetNode, gets)]).await;
        assert!(wait_until(Duration::from_secs(10), || async {
            row(&s.db, &s.id).await.migration.is_some_and(|m| m.node_id.is_some())
        }).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        service.kill();
        let m = row(&s.db, &s.id).await.migration.unwrap();
        let new = m.node_id.clone().unwrap();
        assert!(m.status.is_preparing(), "{m:?}");
        assert_eq!(s.sims.sim.hosting.node(&new).unwrap().status_at(chrono::Utc::now()), "active");
        s.still_served_by_the_old_vps().await;
        s.restart_and_settle().await;
    }
}

on_both! {
    async fn killed_after_the_switch_before_the_old_vps_is_deleted(b: Backend) {
        let (s, service) = migrating(b, vec![(Op::DeleteNode, vec![Fault::Error(503); 1000])]).await;
        assert!(wait_until(Duration::from_secs(10), || async {
            let r = row(&s.db, &s.id).await;
            r.migration.is_none() && r.retire_node_id.is_some()
        }).await);
        service.kill();
        let r = row(&s.db, &s.id).await;
        assert_eq!(r.retire_node_id.as_deref(), Some(s.old_node.as_str()));
        assert_ne!(r.node_id.as_deref(), Some(s.old_node.as_str()), "switched");
        assert!(s.sims.sim.hosting.node(&s.old_node).is_some(), "the old VPS is not deleted yet");
        s.restart_and_settle().await;
    }
}

on_both! {
    async fn killed_with_the_old_vps_delete_in_flight(b: Backend) {
        // The delete takes effect at once; its answer takes 3 s.
        let (s, service) = migrating(b, vec![(Op::DeleteNode, vec![Fault::LostResponse])]).await;
        assert!(wait_until(Duration::from_secs(10), || async { s.sims.sim.hosting.deletes().contains(&s.old_node) }).await);
        service.kill();
        assert_eq!(row(&s.db, &s.id).await.retire_node_id.as_deref(), Some(s.old_node.as_str()), "not recorded as gone");
        s.restart_and_settle().await;
    }
}

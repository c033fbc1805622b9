//! The engine's steps against a real SQLite database and the simulated upstreams in
//! process, one drain at a time (`Engine::drain`): what the steps write, what they ask
//! upstream, and that once drained nothing more happens.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::{Backoff, Engine, EngineConfig};
use domain::slots::SlotChoice;
use domain::{Desired, EventKind, PlanTier, ResourceKind, Status};
use ports::store::{Inserted, NewResource, Store};
use ports::{NoTelemetry, Ports, SystemClock};
use sim::{Fault, Knobs, NodeTiming, Op, Sim};

/// An engine on a database file of its own (removed with it) and simulators whose nodes
/// are ready at once and whose agents never call back: only the engine's own steps act.
struct World {
    engine: Arc<Engine>,
    sim: Sim,
    path: std::path::PathBuf,
}

impl Drop for World {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

async fn world() -> World {
    let path = std::env::temp_dir().join(format!("engine-{}.db", Uuid::new_v4().simple()));
    let store = store::connect(&format!("sqlite://{}", path.display()), 1)
        .await
        .unwrap();
    let timing = NodeTiming {
        send_callbacks: false,
        stats_interval_ms: 0,
        ..NodeTiming::default()
    };
    let sim = Sim::new(Knobs::default(), timing);
    let ports = Ports {
        store,
        hosting: sim.hosting.clone(),
        subscriptions: sim.subscriptions.clone(),
        vpn: sim.vpn.clone(),
        clock: Arc::new(SystemClock),
        telemetry: Arc::new(NoTelemetry),
    };
    let mut config = EngineConfig::new("http://127.0.0.1:9/api/callback/node".into());
    // Every retry and poll is due at once: a drain takes them all.
    config.node_poll = Duration::ZERO;
    config.backoff = Backoff {
        base: Duration::ZERO,
        max: Duration::ZERO,
    };
    World {
        engine: Engine::new(ports, config),
        sim,
        path,
    }
}

impl World {
    fn store(&self) -> &Arc<dyn Store> {
        &self.engine.ports.store
    }

    /// A hosting order, recorded as the provisioning use case records it.
    async fn order(&self, subscription: &str) -> Uuid {
        let plan = PlanTier::parse("premium");
        let new = NewResource {
            id: Uuid::now_v7(),
            kind: ResourceKind::HostingNode,
            subscription_id: subscription.into(),
            user_id: format!("user-of-{subscription}"),
            user_email: None,
            order_key: subscription.into(),
            provider: "lightsail".into(),
            region: "us-east-1".into(),
            plan_tier: plan.as_str().into(),
            traffic_limit: plan.node_traffic_limit(),
            actor: "subscription_service".into(),
            slots: SlotChoice::UpTo(1),
            recovered_node: None,
        };
        let now = self.engine.ports.clock.now();
        match self.store().insert_resource(&new, now).await.unwrap() {
            Inserted::Created(r) => r.id,
            Inserted::Full(_) => panic!("the subscription has room"),
        }
    }

    async fn drain(&self) {
        let quiet = self.engine.drain(Duration::from_secs(20)).await.unwrap();
        assert!(quiet, "the engine settled");
    }

    async fn kinds(&self, id: Uuid) -> Vec<EventKind> {
        let events = self.store().events(id).await.unwrap();
        events.into_iter().map(|e| e.kind).collect()
    }
}

#[tokio::test]
async fn an_order_is_driven_to_active_and_reported_once() {
    let w = world().await;
    let id = w.order("sub-1").await;
    w.drain().await;
    let r = w.store().resource(id).await.unwrap().unwrap();
    assert_eq!((r.status, r.desired), (Status::Active, Desired::Active));
    assert!(r.connection.is_complete(), "{:?}", r.connection);
    assert_eq!(w.sim.hosting.creates().len(), 1);
    let calls = w.sim.subscriptions.callbacks_for("sub-1");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, "active");
    let kinds = w.kinds(id).await;
    for kind in [EventKind::VpsCreateRequested, EventKind::NodeReady] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
    // Drained again: nothing more is asked or told.
    w.drain().await;
    assert_eq!(w.sim.hosting.creates().len(), 1);
    assert_eq!(w.sim.subscriptions.callbacks_for("sub-1").len(), 1);
}

#[tokio::test]
async fn a_lost_create_answer_is_found_again_not_made_twice() {
    let w = world().await;
    // The create takes effect but its answer never arrives; then the listing fails once,
    // and the step must not create again while it cannot look.
    w.sim.faults.script(Op::CreateNode, [Fault::LostResponse]);
    w.sim.faults.script(Op::ListNodes, [Fault::Error(503)]);
    let id = w.order("sub-2").await;
    w.drain().await;
    let r = w.store().resource(id).await.unwrap().unwrap();
    assert_eq!(r.status, Status::Active);
    assert_eq!(
        w.sim.hosting.creates().len(),
        1,
        "one create took effect, none after"
    );
    assert_eq!(w.sim.hosting.obox_nodes().len(), 1);
    assert!(w.kinds(id).await.contains(&EventKind::NodeAdopted));
    assert_eq!(w.sim.subscriptions.callbacks_for("sub-2").len(), 1);
}

#[tokio::test]
async fn a_deletion_ends_with_no_vps_and_one_deleted_callback() {
    let w = world().await;
    let id = w.order("sub-3").await;
    w.drain().await;
    // The first two deletes fail: the step retries until the VPS is gone.
    w.sim
        .faults
        .script(Op::DeleteNode, [Fault::Error(503), Fault::Hang]);
    let now = w.engine.ports.clock.now();
    let reason = domain::DeleteReason::SubscriptionCancelled;
    w.store()
        .request_deletion(id, reason, "subscription_service", now)
        .await
        .unwrap();
    w.drain().await;
    let r = w.store().resource(id).await.unwrap().unwrap();
    assert_eq!((r.status, r.upstream_released), (Status::Deleted, true));
    assert!(w.sim.hosting.obox_nodes().is_empty());
    let statuses: Vec<String> = w
        .sim
        .subscriptions
        .callbacks_for("sub-3")
        .into_iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, ["active", "deleted"]);
}

#[tokio::test]
async fn a_refused_callback_is_owed_until_it_is_acknowledged() {
    let w = world().await;
    w.sim
        .faults
        .script(Op::Callback, [Fault::Error(500), Fault::Error(503)]);
    w.order("sub-4").await;
    w.drain().await;
    assert_eq!(w.store().outbox_backlog().await.unwrap(), 0);
    let calls = w.sim.subscriptions.callbacks_for("sub-4");
    assert_eq!(calls.len(), 1, "delivered once, after the refusals");
}

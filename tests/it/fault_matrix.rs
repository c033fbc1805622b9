//! The fault matrix: every upstream operation the service calls, under each way an upstream
//! misbehaves: slow, 500, 503, no answer before our timeout, an unreadable body after the
//! call took effect, and an answer that arrives after our timeout for a call that did take
//! effect. Each cell runs a whole lifecycle on a service, simulators and database of its
//! own (a hosting node: order, read, deprovision; a node's migration to another region:
//! request, reads, switch, the old VPS deleted; a VPN user: order, read, renewal, traffic
//! metering, deprovision) with the fault aimed at one operation, twice in a row, and
//! checks:
//!
//! - no request to the service answers 500 or hangs; a refusal is JSON with `code`;
//! - the lifecycle completes: active, then deleted, nothing left transitional or unsent;
//! - upstream effects happened once: one node created and none left, one VPN account and
//!   none left;
//! - the subscription service heard `active` then `deleted`, in order, and exactly once
//!   each unless the fault hit the callback itself after it took effect (delivery is at
//!   least once: an answer we never read is sent again).
//!
//! PostgreSQL going away mid-run is `db_outage.rs`.

use std::time::Duration;

use fulfillment::domain::Status;
use fulfillment::sim::{Fault, Knobs, NodeTiming, Op};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, wait_until};

/// Every way a call can go wrong, aimed at one operation.
const FAULTS: [Fault; 5] = [
    Fault::Error(500),
    Fault::Error(503),
    Fault::Hang,
    Fault::Garbage,
    Fault::LostResponse,
];

/// What the hosting lifecycle calls: create, poll, delete, the listing that finds a create
/// whose answer was lost, the subscription lookup of "my node", and the callbacks.
const HOSTING_OPS: [Op; 6] = [
    Op::CreateNode,
    Op::GetNode,
    Op::DeleteNode,
    Op::ListNodes,
    Op::ActiveSubscription,
    Op::Callback,
];

/// What replacing a node's VPS calls: the new VPS's create, its polls, the old VPS's
/// delete, and the listing that finds a new VPS whose create answer was lost.
const MIGRATION_OPS: [Op; 4] = [Op::CreateNode, Op::GetNode, Op::DeleteNode, Op::ListNodes];

/// What the VPN lifecycle calls: create, the renewal's update, delete, the live read behind
/// "my VPN config", the traffic sync's read of an account, and the callbacks.
const VPN_OPS: [Op; 6] = [
    Op::VpnCreate,
    Op::VpnUpdate,
    Op::VpnDelete,
    Op::VpnSync,
    Op::VpnGet,
    Op::Callback,
];

/// Traffic the VPN manager reports for the account in the VPN lifecycle.
const USED_GIB: i64 = 50;

/// Added to every call in the "slow" cell: below the service's 1 s upstream timeout.
const SLOW_MS: u64 = 400;
/// Cells run this many at a time, each with a small pool: the suite shares PostgreSQL's
/// 100 connections.
const PARALLEL: usize = 4;
const POOL: u32 = 4;

/// A service of the cell's own.
async fn spawn(b: Backend) -> TestApp {
    TestApp::spawn_with(b, NodeTiming::default(), |c| c.db.max_connections = POOL).await
}

#[derive(Debug, Clone, Copy)]
enum Cell {
    /// Every upstream answers late, but in time.
    Slow,
    /// `op` misbehaves this way on its next two calls.
    Fault(Op, Fault),
}

impl Cell {
    fn all(ops: &[Op]) -> Vec<Cell> {
        let mut cells = vec![Cell::Slow];
        for &op in ops {
            cells.extend(FAULTS.iter().map(|&f| Cell::Fault(op, f)));
        }
        cells
    }

    /// Aims the fault at the simulators.
    fn arm(self, app: &TestApp) {
        let faults = &app.sims.sim.faults;
        match self {
            Cell::Slow => faults.set_knobs(Knobs {
                latency_ms: SLOW_MS,
                ..faults.knobs()
            }),
            Cell::Fault(op, fault) => {
                if op == Op::ListNodes {
                    // The listing is only asked for when a create's answer was lost.
                    faults.script(Op::CreateNode, [Fault::LostResponse]);
                }
                faults.script(op, [fault, fault]);
            }
        }
    }

    /// Whether the subscription service may hear a callback twice: the fault hit the
    /// callback after it took effect, so we could not know it arrived.
    fn may_repeat_callbacks(self) -> bool {
        matches!(self, Cell::Fault(Op::Callback, f) if f.takes_effect())
    }
}

/// Fails unless a request to the service was answered without a 500, in time, and with
/// `{"error","code"}` when refused.
fn answered(cell: Cell, what: &str, status: u16, body: &Value) {
    assert_ne!(status, 500, "{cell:?}: {what} answered 500: {body}");
    if status >= 400 {
        assert!(
            body["error"].is_string() && body["code"].is_string(),
            "{cell:?}: {what} refused without an error body: {status} {body}"
        );
    }
}

/// Statuses the subscription service heard, with repeats collapsed, and how many it heard.
fn heard(app: &TestApp, sub: &str) -> (Vec<String>, usize) {
    let all = app.sims.sim.subscriptions.callbacks_for(sub);
    let mut seen: Vec<String> = Vec::new();
    for c in &all {
        if seen.last() != Some(&c.status) {
            seen.push(c.status.clone());
        }
    }
    (seen, all.len())
}

/// Waits until nothing is left to send, then checks what the subscription service heard.
async fn check_callbacks(app: &TestApp, cell: Cell, sub: &str, expected: &[&str], sends: usize) {
    let store = app.store();
    let drained = wait_until(Duration::from_secs(20), || async {
        store.outbox_backlog().await.unwrap() == 0
    })
    .await;
    assert!(drained, "{cell:?}: callbacks left unsent");
    let (seen, count) = heard(app, sub);
    assert_eq!(seen, expected, "{cell:?}: callbacks in order");
    if cell.may_repeat_callbacks() {
        assert!(count >= sends, "{cell:?}: {count} callbacks");
    } else {
        assert_eq!(count, sends, "{cell:?}: each callback sent once");
    }
}

/// A user API read, checked; returns status and body.
async fn user_read(app: &TestApp, cell: Cell, path: &str) -> (u16, Value) {
    let (status, body) = app.user(Method::GET, path, "u-1", None).await;
    answered(cell, path, status, &body);
    (status, body)
}

async fn hosting_cell(b: Backend, cell: Cell) {
    let app = spawn(b).await;
    app.sims.subscribe("u-1", "sub-1", "premium");
    cell.arm(&app);

    let (status, body) = app.provision("u-1", "sub-1").await;
    answered(cell, "provision", status, &body);
    assert!(matches!(status, 200 | 202), "{cell:?}: {status} {body}");
    let id = body["resource_id"].as_str().unwrap().to_owned();
    // Reads answer while the node is being created, whatever the upstreams do.
    for _ in 0..2 {
        let (status, body) = user_read(&app, cell, "/api/v1/my/node").await;
        assert_eq!(status, 200, "{cell:?}: my node: {body}");
        assert_eq!(body["has_node"], true, "{cell:?}: {body}");
    }
    app.wait_status(&id, "active").await;
    let (status, body) = user_read(&app, cell, "/api/v1/my/node").await;
    assert_eq!(status, 200, "{cell:?}: {body}");
    assert_eq!(body["node"]["resource_id"], id.as_str(), "{cell:?}: {body}");

    let (status, body) = app
        .internal(
            Method::POST,
            "/api/internal/deprovision",
            Some(json!({"subscription_id": "sub-1", "reason": "subscription_expired"})),
        )
        .await;
    answered(cell, "deprovision", status, &body);
    assert_eq!(status, 200, "{cell:?}: {body}");
    app.wait_status(&id, "deleted").await;

    let creates = app.sims.sim.hosting.creates();
    assert_eq!(creates.len(), 1, "{cell:?}: one node created: {creates:?}");
    assert!(
        app.sims.sim.hosting.obox_nodes().is_empty(),
        "{cell:?}: no node left"
    );
    check_callbacks(&app, cell, "sub-1", &["active", "deleted"], 2).await;
}

/// An active node, then the fault, then a migration to another region: it switches once,
/// the node serves throughout, and one VPS is left.
async fn migration_cell(b: Backend, cell: Cell) {
    let app = spawn(b).await;
    app.sims.subscribe("u-1", "sub-1", "premium");
    let (_, body) = app.provision("u-1", "sub-1").await;
    let id = body["resource_id"].as_str().unwrap().to_owned();
    app.wait_status(&id, "active").await;
    let store = app.store();
    let rid = id.parse().unwrap();
    let known = wait_until(Duration::from_secs(20), || async {
        store
            .resource(rid)
            .await
            .unwrap()
            .unwrap()
            .node_id
            .is_some()
    })
    .await;
    assert!(known, "{cell:?}: the node's VPS id was never learned");
    let old = store.resource(rid).await.unwrap().unwrap().node_id.unwrap();
    cell.arm(&app);

    let path = format!("/api/internal/resources/{id}/migrate");
    let (status, body) = app
        .internal(Method::POST, &path, Some(json!({"region": "eu-west-1"})))
        .await;
    answered(cell, "migrate", status, &body);
    assert_eq!(status, 202, "{cell:?}: {body}");
    // The node reads active, on a VPS, while the new one comes up.
    for _ in 0..2 {
        let (status, body) = user_read(&app, cell, "/api/v1/my/node").await;
        assert_eq!(status, 200, "{cell:?}: {body}");
        assert_eq!(body["node"]["status"], "active", "{cell:?}: {body}");
        assert!(body["node"]["public_ip"].is_string(), "{cell:?}: {body}");
    }
    let switched = wait_until(Duration::from_secs(30), || async {
        let r = store.resource(rid).await.unwrap().unwrap();
        r.migration.is_none() && r.retire_node_id.is_none() && r.node_id.as_deref() != Some(&old)
    })
    .await;
    let r = store.resource(rid).await.unwrap().unwrap();
    assert!(switched, "{cell:?}: never switched: {r:?}");
    assert_eq!(r.region, "eu-west-1", "{cell:?}");
    let creates = app.sims.sim.hosting.creates();
    assert_eq!(
        creates.len(),
        2,
        "{cell:?}: one new VPS created: {creates:?}"
    );
    let left = app.sims.sim.hosting.obox_nodes();
    assert_eq!(left.len(), 1, "{cell:?}: one VPS left: {left:?}");
    assert_eq!(
        Some(left[0].node_id.as_str()),
        r.node_id.as_deref(),
        "{cell:?}"
    );
    check_callbacks(&app, cell, "sub-1", &["active"], 1).await;
}

/// Waits until the user's VPN account holds the latest terms; returns its uuid.
async fn vpn_applied(app: &TestApp, cell: Cell) -> String {
    let store = app.store();
    let applied = wait_until(Duration::from_secs(20), || async {
        let r = store.vpn_of_user("u-1").await.unwrap().resource;
        r.is_some_and(|r| r.status == Status::Active && !r.vpn.is_pending())
    })
    .await;
    let r = store.vpn_of_user("u-1").await.unwrap().resource.unwrap();
    assert!(applied, "{cell:?}: VPN terms never applied: {r:?}");
    let uuid = r.vpn.vpn_user_id.clone().unwrap();
    let account = app.sims.sim.vpn.user(&uuid).expect("the account exists");
    assert_eq!(
        account.expire_at.timestamp(),
        r.vpn.expire_at.unwrap().timestamp(),
        "{cell:?}: the VPN manager holds our terms"
    );
    assert_eq!(
        app.sims.sim.vpn.users().len(),
        1,
        "{cell:?}: one account for the user"
    );
    uuid
}

async fn vpn_cell(b: Backend, cell: Cell) {
    let app = spawn(b).await;
    app.sims.subscribe_vpn("u-1", "sub-v", "premium");
    cell.arm(&app);
    let order = |tx: &str| {
        json!({"user_id": "u-1", "subscription_id": "sub-v", "app_source": "otun",
        "plan_tier": "premium", "channel": "stripe", "expire_days": 30, "channel_tx_id": tx})
    };

    let (status, body) = app
        .internal(Method::POST, "/api/internal/provision", Some(order("t1")))
        .await;
    answered(cell, "provision", status, &body);
    assert!(matches!(status, 200 | 202), "{cell:?}: {status} {body}");
    let first = vpn_applied(&app, cell).await;

    let (status, body) = user_read(&app, cell, "/api/v1/my/vpn").await;
    assert_eq!(
        (status, body["vpn_status"].as_str()),
        (200, Some("active")),
        "{cell:?}: {body}"
    );
    // The config is read live from the VPN manager: while it fails the read is refused
    // with 503 (two scripted faults), then answered.
    let mut config = (0, Value::Null);
    for _ in 0..3 {
        config = user_read(&app, cell, "/api/v1/my/vpn/subscribe").await;
        if config.0 == 200 {
            break;
        }
        assert_eq!(config.0, 503, "{cell:?}: {}", config.1);
    }
    assert_eq!(config.0, 200, "{cell:?}: config: {}", config.1);

    let (status, body) = app
        .internal(Method::POST, "/api/internal/provision", Some(order("t2")))
        .await;
    answered(cell, "renewal", status, &body);
    assert!(matches!(status, 200 | 202), "{cell:?}: {status} {body}");
    let renewed = vpn_applied(&app, cell).await;
    assert_eq!(
        first, renewed,
        "{cell:?}: the renewal extends the same account"
    );

    // Traffic metering: a pass whose read fails leaves the usage as it was and does not
    // fail the pass; a later pass records it.
    assert!(app.sims.sim.vpn.set_traffic_used(&renewed, USED_GIB << 30));
    let engine = app.running().state.app.engine.clone();
    let mut metered = Value::Null;
    for _ in 0..4 {
        let pass = engine.sync_vpn_traffic().await;
        let pass = pass.unwrap_or_else(|e| panic!("{cell:?}: a sync pass failed: {e}"));
        assert_eq!(pass.updated + pass.failed, 1, "{cell:?}: {pass:?}");
        metered = user_read(&app, cell, "/api/v1/my/vpn").await.1;
        if metered["vpn_user"]["traffic_used_gb"] == USED_GIB {
            break;
        }
    }
    assert_eq!(
        metered["vpn_user"]["traffic_used_gb"], USED_GIB,
        "{cell:?}: traffic never metered: {metered}"
    );

    let (status, body) = app
        .internal(
            Method::POST,
            "/api/internal/deprovision",
            Some(json!({"subscription_id": "sub-v"})),
        )
        .await;
    answered(cell, "deprovision", status, &body);
    assert_eq!(status, 200, "{cell:?}: {body}");
    let store = app.store();
    let deleted = wait_until(Duration::from_secs(20), || async {
        let r = store.vpn_of_user("u-1").await.unwrap().resource.unwrap();
        r.status == Status::Deleted
    })
    .await;
    assert!(deleted, "{cell:?}: the VPN user was never deleted");
    assert!(
        app.sims.sim.vpn.users().is_empty(),
        "{cell:?}: no account left"
    );
    // One `active` per order, then `deleted`.
    check_callbacks(&app, cell, "sub-v", &["active", "deleted"], 3).await;
}

/// Runs every cell, a few at a time, each on its own service and database.
async fn run_matrix<F, Fut>(b: Backend, ops: &[Op], cell: F)
where
    F: Fn(Backend, Cell) -> Fut,
    Fut: Future<Output = ()>,
{
    let cells = Cell::all(ops);
    assert_eq!(cells.len(), 1 + ops.len() * FAULTS.len());
    futures::stream::iter(cells)
        .map(|c| cell(b, c))
        .buffer_unordered(PARALLEL)
        .collect::<Vec<()>>()
        .await;
}

crate::on_both! {
    async fn every_hosting_call_under_every_fault(b: Backend) {
        run_matrix(b, &HOSTING_OPS, hosting_cell).await;
    }
}

crate::on_both! {
    async fn every_migration_call_under_every_fault(b: Backend) {
        run_matrix(b, &MIGRATION_OPS, migration_cell).await;
    }
}

crate::on_both! {
    async fn every_vpn_call_under_every_fault(b: Backend) {
        run_matrix(b, &VPN_OPS, vpn_cell).await;
    }
}

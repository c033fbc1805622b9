//! Chaos: mixed orders (hosting and VPN; provisions, renewals, deprovisions, users deleting
//! a node while it is created, nodes moved to another region, quantities lowered) against the simulators over HTTP, while service processes
//! are killed with SIGKILL at random and restarted; with one replica, with three on one
//! PostgreSQL, and with two against node agents that report ready themselves and listings
//! that do not echo our resource id. At the end, from the simulators' records and the database: every order
//! reached its final state, exactly one upstream node or VPN user per live resource and
//! none for deleted ones, no create repeated for a node (a migrated node made exactly one
//! more), no migration left running, every callback delivered in order
//! per subscription, nothing stuck in a transitional state.
//!
//! The short form runs in the normal suite (`CHAOS_ORDERS`, default 60, and 10 kills); the
//! long form is `CHAOS_ORDERS=300 CHAOS_KILLS=20 cargo test --test it chaos`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use fulfillment::domain::{Desired, ResourceKind, Status};
use fulfillment::sim::NodeTiming;
use futures::StreamExt;
use rand::Rng;

use crate::chaos_orders::{Client, Plan, run_order};
use crate::crash::{Service, free_port};
use crate::helpers::{Backend, SimServer, TestDb, wait_until};
use crate::on_both;

/// A lost answer (1.5 s) comes after the service's upstream timeout; a killed worker's
/// leases run out quickly.
const SERVICE_ENV: &[(&str, &str)] = &[("UPSTREAM_TIMEOUT_SECS", "1"), ("ENGINE_LEASE_SECS", "1")];

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Statuses reported for a subscription, with repeats of the same callback collapsed
/// (delivery is at least once: a process killed after the send, before recording it,
/// sends it again).
fn reported(sims: &SimServer, sub: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for c in sims.sim.subscriptions.callbacks_for(sub) {
        if seen.last() != Some(&c.status) {
            seen.push(c.status.clone());
        }
    }
    seen
}

/// How the simulated hosting service behaves in a run.
#[derive(Debug, Clone, Copy)]
struct Hosting {
    /// Node agents report ready themselves (racing the engine's polling, and kills).
    agents_report: bool,
    /// Listings carry our resource id (else the engine matches by subscription and user).
    echoes_resource_id: bool,
}

/// Readiness by polling only, listings that echo our id: the engine's own recovery of a
/// lost create answer is what finds the node (a node agent's report would mask it).
const POLLED: Hosting = Hosting {
    agents_report: false,
    echoes_resource_id: true,
};

pub(crate) async fn chaos(b: Backend, replicas: usize) {
    chaos_with(b, replicas, POLLED).await;
}

async fn chaos_with(b: Backend, replicas: usize, hosting: Hosting) {
    let orders = env_usize("CHAOS_ORDERS", 60);
    let kills = env_usize("CHAOS_KILLS", 10);
    let db = TestDb::new(b).await;
    // Nodes take longer to come up than the service waits for an answer, so a lost create
    // answer is noticed by the engine (not by the node agent's ready report) first.
    let sims = SimServer::start(NodeTiming {
        creating_ms: 1_200,
        installing_ms: 300,
        stats_interval_ms: 0,
        send_callbacks: hosting.agents_report,
        echo_resource_id: hosting.echoes_resource_id,
        ..NodeTiming::default()
    })
    .await;
    // Upstreams misbehave too: some calls fail, and some take effect but answer only after
    // the service gave up on them (the answer of a create is lost).
    sims.sim.faults.set_knobs(fulfillment::sim::Knobs {
        latency_ms: 20,
        failure_rate: 0.05,
        lost_response_rate: 0.08,
        hang_ms: 1_500,
        ..Default::default()
    });
    let ports: Vec<u16> = (0..replicas).map(|_| free_port()).collect();
    let mut services = Vec::new();
    for &port in &ports {
        services.push(Some(
            Service::start_with(&db, &sims, port, SERVICE_ENV).await,
        ));
    }
    let client = Arc::new(Client {
        http: fulfillment::upstream::http_client(Duration::from_secs(10)),
        ports: ports.clone(),
    });

    // The killer: SIGKILL a random replica now and then, and bring it back.
    let done = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (done, killed) = (done.clone(), killed.clone());
        let ports = ports.clone();
        let (db, sims) = (&db, &sims);
        let mut services = services;
        async move {
            while !done.load(Ordering::SeqCst) || killed.load(Ordering::SeqCst) < kills {
                tokio::time::sleep(Duration::from_millis(rand::rng().random_range(150..600))).await;
                let victim = rand::rng().random_range(0..ports.len());
                if let Some(s) = services[victim].take() {
                    s.kill();
                    killed.fetch_add(1, Ordering::SeqCst);
                }
                services[victim] =
                    Some(Service::start_with(db, sims, ports[victim], SERVICE_ENV).await);
            }
            services
        }
    };
    let work = {
        let client = client.clone();
        let done = done.clone();
        async move {
            let results: Vec<(String, Plan)> = futures::stream::iter(0..orders)
                .map(|i| {
                    let client = client.clone();
                    async move { run_order(&client, i).await }
                })
                .buffer_unordered(8)
                .collect()
                .await;
            done.store(true, Ordering::SeqCst);
            results
        }
    };
    let (services, results) = tokio::join!(killer, work);
    assert!(killed.load(Ordering::SeqCst) >= kills);
    let plans: HashMap<String, Plan> = results.into_iter().collect();

    // Everything settles: nothing transitional, every callback delivered.
    let store = db.store().await;
    let settled = wait_until(Duration::from_secs(120), || async {
        let mut all = Vec::new();
        for sub in plans.keys() {
            all.extend(store.resources_for_subscription(sub).await.unwrap());
        }
        let transitional = all.iter().any(|r| {
            matches!(
                r.status,
                Status::Pending | Status::Creating | Status::Deleting
            ) || r.migration.is_some()
                || r.retire_node_id.is_some()
                || (r.desired == Desired::Active
                    && r.kind == ResourceKind::VpnUser
                    && r.vpn.is_pending())
        });
        !transitional && store.outbox_backlog().await.unwrap() == 0
    })
    .await;
    assert!(settled, "work left in flight after 2 minutes");

    let nodes = sims.sim.hosting.obox_nodes();
    let mut nodes_by_resource: BTreeMap<String, usize> = BTreeMap::new();
    for n in &nodes {
        *nodes_by_resource.entry(n.resource_id.clone()).or_default() += 1;
    }
    let mut creates_by_resource: BTreeMap<String, usize> = BTreeMap::new();
    for c in sims.sim.hosting.creates() {
        *creates_by_resource
            .entry(c.resource_id.clone())
            .or_default() += 1;
    }
    // A migrated node made two VPSes (its first, and the one it moved to); any other one.
    let mut migrated = std::collections::HashSet::new();
    for (sub, plan) in &plans {
        if *plan == Plan::NodeMigrated {
            for r in store.resources_for_subscription(sub).await.unwrap() {
                migrated.insert(r.id.to_string());
            }
        }
    }
    creates_by_resource.retain(|id, n| *n > if migrated.contains(id) { 2 } else { 1 });
    assert!(
        creates_by_resource.is_empty(),
        "a node was created twice (resource id: creates): {creates_by_resource:?}"
    );
    let all_creates = sims.sim.hosting.creates();
    let creates_of = |id: &str| all_creates.iter().filter(|c| c.resource_id == id).count();
    let mut live_nodes = 0;
    for (sub, plan) in &plans {
        let resources = store.resources_for_subscription(sub).await.unwrap();
        let calls = reported(&sims, sub);
        match plan {
            Plan::NodeKept => {
                assert_eq!(resources.len(), 1, "{sub}: {resources:?}");
                let r = &resources[0];
                assert_eq!(r.status, Status::Active, "{sub}");
                assert_eq!(
                    nodes_by_resource.get(&r.id.to_string()),
                    Some(&1),
                    "{sub}: one node"
                );
                assert_eq!(calls, ["active"], "{sub}");
                live_nodes += 1;
            }
            Plan::NodeDeprovisioned | Plan::NodeDeletedByUser => {
                for r in &resources {
                    assert_eq!(r.status, Status::Deleted, "{sub}: {r:?}");
                    assert_eq!(
                        nodes_by_resource.get(&r.id.to_string()),
                        None,
                        "{sub}: no node left"
                    );
                }
                let reason = if *plan == Plan::NodeDeletedByUser {
                    "user_initiated"
                } else {
                    "subscription_cancelled"
                };
                assert_eq!(
                    calls.last().map(String::as_str),
                    Some("deleted"),
                    "{sub}: {calls:?}"
                );
                assert!(
                    calls == ["deleted"] || calls == ["active", "deleted"],
                    "{sub}: in order: {calls:?}"
                );
                let last = sims
                    .sim
                    .subscriptions
                    .callbacks_for(sub)
                    .last()
                    .cloned()
                    .unwrap();
                assert_eq!(last.reason.as_deref(), Some(reason), "{sub}");
            }
            Plan::VpnKept { orders } => {
                assert_eq!(resources.len(), 1, "{sub}: {resources:?}");
                let r = &resources[0];
                assert_eq!(r.status, Status::Active, "{sub}");
                let uuid = r.vpn.vpn_user_id.clone().unwrap();
                let user = sims
                    .sim
                    .vpn
                    .user(&uuid)
                    .unwrap_or_else(|| panic!("{sub}: account {uuid}"));
                assert_eq!(
                    user.expire_at.timestamp(),
                    r.vpn.expire_at.unwrap().timestamp(),
                    "{sub}: terms applied"
                );
                let all = sims.sim.subscriptions.callbacks_for(sub);
                assert!(all.iter().all(|c| c.status == "active"), "{sub}: {all:?}");
                let distinct = store.entitlements_for_subscription(sub).await.unwrap();
                assert_eq!(distinct.len(), *orders, "{sub}");
                assert!(
                    distinct.iter().all(|e| e.reported),
                    "{sub}: every order reported"
                );
                assert!(all.len() >= *orders, "{sub}: {all:?}");
            }
            Plan::NodeMigrated => {
                assert_eq!(resources.len(), 1, "{sub}: {resources:?}");
                let r = &resources[0];
                assert_eq!(
                    (r.status, r.region.as_str()),
                    (Status::Active, "eu-west-1"),
                    "{sub}"
                );
                let mine: Vec<_> = nodes
                    .iter()
                    .filter(|n| n.resource_id == r.id.to_string())
                    .collect();
                assert_eq!(mine.len(), 1, "{sub}: one VPS: {mine:?}");
                assert_eq!(
                    Some(mine[0].node_id.as_str()),
                    r.node_id.as_deref(),
                    "{sub}"
                );
                assert_eq!(mine[0].region, "eu-west-1", "{sub}");
                assert_eq!(creates_of(&r.id.to_string()), 2, "{sub}: one new VPS");
                assert_eq!(calls, ["active"], "{sub}");
                live_nodes += 1;
            }
            Plan::QuantityLowered => {
                assert_eq!(resources.len(), 2, "{sub}: {resources:?}");
                for r in &resources {
                    assert_eq!(r.status, Status::Active, "{sub}");
                    assert_eq!(
                        nodes_by_resource.get(&r.id.to_string()),
                        Some(&1),
                        "{sub}: one node each"
                    );
                }
                let named: std::collections::HashSet<_> = sims
                    .sim
                    .subscriptions
                    .callbacks_for(sub)
                    .into_iter()
                    .filter(|c| c.status == "active")
                    .filter_map(|c| c.resource_id)
                    .collect();
                assert_eq!(named.len(), 2, "{sub}: each node reported");
                assert_eq!(calls, ["active"], "{sub}");
                live_nodes += 2;
            }
            Plan::VpnDeprovisioned => {
                for r in &resources {
                    assert_eq!(r.status, Status::Deleted, "{sub}: {r:?}");
                    if let Some(uuid) = &r.vpn.vpn_user_id {
                        assert!(sims.sim.vpn.user(uuid).is_none(), "{sub}: account deleted");
                    }
                }
                assert_eq!(
                    calls.last().map(String::as_str),
                    Some("deleted"),
                    "{sub}: {calls:?}"
                );
                assert!(
                    calls == ["deleted"] || calls == ["active", "deleted"],
                    "{sub}: in order: {calls:?}"
                );
            }
        }
    }
    assert_eq!(nodes.len(), live_nodes, "no node without a live resource");
    let live_vpn = plans
        .values()
        .filter(|p| matches!(p, Plan::VpnKept { .. }))
        .count();
    assert_eq!(
        sims.sim.vpn.users().len(),
        live_vpn,
        "one account per live VPN user, none for deleted ones"
    );
    drop(services);
}

on_both! {
    async fn chaos_with_one_replica_killed_at_random(b: Backend) {
        chaos(b, 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_with_three_replicas_on_one_postgres() {
    chaos(Backend::Postgres, 3).await;
}

/// The hosting service as it may really be: node agents report ready themselves (racing
/// the engine's polls, a kill, and a user's delete), and listings do not echo our resource
/// id, so a lost create answer is recovered by matching subscription and user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_with_reporting_agents_and_listings_without_our_id() {
    let hosting = Hosting {
        agents_report: true,
        echoes_resource_id: false,
    };
    chaos_with(Backend::Postgres, 2, hosting).await;
}

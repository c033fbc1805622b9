//! Lifelines and fencing, on both databases: a dead owner's leases are free at once, a
//! live owner's are not, and a write from a claim that was taken over changes nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fulfillment::domain::Status;
use fulfillment::ports::store::{Change, Claim};

use crate::helpers::TestDb;
use crate::on_both;
use crate::store_conformance::{created, lease, order};

fn claim(owner: &str, now: DateTime<Utc>) -> Claim<'_> {
    Claim {
        owner,
        now,
        lease: Duration::from_secs(60),
        limit: 10,
    }
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

on_both! {
    async fn a_dead_owners_leases_are_free_at_once_and_a_live_owners_are_not(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        for (sub, user) in [("sub-l1", "u-l1"), ("sub-l2", "u-l2")] {
            created(store.insert_resource(&order(sub, user), now).await.unwrap());
        }
        let held = store.claim_resources(Claim { limit: 1, ..claim("alive", now) }).await.unwrap();
        let other = store.claim_resources(Claim { limit: 1, ..claim("dies", now) }).await.unwrap();
        assert_eq!((held.len(), other.len()), (1, 1));
        store.beat("alive", now, now + secs(3)).await.unwrap();
        store.beat("dies", now, now + secs(3)).await.unwrap();
        // Both beat: neither lease is free before it ends.
        assert!(store.claim_resources(claim("new", now + secs(1))).await.unwrap().is_empty());
        // One keeps beating, the other does not: its lease is free once it counts as dead,
        // 57 s before the lease itself would end.
        store.beat("alive", now + secs(2), now + secs(5)).await.unwrap();
        let taken = store.claim_resources(claim("new", now + secs(4))).await.unwrap();
        assert_eq!(taken.iter().map(|r| r.id).collect::<Vec<_>>(), vec![other[0].id]);
        // An owner that never beat holds its leases to their end, as before lifelines.
        let r = created(store.insert_resource(&order("sub-l3", "u-l3"), now).await.unwrap());
        store.claim_resource(r.id, claim("silent", now)).await.unwrap().unwrap();
        assert!(store.claim_resource(r.id, claim("new", now + secs(30))).await.unwrap().is_none());
        // The engine sleeps until a dead owner's leases are free, not until they end.
        let due = store.next_resource_due().await.unwrap().unwrap();
        assert!(due <= now + secs(5), "{due} vs {now}");
    }
}

on_both! {
    async fn a_write_from_a_claim_that_was_taken_over_changes_nothing(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        let r = created(store.insert_resource(&order("sub-f1", "u-f1"), now).await.unwrap());
        // w1 claims, stalls (its lifeline lapses), and w2 takes the row over.
        let first = store.claim_resource(r.id, claim("w1", now)).await.unwrap().unwrap();
        store.beat("w1", now, now + secs(1)).await.unwrap();
        let second = store.claim_resource(r.id, claim("w2", now + secs(2))).await.unwrap().unwrap();
        assert!(second.lease_epoch > first.lease_epoch);
        let mut late = Change::on(&first, lease("w1", &first), now + secs(3));
        late.status = Some(Status::Creating);
        assert!(!store.apply(&late).await.unwrap(), "the stalled step's write is refused");
        // w2 finishes its step and lets the row go; w1 wakes and claims it again: its old
        // step's write still names the old claim, and is still refused.
        let mut done = Change::on(&second, lease("w2", &second), now + secs(3));
        done.release_lease = true;
        done.next_step_at(now + secs(3));
        assert!(store.apply(&done).await.unwrap());
        store.beat("w1", now + secs(4), now + secs(10)).await.unwrap();
        let again = store.claim_resource(r.id, claim("w1", now + secs(4))).await.unwrap().unwrap();
        assert!(!store.apply(&late).await.unwrap(), "a write of an earlier claim of the same owner");
        let mut now_ok = Change::on(&again, lease("w1", &again), now + secs(5));
        now_ok.status = Some(Status::Creating);
        assert!(store.apply(&now_ok).await.unwrap());
        assert_eq!(store.resource(r.id).await.unwrap().unwrap().status, Status::Creating);
        // Old lifelines are purged.
        assert_eq!(store.purge_lifelines(now + secs(60)).await.unwrap(), 1, "w1's (w2 never beat)");
    }
}

/// A running service beats its lifeline while it works under a lease, and rests (one
/// write, "alive for a day") when it holds nothing: an idle service writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_beats_while_it_works_and_rests_when_idle() {
    use crate::helpers::{Backend, TestApp, wait_until};
    let app = TestApp::spawn(Backend::Postgres).await;
    let resting = "dead_at > now() + interval '12 hours'";
    let beating =
        "dead_at < now() + interval '10 seconds' and dead_at > now() - interval '5 seconds'";
    let rests = wait_until(Duration::from_secs(10), || async {
        app.db.count("lifelines", resting).await == 1
    })
    .await;
    assert!(rests, "an idle service rests its lifeline");
    // The create call hangs (3 s): a step is under way, under its lease.
    app.sims.sim.faults.script(
        fulfillment::sim::Op::CreateNode,
        [fulfillment::sim::Fault::Hang],
    );
    app.sims.subscribe("ll-1", "sub-ll1", "basic");
    let (_, order) = app.provision("ll-1", "sub-ll1").await;
    let beats = wait_until(Duration::from_secs(10), || async {
        app.db.count("lifelines", beating).await == 1
    })
    .await;
    assert!(beats, "a service working under a lease beats");
    app.wait_status(order["resource_id"].as_str().unwrap(), "active")
        .await;
    let rests = wait_until(Duration::from_secs(10), || async {
        app.db.count("lifelines", resting).await == 1
    })
    .await;
    assert!(rests, "it rests again once idle");
}

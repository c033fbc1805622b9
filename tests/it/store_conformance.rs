//! One conformance suite for the `Store` trait, run on PostgreSQL and on SQLite.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fulfillment::domain::progress::SubscriptionSnapshot;
use fulfillment::domain::{DeleteReason, Desired, EventKind, ResourceKind, Status};
use fulfillment::ports::FulfillmentCallback;
use fulfillment::store::{
    Attempts, Change, Claim, Guard, IdempotencyBegin, Inserted, NewEvent, NewResource, Store,
};
use uuid::Uuid;

use crate::helpers::TestDb;
use crate::on_both;

fn order(subscription: &str, user: &str) -> NewResource {
    NewResource {
        id: Uuid::now_v7(),
        kind: ResourceKind::HostingNode,
        subscription_id: subscription.into(),
        user_id: user.into(),
        user_email: None,
        order_key: format!("{subscription}|sub"),
        provider: "lightsail".into(),
        region: "us-east-1".into(),
        plan_tier: "premium".into(),
        traffic_limit: 42,
        actor: "test".into(),
    }
}

fn created(i: Inserted) -> fulfillment::domain::Resource {
    match i {
        Inserted::Created(r) => r,
        other => panic!("expected a new resource, got {other:?}"),
    }
}

fn claim(owner: &str, now: DateTime<Utc>) -> Claim<'_> {
    Claim {
        owner,
        now,
        lease: Duration::from_secs(30),
        limit: 10,
    }
}

fn callback(sub: &str, status: &str) -> FulfillmentCallback {
    FulfillmentCallback {
        subscription_id: sub.into(),
        app: "obox".into(),
        status: status.into(),
        reason: None,
        error: None,
        message: None,
    }
}

on_both! {
    async fn a_new_order_is_recorded_pending_with_its_first_event(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        let r = created(store.insert_resource(&order("sub-1", "u-1"), now).await.unwrap());
        assert_eq!((r.status, r.desired, r.phase, r.traffic_limit), (Status::Pending, Desired::Active, 1, 42));
        assert_eq!(store.resource(r.id).await.unwrap().as_ref(), Some(&r));
        let events = store.events(r.id).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].kind, events[0].actor.as_str()), (EventKind::ProvisionRequested, "test"));
        assert_eq!(store.resources_for_subscription("sub-1").await.unwrap(), vec![r.clone()]);
        assert_eq!(store.current_hosting_node("u-1").await.unwrap(), Some(r));
    }
}

on_both! {
    async fn one_live_node_per_subscription_and_per_user_is_a_database_rule(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        let first = created(store.insert_resource(&order("sub-1", "u-1"), now).await.unwrap());
        match store.insert_resource(&order("sub-1", "u-1"), now).await.unwrap() {
            Inserted::ExistingForSubscription(r) => assert_eq!(r.id, first.id),
            other => panic!("{other:?}"),
        }
        match store.insert_resource(&order("sub-2", "u-1"), now).await.unwrap() {
            Inserted::ExistingForUser(r) => assert_eq!(r.id, first.id),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.resources_for_subscription("sub-1").await.unwrap().len(), 1);
        assert!(store.resources_for_subscription("sub-2").await.unwrap().is_empty());
    }
}

on_both! {
    async fn concurrent_identical_orders_create_exactly_one_resource(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.insert_resource(&order("sub-c", "u-c"), Utc::now()).await.unwrap() })
            })
            .collect();
        let mut ids = std::collections::HashSet::new();
        let mut created = 0;
        for t in tasks {
            match t.await.unwrap() {
                Inserted::Created(r) => {
                    created += 1;
                    ids.insert(r.id);
                }
                Inserted::ExistingForSubscription(r) => {
                    ids.insert(r.id);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(created, 1);
        assert_eq!(ids.len(), 1);
    }
}

on_both! {
    async fn a_deletion_request_frees_the_slot_and_is_recorded_once(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        let r = created(store.insert_resource(&order("sub-1", "u-1"), now).await.unwrap());
        let d = store.request_deletion(r.id, DeleteReason::UserInitiated, "user", now).await.unwrap().unwrap();
        assert_eq!((d.desired, d.generation, d.delete_reason), (Desired::Deleted, 1, Some(DeleteReason::UserInitiated)));
        assert_eq!(d.next_attempt_at.map(|t| t.timestamp_millis()), Some(now.timestamp_millis()));
        let again = store.request_deletion(r.id, DeleteReason::Admin, "admin", now).await.unwrap().unwrap();
        assert_eq!((again.generation, again.delete_reason), (1, Some(DeleteReason::UserInitiated)));
        let kinds: Vec<_> = store.events(r.id).await.unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::ProvisionRequested, EventKind::DeleteRequested]);
        // The subscription may order a new node while the old one is being deleted.
        created(store.insert_resource(&order("sub-1", "u-1"), now).await.unwrap());
        assert!(store.request_deletion(Uuid::now_v7(), DeleteReason::Admin, "admin", now).await.unwrap().is_none());
    }
}

on_both! {
    async fn claims_lease_due_rows_to_one_owner_until_the_lease_expires(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        let a = created(store.insert_resource(&order("sub-a", "u-a"), now).await.unwrap());
        let later = now + chrono::Duration::milliseconds(1500);
        let b_ = created(store.insert_resource(&order("sub-b", "u-b"), later).await.unwrap());

        let got = store.claim_resources(claim("w1", now + chrono::Duration::milliseconds(1))).await.unwrap();
        assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a.id], "only what is due");
        let got = store.claim_resources(claim("w2", later)).await.unwrap();
        assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b_.id], "a leased row is skipped");
        assert!(store.claim_resources(claim("w3", later)).await.unwrap().is_empty());
        let expired = now + chrono::Duration::seconds(31);
        let got = store.claim_resources(claim("w3", expired)).await.unwrap();
        assert_eq!(got.len(), 1, "a's lease expired; b's has not");
        assert_eq!(got[0].id, a.id);
        assert!(store.next_resource_due().await.unwrap().is_some());
    }
}

on_both! {
    async fn a_change_applies_only_when_status_and_lease_match(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        created(store.insert_resource(&order("sub-1", "u-1"), now).await.unwrap());
        let r = store.claim_resources(claim("w1", now)).await.unwrap().remove(0);

        let mut wrong_owner = Change::on(&r, Guard::Lease("w2".into()), now);
        wrong_owner.status = Some(Status::Creating);
        assert!(!store.apply(&wrong_owner).await.unwrap());

        let mut wrong_status = Change::on(&r, Guard::Lease("w1".into()), now);
        wrong_status.expect = Status::Creating;
        wrong_status.status = Some(Status::Active);
        assert!(!store.apply(&wrong_status).await.unwrap());

        let mut c = Change::on(&r, Guard::Lease("w1".into()), now);
        c.status = Some(Status::Creating);
        c.phase = Some(2);
        c.node_id = Some("node-1".into());
        c.callback_token_hash = Some("digest".into());
        c.attempts = Attempts::Increment;
        c.events.push(NewEvent::new(EventKind::VpsCreateRequested, "engine"));
        c.callbacks.push(callback("sub-1", "active"));
        c.next_attempt_at = Some(Some(now + chrono::Duration::seconds(5)));
        c.release_lease = true;
        assert!(store.apply(&c).await.unwrap());

        let after = store.resource(r.id).await.unwrap().unwrap();
        assert_eq!((after.status, after.phase, after.attempts), (Status::Creating, 2, 1));
        assert_eq!(after.node_id.as_deref(), Some("node-1"));
        assert_eq!(store.node_owner("node-1").await.unwrap(), Some(r.id));
        assert_eq!(store.node_credential(r.id).await.unwrap().as_deref(), Some("digest"));
        assert_eq!(store.events(r.id).await.unwrap().len(), 2);
        assert_eq!(store.outbox_backlog().await.unwrap(), 1);
        // A lower phase never lowers it; the lease was released, so anyone may claim later.
        let mut lower = Change::on(&after, Guard::Unleased, now);
        lower.phase = Some(1);
        assert!(store.apply(&lower).await.unwrap());
        assert_eq!(store.resource(r.id).await.unwrap().unwrap().phase, 2);
    }
}

on_both! {
    async fn a_desire_changed_during_a_step_makes_the_row_due_at_once(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        created(store.insert_resource(&order("sub-1", "u-1"), now).await.unwrap());
        let r = store.claim_resources(claim("w1", now)).await.unwrap().remove(0);
        store.request_deletion(r.id, DeleteReason::SubscriptionCancelled, "subscription_service", now).await.unwrap();
        let mut c = Change::on(&r, Guard::Lease("w1".into()), now);
        c.status = Some(Status::Creating);
        c.next_attempt_at = Some(Some(now + chrono::Duration::hours(1)));
        c.release_lease = true;
        assert!(store.apply(&c).await.unwrap(), "progress is recorded even though the desire changed");
        let after = store.resource(r.id).await.unwrap().unwrap();
        assert_eq!(after.next_attempt_at.map(|t| t.timestamp_millis()), Some(now.timestamp_millis()));
        assert_eq!(after.desired, Desired::Deleted);
    }
}

on_both! {
    async fn callbacks_are_claimed_one_at_a_time_per_subscription_in_order(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        for (sub, user) in [("sub-1", "u-1"), ("sub-2", "u-2")] {
            let r = created(store.insert_resource(&order(sub, user), now).await.unwrap());
            for status in ["active", "deleted"] {
                let mut c = Change::on(&r, Guard::Unleased, now);
                c.callbacks.push(callback(sub, status));
                assert!(store.apply(&c).await.unwrap());
            }
        }
        let first = store.claim_outbox(claim("w1", now)).await.unwrap();
        let mut heads: Vec<_> = first.iter().map(|m| (m.subscription_id.as_str(), m.callback.status.as_str())).collect();
        heads.sort();
        assert_eq!(heads, [("sub-1", "active"), ("sub-2", "active")]);
        assert!(store.claim_outbox(claim("w2", now)).await.unwrap().is_empty(), "heads are leased, the rest wait");

        let (one, two) = (&first[0], &first[1]);
        store.outbox_delivered(one.id, "w1", now).await.unwrap();
        store.outbox_retry(two.id, "w1", now + chrono::Duration::seconds(60), "503").await.unwrap();
        let next = store.claim_outbox(claim("w2", now)).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!((next[0].subscription_id.as_str(), next[0].callback.status.as_str()), (one.subscription_id.as_str(), "deleted"));
        store.outbox_delivered(next[0].id, "w2", now).await.unwrap();
        let retried = store.claim_outbox(claim("w3", now + chrono::Duration::seconds(61))).await.unwrap();
        assert_eq!(retried.len(), 1);
        assert_eq!((retried[0].id, retried[0].attempts), (two.id, 1));
        assert_eq!(store.outbox_backlog().await.unwrap(), 2);
    }
}

on_both! {
    async fn the_last_active_subscription_survives_a_no_subscription_answer(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        assert!(store.subscription("u", "obox").await.unwrap().is_none());
        let snap = SubscriptionSnapshot {
            subscription_id: "sub".into(),
            status: "active".into(),
            plan_tier: "premium".into(),
            expires_at: Some(now),
            auto_renew: false,
        };
        assert_eq!(store.save_subscription("u", "obox", Some(&snap), now).await.unwrap(), Some(snap.clone()));
        assert_eq!(store.save_subscription("u", "obox", None, now).await.unwrap(), Some(snap.clone()));
        let stored = store.subscription("u", "obox").await.unwrap().unwrap();
        assert!(!stored.active);
        assert_eq!(stored.last_active.unwrap().subscription_id, "sub");
    }
}

on_both! {
    async fn idempotency_keys_replay_refuse_mismatches_and_report_in_flight(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        assert_eq!(store.idempotency_begin("p", "k", "f1", now).await.unwrap(), IdempotencyBegin::Proceed);
        assert_eq!(store.idempotency_begin("p", "k", "f1", now).await.unwrap(), IdempotencyBegin::InFlight);
        assert_eq!(store.idempotency_begin("p", "k", "f2", now).await.unwrap(), IdempotencyBegin::Mismatch);
        store.idempotency_finish("p", "k", 202, "{\"a\":1}").await.unwrap();
        assert_eq!(
            store.idempotency_begin("p", "k", "f1", now).await.unwrap(),
            IdempotencyBegin::Replay { status: 202, body: "{\"a\":1}".into() }
        );
        assert_eq!(store.idempotency_begin("p", "k2", "f", now).await.unwrap(), IdempotencyBegin::Proceed);
        store.idempotency_abandon("p", "k2").await.unwrap();
        assert_eq!(store.idempotency_begin("p", "k2", "f", now).await.unwrap(), IdempotencyBegin::Proceed);
        // A request that died holding its key releases it after a while.
        assert_eq!(store.idempotency_begin("p", "k3", "f", now).await.unwrap(), IdempotencyBegin::Proceed);
        let soon = now + chrono::Duration::seconds(30);
        assert_eq!(store.idempotency_begin("p", "k3", "f", soon).await.unwrap(), IdempotencyBegin::InFlight);
        let later = now + chrono::Duration::seconds(61);
        assert_eq!(store.idempotency_begin("p", "k3", "f", later).await.unwrap(), IdempotencyBegin::Proceed);
        assert_eq!(store.idempotency_begin("p", "k3", "f", later).await.unwrap(), IdempotencyBegin::InFlight);
    }
}

on_both! {
    async fn regions_are_seeded(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let regions = store.regions().await.unwrap();
        let codes: Vec<_> = regions.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["us-east-1", "us-west-2", "ap-northeast-1", "ap-southeast-1", "eu-west-1"]);
        assert!(regions.iter().all(|r| r.available && r.provider == "lightsail"));
        store.ping().await.unwrap();
    }
}

#[allow(dead_code)]
fn _assert_object_safe(_: &dyn Store) {}

on_both! {
    async fn concurrent_node_lookups_each_get_their_own_answer(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        let mut ids = std::collections::HashMap::new();
        for i in 0..40 {
            let r = created(store.insert_resource(&order(&format!("sub-{i}"), &format!("u-{i}")), now).await.unwrap());
            ids.insert(format!("u-{i}"), r.id);
        }
        // A deleted node is not "current".
        store.request_deletion(ids["u-0"], DeleteReason::Admin, "admin", now).await.unwrap();
        // Many at once (batched on PostgreSQL), some users twice, some with no node.
        let users: Vec<String> = (0..40).chain(0..10).chain(100..110).map(|i| format!("u-{i}")).collect();
        let lookups = users.iter().map(|u| {
            let store = store.clone();
            let u = u.clone();
            tokio::spawn(async move { (u.clone(), store.current_hosting_node(&u).await.unwrap()) })
        });
        let all = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(lookups));
        for joined in all.await.expect("no lookup is left waiting") {
            let (user, found) = joined.unwrap();
            let expected = ids.get(&user).filter(|_| user != "u-0");
            assert_eq!(found.as_ref().map(|r| r.id), expected.copied(), "{user}");
            if let Some(r) = found {
                assert_eq!(r.user_id, user);
            }
        }
    }
}

on_both! {
    async fn a_status_write_the_state_machine_forbids_is_refused(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        let r = created(store.insert_resource(&order("sub-1", "u-1"), now).await.unwrap());
        let mut c = Change::on(&r, Guard::Unleased, now);
        c.status = Some(Status::Active);
        assert!(store.apply(&c).await.is_err(), "pending -> active skips creating");
        assert_eq!(store.resource(r.id).await.unwrap().unwrap().status, Status::Pending);
    }
}

//! One conformance suite for the `Store` trait, run on PostgreSQL and on SQLite.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fulfillment::domain::entitlement::{Entitlement, EntitlementStatus, OrderTerms};
use fulfillment::domain::expiry::OrderKind;
use fulfillment::domain::progress::SubscriptionSnapshot;
use fulfillment::domain::slots::SlotChoice;
use fulfillment::domain::vpn_order::UpstreamExpiry;
use fulfillment::domain::{DeleteReason, Desired, EventKind, Phase, ResourceKind, Status};
use fulfillment::ports::FulfillmentCallback;
use fulfillment::ports::store::{
    Attempts, Change, Claim, EntitlementFilter, Guard, IdempotencyBegin, Inserted, NewEvent,
    NewResource, Store, VpnOrder, VpnOrderOutcome,
};
use uuid::Uuid;

use crate::helpers::TestDb;
use crate::on_both;

pub(crate) fn order(subscription: &str, user: &str) -> NewResource {
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
        slots: SlotChoice::UpTo(1),
        recovered_node: None,
    }
}

pub(crate) fn order_up_to(subscription: &str, user: &str, limit: u32) -> NewResource {
    NewResource {
        slots: SlotChoice::UpTo(limit),
        recovered_node: None,
        ..order(subscription, user)
    }
}

pub(crate) fn created(i: Inserted) -> fulfillment::domain::Resource {
    match i {
        Inserted::Created(r) => *r,
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

/// The guard of a worker's write under its claim of `r`.
pub(crate) fn lease(owner: &str, r: &fulfillment::domain::Resource) -> Guard {
    Guard::Lease {
        owner: owner.into(),
        epoch: r.lease_epoch,
    }
}

pub(crate) fn callback(sub: &str, status: &str) -> FulfillmentCallback {
    FulfillmentCallback {
        subscription_id: sub.into(),
        app: "obox".into(),
        status: status.into(),
        reason: None,
        error: None,
        message: None,
        resource_id: None,
    }
}

on_both! {
    async fn a_new_order_is_recorded_pending_with_its_first_event(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        let r = created(store.insert_resource(&order("sub-1", "u-1"), now).await.unwrap());
        assert_eq!((r.status, r.desired, r.phase, r.traffic_limit), (Status::Pending, Desired::Active, Phase::Ordered, 42));
        assert_eq!(store.resource(r.id).await.unwrap().as_ref(), Some(&r));
        let events = store.events(r.id).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].kind, events[0].actor.as_str()), (EventKind::ProvisionRequested, "test"));
        assert_eq!(store.resources_for_subscription("sub-1").await.unwrap(), vec![r.clone()]);
        assert_eq!(store.current_hosting_node("u-1").await.unwrap(), Some(r));
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

        let mut wrong_owner = Change::on(&r, lease("w2", &r), now);
        wrong_owner.status = Some(Status::Creating);
        assert!(!store.apply(&wrong_owner).await.unwrap());

        let mut wrong_status = Change::on(&r, lease("w1", &r), now);
        wrong_status.expect = Status::Creating;
        wrong_status.status = Some(Status::Active);
        assert!(!store.apply(&wrong_status).await.unwrap());

        let mut c = Change::on(&r, lease("w1", &r), now);
        c.status = Some(Status::Creating);
        c.phase = Some(Phase::VpsRequested);
        c.node_id = Some("node-1".into());
        c.callback_token_hash = Some("digest".into());
        c.attempts = Attempts::Increment;
        c.events.push(NewEvent::new(EventKind::VpsCreateRequested, "engine"));
        c.callbacks.push(callback("sub-1", "active"));
        c.next_step_at(now + chrono::Duration::seconds(5));
        c.release_lease = true;
        assert!(store.apply(&c).await.unwrap());

        let after = store.resource(r.id).await.unwrap().unwrap();
        assert_eq!((after.status, after.phase, after.attempts), (Status::Creating, Phase::VpsRequested, 1));
        assert_eq!(after.node_id.as_deref(), Some("node-1"));
        assert_eq!(store.node_owner("node-1").await.unwrap(), Some(r.id));
        assert_eq!(store.node_credential(r.id).await.unwrap().current.as_deref(), Some("digest"));
        assert_eq!(store.events(r.id).await.unwrap().len(), 2);
        assert_eq!(store.outbox_backlog().await.unwrap(), 1);
        // A lower phase never lowers it; the lease was released, so anyone may claim later.
        let mut lower = Change::on(&after, Guard::Unleased, now);
        lower.phase = Some(Phase::Ordered);
        assert!(store.apply(&lower).await.unwrap());
        assert_eq!(store.resource(r.id).await.unwrap().unwrap().phase, Phase::VpsRequested);
    }
}

on_both! {
    async fn a_change_that_sets_every_column_writes_each_value_to_its_own_column(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        created(store.insert_resource(&order("sub-1", "u-1"), now).await.unwrap());
        let r = store.claim_resources(claim("w1", now)).await.unwrap().remove(0);
        let at = |s: i64| now + chrono::Duration::seconds(s);
        let ms = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_millis());
        // Every value is distinct, so a value bound to another column's place shows.
        let mut c = Change::on(&r, lease("w1", &r), now);
        c.expect_desired = Some(Desired::Active);
        c.status = Some(Status::Creating);
        c.node_id = Some("node-7".into());
        c.phase = Some(Phase::Installing);
        c.connection = Some(fulfillment::domain::Connection {
            public_ip: Some("203.0.113.9".into()),
            api_port: Some(8101),
            api_key: Some("key-7".into()),
            vless_port: Some(8102),
            ss_port: Some(8103),
            public_key: Some("pub-7".into()),
            short_id: Some("short-7".into()),
        });
        c.error_message = Some("error-7".into());
        c.last_error = Some("last-7".into());
        c.callback_token_hash = Some("hash-7".into());
        c.upstream_released = Some(true);
        c.traffic_limit = Some(7_000);
        c.ready_at = Some(at(11));
        c.deadline(at(22));
        c.attempts = Attempts::Increment;
        c.next_step_at(at(33));
        c.vpn_user_id = Some("uuid-7".into());
        c.applied_version = Some(5);
        c.release_lease = true;
        assert!(store.apply(&c).await.unwrap());
        let a = store.resource(r.id).await.unwrap().unwrap();
        assert_eq!((a.status, a.phase, a.attempts), (Status::Creating, Phase::Installing, 1));
        assert_eq!(a.node_id.as_deref(), Some("node-7"));
        let conn = &a.connection;
        assert_eq!(conn.public_ip.as_deref(), Some("203.0.113.9"));
        assert_eq!((conn.api_port, conn.vless_port, conn.ss_port), (Some(8101), Some(8102), Some(8103)));
        assert_eq!(conn.api_key.as_deref(), Some("key-7"));
        assert_eq!(conn.public_key.as_deref(), Some("pub-7"));
        assert_eq!(conn.short_id.as_deref(), Some("short-7"));
        assert_eq!(a.error_message.as_deref(), Some("error-7"));
        assert_eq!(a.last_error.as_deref(), Some("last-7"));
        assert_eq!(store.node_credential(r.id).await.unwrap().current.as_deref(), Some("hash-7"));
        assert!(a.upstream_released);
        assert_eq!(a.traffic_limit, 7_000);
        assert_eq!(ms(a.ready_at), ms(Some(at(11))));
        assert_eq!(ms(a.deadline_at), ms(Some(at(22))));
        assert_eq!(ms(a.next_attempt_at), ms(Some(at(33))));
        assert_eq!(a.vpn.vpn_user_id.as_deref(), Some("uuid-7"));
        assert_eq!(a.vpn.applied_version, 5);
        assert_eq!(a.updated_at.timestamp_millis(), now.timestamp_millis());
        // The lease went back: another worker's claim takes the row once it is due.
        let later = store.claim_resources(claim("w2", at(34))).await.unwrap();
        assert_eq!(later.iter().map(|r| r.id).collect::<Vec<_>>(), vec![r.id]);
        // What a change leaves out stays; clearing the deadline is a value of its own.
        let mut clear = Change::on(&later[0], lease("w2", &later[0]), at(35));
        clear.clear_deadline();
        assert!(store.apply(&clear).await.unwrap());
        let b = store.resource(r.id).await.unwrap().unwrap();
        assert_eq!(b.deadline_at, None);
        assert_eq!(b.node_id.as_deref(), Some("node-7"));
        assert_eq!(b.connection, a.connection);
        assert_eq!(ms(b.next_attempt_at), ms(Some(at(33))));
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
        let mut c = Change::on(&r, lease("w1", &r), now);
        c.status = Some(Status::Creating);
        c.next_step_at(now + chrono::Duration::hours(1));
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
        store.outbox_delivered(&[one.id], "w1", now).await.unwrap();
        store.outbox_retry(two.id, "w1", now + chrono::Duration::seconds(60), "503").await.unwrap();
        let next = store.claim_outbox(claim("w2", now)).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!((next[0].subscription_id.as_str(), next[0].callback.status.as_str()), (one.subscription_id.as_str(), "deleted"));
        store.outbox_delivered(&[next[0].id], "w2", now).await.unwrap();
        let retried = store.claim_outbox(claim("w3", now + chrono::Duration::seconds(61))).await.unwrap();
        assert_eq!(retried.len(), 1);
        assert_eq!((retried[0].id, retried[0].attempts), (two.id, 1));
        assert_eq!(store.outbox_backlog().await.unwrap(), 2);

        // A burst is recorded in one statement, and only what the owner still leases.
        let heads = store.claim_outbox(claim("w4", now + chrono::Duration::seconds(3600))).await.unwrap();
        let ids: Vec<i64> = heads.iter().map(|m| m.id).collect();
        assert_eq!(ids.len(), 1, "sub-2's head: {heads:?}");
        store.outbox_delivered(&ids, "not-the-owner", now).await.unwrap();
        assert_eq!(store.outbox_backlog().await.unwrap(), 2, "a stranger's record changes nothing");
        store.outbox_delivered(&[ids[0], 999_999], "w4", now).await.unwrap();
        assert_eq!(store.outbox_backlog().await.unwrap(), 1);
        store.outbox_delivered(&[], "w4", now).await.unwrap();
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
            quantity: None,
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

/// A fixed, whole-second "now" (both databases store it exactly).
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 0).unwrap()
}

fn vpn_order(user: &str, key: Option<&str>, kind: OrderKind) -> VpnOrder {
    VpnOrder {
        upstream_expiry: UpstreamExpiry::Asked(None),
        resource_id: Uuid::now_v7(),
        entitlement_id: Uuid::now_v7(),
        user_id: user.into(),
        email: Some(format!("{user}@example.com")),
        subscription_id: key.map(|k| format!("sub-{k}")),
        order_key: key.map(str::to_owned),
        channel: "stripe".into(),
        business_type: "subscription".into(),
        plan_tier: "premium".into(),
        service_tier: "premium".into(),
        terms: OrderTerms {
            kind,
            days: 30,
            traffic_limit: 500,
        },
        is_trial: false,
        traffic_reset: Default::default(),
        device_id: None,
        note: None,
        actor: "test".into(),
        due_at: now(),
    }
}

fn recorded(o: VpnOrderOutcome) -> (Entitlement, fulfillment::domain::Resource) {
    match o {
        VpnOrderOutcome::Recorded {
            entitlement,
            resource,
        } => (entitlement, resource),
        other => panic!("expected a recorded order, got {other:?}"),
    }
}

on_both! {
    async fn vpn_orders_are_recorded_once_and_renewals_demote_the_current_one(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let (first, r1) = recorded(store.record_vpn_order(&vpn_order("u", Some("k1"), OrderKind::Paid), now()).await.unwrap());
        assert_eq!((r1.status, r1.kind, r1.vpn.spec_version, r1.vpn.applied_version), (Status::Pending, ResourceKind::VpnUser, 1, 0));
        assert!(first.is_current && !first.reported);
        assert_eq!(r1.vpn.expire_at, Some(now() + chrono::Duration::days(30)));

        let again = store.record_vpn_order(&vpn_order("u", Some("k1"), OrderKind::Paid), now()).await.unwrap();
        assert!(matches!(again, VpnOrderOutcome::Duplicate { ref entitlement, .. } if entitlement.id == first.id), "{again:?}");

        let (second, r2) = recorded(store.record_vpn_order(&vpn_order("u", Some("k2"), OrderKind::Paid), now()).await.unwrap());
        assert_eq!(r2.id, r1.id, "one VPN user per user");
        assert_eq!(r2.vpn.spec_version, 2);
        assert_eq!(r2.vpn.expire_at, Some(now() + chrono::Duration::days(60)), "paid after paid stacks");
        assert_eq!(second.spec_version, 2);
        let history = store.entitlements(&EntitlementFilter { user_id: Some("u".into()), limit: 10, ..Default::default() }, now()).await.unwrap();
        let old = history.iter().find(|e| e.id == first.id).unwrap();
        assert_eq!((old.is_current, old.status), (false, EntitlementStatus::Superseded));
        assert_eq!(history.iter().filter(|e| e.is_current).count(), 1);

        // Once the VPN manager holds the account, a paid order must stack on its expiry:
        // the store asks for it and writes nothing until it has it.
        let mut held = Change::on(&r2, Guard::Unleased, now());
        held.vpn_user_id = Some("vpn-uuid".into());
        assert!(store.apply(&held).await.unwrap());
        let unasked = VpnOrder { upstream_expiry: UpstreamExpiry::NotAsked, ..vpn_order("u", Some("k3"), OrderKind::Paid) };
        let asked = store.record_vpn_order(&unasked, now()).await.unwrap();
        assert_eq!(asked, VpnOrderOutcome::AskUpstream { vpn_user_id: "vpn-uuid".into() });
        assert_eq!(store.resource(r1.id).await.unwrap().unwrap().vpn.spec_version, 2, "nothing written");
        let upstream = now() + chrono::Duration::days(90);
        let answered = VpnOrder { upstream_expiry: UpstreamExpiry::Asked(Some(upstream)), ..unasked };
        let (_, r3) = recorded(store.record_vpn_order(&answered, now()).await.unwrap());
        assert_eq!(r3.vpn.expire_at, Some(upstream + chrono::Duration::days(30)), "stacked on the VPN manager's expiry");

        // Each order is reported once the VPN manager holds its version, and only once.
        let reported = |version| {
            let mut c = Change::on(&r2, Guard::Unleased, now());
            c.report_through = Some(version);
            c
        };
        let subscriptions = || async {
            let calls = store.callbacks_of(&r1.id.to_string(), 10).await.unwrap();
            calls.iter().map(|c| (c.message.subscription_id.clone(), c.message.callback.status.clone())).collect::<Vec<_>>()
        };
        assert!(store.apply(&reported(1)).await.unwrap());
        assert_eq!(subscriptions().await, vec![("sub-k1".to_string(), "active".to_string())]);
        assert!(store.apply(&reported(2)).await.unwrap());
        assert!(store.apply(&reported(2)).await.unwrap());
        let mut both = subscriptions().await;
        both.sort();
        assert_eq!(both, vec![("sub-k1".to_string(), "active".to_string()), ("sub-k2".to_string(), "active".to_string())]);
    }
}

on_both! {
    async fn the_schema_itself_allows_one_current_entitlement_and_one_trial(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let mut trial = vpn_order("t", Some("trial-1"), OrderKind::Free);
        trial.is_trial = true;
        trial.device_id = Some("dev".into());
        let (e, r) = recorded(store.record_vpn_order(&trial, now()).await.unwrap());
        let insert = |id: &str, user: &str, current: bool, trial: bool, device: &str, email: &str| format!(
            "insert into entitlements (id, user_id, resource_id, channel, business_type, plan_tier, \
             service_tier, traffic_limit, expire_at, email, device_id, is_trial, is_current, status, \
             spec_version, reported, created_at, updated_at) values ('{id}', '{user}', '{}', 'x', 'x', \
             'x', 'x', 1, '2030-01-01T00:00:00Z', '{email}', '{device}', {trial}, {current}, 'active', 1, \
             true, '2030-01-01T00:00:00Z', '2030-01-01T00:00:00Z')", r.id);
        for (sql, why) in [
            (insert("a", "t", true, false, "d-a", "a@x"), "a second current entitlement"),
            (insert("b", "t", false, true, "d-b", "b@x"), "a second trial for the user"),
            (insert("c", "other", false, true, "dev", "c@x"), "a second trial on the device"),
            (insert("d", "other", false, true, "d-d", "T@EXAMPLE.COM"), "a second trial for the email"),
        ] {
            let err = db.exec(&sql).await.expect_err(why);
            assert!(err.to_lowercase().contains("unique"), "{why}: {err}");
        }
        db.exec(&insert("e", "other", false, true, "d-e", "e@x")).await.expect("another user's own trial");
        assert!(e.is_trial);
        let mut again = vpn_order("t2", Some("trial-2"), OrderKind::Free);
        again.is_trial = true;
        again.device_id = Some("dev".into());
        assert_eq!(store.record_vpn_order(&again, now()).await.unwrap(), VpnOrderOutcome::TrialUsed);
    }
}

on_both! {
    async fn traffic_sync_pages_and_batches_and_jobs_run_on_one_worker(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let mut ids = Vec::new();
        for i in 0..5 {
            let (_, r) = recorded(store.record_vpn_order(&vpn_order(&format!("u{i}"), Some(&format!("k{i}")), OrderKind::Paid), now()).await.unwrap());
            let r = store.claim_resource(r.id, claim("w", now())).await.unwrap().unwrap();
            let mut c = Change::on(&r, lease("w", &r), now());
            c.status = Some(Status::Creating);
            assert!(store.apply(&c).await.unwrap());
            let r = store.resource(r.id).await.unwrap().unwrap();
            let mut c = Change::on(&r, lease("w", &r), now());
            c.status = Some(Status::Active);
            c.vpn_user_id = Some(format!("uuid-{i}"));
            c.applied_version = Some(1);
            c.release_lease = true;
            assert!(store.apply(&c).await.unwrap());
            ids.push(r.id);
        }
        ids.sort();
        let first = store.vpn_sync_page(None, 3, now()).await.unwrap();
        let rest = store.vpn_sync_page(Some(first[2].0), 3, now()).await.unwrap();
        assert_eq!((first.len(), rest.len()), (3, 2));
        assert_eq!(first.iter().chain(&rest).map(|(id, _, _)| *id).collect::<Vec<_>>(), ids);
        // Expired accounts are not read.
        assert!(store.vpn_sync_page(None, 10, now() + chrono::Duration::days(31)).await.unwrap().is_empty());

        let usage: Vec<(Uuid, i64)> = ids.iter().enumerate().map(|(i, id)| (*id, 1000 * i as i64)).collect();
        store.record_vpn_usage(&usage, now()).await.unwrap();
        for (id, used) in &usage {
            let r = store.resource(*id).await.unwrap().unwrap();
            assert_eq!((r.traffic_used, r.vpn.traffic_synced_at), (*used, Some(now())));
        }

        let job = |owner: &'static str, at: DateTime<Utc>| Claim { owner, now: at, lease: Duration::from_secs(60), limit: 1 };
        // Not seen before and first due in a minute: not yet.
        assert!(!store.claim_job("later", now() + chrono::Duration::minutes(1), job("a", now())).await.unwrap());
        assert!(store.claim_job("later", now(), job("a", now() + chrono::Duration::minutes(2))).await.unwrap());
        assert!(store.claim_job("sync", now(), job("a", now())).await.unwrap());
        assert!(!store.claim_job("sync", now(), job("b", now())).await.unwrap(), "held by a");
        store.finish_job("sync", "a", now() + chrono::Duration::minutes(5), "ok").await.unwrap();
        assert!(!store.claim_job("sync", now(), job("b", now())).await.unwrap(), "not due yet");
        assert!(store.claim_job("sync", now(), job("b", now() + chrono::Duration::minutes(6))).await.unwrap());
    }
}

on_both! {
    async fn a_lease_is_extended_only_by_its_owner(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let r = created(store.insert_resource(&order("sub-l", "u-l"), now()).await.unwrap());
        let claimed = store.claim_resources(claim("a", now())).await.unwrap();
        assert_eq!(claimed.len(), 1);
        let later = now() + chrono::Duration::seconds(45);
        assert!(store.extend_lease(r.id, "a", later + chrono::Duration::seconds(30)).await.unwrap());
        assert!(!store.extend_lease(r.id, "b", later).await.unwrap(), "not b's lease");
        // Past the first lease (30 s) but within the extension: nobody else may claim it.
        assert!(store.claim_resources(claim("b", later)).await.unwrap().is_empty());
        assert_eq!(store.claim_resources(claim("b", later + chrono::Duration::seconds(31))).await.unwrap().len(), 1);
    }
}

on_both! {
    async fn the_users_with_newer_history_are_read_from_where_the_last_read_ended(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        let a = created(store.insert_resource(&order("sub-a", "user-a"), now).await.unwrap());
        let (start, none) = store.users_with_events_after(None, 100).await.unwrap();
        assert!(none.is_empty(), "without a place to start, only where the history ends");
        assert!(start > 0, "the insert recorded an event");
        let b_ = created(store.insert_resource(&order("sub-b", "user-b"), now).await.unwrap());
        let event = NewEvent::new(EventKind::NodeReady, "test");
        store.append_event(a.id, &event, now).await.unwrap();
        store.append_event(a.id, &event, now).await.unwrap();
        let (end, users) = store.users_with_events_after(Some(start), 100).await.unwrap();
        assert_eq!(users, vec!["user-a".to_string(), "user-b".to_string()], "each user once");
        assert!(end > start);
        assert_eq!(store.users_with_events_after(Some(end), 100).await.unwrap(), (end, Vec::new()));
        let (first, one) = store.users_with_events_after(Some(start), 1).await.unwrap();
        assert_eq!(one, vec!["user-b".to_string()], "at most `limit` events, oldest first: {}", b_.id);
        assert!(first > start && first < end);
    }
}

//! The store's rules for several nodes per subscription, run on PostgreSQL and on SQLite:
//! at most N live nodes (numbered slots under a unique index), hosting orders recorded
//! once with their nodes, the latest quantity as the limit, and subscriptions over it.

use chrono::Utc;
use fulfillment::domain::DeleteReason;
use fulfillment::ports::store::{HostingOrder, Inserted, NewResource, NodesOf, OverLimit};

use crate::helpers::TestDb;
use crate::on_both;
use crate::store_conformance::{created, order, order_up_to};

on_both! {
    async fn at_most_n_live_nodes_per_subscription_is_a_database_rule(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        let mut made = Vec::new();
        for i in 0..3 {
            let at = now + chrono::Duration::seconds(i);
            made.push(created(store.insert_resource(&order_up_to("sub-1", "u-1", 3), at).await.unwrap()));
        }
        let slots: Vec<_> = made.iter().map(|r| r.slot).collect();
        assert_eq!(slots, vec![Some(1), Some(2), Some(3)]);
        let ids = |rs: &[fulfillment::domain::Resource]| rs.iter().map(|r| r.id).collect::<Vec<_>>();
        match store.insert_resource(&order_up_to("sub-1", "u-1", 3), now).await.unwrap() {
            Inserted::Full(live) => assert_eq!(ids(&live), ids(&made)),
            other => panic!("{other:?}"),
        }
        // Slot 1 only: taken.
        match store.insert_resource(&order("sub-1", "u-1"), now).await.unwrap() {
            Inserted::Full(live) => assert_eq!(live.len(), 3),
            other => panic!("{other:?}"),
        }
        // The same user on another subscription has slots of its own.
        created(store.insert_resource(&order("sub-2", "u-1"), now + chrono::Duration::seconds(9)).await.unwrap());
        assert_eq!(store.resources_for_subscription("sub-1").await.unwrap().len(), 3);
        // The user's node is the oldest; the list is oldest first.
        assert_eq!(store.current_hosting_node("u-1").await.unwrap().map(|r| r.id), Some(made[0].id));
        let mine = store.live_nodes(NodesOf::User("u-1")).await.unwrap();
        assert_eq!(mine.len(), 4);
        assert_eq!(mine[0].id, made[0].id);
        // A deleted node frees its slot, and the next insert takes exactly that one.
        store.request_deletion(made[1].id, DeleteReason::UserInitiated, "user", now).await.unwrap();
        let again = created(store.insert_resource(&order_up_to("sub-1", "u-1", 3), now).await.unwrap());
        assert_eq!(again.slot, Some(2));
    }
}

on_both! {
    async fn fifty_concurrent_creates_at_the_limit_end_with_exactly_n(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.insert_resource(&order_up_to("sub-c", "u-c", 3), Utc::now()).await.unwrap() })
            })
            .collect();
        let (mut created, mut full) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Inserted::Created(_) => created += 1,
                Inserted::Full(live) => {
                    assert!(live.len() <= 3);
                    full += 1;
                }
            }
        }
        assert_eq!((created, full), (3, 47));
        assert_eq!(db.count("resources", "subscription_id = 'sub-c'").await, 3);
    }
}

fn hosting_order(key: &str, quantity: u32, plan: &str) -> HostingOrder {
    HostingOrder {
        order_key: key.into(),
        subscription_id: "sub-o".into(),
        user_id: "u-o".into(),
        quantity,
        plan_tier: plan.into(),
        nodes: (0..quantity)
            .map(|_| NewResource {
                plan_tier: plan.into(),
                order_key: key.into(),
                ..order_up_to("sub-o", "u-o", quantity)
            })
            .collect(),
        migration_deadline: Utc::now() + chrono::Duration::minutes(10),
    }
}

on_both! {
    async fn a_hosting_order_is_recorded_once_with_its_nodes_and_its_quantity_is_the_limit(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        let first = store.record_hosting_order(&hosting_order("k1", 2, "premium"), now).await.unwrap();
        assert!(first.new_order);
        assert_eq!((first.created.len(), first.live.len()), (2, 2));
        let latest = store.latest_order("sub-o").await.unwrap().unwrap();
        assert_eq!((latest.quantity, latest.plan_tier.as_str()), (2, "premium"));
        // A repeat changes nothing, even after a node was deleted.
        store.request_deletion(first.created[0], DeleteReason::UserInitiated, "user", now).await.unwrap();
        let repeat = store.record_hosting_order(&hosting_order("k1", 2, "premium"), now).await.unwrap();
        assert!(!repeat.new_order);
        assert!(repeat.created.is_empty());
        assert_eq!(repeat.live.len(), 1);
        // A new order for three fills the missing slots.
        let more = store.record_hosting_order(&hosting_order("k2", 3, "premium"), now).await.unwrap();
        assert_eq!((more.created.len(), more.live.len()), (2, 3));
        assert_eq!(store.latest_order("sub-o").await.unwrap().map(|o| o.quantity), Some(3));
        assert!(store.over_node_limit(10).await.unwrap().is_empty());
        // A lower quantity deletes nothing: the subscription is over its limit.
        let fewer = store.record_hosting_order(&hosting_order("k3", 1, "premium"), now).await.unwrap();
        assert_eq!((fewer.created.len(), fewer.live.len()), (0, 3));
        let over = store.over_node_limit(10).await.unwrap();
        let expected = OverLimit { subscription_id: "sub-o".into(), user_id: "u-o".into(), live_nodes: 3, node_limit: 1 };
        assert_eq!(over, vec![expected]);
        assert_eq!(db.count("hosting_orders", "subscription_id = 'sub-o'").await, 3);
    }
}

on_both! {
    async fn concurrent_deliveries_of_one_order_make_its_nodes_once(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.record_hosting_order(&hosting_order("k1", 3, "basic"), Utc::now()).await.unwrap() })
            })
            .collect();
        let mut created = 0;
        for t in tasks {
            let r = t.await.unwrap();
            assert_eq!(r.live.len(), 3);
            created += r.created.len();
        }
        assert_eq!(created, 3);
        assert_eq!(db.count("resources", "subscription_id = 'sub-o'").await, 3);
    }
}

on_both! {
    async fn a_migration_write_sets_each_column_and_is_guarded_by_the_status_it_expects(b: Backend) {
        use fulfillment::domain::migration::{Migration, MigrationStatus};
        use fulfillment::domain::{Connection, Desired, Status};
        use fulfillment::ports::store::{Change, Guard};
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        let at = |s: i64| now + chrono::Duration::seconds(s);
        let ms = |t: chrono::DateTime<Utc>| t.timestamp_millis();
        let mut r = created(store.insert_resource(&order("sub-1", "u-1"), now).await.unwrap());
        for to in [Status::Creating, Status::Active] {
            let mut c = Change::on(&r, Guard::Unleased, now);
            c.status = Some(to);
            c.node_id = Some("node-old".into());
            c.connection = Some(Connection { public_ip: Some("198.51.100.1".into()), api_key: Some("k-old".into()),
                short_id: Some("s-old".into()), ..Default::default() });
            assert!(store.apply(&c).await.unwrap());
            r = store.resource(r.id).await.unwrap().unwrap();
        }
        // Every value distinct, so a value bound to another column's place shows.
        let m = Migration {
            status: MigrationStatus::Requested,
            to_region: "region-9".into(),
            to_plan_tier: "plan-9".into(),
            node_id: Some("node-9".into()),
            token_hash: Some("hash-9".into()),
            started_at: at(1),
            deadline_at: at(2),
            error_message: Some("error-9".into()),
            actor: "actor-9".into(),
        };
        let mut c = Change::on(&r, Guard::Unleased, now);
        c.expect_desired = Some(Desired::Active);
        c.migrate(&r, Some(m.clone()));
        c.retire_node_id = Some(Some("node-retired".into()));
        c.bump_generation = true;
        assert!(store.apply(&c).await.unwrap());
        let a = store.resource(r.id).await.unwrap().unwrap();
        let got = a.migration.clone().unwrap();
        assert_eq!((got.status, got.to_region.as_str(), got.to_plan_tier.as_str()), (MigrationStatus::Requested, "region-9", "plan-9"));
        assert_eq!((got.node_id.as_deref(), got.token_hash.as_deref()), (Some("node-9"), Some("hash-9")));
        assert_eq!((ms(got.started_at), ms(got.deadline_at)), (ms(at(1)), ms(at(2))));
        assert_eq!((got.error_message.as_deref(), got.actor.as_str()), (Some("error-9"), "actor-9"));
        assert_eq!(a.retire_node_id.as_deref(), Some("node-retired"));
        assert_eq!(a.generation, r.generation + 1);
        assert_eq!(store.node_credential(r.id).await.unwrap().migration.as_deref(), Some("hash-9"));
        assert_eq!(store.node_owner("node-9").await.unwrap(), Some(r.id), "the VPS being prepared is ours");
        assert_eq!(store.node_owner("node-retired").await.unwrap(), Some(r.id));

        // Expecting another migration status: nothing changes.
        let mut stale = Change::on(&r, Guard::Unleased, now);
        stale.migrate(&r, None);
        assert!(!store.apply(&stale).await.unwrap(), "the row has a migration now");
        // A step the table refuses, and a migration write that expects nothing, are errors.
        let mut illegal = Change::on(&a, Guard::Unleased, now);
        illegal.migrate(&a, Some(Migration { status: MigrationStatus::Switching, ..m.clone() }));
        assert!(store.apply(&illegal).await.is_err());
        let mut blind = Change::on(&a, Guard::Unleased, now);
        blind.migration = Some(None);
        assert!(store.apply(&blind).await.is_err());
        assert_eq!(store.resource(r.id).await.unwrap().unwrap().migration, a.migration);

        // The switch: region, plan, the whole connection (absent fields cleared), metering
        // restarted; the migration cleared. From `requested` a switch is refused, so move on.
        let mut creating = Change::on(&a, Guard::Unleased, now);
        creating.migrate(&a, Some(Migration { status: MigrationStatus::Creating, ..m.clone() }));
        assert!(store.apply(&creating).await.unwrap());
        let a = store.resource(r.id).await.unwrap().unwrap();
        let mut switch = Change::on(&a, Guard::Unleased, now);
        switch.migrate(&a, None);
        switch.node_id = Some("node-9".into());
        switch.region = Some("region-9".into());
        switch.plan_tier = Some("plan-9".into());
        switch.connection = Some(Connection { public_ip: Some("203.0.113.99".into()), api_key: Some("k-new".into()), ..Default::default() });
        switch.replace_connection = true;
        switch.clear_retired();
        assert!(store.apply(&switch).await.unwrap());
        let s = store.resource(r.id).await.unwrap().unwrap();
        assert_eq!((s.node_id.as_deref(), s.region.as_str(), s.plan_tier.as_str()), (Some("node-9"), "region-9", "plan-9"));
        assert_eq!(s.connection, Connection { public_ip: Some("203.0.113.99".into()), api_key: Some("k-new".into()), ..Default::default() });
        assert_eq!((s.migration.clone(), s.retire_node_id.clone()), (None, None));
    }
}

on_both! {
    async fn a_plan_ordered_while_a_node_comes_up_is_remembered_until_an_order_says_otherwise(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        let first = store.record_hosting_order(&hosting_order("k1", 1, "premium"), now).await.unwrap();
        let id = first.created[0];
        // The node is pending: a plan-changing order cannot migrate it yet.
        let changed = store.record_hosting_order(&hosting_order("k2", 1, "basic"), now).await.unwrap();
        assert!(changed.migrating.is_empty());
        let r = store.resource(id).await.unwrap().unwrap();
        assert_eq!((r.plan_tier.as_str(), r.plan_wanted.as_deref()), ("premium", Some("basic")));
        // Back to the node's own plan: nothing is wanted any more.
        store.record_hosting_order(&hosting_order("k3", 1, "premium"), now).await.unwrap();
        assert_eq!(store.resource(id).await.unwrap().unwrap().plan_wanted, None);
    }
}

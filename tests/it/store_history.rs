//! What the console reads of a resource's past, on both databases.

use chrono::Utc;
use fulfillment::ports::store::{Change, Guard};

use crate::helpers::TestDb;
use crate::on_both;
use crate::store_conformance::{callback, created, order};

on_both! {
    async fn a_resources_callbacks_are_listed_oldest_first_delivered_or_not(b: Backend) {
        let db = TestDb::new(b).await;
        let store = db.store().await;
        let now = Utc::now();
        let mine = created(store.insert_resource(&order("sub-h1", "u-h1"), now).await.unwrap());
        let other = created(store.insert_resource(&order("sub-h2", "u-h2"), now).await.unwrap());
        for (r, sub, statuses) in [(&mine, "sub-h1", ["active", "deleted"]), (&other, "sub-h2", ["active", "failed"])] {
            for status in statuses {
                let mut c = Change::on(r, Guard::Unleased, now);
                c.callbacks.push(callback(sub, status));
                assert!(store.apply(&c).await.unwrap());
            }
        }
        let listed = store.callbacks_of(&mine.id.to_string(), 10).await.unwrap();
        let statuses: Vec<&str> = listed.iter().map(|c| c.message.callback.status.as_str()).collect();
        assert_eq!(statuses, ["active", "deleted"], "only this resource's, oldest first");
        assert!(listed.iter().all(|c| c.delivered_at.is_none() && c.last_error.is_none()));

        // One delivered, one refused: the list says which.
        let claimed = store.claim_outbox(fulfillment::ports::store::Claim {
            owner: "w", now, lease: std::time::Duration::from_secs(30), limit: 10,
        }).await.unwrap();
        let head = claimed.iter().find(|m| m.subscription_id == "sub-h1").unwrap();
        store.outbox_delivered(&[head.id], "w", now).await.unwrap();
        let next = store.claim_outbox(fulfillment::ports::store::Claim {
            owner: "w", now, lease: std::time::Duration::from_secs(30), limit: 10,
        }).await.unwrap();
        let second = next.iter().find(|m| m.subscription_id == "sub-h1").unwrap();
        store.outbox_retry(second.id, "w", now + chrono::Duration::seconds(60), "503 from billing").await.unwrap();
        let listed = store.callbacks_of(&mine.id.to_string(), 10).await.unwrap();
        assert!(listed[0].delivered_at.is_some());
        assert_eq!((listed[1].delivered_at, listed[1].last_error.as_deref(), listed[1].message.attempts), (None, Some("503 from billing"), 1));
        assert_eq!(store.callbacks_of(&mine.id.to_string(), 1).await.unwrap().len(), 1, "the limit holds");
        assert!(store.callbacks_of("no-such-resource", 10).await.unwrap().is_empty());
    }
}

//! What every writer appends in its transaction: a resource's history and, with it, the
//! callbacks that report the change.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::db::Tx;
use super::news::Topic;
use domain::callback::FulfillmentCallback;
use ports::store::{NewEvent, StoreError, StoreResult};

/// Records an event in a resource's history and, at commit, tells the live streams of the
/// resource's user: every change a user can see comes with an event.
pub async fn insert_event(
    tx: &mut Tx,
    id: Uuid,
    event: &NewEvent,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    let user: String = tx
        .sql(
            "insert into resource_events (resource_id, kind, actor, message, at) \
             values ($1, $2, $3, $4, $5) \
             returning (select user_id from resources where id = $1)",
        )
        .bind(id.to_string())
        .bind(event.kind.as_str())
        .bind(&event.actor)
        .bind(&event.message)
        .bind(at)
        .scalar()
        .await?;
    tx.changed(user);
    Ok(())
}

/// Queues a callback in the outbox and wakes its deliverers at commit.
pub async fn enqueue_callback(
    tx: &mut Tx,
    id: Uuid,
    cb: &FulfillmentCallback,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let payload = serde_json::to_string(cb).map_err(|e| StoreError::Other(e.into()))?;
    tx.sql(
        "insert into outbox (subscription_id, resource_id, payload, created_at, \
         attempts, next_attempt_at) values ($1, $2, $3, $4, 0, $4)",
    )
    .bind(&cb.subscription_id)
    .bind(id.to_string())
    .bind(payload)
    .bind(now)
    .execute()
    .await?;
    tx.wake(Topic::Outbox);
    Ok(())
}

//! Resources: recording, reading, history, node agents' reports, and the operator's view.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::SqlStore;
use super::db::Tx;
use super::events::insert_event;
use super::news::Topic;
use super::row::{self, EventRow, ResourceRow, live_sql, resource_columns};
use domain::slots::free_slots;
use domain::usage::{self, DayUsage, Tally};
use domain::{DeleteReason, Event, EventKind, Resource, ResourceKind};
use ports::store::{
    Inserted, NewEvent, NewResource, NodeCredentials, NodeStats, Nodes, NodesOf, Resources,
    StoreError, StoreResult,
};

/// A node's metering columns: user, all-time bytes, last counters, last report, tally.
type MeteringRow = (
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<DateTime<Utc>>,
    Option<NaiveDate>,
    i64,
);

/// Rounds of "take the lowest free slot" before giving up on a subscription whose nodes
/// keep changing (each lost round means a concurrent insert took a slot).
const MAX_SLOT_ROUNDS: usize = 12;

/// The slots the subscription's live hosting nodes hold.
pub(super) async fn taken_slots(tx: &mut Tx, subscription_id: &str) -> StoreResult<Vec<i32>> {
    let rows: Vec<(Option<i32>,)> = tx
        .sql(
            "select slot from resources where subscription_id = $1 \
             and resource_type = 'hosting_node' and desired_state = 'active' \
             and status <> 'deleted'",
        )
        .bind(subscription_id)
        .fetch_all()
        .await?;
    Ok(rows.into_iter().filter_map(|(s,)| s).collect())
}

/// Inserts a hosting node into `slot` with its first event; `None` when the slot was
/// taken meanwhile (the unique slot index refused it). A recovered node starts
/// `creating` on its VPS, anything else `pending`.
pub(super) async fn insert_node(
    tx: &mut Tx,
    new: &NewResource,
    slot: i32,
    now: DateTime<Utc>,
) -> StoreResult<Option<ResourceRow>> {
    let recovered = new.recovered_node.is_some();
    let row: Option<ResourceRow> = tx
        .sql(concat!(
            "insert into resources (id, resource_type, subscription_id, user_id, \
             user_email, order_key, provider, region, plan_tier, status, \
             desired_state, generation, phase, traffic_limit, traffic_used, \
             attempts, upstream_released, next_attempt_at, created_at, updated_at, slot, \
             node_id) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $13, 'active', 0, $14, \
             $10, 0, 0, false, $11, $11, $11, $12, $15) \
             on conflict do nothing returning ",
            resource_columns!()
        ))
        .bind(new.id.to_string())
        .bind(new.kind.as_str())
        .bind(&new.subscription_id)
        .bind(&new.user_id)
        .bind(&new.user_email)
        .bind(&new.order_key)
        .bind(&new.provider)
        .bind(&new.region)
        .bind(&new.plan_tier)
        .bind(new.traffic_limit)
        .bind(now)
        .bind(slot)
        .bind(if recovered { "creating" } else { "pending" })
        .bind(if recovered { 2 } else { 1 })
        .bind(&new.recovered_node)
        .fetch_optional()
        .await?;
    if row.is_some() {
        let event = match &new.recovered_node {
            Some(node_id) => NewEvent::new(EventKind::NodeRecovered, &new.actor).with_message(
                format!("recorded again on the VPS {node_id}, which carries its id"),
            ),
            None => NewEvent::new(EventKind::ProvisionRequested, &new.actor),
        };
        insert_event(tx, new.id, &event, now).await?;
        tx.wake(Topic::Resources);
    }
    Ok(row)
}

impl SqlStore {
    /// The user's live hosting node: batched with concurrent lookups on PostgreSQL, a plain
    /// query on SQLite (one writer, nothing to batch).
    async fn current_node_row(&self, user_id: &str) -> StoreResult<Option<ResourceRow>> {
        if let Some(lookups) = &self.lookups {
            return lookups.get(user_id).await;
        }
        self.db
            .sql(concat!(
                live_sql!(),
                "user_id = $1 order by created_at, id limit 1"
            ))
            .bind(user_id)
            .bind(ResourceKind::HostingNode.as_str())
            .fetch_optional()
            .await
    }
}

#[async_trait]
impl Resources for SqlStore {
    async fn insert_resource(
        &self,
        new: &NewResource,
        now: DateTime<Utc>,
    ) -> StoreResult<Inserted> {
        // Each round takes the lowest free slot; a concurrent insert into the same slot
        // makes ours do nothing (it waits for the other transaction first), and the next
        // round reads the slots again. Every round that fails lost a slot to someone.
        for _ in 0..MAX_SLOT_ROUNDS {
            let mut tx = self.db.begin().await?;
            let taken = taken_slots(&mut tx, &new.subscription_id).await?;
            let Some(&slot) = free_slots(&taken, new.slots).first() else {
                tx.rollback().await?;
                let live = self
                    .live_nodes(NodesOf::Subscription(&new.subscription_id))
                    .await?;
                return Ok(Inserted::Full(live));
            };
            if let Some(row) = insert_node(&mut tx, new, slot, now).await? {
                tx.commit().await?;
                return Ok(Inserted::Created(Box::new(row.try_into()?)));
            }
            tx.rollback().await?;
        }
        Err(StoreError::Conflict(
            "the subscription's nodes changed repeatedly while recording the order".into(),
        ))
    }

    async fn request_deletion(
        &self,
        id: Uuid,
        reason: DeleteReason,
        actor: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Resource>> {
        let mut tx = self.db.begin().await?;
        let row: Option<ResourceRow> = tx
            .sql(concat!(
                "update resources set desired_state = 'deleted', generation = generation + 1, \
                 delete_reason = $2, next_attempt_at = $3, updated_at = $3 \
                 where id = $1 and desired_state = 'active' and status <> 'deleted' \
                 returning ",
                resource_columns!()
            ))
            .bind(id.to_string())
            .bind(reason.as_str())
            .bind(now)
            .fetch_optional()
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return self.resource(id).await;
        };
        let event = NewEvent::new(EventKind::DeleteRequested, actor).with_message(reason.as_str());
        insert_event(&mut tx, id, &event, now).await?;
        tx.wake(Topic::Resources);
        tx.commit().await?;
        Ok(Some(row.try_into()?))
    }

    async fn resource(&self, id: Uuid) -> StoreResult<Option<Resource>> {
        // Primary key: at most one row (`fetch_all`, see `current_hosting_node`).
        let rows: Vec<ResourceRow> = self
            .db
            .sql(concat!(
                "select ",
                resource_columns!(),
                " from resources where id = $1"
            ))
            .bind(id.to_string())
            .fetch_all()
            .await?;
        rows.into_iter().next().map(Resource::try_from).transpose()
    }

    async fn resources_for_subscription(
        &self,
        subscription_id: &str,
    ) -> StoreResult<Vec<Resource>> {
        let rows: Vec<ResourceRow> = self
            .db
            .sql(concat!(
                "select ",
                resource_columns!(),
                " from resources where subscription_id = $1 or id in \
                 (select resource_id from entitlements where subscription_id = $1) \
                 order by created_at, id"
            ))
            .bind(subscription_id)
            .fetch_all()
            .await?;
        row::resources(rows)
    }

    async fn current_hosting_node(&self, user_id: &str) -> StoreResult<Option<Resource>> {
        // The query behind every `GET /my/node`: the backend runs it its own way.
        self.current_node_row(user_id)
            .await?
            .map(Resource::try_from)
            .transpose()
    }

    async fn node_owner(&self, node_id: &str) -> StoreResult<Option<Uuid>> {
        // The serving VPS, the one a migration prepares, or the one a switch retired.
        let id: Option<(String,)> = self
            .db
            .sql(
                "select id from resources where node_id = $1 union all \
                 select id from resources where migration_node_id = $1 union all \
                 select id from resources where retire_node_id = $1 limit 1",
            )
            .bind(node_id)
            .fetch_optional()
            .await?;
        id.map(|(id,)| row::uuid(&id)).transpose()
    }

    async fn node_claims(&self, node_id: &str) -> StoreResult<Vec<domain::orphans::Claim>> {
        let rows: Vec<ResourceRow> = self
            .db
            .sql(concat!(
                "select ",
                resource_columns!(),
                " from resources where node_id = $1 or migration_node_id = $1 \
                 or retire_node_id = $1 order by id"
            ))
            .bind(node_id)
            .fetch_all()
            .await?;
        let mut claims = Vec::with_capacity(rows.len());
        for row in rows {
            let resource: Resource = row.try_into()?;
            let imported: Option<(String,)> = self
                .db
                .sql("select legacy_id from legacy_imports where resource_id = $1 and source = 'hosting'")
                .bind(resource.id.to_string())
                .fetch_optional()
                .await?;
            claims.push(domain::orphans::Claim {
                resource,
                imported: imported.is_some(),
            });
        }
        Ok(claims)
    }

    async fn users_with_events_after(
        &self,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<(i64, Vec<String>)> {
        let Some(after) = after else {
            let end: i64 = self
                .db
                .sql("select cast(coalesce(max(id), 0) as bigint) from resource_events")
                .scalar()
                .await?;
            return Ok((end, Vec::new()));
        };
        let rows: Vec<(i64, String)> = self
            .db
            .sql(
                "select cast(e.id as bigint), r.user_id from resource_events e \
                 join resources r on r.id = e.resource_id where e.id > $1 \
                 order by e.id limit $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all()
            .await?;
        let last = rows.last().map_or(after, |(id, _)| *id);
        let mut users: Vec<String> = rows.into_iter().map(|(_, user)| user).collect();
        users.sort();
        users.dedup();
        Ok((last, users))
    }

    async fn events(&self, id: Uuid) -> StoreResult<Vec<Event>> {
        let rows: Vec<EventRow> = self
            .db
            .sql(
                // The Go service's history first, by its own time (a resumed import may
                // copy it after this service's first entries), then ours as written.
                "select kind, actor, message, at from resource_events \
                 where resource_id = $1 order by case when kind = 'legacy' then 0 else 1 end, \
                 case when kind = 'legacy' then at end, id",
            )
            .bind(id.to_string())
            .fetch_all()
            .await?;
        rows.into_iter().map(Event::try_from).collect()
    }

    async fn append_event(
        &self,
        id: Uuid,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        insert_event(&mut tx, id, event, now).await?;
        tx.commit().await
    }

    async fn node_credential(&self, id: Uuid) -> StoreResult<NodeCredentials> {
        let digests: Option<(Option<String>, Option<String>)> = self
            .db
            .sql("select callback_token_hash, migration_token_hash from resources where id = $1")
            .bind(id.to_string())
            .fetch_optional()
            .await?;
        let (current, migration) = digests.unwrap_or_default();
        Ok(NodeCredentials { current, migration })
    }

    async fn record_node_stats(&self, id: Uuid, st: &NodeStats) -> StoreResult<bool> {
        // Read the counters, count in the domain (saturating), write back only if nothing
        // changed meanwhile (compare-and-set on the values read). A sample older than the
        // last recorded one (a late delivery) changes nothing; a repeat adds nothing. The
        // growth goes to the all-time count, the month's tally and the day's row, in one
        // transaction (CONTRACTS.md §4.8).
        for _ in 0..8 {
            let row: Option<MeteringRow> = self
                .db
                .sql(
                    "select user_id, cast(traffic_used as bigint), cast(counter_rx as bigint), \
                     cast(counter_tx as bigint), stats_at, period_start, \
                     cast(period_used as bigint) from resources \
                     where id = $1 and resource_type = 'hosting_node' and status <> 'deleted'",
                )
                .bind(id.to_string())
                .fetch_optional()
                .await?;
            let Some((user, used, last_rx, last_tx, stats_at, period_start, period_used)) = row
            else {
                return Ok(false);
            };
            if stats_at.is_some_and(|at| at > st.at) {
                return Ok(false);
            }
            let tally = period_start.map(|period_start| Tally {
                period_start,
                used: period_used,
            });
            let last = last_rx.zip(last_tx);
            let m = usage::meter_report(used, tally, last, (st.rx_bytes, st.tx_bytes), st.at);
            // In a transaction of its own, so the user's readers hear of the new figures.
            let mut tx = self.db.begin().await?;
            let done = tx
                .sql(
                    "update resources set traffic_used = $2, counter_rx = $3, \
                     counter_tx = $4, load1 = $5, cpu_percent = $6, mem_percent = $7, \
                     stats_at = $8, period_start = $12, period_used = $13 \
                     where id = $1 and status <> 'deleted' \
                     and cast(traffic_used as bigint) = $9 \
                     and coalesce(cast(counter_rx as bigint), -1) = $10 \
                     and coalesce(cast(counter_tx as bigint), -1) = $11 \
                     and (stats_at is null or stats_at <= $8)",
                )
                .bind(id.to_string())
                .bind(m.all_time)
                .bind(st.rx_bytes)
                .bind(st.tx_bytes)
                .bind(st.load1)
                .bind(st.cpu_percent)
                .bind(st.mem_percent)
                .bind(st.at)
                .bind(used)
                .bind(last_rx.unwrap_or(-1))
                .bind(last_tx.unwrap_or(-1))
                .bind(m.tally.period_start)
                .bind(m.tally.used)
                .execute()
                .await?;
            if done == 1 {
                if m.rx > 0 || m.tx > 0 {
                    // Added to the day's bytes, saturating as every count does ($5: the
                    // largest bigint), so no report can make the statement fail.
                    tx.sql(
                        "insert into node_usage_days (resource_id, day, rx_bytes, tx_bytes) \
                         values ($1, $2, $3, $4) on conflict (resource_id, day) do update \
                         set rx_bytes = case when node_usage_days.rx_bytes > $5 - excluded.rx_bytes \
                         then $5 else node_usage_days.rx_bytes + excluded.rx_bytes end, \
                         tx_bytes = case when node_usage_days.tx_bytes > $5 - excluded.tx_bytes \
                         then $5 else node_usage_days.tx_bytes + excluded.tx_bytes end",
                    )
                    .bind(id.to_string())
                    .bind(usage::day_of(st.at))
                    .bind(m.rx)
                    .bind(m.tx)
                    .bind(i64::MAX)
                    .execute()
                    .await?;
                }
                tx.usage_changed(user);
                tx.commit().await?;
                return Ok(true);
            }
            tx.rollback().await?;
        }
        Err(StoreError::Conflict(
            "the node's counters changed repeatedly while recording a report".into(),
        ))
    }

    async fn node_usage(
        &self,
        id: Uuid,
        first_day: NaiveDate,
        last_day: NaiveDate,
    ) -> StoreResult<Vec<DayUsage>> {
        let rows: Vec<(NaiveDate, i64, i64)> = self
            .db
            .sql(
                "select day, cast(rx_bytes as bigint), cast(tx_bytes as bigint) \
                 from node_usage_days where resource_id = $1 and day >= $2 and day <= $3 \
                 order by day",
            )
            .bind(id.to_string())
            .bind(first_day)
            .bind(last_day)
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(|(date, rx_bytes, tx_bytes)| DayUsage {
                date,
                rx_bytes,
                tx_bytes,
            })
            .collect())
    }

    async fn purge_node_usage(&self, before: NaiveDate, limit: i64) -> StoreResult<u64> {
        self.db
            .sql(
                "delete from node_usage_days where (resource_id, day) in (\
                 select resource_id, day from node_usage_days where day < $1 limit $2)",
            )
            .bind(before)
            .bind(limit)
            .execute()
            .await
    }

    async fn failed_work(
        &self,
        now: DateTime<Utc>,
        min_attempts: i32,
        limit: i64,
    ) -> StoreResult<Vec<Resource>> {
        let rows: Vec<ResourceRow> = self
            .db
            .sql(concat!(
                "select ",
                resource_columns!(),
                " from resources where status <> 'deleted' and (\
                 (status = 'failed' and desired_state = 'active') \
                 or (deadline_at is not null and deadline_at < $1) \
                 or attempts >= $2) order by updated_at, id limit $3"
            ))
            .bind(now)
            .bind(min_attempts)
            .bind(limit)
            .fetch_all()
            .await?;
        row::resources(rows)
    }

    async fn retry_now(
        &self,
        id: Uuid,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Resource>> {
        let mut tx = self.db.begin().await?;
        let row: Option<ResourceRow> = tx
            .sql(concat!(
                "update resources set attempts = 0, next_attempt_at = $2, updated_at = $2 \
                 where id = $1 and status <> 'deleted' returning ",
                resource_columns!()
            ))
            .bind(id.to_string())
            .bind(now)
            .fetch_optional()
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        insert_event(&mut tx, id, event, now).await?;
        tx.wake(Topic::Resources);
        tx.commit().await?;
        Ok(Some(row.try_into()?))
    }
}

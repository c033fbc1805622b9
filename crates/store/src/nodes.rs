//! A subscription's hosting nodes: recording orders (with the nodes and plan-change
//! migrations they make, in one transaction), live nodes, and subscriptions over their
//! limit.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::SqlStore;
use super::db::{Sql, Tx};
use super::events::insert_event;
use super::news::Topic;
use super::resources::{insert_node, taken_slots};
use super::row::{self, ResourceRow, live_sql, resource_columns};
use super::work::change_statement;
use domain::migration::{self, PlanOrder};
use domain::slots::{SlotChoice, free_slots, missing};
use domain::{Desired, EventKind, Resource, ResourceKind};
use ports::store::{
    Change, Guard, HostingOrder, LatestOrder, NewEvent, Nodes, NodesOf, OrderRecorded, OverLimit,
    StoreError, StoreResult,
};

/// Rounds of recording an order before giving up on a subscription whose nodes keep
/// changing (each lost round means a concurrent insert took a slot).
const MAX_ROUNDS: usize = 12;

impl SqlStore {
    /// One try at recording an order: `None` when a slot was lost to a concurrent insert
    /// (the transaction is rolled back and the caller tries again).
    async fn try_record_order(
        &self,
        tx: &mut Tx,
        order: &HostingOrder,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<OrderRecorded>> {
        // Every live node holds a slot: these are the subscription's live nodes.
        let taken = taken_slots(tx, &order.subscription_id).await?;
        let free = free_slots(&taken, SlotChoice::UpTo(order.quantity));
        let want = missing(taken.len(), order.quantity).min(free.len());
        let mut created = Vec::with_capacity(want);
        for (new, slot) in order.nodes.iter().zip(free).take(want) {
            match insert_node(tx, new, slot, now).await? {
                Some(row) => created.push(Resource::try_from(row)?),
                None => return Ok(None),
            }
        }
        let ids = created.iter().map(|r| r.id).collect();
        if taken.is_empty() {
            // The subscription's first nodes: nothing to migrate, and they are all it has.
            created.sort_by_key(|r| (r.created_at, r.id));
            return Ok(Some(OrderRecorded {
                new_order: true,
                created: ids,
                migrating: Vec::new(),
                live: created,
            }));
        }
        let migrating = self.start_plan_changes(tx, order, now).await?;
        // Read in the transaction: what it made, as it made it.
        let live = live_nodes(tx.sql(""), NodesOf::Subscription(&order.subscription_id)).await?;
        Ok(Some(OrderRecorded {
            new_order: true,
            created: ids,
            migrating,
            live,
        }))
    }

    /// Moves the subscription's live nodes to the order's plan
    /// (`domain::migration::on_plan_order` decides): an active node free to migrate starts
    /// a migration now; one still coming up or migrating remembers the plan
    /// (`plan_wanted`) for when it can; a plan an older order asked for is forgotten.
    async fn start_plan_changes(
        &self,
        tx: &mut Tx,
        order: &HostingOrder,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Uuid>> {
        let rows: Vec<ResourceRow> = tx
            .sql(concat!(
                live_sql!(),
                "subscription_id = $1 and (plan_tier <> $3 or plan_wanted is not null) \
                 order by created_at, id{for_update}"
            ))
            .bind(&order.subscription_id)
            .bind(ResourceKind::HostingNode.as_str())
            .bind(&order.plan_tier)
            .fetch_all()
            .await?;
        let mut migrating = Vec::new();
        let actor = "subscription_service";
        for node in row::resources(rows)? {
            let deadline = order.migration_deadline;
            let mut c = Change::on(&node, Guard::Unleased, now);
            c.expect_desired = Some(Desired::Active);
            let event =
                match migration::on_plan_order(&node, &order.plan_tier, now, deadline, actor) {
                    // A plan an older order asked for is no longer wanted.
                    PlanOrder::Nothing if node.plan_wanted.is_some() => {
                        c.plan_wanted = Some(None);
                        None
                    }
                    PlanOrder::Nothing => continue,
                    PlanOrder::MigrateNow(m) => {
                        c.bump_generation = true;
                        c.next_attempt_at = Some(Some(now));
                        c.migrate(&node, Some(m));
                        c.plan_wanted = Some(None);
                        Some(
                            NewEvent::new(EventKind::MigrationRequested, actor).with_message(
                                format!("plan {} -> {}", node.plan_tier, order.plan_tier),
                            ),
                        )
                    }
                    // Still coming up or migrating: it moves once it can (`engine::migration`).
                    // New intent: a worker mid-step on the node re-reads it after.
                    PlanOrder::Remember => {
                        c.plan_wanted = Some(Some(order.plan_tier.clone()));
                        c.bump_generation = true;
                        None
                    }
                };
            let written = change_statement(tx.sql(""), &c).execute().await? == 1;
            if written && let Some(event) = event {
                insert_event(tx, node.id, &event, now).await?;
                tx.wake(Topic::Resources);
                migrating.push(node.id);
            }
        }
        Ok(migrating)
    }
}

/// The live nodes of a user or a subscription, oldest first, read by `statement` (an empty
/// one, of the pool or of a transaction).
async fn live_nodes(mut statement: Sql<'_>, of: NodesOf<'_>) -> StoreResult<Vec<Resource>> {
    let (sql, value) = match of {
        NodesOf::User(u) => (
            concat!(live_sql!(), "user_id = $1 order by created_at, id"),
            u,
        ),
        NodesOf::Subscription(s) => (
            concat!(live_sql!(), "subscription_id = $1 order by created_at, id"),
            s,
        ),
    };
    statement.push(sql);
    let rows: Vec<ResourceRow> = statement
        .bind(value)
        .bind(ResourceKind::HostingNode.as_str())
        .fetch_all()
        .await?;
    row::resources(rows)
}

#[async_trait]
impl Nodes for SqlStore {
    async fn record_hosting_order(
        &self,
        order: &HostingOrder,
        now: DateTime<Utc>,
    ) -> StoreResult<OrderRecorded> {
        let subscription = NodesOf::Subscription(&order.subscription_id);
        for _ in 0..MAX_ROUNDS {
            let mut tx = self.db.begin().await?;
            let recorded: Option<(i64,)> = tx
                .sql(
                    "insert into hosting_orders (order_key, subscription_id, user_id, \
                     quantity, plan_tier, created_at) values ($1, $2, $3, $4, $5, $6) \
                     on conflict do nothing returning cast(seq as bigint)",
                )
                .bind(&order.order_key)
                .bind(&order.subscription_id)
                .bind(&order.user_id)
                .bind(order.quantity as i32)
                .bind(&order.plan_tier)
                .bind(now)
                .fetch_optional()
                .await?;
            if recorded.is_none() {
                // A repeat: this order was recorded (with its nodes) before.
                let live = live_nodes(tx.sql(""), subscription).await?;
                tx.rollback().await?;
                return Ok(OrderRecorded {
                    new_order: false,
                    created: Vec::new(),
                    migrating: Vec::new(),
                    live,
                });
            }
            match self.try_record_order(&mut tx, order, now).await? {
                Some(recorded) => {
                    tx.commit().await?;
                    return Ok(recorded);
                }
                None => tx.rollback().await?,
            }
        }
        Err(StoreError::Conflict(
            "the subscription's nodes changed repeatedly while recording the order".into(),
        ))
    }

    async fn latest_order(&self, subscription_id: &str) -> StoreResult<Option<LatestOrder>> {
        let row: Option<(i64, String)> = self
            .db
            .sql(
                "select cast(quantity as bigint), plan_tier from hosting_orders \
                 where subscription_id = $1 order by seq desc limit 1",
            )
            .bind(subscription_id)
            .fetch_optional()
            .await?;
        Ok(row.map(|(quantity, plan_tier)| LatestOrder {
            quantity,
            plan_tier,
        }))
    }

    async fn live_nodes(&self, of: NodesOf<'_>) -> StoreResult<Vec<Resource>> {
        live_nodes(self.db.sql(""), of).await
    }

    async fn serving_nodes(&self) -> StoreResult<Vec<Resource>> {
        let rows: Vec<ResourceRow> = self
            .db
            .sql(concat!(
                "select ",
                resource_columns!(),
                " from resources where resource_type = $1 and status = 'active' \
                 and desired_state = 'active' and node_id is not null order by id"
            ))
            .bind(ResourceKind::HostingNode.as_str())
            .fetch_all()
            .await?;
        row::resources(rows)
    }

    async fn over_node_limit(&self, limit: i64) -> StoreResult<Vec<OverLimit>> {
        let rows: Vec<(String, String, i64, i64)> = self
            .db
            .sql(
                "with live as (select subscription_id, min(user_id) as user_id, \
                 cast(count(*) as bigint) as n from resources \
                 where resource_type = 'hosting_node' and desired_state = 'active' \
                 and status <> 'deleted' group by subscription_id), \
                 latest as (select o.subscription_id, o.quantity from hosting_orders o \
                 where o.seq = (select max(i.seq) from hosting_orders i \
                 where i.subscription_id = o.subscription_id)) \
                 select live.subscription_id, live.user_id, live.n, \
                 cast(coalesce(latest.quantity, 1) as bigint) \
                 from live left join latest on latest.subscription_id = live.subscription_id \
                 where live.n > coalesce(latest.quantity, 1) \
                 order by live.subscription_id limit $1",
            )
            .bind(limit)
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(subscription_id, user_id, live_nodes, node_limit)| OverLimit {
                    subscription_id,
                    user_id,
                    live_nodes,
                    node_limit,
                },
            )
            .collect())
    }

    async fn wake_resource(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        let done = tx
            .sql(
                "update resources set next_attempt_at = $2 where id = $1 \
                 and status <> 'deleted' and (next_attempt_at is null or next_attempt_at > $2)",
            )
            .bind(id.to_string())
            .bind(now)
            .execute()
            .await?;
        if done == 1 {
            tx.wake(Topic::Resources);
        }
        tx.commit().await
    }
}

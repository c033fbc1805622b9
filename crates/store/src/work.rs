//! The engine's hold on resources: claims under a lease, and the compare-and-set change
//! a step commits with its events and callbacks.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::SqlStore;
use super::db::{Sql, Value};
use super::events::{enqueue_callback, insert_event};
use super::news::Topic;
use super::row::{self, ResourceRow, resource_columns};
use domain::{Phase, Resource};
use ports::store::{Attempts, Change, Claim, Guard, StoreError, StoreResult, Work};

/// `, column = $n` with `value` bound to `$n`, when there is a value: the column and its
/// value are named together, so no value can land in another column's place.
fn set<'q, T: Value<'q>>(q: &mut Sql<'_>, column: &str, value: Option<T>) {
    if let Some(value) = value {
        q.push(", ").push(column).push(" = ").push_bind(value);
    }
}

/// `, column = $n` when `$n` is larger than what is stored (a value that only grows).
fn raise<'q, T: Value<'q> + Copy>(q: &mut Sql<'_>, column: &str, value: Option<T>) {
    if let Some(value) = value {
        q.push(", ")
            .push(column)
            .push(" = case when ")
            .push_bind(value);
        q.push(" > ").push(column).push(" then ").push_bind(value);
        q.push(" else ").push(column).push(" end");
    }
}

/// The statement of a change: only what the change sets, and the guard it must match.
pub(super) fn change_statement<'c>(mut q: Sql<'c>, c: &'c Change) -> Sql<'c> {
    q.push("update resources set updated_at = ")
        .push_bind(c.now);
    set(&mut q, "status", c.status.map(|s| s.as_str()));
    set(&mut q, "node_id", c.node_id.as_deref());
    raise(&mut q, "phase", c.phase.map(Phase::step));
    if let (Some(conn), true) = (&c.connection, c.replace_connection) {
        set(&mut q, "public_ip", Some(conn.public_ip.as_deref()));
        set(&mut q, "api_port", Some(conn.api_port));
        set(&mut q, "api_key", Some(conn.api_key.as_deref()));
        set(&mut q, "vless_port", Some(conn.vless_port));
        set(&mut q, "ss_port", Some(conn.ss_port));
        set(&mut q, "public_key", Some(conn.public_key.as_deref()));
        set(&mut q, "short_id", Some(conn.short_id.as_deref()));
        q.push(", counter_rx = 0, counter_tx = 0, stats_at = null");
    } else if let Some(conn) = &c.connection {
        set(&mut q, "public_ip", conn.public_ip.as_deref());
        set(&mut q, "api_port", conn.api_port);
        set(&mut q, "api_key", conn.api_key.as_deref());
        set(&mut q, "vless_port", conn.vless_port);
        set(&mut q, "ss_port", conn.ss_port);
        set(&mut q, "public_key", conn.public_key.as_deref());
        set(&mut q, "short_id", conn.short_id.as_deref());
    }
    set(&mut q, "error_message", c.error_message.as_deref());
    set(&mut q, "last_error", c.last_error.as_deref());
    set(
        &mut q,
        "callback_token_hash",
        c.callback_token_hash.as_deref(),
    );
    set(&mut q, "upstream_released", c.upstream_released);
    set(&mut q, "traffic_limit", c.traffic_limit);
    set(&mut q, "ready_at", c.ready_at);
    set(&mut q, "deadline_at", c.deadline_at);
    match c.attempts {
        Attempts::Keep => {}
        Attempts::Reset => {
            q.push(", attempts = 0");
        }
        Attempts::Increment => {
            q.push(", attempts = attempts + 1");
        }
    }
    if let Some(next) = c.next_attempt_at {
        // Someone changed what is wanted since the step read the row: due at once.
        q.push(", next_attempt_at = case when generation <> ")
            .push_bind(c.seen_generation);
        q.push(" or spec_version <> ")
            .push_bind(c.seen_spec_version);
        q.push(" then ")
            .push_bind(c.now)
            .push(" else ")
            .push_bind(next);
        q.push(" end");
    }
    if c.release_lease {
        q.push(", lease_owner = null, lease_until = null");
    }
    set(&mut q, "vpn_user_id", c.vpn_user_id.as_deref());
    raise(&mut q, "applied_version", c.applied_version);
    set(&mut q, "region", c.region.as_deref());
    set(&mut q, "plan_tier", c.plan_tier.as_deref());
    set(
        &mut q,
        "retire_node_id",
        c.retire_node_id.as_ref().map(Option::as_deref),
    );
    set(
        &mut q,
        "plan_wanted",
        c.plan_wanted.as_ref().map(Option::as_deref),
    );
    if c.bump_generation {
        q.push(", generation = generation + 1");
    }
    if let Some(m) = &c.migration {
        let m = m.as_ref();
        set(
            &mut q,
            "migration_status",
            Some(m.map(|m| m.status.as_str())),
        );
        set(
            &mut q,
            "migration_region",
            Some(m.map(|m| m.to_region.as_str())),
        );
        set(
            &mut q,
            "migration_plan_tier",
            Some(m.map(|m| m.to_plan_tier.as_str())),
        );
        set(
            &mut q,
            "migration_node_id",
            Some(m.and_then(|m| m.node_id.as_deref())),
        );
        let token = m.and_then(|m| m.token_hash.as_deref());
        set(&mut q, "migration_token_hash", Some(token));
        set(
            &mut q,
            "migration_started_at",
            Some(m.map(|m| m.started_at)),
        );
        set(
            &mut q,
            "migration_deadline_at",
            Some(m.map(|m| m.deadline_at)),
        );
        let error = m.and_then(|m| m.error_message.as_deref());
        set(&mut q, "migration_error", Some(error));
        set(&mut q, "migration_actor", Some(m.map(|m| m.actor.as_str())));
    }
    q.push(" where id = ").push_bind(c.id.to_string());
    q.push(" and status = ").push_bind(c.expect.as_str());
    if let Guard::Lease { owner, epoch } = &c.guard {
        q.push(" and lease_owner = ").push_bind(owner.as_str());
        q.push(" and lease_epoch = ").push_bind(*epoch);
    }
    if let Some(desired) = c.expect_desired {
        q.push(" and desired_state = ").push_bind(desired.as_str());
    }
    if let Some(m) = c.expect_migration {
        // '' stands for "no migration" (one spelling for both databases' null compare).
        q.push(" and coalesce(migration_status, '') = ")
            .push_bind(m.map_or("", |m| m.as_str()));
    }
    q
}

#[async_trait]
impl Work for SqlStore {
    async fn claim_resources(&self, claim: Claim<'_>) -> StoreResult<Vec<Resource>> {
        let rows: Vec<ResourceRow> = self
            .db
            .sql(concat!(
                "update resources set lease_owner = $1, lease_until = $2, \
                 lease_epoch = lease_epoch + 1 where id in (\
                 select id from resources where next_attempt_at <= $3 \
                 and (lease_until is null or lease_until < $3 or lease_owner in (\
                 select owner from lifelines where dead_at < $3)) \
                 order by next_attempt_at limit $4{skip_locked}) returning ",
                resource_columns!()
            ))
            .bind(claim.owner)
            .bind(claim.lease_until())
            .bind(claim.now)
            .bind(claim.limit)
            .fetch_all()
            .await?;
        row::resources(rows)
    }

    async fn claim_resource(&self, id: Uuid, claim: Claim<'_>) -> StoreResult<Option<Resource>> {
        let rows: Vec<ResourceRow> = self
            .db
            .sql(concat!(
                "update resources set lease_owner = $2, lease_until = $3, \
                 lease_epoch = lease_epoch + 1 \
                 where id = $1 and next_attempt_at is not null \
                 and (lease_until is null or lease_until < $4 or lease_owner in (\
                 select owner from lifelines where dead_at < $4)) returning ",
                resource_columns!()
            ))
            .bind(id.to_string())
            .bind(claim.owner)
            .bind(claim.lease_until())
            .bind(claim.now)
            .fetch_all()
            .await?;
        rows.into_iter().next().map(Resource::try_from).transpose()
    }

    async fn apply(&self, c: &Change) -> StoreResult<bool> {
        if let Some(to) = c.status {
            // Every status write is a transition the state machine allows.
            domain::state::transition(c.expect, to).map_err(|e| StoreError::Other(e.into()))?;
        }
        if let Some(to) = &c.migration {
            // Likewise every migration step; a write of it must say what it expects.
            let Some(from) = c.expect_migration else {
                return Err(StoreError::Other(
                    "a migration write without the status it expects".into(),
                ));
            };
            let to = to.as_ref().map(|m| m.status);
            if from != to {
                domain::migration::step(from, to).map_err(|e| StoreError::Other(e.into()))?;
            }
        }
        let mut tx = self.db.begin().await?;
        let done = change_statement(tx.sql(""), c).execute().await?;
        if done == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        for event in &c.events {
            insert_event(&mut tx, c.id, event, c.now).await?;
        }
        if c.wakes_now() {
            tx.wake(Topic::Resources);
        }
        for cb in &c.callbacks {
            enqueue_callback(&mut tx, c.id, cb, c.now).await?;
        }
        if let Some(version) = c.report_through {
            let mut reported: Vec<(i64, DateTime<Utc>, Option<String>)> = tx
                .sql(
                    "update entitlements set reported = true \
                     where resource_id = $1 and spec_version <= $2 and not reported \
                     returning spec_version, created_at, subscription_id",
                )
                .bind(c.id.to_string())
                .bind(version)
                .fetch_all()
                .await?;
            // In the orders' sequence: a subscription hears of its orders in turn.
            reported.sort();
            for (_, _, subscription) in reported {
                if let Some(sub) = subscription {
                    let cb = domain::callback::vpn_active(&sub);
                    enqueue_callback(&mut tx, c.id, &cb, c.now).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn extend_lease(&self, id: Uuid, owner: &str, until: DateTime<Utc>) -> StoreResult<bool> {
        let done = self
            .db
            .sql("update resources set lease_until = $3 where id = $1 and lease_owner = $2")
            .bind(id.to_string())
            .bind(owner)
            .bind(until)
            .execute()
            .await?;
        Ok(done == 1)
    }

    async fn release(&self, id: Uuid, owner: &str, now: DateTime<Utc>) -> StoreResult<()> {
        self.db
            .sql(
                "update resources set lease_owner = null, lease_until = null, \
                 next_attempt_at = $3 where id = $1 and lease_owner = $2",
            )
            .bind(id.to_string())
            .bind(owner)
            .bind(now)
            .execute()
            .await?;
        self.db.wake_here(Topic::Resources);
        Ok(())
    }

    async fn next_resource_due(&self) -> StoreResult<Option<DateTime<Utc>>> {
        // A leased row is free when its lease ends or its owner dies, whichever is first;
        // it is due when it is free and its attempt is due.
        self.db
            .sql(
                "select min(case when f.free is not null and f.free > f.next_attempt_at \
                 then f.free else f.next_attempt_at end) from (\
                 select r.next_attempt_at, case when l.dead_at is not null \
                 and l.dead_at < r.lease_until then l.dead_at else r.lease_until end as free \
                 from resources r left join lifelines l on l.owner = r.lease_owner \
                 where r.next_attempt_at is not null) f",
            )
            .scalar()
            .await
    }

    async fn beat(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        dead_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.db
            .sql(
                "insert into lifelines (owner, beat_at, dead_at) values ($1, $2, $3) \
                 on conflict (owner) do update set beat_at = excluded.beat_at, \
                 dead_at = excluded.dead_at",
            )
            .bind(owner)
            .bind(now)
            .bind(dead_at)
            .execute()
            .await?;
        Ok(())
    }

    async fn purge_lifelines(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        self.db
            .sql("delete from lifelines where dead_at < $1")
            .bind(before)
            .execute()
            .await
    }
}

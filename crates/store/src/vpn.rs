//! VPN users and entitlements: reads, cancellation, adjustment, email, traffic.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::SqlStore;
use super::db::Sql;
use super::events::{enqueue_callback, insert_event};
use super::news::Topic;
use super::row::{self, EntitlementRow, ResourceRow, entitlement_columns, resource_columns};
use domain::entitlement::Entitlement;
use domain::vpn_order::{VpnAdjustment, VpnOrder, adjust};
use domain::{DeleteReason, EventKind, Resource, callback};
use ports::store::{
    AdoptedTerms, EntitlementFilter, NewEvent, Resources, StoreError, StoreResult, VpnOrderOutcome,
    VpnRecord, VpnUsers,
};

#[async_trait]
impl VpnUsers for SqlStore {
    async fn record_vpn_order(
        &self,
        order: &VpnOrder,
        now: DateTime<Utc>,
    ) -> StoreResult<VpnOrderOutcome> {
        // A concurrent order for the same user (or the same order twice) trips a unique
        // index; the loser looks again and finds what the winner recorded.
        let mut last = None;
        for _ in 0..5 {
            match self.try_record_vpn_order(order, now).await {
                Err(StoreError::Conflict(e)) => last = Some(e),
                other => return other,
            }
        }
        Err(StoreError::Conflict(last.unwrap_or_default()))
    }

    async fn vpn_of_user(&self, user_id: &str) -> StoreResult<VpnRecord> {
        let entitlement: Option<EntitlementRow> = self
            .db
            .sql(concat!(
                "select ",
                entitlement_columns!(),
                " from entitlements where user_id = $1 \
                 order by is_current desc, created_at desc, id desc limit 1"
            ))
            .bind(user_id)
            .fetch_optional()
            .await?;
        let resource: Option<ResourceRow> = self
            .db
            .sql(concat!(
                "select ",
                resource_columns!(),
                " from resources where user_id = $1 and resource_type = 'vpn_user' \
                 order by created_at desc, id desc limit 1"
            ))
            .bind(user_id)
            .fetch_optional()
            .await?;
        Ok(VpnRecord {
            entitlement: entitlement.map(Entitlement::try_from).transpose()?,
            resource: resource.map(Resource::try_from).transpose()?,
        })
    }

    async fn entitlements(
        &self,
        f: &EntitlementFilter,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Entitlement>> {
        // `expired` is not stored: it is an `active` row past its expiry.
        let (status, expired) = match f.status.as_deref() {
            Some("expired") => (Some("active"), Some(true)),
            Some("active") => (Some("active"), Some(false)),
            other => (other, None),
        };
        let rows: Vec<EntitlementRow> = self
            .db
            .sql(concat!(
                "select ",
                entitlement_columns!(),
                " from entitlements where ($1 is null or user_id = $1) \
                 and ($2 is null or business_type = $2) and ($3 is null or status = $3) \
                 and ($4 is null or (expire_at <= $5) = $4) \
                 order by created_at desc, id desc limit $6"
            ))
            .bind(&f.user_id)
            .bind(&f.business_type)
            .bind(status)
            .bind(expired)
            .bind(now)
            .bind(f.limit)
            .fetch_all()
            .await?;
        row::entitlements(rows)
    }

    async fn entitlements_for_subscription(
        &self,
        subscription_id: &str,
    ) -> StoreResult<Vec<Entitlement>> {
        let rows: Vec<EntitlementRow> = self
            .db
            .sql(concat!(
                "select ",
                entitlement_columns!(),
                " from entitlements where subscription_id = $1 order by created_at, id"
            ))
            .bind(subscription_id)
            .fetch_all()
            .await?;
        row::entitlements(rows)
    }

    async fn cancel_vpn_subscription(
        &self,
        subscription_id: &str,
        reason: DeleteReason,
        actor: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Resource>> {
        let mut tx = self.db.begin().await?;
        // Resource rows first, then entitlements (the order every writer locks in).
        tx.sql(
            "select id from resources where id in (select resource_id from entitlements \
             where subscription_id = $1 and status <> 'cancelled') order by id{for_update}",
        )
        .bind(subscription_id)
        .execute()
        .await?;
        let ended: Vec<EntitlementRow> = tx
            .sql(concat!(
                "select ",
                entitlement_columns!(),
                " from entitlements where subscription_id = $1 \
                 and status <> 'cancelled'{for_update}"
            ))
            .bind(subscription_id)
            .fetch_all()
            .await?;
        let ended = row::entitlements(ended)?;
        tx.sql(
            "update entitlements set status = 'cancelled', is_current = false, \
             updated_at = $2 where subscription_id = $1 and status <> 'cancelled'",
        )
        .bind(subscription_id)
        .bind(now)
        .execute()
        .await?;
        let current = ended.iter().find(|e| e.is_current);
        let Some(any) = current.or(ended.first()) else {
            tx.rollback().await?;
            // Already cancelled (a retried webhook): answer with the resource.
            let all = self.entitlements_for_subscription(subscription_id).await?;
            return match all.last() {
                Some(e) => self.resource(e.resource_id).await,
                None => Ok(None),
            };
        };
        let resource_id = any.resource_id;
        if current.is_some() {
            // The user's VPN rests on this subscription: the account goes.
            let deleting: Option<ResourceRow> = tx
                .sql(concat!(
                    "update resources set desired_state = 'deleted', \
                     generation = generation + 1, delete_reason = $2, subscription_id = $4, \
                     next_attempt_at = $3, updated_at = $3 \
                     where id = $1 and desired_state = 'active' and status <> 'deleted' \
                     returning ",
                    resource_columns!()
                ))
                .bind(resource_id.to_string())
                .bind(reason.as_str())
                .bind(now)
                .bind(subscription_id)
                .fetch_optional()
                .await?;
            if let Some(row) = deleting {
                let event =
                    NewEvent::new(EventKind::DeleteRequested, actor).with_message(reason.as_str());
                insert_event(&mut tx, resource_id, &event, now).await?;
                tx.wake(Topic::Resources);
                tx.commit().await?;
                // As committed: a read now would race the engine it just woke.
                return Resource::try_from(row).map(Some);
            }
        }
        // Superseded history (or an account already going): the VPN manager keeps serving
        // the user's current entitlement, and the subscription is told now.
        let cb = callback::vpn_entitlement_ended(subscription_id, reason);
        enqueue_callback(&mut tx, resource_id, &cb, now).await?;
        // The user's entitlements changed: what `/my/vpn` shows may have.
        tx.changed(any.user_id.clone());
        tx.commit().await?;
        self.resource(resource_id).await
    }

    async fn adjust_vpn(
        &self,
        resource_id: Uuid,
        a: &VpnAdjustment,
        due_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(Entitlement, Resource)>> {
        let mut tx = self.db.begin().await?;
        // Resource first, then entitlements (the order every writer locks in).
        tx.sql("select id from resources where id = $1{for_update}")
            .bind(resource_id.to_string())
            .execute()
            .await?;
        let current: Option<EntitlementRow> = tx
            .sql(concat!(
                "select ",
                entitlement_columns!(),
                " from entitlements where resource_id = $1 and is_current{for_update}"
            ))
            .bind(resource_id.to_string())
            .fetch_optional()
            .await?;
        let Some(current) = current.map(Entitlement::try_from).transpose()? else {
            tx.rollback().await?;
            return Ok(None);
        };
        let t = adjust(&current, a, now);
        let resource: Option<ResourceRow> = tx
            .sql(concat!(
                "update resources set traffic_limit = $2, expire_at = $3, plan_tier = $4, \
                 service_tier = $5, spec_version = spec_version + 1, \
                 next_attempt_at = case when next_attempt_at is null or next_attempt_at > $6 \
                     then $6 else next_attempt_at end, updated_at = $7 \
                 where id = $1 and resource_type = 'vpn_user' and desired_state = 'active' \
                 and status in ('pending', 'creating', 'active') returning ",
                resource_columns!()
            ))
            .bind(resource_id.to_string())
            .bind(t.traffic_limit)
            .bind(t.expire_at)
            .bind(&t.plan_tier)
            .bind(&t.service_tier)
            .bind(due_at)
            .bind(now)
            .fetch_optional()
            .await?;
        let Some(resource) = resource.map(Resource::try_from).transpose()? else {
            tx.rollback().await?;
            return Ok(None);
        };
        let updated: EntitlementRow = tx
            .sql(concat!(
                "update entitlements set traffic_limit = $2, expire_at = $3, plan_tier = $4, \
                 service_tier = $5, updated_at = $6 where id = $1 returning ",
                entitlement_columns!()
            ))
            .bind(current.id.to_string())
            .bind(t.traffic_limit)
            .bind(t.expire_at)
            .bind(&t.plan_tier)
            .bind(&t.service_tier)
            .bind(now)
            .fetch_one()
            .await?;
        let event = NewEvent::new(EventKind::OrderRecorded, "admin").with_message("terms adjusted");
        insert_event(&mut tx, resource_id, &event, now).await?;
        if due_at <= now {
            tx.wake(Topic::Resources);
        }
        tx.commit().await?;
        Ok(Some((updated.try_into()?, resource)))
    }

    async fn set_user_email(
        &self,
        user_id: &str,
        email: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.db.begin().await?;
        let (known,): (bool,) = tx
            .sql(
                "select exists (select 1 from resources where user_id = $1) \
                 or exists (select 1 from entitlements where user_id = $1)",
            )
            .bind(user_id)
            .fetch_one()
            .await?;
        if !known {
            return Ok(false);
        }
        tx.sql(
            "update resources set user_email = $2, updated_at = $3 \
             where user_id = $1 and resource_type = 'hosting_node' and status <> 'deleted'",
        )
        .bind(user_id)
        .bind(email)
        .bind(now)
        .execute()
        .await?;
        let vpn: Option<ResourceRow> = tx
            .sql(concat!(
                "update resources set user_email = $2, spec_version = spec_version + 1, \
                 next_attempt_at = $3, updated_at = $3 \
                 where user_id = $1 and resource_type = 'vpn_user' \
                 and desired_state = 'active' and status in ('pending', 'creating', 'active') \
                 returning ",
                resource_columns!()
            ))
            .bind(user_id)
            .bind(email)
            .bind(now)
            .fetch_optional()
            .await?;
        tx.sql(
            "update entitlements set email = $2, updated_at = $3 \
             where user_id = $1 and is_current",
        )
        .bind(user_id)
        .bind(email)
        .bind(now)
        .execute()
        .await?;
        if vpn.is_some() {
            tx.wake(Topic::Resources);
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn vpn_user_deleting(&self, user_id: &str, except: Uuid) -> StoreResult<bool> {
        let n: i64 = self
            .db
            .sql(
                "select count(*) from resources where user_id = $1 \
                 and resource_type = 'vpn_user' and desired_state = 'deleted' \
                 and status <> 'deleted' and id <> $2",
            )
            .bind(user_id)
            .bind(except.to_string())
            .scalar()
            .await?;
        Ok(n > 0)
    }

    async fn vpn_sync_page(
        &self,
        after: Option<Uuid>,
        limit: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(Uuid, String, bool)>> {
        let rows: Vec<(String, String, bool)> = self
            .db
            .sql(
                "select id, vpn_user_id, adopt_upstream_terms from resources \
                 where resource_type = 'vpn_user' and status = 'active' \
                 and desired_state = 'active' and vpn_user_id is not null \
                 and (expire_at > $2 or adopt_upstream_terms) and id > $1 \
                 order by id limit $3",
            )
            .bind(after.map(|id| id.to_string()).unwrap_or_default())
            .bind(now)
            .bind(limit)
            .fetch_all()
            .await?;
        rows.into_iter()
            .map(|(id, uuid, adopt)| Ok((row::uuid(&id)?, uuid, adopt)))
            .collect()
    }

    async fn adopt_vpn_terms(
        &self,
        terms: &[(Uuid, AdoptedTerms)],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        for (id, t) in terms {
            let adopted = tx
                .sql(
                    "update resources set expire_at = coalesce($2, expire_at), \
                     traffic_limit = $3, traffic_used = $4, traffic_synced_at = $5, \
                     updated_at = $5, adopt_upstream_terms = false \
                     where id = $1 and adopt_upstream_terms",
                )
                .bind(id.to_string())
                .bind(t.expire_at)
                .bind(t.traffic_limit)
                .bind(t.traffic_used)
                .bind(now)
                .execute()
                .await?;
            if adopted == 0 {
                continue;
            }
            tx.sql(
                "update entitlements set expire_at = coalesce($2, expire_at), \
                 traffic_limit = $3, updated_at = $4 where resource_id = $1 and is_current",
            )
            .bind(id.to_string())
            .bind(t.expire_at)
            .bind(t.traffic_limit)
            .bind(now)
            .execute()
            .await?;
            let message = format!(
                "terms taken from the VPN manager: expires {}, limit {} bytes, used {}",
                t.expire_at
                    .map_or_else(|| "never".to_owned(), |e| e.to_rfc3339()),
                t.traffic_limit,
                t.traffic_used
            );
            let event =
                NewEvent::new(EventKind::VpnUserUpdated, "traffic_sync").with_message(message);
            insert_event(&mut tx, *id, &event, now).await?;
        }
        tx.commit().await
    }

    async fn record_vpn_usage(&self, usage: &[(Uuid, i64)], now: DateTime<Utc>) -> StoreResult<()> {
        if usage.is_empty() {
            return Ok(());
        }
        // The batch as `with v(id, used) as (values …)`, to find whose figures change (their
        // readers are told) and to write them all, one statement each.
        let values = |q: &mut Sql<'_>| {
            q.push("with v(id, used) as (values ");
            for (i, (id, used)) in usage.iter().enumerate() {
                q.push(if i == 0 { "(" } else { ", (" });
                q.push_bind(id.to_string())
                    .push(", ")
                    .push_bind(*used)
                    .push(")");
            }
            q.push(") ");
        };
        let mut tx = self.db.begin().await?;
        let mut q = tx.sql("");
        values(&mut q);
        q.push(
            "select distinct r.user_id from resources r join v on r.id = v.id \
             where r.traffic_used <> v.used",
        );
        let changed: Vec<(String,)> = q.fetch_all().await?;
        let mut q = tx.sql("");
        values(&mut q);
        q.push("update resources set traffic_used = v.used, traffic_synced_at = ");
        q.push_bind(now).push(" from v where resources.id = v.id");
        q.execute().await?;
        for (user,) in changed {
            tx.usage_changed(user);
        }
        tx.commit().await
    }
}

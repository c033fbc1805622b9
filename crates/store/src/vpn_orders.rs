//! Recording a VPN order: the store's half. The user's account and current entitlement are
//! read under lock, `domain::vpn_order::plan_order` decides, and the plan is written in
//! the same transaction.

use chrono::{DateTime, Utc};

use super::SqlStore;
use super::db::Tx;
use super::events::insert_event;
use super::news::Topic;
use super::row::{EntitlementRow, ResourceRow, entitlement_columns, live_sql, resource_columns};
use domain::entitlement::Entitlement;
use domain::vpn_order::{Account, OrderPlan, VpnOrder, ask_upstream, plan_order};
use domain::{Resource, ResourceKind};
use ports::store::{NewEvent, Resources, StoreError, StoreResult, VpnOrderOutcome};

impl SqlStore {
    /// One attempt at `record_vpn_order`; a unique-index conflict (a concurrent order won)
    /// comes back as `StoreError::Conflict` for the caller to retry.
    pub(super) async fn try_record_vpn_order(
        &self,
        o: &VpnOrder,
        now: DateTime<Utc>,
    ) -> StoreResult<VpnOrderOutcome> {
        let mut tx = self.db.begin().await?;
        if let Some(key) = &o.order_key {
            let seen: Option<EntitlementRow> = tx
                .sql(concat!(
                    "select ",
                    entitlement_columns!(),
                    " from entitlements where order_key = $1"
                ))
                .bind(key)
                .fetch_optional()
                .await?;
            if let Some(seen) = seen {
                tx.rollback().await?;
                let entitlement = Entitlement::try_from(seen)?;
                let resource = self
                    .resource(entitlement.resource_id)
                    .await?
                    .ok_or_else(|| {
                        StoreError::Corrupt("entitlement without its resource".into())
                    })?;
                return Ok(VpnOrderOutcome::Duplicate {
                    entitlement,
                    resource,
                });
            }
        }
        if o.is_trial {
            let used: i64 = tx
                .sql(
                    "select count(*) from entitlements where is_trial and (user_id = $1 \
                     or ($2 is not null and device_id = $2) \
                     or ($3 is not null and lower(email) = lower($3)))",
                )
                .bind(&o.user_id)
                .bind(&o.device_id)
                .bind(&o.email)
                .scalar()
                .await?;
            if used > 0 {
                tx.rollback().await?;
                return Ok(VpnOrderOutcome::TrialUsed);
            }
        }
        // Locks are taken resource first, then entitlements, everywhere.
        let live: Option<ResourceRow> = tx
            .sql(concat!(live_sql!(), "user_id = $1{for_update}"))
            .bind(&o.user_id)
            .bind(ResourceKind::VpnUser.as_str())
            .fetch_optional()
            .await?;
        let live = live.map(Resource::try_from).transpose()?;
        if let Some(uuid) = ask_upstream(o, live.as_ref()) {
            tx.rollback().await?;
            return Ok(VpnOrderOutcome::AskUpstream {
                vpn_user_id: uuid.to_owned(),
            });
        }
        let current: Option<EntitlementRow> = tx
            .sql(concat!(
                "select ",
                entitlement_columns!(),
                " from entitlements where user_id = $1 and is_current{for_update}"
            ))
            .bind(&o.user_id)
            .fetch_optional()
            .await?;
        let current = current.map(Entitlement::try_from).transpose()?;
        let plan = plan_order(o, current.as_ref(), live.as_ref(), now);
        let resource = write_account(&mut tx, o, &plan, now).await?;
        let entitlement = write_entitlement(&mut tx, o, &plan, &resource, now).await?;
        if o.due_at <= now {
            tx.wake(Topic::Resources);
        }
        tx.commit().await?;
        Ok(VpnOrderOutcome::Recorded {
            entitlement,
            resource,
        })
    }
}

/// The account's side of the plan: new terms on the live account, or a new account.
async fn write_account(
    tx: &mut Tx,
    o: &VpnOrder,
    plan: &OrderPlan,
    now: DateTime<Utc>,
) -> StoreResult<Resource> {
    let t = &plan.terms;
    let (event_kind, message) = plan.event.clone();
    let mut event = NewEvent::new(event_kind, &o.actor);
    event.message = message;
    let row: ResourceRow = match &plan.account {
        Account::Update {
            id,
            subscription_id,
        } => {
            insert_event(tx, *id, &event, now).await?;
            tx.sql(concat!(
                "update resources set traffic_limit = $2, expire_at = $3, \
                 plan_tier = $4, service_tier = $5, subscription_id = $6, \
                 user_email = coalesce($7, user_email), \
                 spec_version = spec_version + 1, \
                 traffic_reset_version = case when $10 then spec_version + 1 \
                     else traffic_reset_version end, \
                 next_attempt_at = case when next_attempt_at is null \
                     or next_attempt_at > $8 then $8 else next_attempt_at end, \
                 updated_at = $9 where id = $1 returning ",
                resource_columns!()
            ))
            .bind(id.to_string())
            .bind(t.traffic_limit)
            .bind(t.expire_at)
            .bind(&t.plan_tier)
            .bind(&t.service_tier)
            .bind(subscription_id)
            .bind(&o.email)
            .bind(o.due_at)
            .bind(now)
            .bind(plan.reset_traffic)
            .fetch_one()
            .await?
        }
        Account::Create {
            subscription_id,
            order_key,
        } => {
            tx.sql(
                "update resources set desired_state = 'deleted', \
                 generation = generation + 1, delete_reason = 'provision_failed', \
                 next_attempt_at = $2, updated_at = $2 where user_id = $1 \
                 and resource_type = 'vpn_user' and desired_state = 'active' \
                 and status = 'failed'",
            )
            .bind(&o.user_id)
            .bind(now)
            .execute()
            .await?;
            let row = tx
                .sql(concat!(
                    "insert into resources (id, resource_type, subscription_id, user_id, \
                     user_email, order_key, provider, region, plan_tier, status, \
                     desired_state, generation, phase, traffic_limit, traffic_used, \
                     attempts, upstream_released, next_attempt_at, created_at, \
                     updated_at, expire_at, service_tier, spec_version, applied_version) \
                     values ($1, 'vpn_user', $2, $3, $4, $5, 'otun', '', $6, 'pending', \
                     'active', 0, 1, $7, 0, 0, false, $8, $9, $9, $10, $11, 1, 0) \
                     returning ",
                    resource_columns!()
                ))
                .bind(o.resource_id.to_string())
                .bind(subscription_id)
                .bind(&o.user_id)
                .bind(&o.email)
                .bind(order_key)
                .bind(&t.plan_tier)
                .bind(t.traffic_limit)
                .bind(o.due_at)
                .bind(now)
                .bind(t.expire_at)
                .bind(&t.service_tier)
                .fetch_one()
                .await?;
            insert_event(tx, o.resource_id, &event, now).await?;
            row
        }
    };
    Resource::try_from(row)
}

/// The entitlements' side: the current one extended (a merge) or demoted, and the
/// order's own row.
async fn write_entitlement(
    tx: &mut Tx,
    o: &VpnOrder,
    plan: &OrderPlan,
    resource: &Resource,
    now: DateTime<Utc>,
) -> StoreResult<Entitlement> {
    if plan.merged {
        tx.sql(
            "update entitlements set expire_at = $2, traffic_limit = $3, \
             updated_at = $4 where user_id = $1 and is_current",
        )
        .bind(&o.user_id)
        .bind(plan.terms.expire_at)
        .bind(plan.terms.traffic_limit)
        .bind(now)
        .execute()
        .await?;
    } else {
        tx.sql(
            "update entitlements set is_current = false, \
             status = case when status = 'active' then 'superseded' else status end, \
             updated_at = $2 where user_id = $1 and is_current",
        )
        .bind(&o.user_id)
        .bind(now)
        .execute()
        .await?;
    }
    let e = &plan.entitlement;
    let row: EntitlementRow = tx
        .sql(concat!(
            "insert into entitlements (id, user_id, resource_id, subscription_id, \
             order_key, channel, business_type, plan_tier, service_tier, traffic_limit, \
             expire_at, email, device_id, note, is_trial, is_current, status, \
             spec_version, reported, created_at, updated_at) values ($1, $2, $3, $4, \
             $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
             $20) returning ",
            entitlement_columns!()
        ))
        .bind(o.entitlement_id.to_string())
        .bind(&o.user_id)
        .bind(resource.id.to_string())
        .bind(&o.subscription_id)
        .bind(&o.order_key)
        .bind(&o.channel)
        .bind(&o.business_type)
        .bind(&o.plan_tier)
        .bind(&o.service_tier)
        .bind(e.traffic_limit)
        .bind(e.expire_at)
        .bind(&o.email)
        .bind(&o.device_id)
        .bind(&o.note)
        .bind(o.is_trial)
        .bind(e.is_current)
        .bind(e.status.as_str())
        .bind(resource.vpn.spec_version)
        .bind(e.reported)
        .bind(now)
        .fetch_one()
        .await?;
    row.try_into()
}

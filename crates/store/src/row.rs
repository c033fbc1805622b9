//! Row types shared by both backends (sqlx's `FromRow` derive is generic over the
//! database) and their conversion into domain values.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::error::corrupt;
use domain::Phase;
use domain::entitlement::{Entitlement, EntitlementStatus};
use domain::migration::{Migration, MigrationStatus};
use domain::usage::Tally;
use domain::{
    Connection, DeleteReason, Desired, Event, EventKind, Resource, ResourceKind, Status, VpnSpec,
};
use ports::store::{OutboxMessage, StoreError};

/// Every column of `resources` the core reads, as a literal so queries can `concat!` it.
macro_rules! resource_columns {
    () => {
        "id, resource_type, subscription_id, user_id, user_email, order_key, provider, region, \
         plan_tier, status, desired_state, generation, delete_reason, node_id, phase, public_ip, \
         api_port, api_key, vless_port, ss_port, public_key, short_id, \
         cast(traffic_limit as bigint) as traffic_limit, \
         cast(traffic_used as bigint) as traffic_used, period_start, \
         cast(period_used as bigint) as period_used, error_message, attempts, upstream_released, deadline_at, \
         next_attempt_at, created_at, updated_at, ready_at, vpn_user_id, expire_at, \
         service_tier, spec_version, applied_version, traffic_synced_at, traffic_reset_version, \
         last_error, slot, \
         migration_status, migration_region, migration_plan_tier, migration_node_id, \
         migration_token_hash, migration_started_at, migration_deadline_at, migration_error, \
         migration_actor, retire_node_id, plan_wanted, lease_epoch"
    };
}
pub(crate) use resource_columns;

#[derive(sqlx::FromRow, Clone)]
pub struct ResourceRow {
    id: String,
    resource_type: String,
    subscription_id: String,
    pub(crate) user_id: String,
    user_email: Option<String>,
    order_key: String,
    provider: String,
    region: String,
    plan_tier: String,
    status: String,
    desired_state: String,
    generation: i64,
    lease_epoch: i64,
    delete_reason: Option<String>,
    node_id: Option<String>,
    phase: i32,
    public_ip: Option<String>,
    api_port: Option<i32>,
    api_key: Option<String>,
    vless_port: Option<i32>,
    ss_port: Option<i32>,
    public_key: Option<String>,
    short_id: Option<String>,
    traffic_limit: i64,
    traffic_used: i64,
    period_start: Option<NaiveDate>,
    period_used: i64,
    error_message: Option<String>,
    attempts: i32,
    upstream_released: bool,
    deadline_at: Option<DateTime<Utc>>,
    next_attempt_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    ready_at: Option<DateTime<Utc>>,
    vpn_user_id: Option<String>,
    expire_at: Option<DateTime<Utc>>,
    service_tier: Option<String>,
    spec_version: i64,
    applied_version: i64,
    traffic_synced_at: Option<DateTime<Utc>>,
    traffic_reset_version: i64,
    last_error: Option<String>,
    slot: Option<i32>,
    migration_status: Option<String>,
    migration_region: Option<String>,
    migration_plan_tier: Option<String>,
    migration_node_id: Option<String>,
    migration_token_hash: Option<String>,
    migration_started_at: Option<DateTime<Utc>>,
    migration_deadline_at: Option<DateTime<Utc>>,
    migration_error: Option<String>,
    migration_actor: Option<String>,
    retire_node_id: Option<String>,
    plan_wanted: Option<String>,
}

impl ResourceRow {
    fn migration(&mut self) -> Result<Option<Migration>, StoreError> {
        let Some(status) = self.migration_status.take() else {
            return Ok(None);
        };
        let (Some(to_region), Some(to_plan_tier), Some(started_at), Some(deadline_at)) = (
            self.migration_region.take(),
            self.migration_plan_tier.take(),
            self.migration_started_at,
            self.migration_deadline_at,
        ) else {
            return Err(corrupt("a migration without its region, plan or times"));
        };
        Ok(Some(Migration {
            status: MigrationStatus::parse(&status).map_err(corrupt)?,
            to_region,
            to_plan_tier,
            node_id: self.migration_node_id.take(),
            token_hash: self.migration_token_hash.take(),
            started_at,
            deadline_at,
            error_message: self.migration_error.take(),
            actor: self.migration_actor.take().unwrap_or_default(),
        }))
    }
}

impl TryFrom<ResourceRow> for Resource {
    type Error = StoreError;

    fn try_from(mut r: ResourceRow) -> Result<Self, StoreError> {
        let migration = r.migration()?;
        Ok(Resource {
            id: Uuid::parse_str(&r.id).map_err(corrupt)?,
            kind: ResourceKind::parse(&r.resource_type).map_err(corrupt)?,
            subscription_id: r.subscription_id,
            user_id: r.user_id,
            user_email: r.user_email,
            order_key: r.order_key,
            provider: r.provider,
            region: r.region,
            plan_tier: r.plan_tier,
            status: Status::parse(&r.status).map_err(corrupt)?,
            desired: Desired::parse(&r.desired_state).map_err(corrupt)?,
            generation: r.generation,
            lease_epoch: r.lease_epoch,
            delete_reason: r
                .delete_reason
                .as_deref()
                .map(DeleteReason::parse)
                .transpose()
                .map_err(corrupt)?,
            node_id: r.node_id,
            phase: Phase::of_step(r.phase),
            connection: Connection {
                public_ip: r.public_ip,
                api_port: r.api_port,
                api_key: r.api_key,
                vless_port: r.vless_port,
                ss_port: r.ss_port,
                public_key: r.public_key,
                short_id: r.short_id,
            },
            traffic_limit: r.traffic_limit,
            traffic_used: r.traffic_used,
            tally: r.period_start.map(|period_start| Tally {
                period_start,
                used: r.period_used,
            }),
            error_message: r.error_message,
            last_error: r.last_error,
            attempts: r.attempts,
            upstream_released: r.upstream_released,
            deadline_at: r.deadline_at,
            next_attempt_at: r.next_attempt_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            ready_at: r.ready_at,
            vpn: VpnSpec {
                vpn_user_id: r.vpn_user_id,
                expire_at: r.expire_at,
                service_tier: r.service_tier,
                spec_version: r.spec_version,
                applied_version: r.applied_version,
                traffic_synced_at: r.traffic_synced_at,
                reset_version: r.traffic_reset_version,
            },
            slot: r.slot,
            migration,
            retire_node_id: r.retire_node_id,
            plan_wanted: r.plan_wanted,
        })
    }
}

pub fn resources(rows: Vec<ResourceRow>) -> Result<Vec<Resource>, StoreError> {
    rows.into_iter().map(Resource::try_from).collect()
}

#[derive(sqlx::FromRow)]
pub struct EventRow {
    kind: String,
    actor: String,
    message: Option<String>,
    at: DateTime<Utc>,
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;

    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        Ok(Event {
            kind: EventKind::parse(&r.kind).map_err(corrupt)?,
            actor: r.actor,
            message: r.message,
            at: r.at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub subscription_id: String,
    pub payload: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<OutboxRow> for OutboxMessage {
    type Error = StoreError;

    fn try_from(r: OutboxRow) -> Result<Self, StoreError> {
        Ok(OutboxMessage {
            id: r.id,
            subscription_id: r.subscription_id,
            callback: serde_json::from_str(&r.payload).map_err(corrupt)?,
            attempts: r.attempts,
            created_at: r.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct SnapshotRow {
    pub active: bool,
    pub body: Option<String>,
    pub fetched_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
pub struct IdempotencyRow {
    pub fingerprint: String,
    pub status_code: Option<i32>,
    pub body: Option<String>,
}

/// Every column of `entitlements`, as a literal so queries can `concat!` it.
macro_rules! entitlement_columns {
    () => {
        "id, user_id, resource_id, subscription_id, order_key, channel, business_type, \
         plan_tier, service_tier, traffic_limit, expire_at, email, device_id, note, is_trial, \
         is_current, status, spec_version, reported, created_at, updated_at"
    };
}
pub(crate) use entitlement_columns;

#[derive(sqlx::FromRow)]
pub struct EntitlementRow {
    id: String,
    user_id: String,
    resource_id: String,
    subscription_id: Option<String>,
    order_key: Option<String>,
    channel: String,
    business_type: String,
    plan_tier: String,
    service_tier: String,
    traffic_limit: i64,
    expire_at: DateTime<Utc>,
    email: Option<String>,
    device_id: Option<String>,
    note: Option<String>,
    is_trial: bool,
    is_current: bool,
    status: String,
    spec_version: i64,
    reported: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<EntitlementRow> for Entitlement {
    type Error = StoreError;

    fn try_from(r: EntitlementRow) -> Result<Self, StoreError> {
        Ok(Entitlement {
            id: Uuid::parse_str(&r.id).map_err(corrupt)?,
            user_id: r.user_id,
            resource_id: Uuid::parse_str(&r.resource_id).map_err(corrupt)?,
            subscription_id: r.subscription_id,
            order_key: r.order_key,
            channel: r.channel,
            business_type: r.business_type,
            plan_tier: r.plan_tier,
            service_tier: r.service_tier,
            traffic_limit: r.traffic_limit,
            expire_at: r.expire_at,
            email: r.email,
            device_id: r.device_id,
            note: r.note,
            is_trial: r.is_trial,
            is_current: r.is_current,
            status: EntitlementStatus::parse(&r.status).map_err(corrupt)?,
            spec_version: r.spec_version,
            reported: r.reported,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

pub fn entitlements(rows: Vec<EntitlementRow>) -> Result<Vec<Entitlement>, StoreError> {
    rows.into_iter().map(Entitlement::try_from).collect()
}

/// The query prefix for "live resources of a kind" (`$2`), to be completed with a filter
/// on `$1`.
macro_rules! live_sql {
    () => {
        concat!(
            "select ",
            resource_columns!(),
            " from resources where resource_type = $2 and desired_state = 'active' \
             and status <> 'deleted' and "
        )
    };
}
pub(crate) use live_sql;

/// A resource id as stored.
pub fn uuid(id: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(id).map_err(corrupt)
}

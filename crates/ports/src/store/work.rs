//! The engine's hold on resources: claiming due rows under a lease, and writing a step's
//! outcome as one compare-and-set change (with its events and callbacks).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Claim, NewEvent, StoreResult};
use domain::Phase;
use domain::callback::FulfillmentCallback;
use domain::migration::{Migration, MigrationStatus};
use domain::{Connection, Desired, Resource, Status};

/// Who may write: the worker holding the lease, or anyone (callbacks, operators) when the
/// compare-and-set on status alone is enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// Only under this owner's claim of this epoch (`Resource::lease_epoch`).
    Lease {
        owner: String,
        epoch: i64,
    },
    Unleased,
}

/// How a change moves the failure counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Attempts {
    #[default]
    Keep,
    Reset,
    Increment,
}

/// One compare-and-set write to a resource, applied in one transaction together with its
/// events and its outbox callbacks. Fields left `None` keep their stored value. The
/// fields that can also clear a value (`Option<Option<_>>`) are set through the named
/// setters below (`next_step_at`, `next_step_now`, `rest`, `deadline`, `clear_deadline`,
/// `clear_retired`, `clear_plan_wanted`, `migrate`), which say what they mean.
#[derive(Debug, Clone)]
pub struct Change {
    pub id: Uuid,
    pub guard: Guard,
    /// The status the row must have for the change to apply.
    pub expect: Status,
    /// The desired state the row must have, when it matters (a ready callback must not
    /// touch a resource someone asked to delete).
    pub expect_desired: Option<Desired>,
    pub status: Option<Status>,
    pub node_id: Option<String>,
    /// Raise the creation step to at least this.
    pub phase: Option<Phase>,
    pub connection: Option<Connection>,
    pub error_message: Option<String>,
    pub last_error: Option<String>,
    pub callback_token_hash: Option<String>,
    pub upstream_released: Option<bool>,
    pub traffic_limit: Option<i64>,
    pub ready_at: Option<DateTime<Utc>>,
    /// `Some(x)` sets the deadline to `x` (`Some(None)` clears it).
    pub deadline_at: Option<Option<DateTime<Utc>>>,
    pub attempts: Attempts,
    /// `Some(x)` reschedules the row (`Some(None)`: nothing left to do). If the desired
    /// state changed since `seen_generation`, the row is due at once instead.
    pub next_attempt_at: Option<Option<DateTime<Utc>>>,
    pub seen_generation: i64,
    /// Likewise for the VPN terms: if they changed since, the row is due at once.
    pub seen_spec_version: i64,
    /// Give the lease back with this change.
    pub release_lease: bool,
    /// Appended to the history, in order, with the change.
    pub events: Vec<NewEvent>,
    /// Callbacks to queue in the outbox with the change, in order.
    pub callbacks: Vec<FulfillmentCallback>,
    /// The VPN manager's uuid for a VPN user.
    pub vpn_user_id: Option<String>,
    /// The VPN manager now holds this `spec_version` of the terms.
    pub applied_version: Option<i64>,
    /// Marks the resource's entitlements up to this `spec_version` as reported, queuing
    /// the `active` callback of each one an order with a subscription made, in the same
    /// transaction.
    pub report_through: Option<i64>,
    /// The node's region and plan (a migration's switch).
    pub region: Option<String>,
    pub plan_tier: Option<String>,
    /// Write `connection` whole: a field it lacks is cleared (a switch to another VPS must
    /// not keep the old one's details). Also restarts node metering from the new agent.
    pub replace_connection: bool,
    /// `Some(m)` writes the migration state (`Some(None)` clears it). Requires
    /// `expect_migration`; the step is checked against `domain::migration`.
    pub migration: Option<Option<Migration>>,
    /// The migration status the row must have (`Some(None)`: no migration).
    pub expect_migration: Option<Option<MigrationStatus>>,
    /// `Some(x)` sets (or clears) the VPS retired by a switch.
    pub retire_node_id: Option<Option<String>>,
    /// `Some(x)` sets (or clears) the plan an order asked for while the node came up.
    pub plan_wanted: Option<Option<String>>,
    /// Count this change as new intent (a migration asked for or cancelled): a worker that
    /// read the row before it re-reads it at once.
    pub bump_generation: bool,
    pub now: DateTime<Utc>,
}

impl Change {
    /// A change that expects `resource` to still be in the state it was read in.
    pub fn on(resource: &Resource, guard: Guard, now: DateTime<Utc>) -> Self {
        Change {
            id: resource.id,
            guard,
            expect: resource.status,
            expect_desired: None,
            status: None,
            node_id: None,
            phase: None,
            connection: None,
            error_message: None,
            last_error: None,
            callback_token_hash: None,
            upstream_released: None,
            traffic_limit: None,
            ready_at: None,
            deadline_at: None,
            attempts: Attempts::Keep,
            next_attempt_at: None,
            seen_generation: resource.generation,
            seen_spec_version: resource.vpn.spec_version,
            release_lease: false,
            events: Vec::new(),
            callbacks: Vec::new(),
            vpn_user_id: None,
            applied_version: None,
            report_through: None,
            region: None,
            plan_tier: None,
            replace_connection: false,
            migration: None,
            expect_migration: None,
            retire_node_id: None,
            plan_wanted: None,
            bump_generation: false,
            now,
        }
    }

    /// Whether the change makes the row due now (its worker should be woken).
    pub fn wakes_now(&self) -> bool {
        matches!(self.next_attempt_at, Some(Some(at)) if at <= self.now)
    }

    /// The row's next step is at `at` (the engine's next look).
    pub fn next_step_at(&mut self, at: DateTime<Utc>) {
        self.next_attempt_at = Some(Some(at));
    }

    /// The row's next step is at once.
    pub fn next_step_now(&mut self) {
        self.next_attempt_at = Some(Some(self.now));
    }

    /// At once when there is `more` to do, else rest.
    pub fn next_step_now_if(&mut self, more: bool) {
        if more {
            self.next_step_now();
        } else {
            self.rest();
        }
    }

    /// Nothing is left to do until something changes: no next step is scheduled.
    pub fn rest(&mut self) {
        self.next_attempt_at = Some(None);
    }

    /// The resource must be ready by `at`, or it fails.
    pub fn deadline(&mut self, at: DateTime<Utc>) {
        self.deadline_at = Some(Some(at));
    }

    /// The resource has no deadline any more (it is ready, failed or going away).
    pub fn clear_deadline(&mut self) {
        self.deadline_at = Some(None);
    }

    /// Forgets the VPS a switch retired (it is deleted).
    pub fn clear_retired(&mut self) {
        self.retire_node_id = Some(None);
    }

    /// Forgets the plan an order asked for while the node came up (it is acted on).
    pub fn clear_plan_wanted(&mut self) {
        self.plan_wanted = Some(None);
    }

    /// Expects the migration `resource` was read with, and moves it to `to`.
    pub fn migrate(&mut self, resource: &Resource, to: Option<Migration>) {
        self.expect_migration = Some(resource.migration.as_ref().map(|m| m.status));
        self.migration = Some(to);
    }
}

#[async_trait]
pub trait Work: Send + Sync {
    /// Leases up to `limit` resources whose next attempt is due.
    async fn claim_resources(&self, claim: Claim<'_>) -> StoreResult<Vec<Resource>>;
    /// Leases one resource, due or not (a request driving its own order).
    async fn claim_resource(&self, id: Uuid, claim: Claim<'_>) -> StoreResult<Option<Resource>>;
    /// Applies a compare-and-set change; `false` when the guard did not match. A status
    /// write the state machine does not allow is refused.
    async fn apply(&self, change: &Change) -> StoreResult<bool>;
    /// Extends a lease its owner still holds (a step that runs long); `false` when it does
    /// not hold it any more.
    async fn extend_lease(&self, id: Uuid, owner: &str, until: DateTime<Utc>) -> StoreResult<bool>;
    /// Gives a lease back and makes the row due now (after a lost compare-and-set).
    async fn release(&self, id: Uuid, owner: &str, now: DateTime<Utc>) -> StoreResult<()>;
    /// When the earliest scheduled resource is due: a leased one when its lease ends or
    /// its owner would count as dead, whichever is first.
    async fn next_resource_due(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// Beats `owner`'s lifeline: its leases are its own until `dead_at`, unless it beats
    /// again (a `dead_at` of now frees them at once: a clean stop).
    async fn beat(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        dead_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Forgets the lifelines of owners dead since before `before`; returns how many.
    async fn purge_lifelines(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}

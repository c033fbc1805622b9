//! Replacing a node's VPS: region migration, plan change and rebuild are one mechanism.
//! A new VPS is prepared beside the one that serves; when it is `active`, one transaction
//! switches the resource to it, and the old VPS is then deleted until it is gone. A new
//! VPS that fails or is late, or whose migration is cancelled, is deleted instead, and the
//! old one keeps serving throughout.
//!
//! ```text
//!            ┌──────────── cancel ─────────────┐
//! (none) ─> requested ─> creating ─> installing ─> switching ─> (none: switched)
//!   ▲            │           │            │            │
//!   │            └───────────┴─> failing ─┴────────────┘   (failed or late)
//!   │                              │    └─ dismiss ─> cancelling ─> (none)
//!   └──── dismiss ──── failed <────┘         cancel ─┘
//! ```

use chrono::{DateTime, Utc};

use super::resource::wire_enum;
use super::{Desired, Resource, ResourceKind, Status};

wire_enum! {
    /// Where a migration stands. `failing` and `cancelling` still have a new VPS to
    /// delete; `failed` is shown until dismissed or replaced.
    MigrationStatus {
        Requested => "requested",
        Creating => "creating",
        Installing => "installing",
        Switching => "switching",
        Failing => "failing",
        Failed => "failed",
        Cancelling => "cancelling",
    }
}

wire_enum! {
    /// A migration's status as the apps see it (`migration.status`).
    ShownMigration {
        Creating => "creating",
        Installing => "installing",
        Switching => "switching",
        Failed => "failed",
    }
}

impl MigrationStatus {
    /// The status the apps see, or `None` when the migration is hidden (being cancelled).
    pub fn shown(self) -> Option<ShownMigration> {
        use MigrationStatus::*;
        match self {
            Requested | Creating => Some(ShownMigration::Creating),
            Installing => Some(ShownMigration::Installing),
            Switching => Some(ShownMigration::Switching),
            Failing | Failed => Some(ShownMigration::Failed),
            Cancelling => None,
        }
    }

    /// A new VPS is being prepared (it may exist upstream and is wanted).
    pub fn is_preparing(self) -> bool {
        use MigrationStatus::*;
        matches!(self, Creating | Installing | Switching)
    }

    /// A new VPS may exist upstream and must be deleted before the migration is over.
    pub fn is_cleaning_up(self) -> bool {
        matches!(self, MigrationStatus::Failing | MigrationStatus::Cancelling)
    }

    /// Still running: another migration must wait.
    pub fn is_running(self) -> bool {
        self != MigrationStatus::Failed
    }
}

/// Whether a migration may move `from → to` (`None`: no migration). Every write of the
/// migration state is checked against this table, like the resource's own status.
pub fn can_step(from: Option<MigrationStatus>, to: Option<MigrationStatus>) -> bool {
    use MigrationStatus::*;
    matches!(
        (from, to),
        // Start, or replace a failed one.
        (None | Some(Failed), Some(Requested))
            // The create call is committed before it is made; the node id is learned.
            | (Some(Requested), Some(Creating))
            | (Some(Creating), Some(Creating | Installing | Switching))
            | (Some(Installing), Some(Installing | Switching))
            | (Some(Switching), Some(Switching))
            // The switch.
            | (Some(Creating | Installing | Switching), None)
            // Failed or late: the new VPS is deleted, the old one serves on.
            | (Some(Requested | Creating | Installing | Switching), Some(Failing))
            | (Some(Failing), Some(Failed))
            // Cancel before anything was asked of the hosting service: nothing to undo.
            | (Some(Requested), None)
            // Cancel (or dismiss a failure whose VPS is still being deleted).
            | (Some(Creating | Installing | Switching | Failing), Some(Cancelling))
            | (Some(Cancelling), None)
            // Dismiss a failure.
            | (Some(Failed), None)
    )
}

/// A migration of a live node: where to, how far, and the new VPS once known.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    pub status: MigrationStatus,
    pub to_region: String,
    pub to_plan_tier: String,
    /// The new VPS's id at the hosting service, once known.
    pub node_id: Option<String>,
    /// The digest of the credential minted for the new VPS's agent.
    pub token_hash: Option<String>,
    pub started_at: DateTime<Utc>,
    /// When the new VPS must be active by.
    pub deadline_at: DateTime<Utc>,
    pub error_message: Option<String>,
    /// Who asked: `user`, `subscription_service`, `operator:<name>`, `admin`.
    pub actor: String,
}

impl Migration {
    /// A migration's new state, checked against the table.
    pub fn to(&self, status: MigrationStatus) -> Result<Migration, IllegalStep> {
        if !can_step(Some(self.status), Some(status)) {
            return Err(IllegalStep {
                from: Some(self.status),
                to: Some(status),
            });
        }
        Ok(Migration {
            status,
            ..self.clone()
        })
    }
}

/// A migration step the table refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal migration step {from:?} -> {to:?}")]
pub struct IllegalStep {
    pub from: Option<MigrationStatus>,
    pub to: Option<MigrationStatus>,
}

/// Checks a migration step for callers that want an error.
pub fn step(from: Option<MigrationStatus>, to: Option<MigrationStatus>) -> Result<(), IllegalStep> {
    if can_step(from, to) {
        Ok(())
    } else {
        Err(IllegalStep { from, to })
    }
}

/// Why a migration may not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Only an active node (one we know the VPS of) migrates.
    NodeNotActive,
    /// One migration at a time per node.
    InProgress,
}

/// Whether `node` may start a migration now.
pub fn may_start(node: &Resource) -> Result<(), Refusal> {
    if node.kind != ResourceKind::HostingNode
        || node.desired != Desired::Active
        || node.status != Status::Active
        || node.node_id.is_none()
    {
        return Err(Refusal::NodeNotActive);
    }
    match &node.migration {
        Some(m) if m.status.is_running() => Err(Refusal::InProgress),
        _ => Ok(()),
    }
}

/// Whether a history entry records a migration or rebuild that `actor` started (its
/// cancelling later does not undo the entry).
pub fn started_by(event: &super::Event, actor: &str) -> bool {
    event.kind == super::EventKind::MigrationRequested && event.actor == actor
}

/// A new migration of `node` to `to_region` and `to_plan_tier`, if it may start.
pub fn start(
    node: &Resource,
    to_region: &str,
    to_plan_tier: &str,
    now: DateTime<Utc>,
    deadline_at: DateTime<Utc>,
    actor: &str,
) -> Result<Migration, Refusal> {
    may_start(node)?;
    Ok(Migration {
        status: MigrationStatus::Requested,
        to_region: to_region.to_owned(),
        to_plan_tier: to_plan_tier.to_owned(),
        node_id: None,
        token_hash: None,
        started_at: now,
        deadline_at,
        error_message: None,
        actor: actor.to_owned(),
    })
}

/// What a hosting order for `plan_tier` does to one of its subscription's live nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanOrder {
    /// Same plan, or a node not meant to live: nothing.
    Nothing,
    /// An active node free to migrate: in place (same region) to the new plan, now.
    MigrateNow(Migration),
    /// A node still coming up, or migrating already: it moves to the plan once it can.
    Remember,
}

/// What a hosting order for `plan_tier` does to `node`.
pub fn on_plan_order(
    node: &Resource,
    plan_tier: &str,
    now: DateTime<Utc>,
    deadline_at: DateTime<Utc>,
    actor: &str,
) -> PlanOrder {
    if node.plan_tier == plan_tier
        || node.kind != ResourceKind::HostingNode
        || node.desired != Desired::Active
        || !matches!(
            node.status,
            Status::Pending | Status::Creating | Status::Active
        )
    {
        return PlanOrder::Nothing;
    }
    match start(node, &node.region, plan_tier, now, deadline_at, actor) {
        Ok(m) => PlanOrder::MigrateNow(m),
        Err(_) => PlanOrder::Remember,
    }
}

/// The migration a node's remembered plan (`plan_wanted`) starts once the node is active
/// and free, or `None` (nothing to change, or not yet possible).
pub fn plan_change(
    node: &Resource,
    plan_tier: &str,
    now: DateTime<Utc>,
    deadline_at: DateTime<Utc>,
    actor: &str,
) -> Option<Migration> {
    match on_plan_order(node, plan_tier, now, deadline_at, actor) {
        PlanOrder::MigrateNow(m) => Some(m),
        PlanOrder::Nothing | PlanOrder::Remember => None,
    }
}

/// A cancel of a node that has no migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no migration to cancel")]
pub struct NothingToCancel;

/// What cancelling (or dismissing) a migration in `from` leads to: `None` when nothing
/// exists upstream to undo, else `cancelling`.
pub fn cancel(from: Option<MigrationStatus>) -> Result<Option<MigrationStatus>, NothingToCancel> {
    use MigrationStatus::*;
    match from {
        None => Err(NothingToCancel),
        Some(Requested | Failed) => Ok(None),
        Some(Cancelling) => Ok(Some(Cancelling)),
        Some(Creating | Installing | Switching | Failing) => Ok(Some(Cancelling)),
    }
}

/// Whether a listed node `node_id` is wanted by `owner` because of its migration: it is
/// the new VPS, or the new VPS's id is not known yet (a lost create answer) while one is
/// being prepared, so any node of ours may be it (fail closed).
pub fn wants_node(owner: &Resource, node_id: &str) -> bool {
    match &owner.migration {
        Some(m) if m.status.is_preparing() => m.node_id.as_deref().is_none_or(|n| n == node_id),
        _ => false,
    }
}

#[cfg(test)]
#[path = "migration_tests.rs"]
mod tests;

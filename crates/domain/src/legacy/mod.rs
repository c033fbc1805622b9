//! Taking over from the Go service (CONTRACTS.md §5): what each row of its database becomes
//! here, which rows are refused and why, and what an operator is told. Pure rules: the
//! import reads the rows and what our database already holds, asks these functions, and
//! writes what they decide.
//!
//! - A hosting row becomes a hosting node with the row's id (`plan_node`), its status
//!   mapped (`NodeFate`); the live rows of one subscription take slots by age
//!   (`plan_subscription`), duplicates included, flagged.
//! - A user's VPN rows become one VPN user resource and one entitlement per row
//!   (`plan_vpn_user`): the newest current active row is the current entitlement, and the
//!   VPN manager's account is taken as it is.
//! - A log row becomes a history entry (`log_message`).

mod hosting;
mod vpn;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PlanTier;
use super::input::{self, InputError};
use super::resource::wire_enum;

pub use hosting::{LegacyNode, NodeFate, NodePlan, SubscriptionPlan, plan_node, plan_subscription};
pub use vpn::{
    EntitlementPlan, LegacyVpnRow, TrialsTaken, VpnResourcePlan, VpnUserPlan, plan_vpn_user,
};

/// The history entries copied from the Go service, and the import's own entry.
pub const LEGACY_ACTOR: &str = "legacy";
/// Who wrote the entry that says a resource was imported.
pub const IMPORT_ACTOR: &str = "import";

/// A row of the Go service's `provision_logs`.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyLog {
    pub id: Uuid,
    pub provision_id: Uuid,
    pub action: Option<String>,
    pub status: Option<String>,
    pub message: Option<String>,
    pub created_at: DateTime<Utc>,
}

wire_enum! {
    /// What the import tells an operator about (the report's `findings[].kind`).
    FindingKind {
        DuplicateLiveNodes => "duplicate_live_nodes",
        LostDeletion => "lost_deletion",
        UnfinishedCreation => "unfinished_creation",
        VpsToCleanUp => "vps_to_clean_up",
        SeveralCurrentVpnRows => "several_current_vpn_rows",
        UnknownStatus => "unknown_status",
        RefusedRow => "refused_row",
    }
}

/// One thing the operator should know, naming the legacy rows it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    pub ids: Vec<Uuid>,
    pub user_id: Option<String>,
    pub subscription_id: Option<String>,
    pub detail: String,
}

/// The rule a refused row breaks, for people.
pub type Rule = String;

pub(super) fn rule(field: &str, e: InputError) -> Rule {
    format!("{field}: {e}")
}

/// An id as our input rules have it (1..256 characters, no control characters).
pub(super) fn checked_id(value: &str, field: &str) -> Result<String, Rule> {
    input::id(value, field, "missing", "too_long")
        .map(str::to_owned)
        .map_err(|e| rule(field, e))
}

/// Optional text: blank reads as absent; a control character is refused.
pub(super) fn checked_text(value: Option<&str>, field: &str) -> Result<Option<String>, Rule> {
    if value.is_some_and(|v| !input::is_clean(v)) {
        return Err(format!("{field} contains control characters"));
    }
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if v.chars().count() > input::MAX_ID => Err(format!(
            "{field} is longer than {} characters",
            input::MAX_ID
        )),
        Some(v) => Ok(Some(v.to_owned())),
    }
}

/// A plan tier: one of the contract's names (an unknown or empty one is refused).
pub(super) fn checked_plan(value: Option<&str>) -> Result<PlanTier, Rule> {
    let value = value.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Err("plan_tier is empty".into());
    }
    input::plan_tier(value).map_err(|_| format!("plan_tier {value:?} is not a plan we sell"))
}

/// A port the Go service left: `0` (its placeholder) and values outside 1..65535 read as
/// absent.
pub(super) fn port(value: Option<i32>) -> Option<i32> {
    value.filter(|p| (1..=65_535).contains(p))
}

pub(super) fn refusal(
    id: Uuid,
    user_id: Option<&str>,
    subscription_id: Option<&str>,
    rule: Rule,
) -> Finding {
    let shown = |s: Option<&str>| {
        s.filter(|s| !s.is_empty() && input::is_clean(s))
            .map(str::to_owned)
    };
    Finding {
        kind: FindingKind::RefusedRow,
        ids: vec![id],
        user_id: shown(user_id),
        subscription_id: shown(subscription_id),
        detail: format!("not imported: {rule}"),
    }
}

/// A log row's history message: its action, status and message.
pub fn log_message(log: &LegacyLog) -> String {
    let parts: Vec<String> = [&log.action, &log.status, &log.message]
        .into_iter()
        .filter_map(|p| p.as_deref().and_then(input::free_text))
        .collect();
    if parts.is_empty() {
        "(empty log entry)".into()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

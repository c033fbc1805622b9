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

use std::collections::HashSet;

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::entitlement::EntitlementStatus;
use super::input::{self, InputError};
use super::resource::wire_enum;
use super::{Connection, Desired, PlanTier, Status};

/// The history entries copied from the Go service, and the import's own entry.
pub const LEGACY_ACTOR: &str = "legacy";
/// Who wrote the entry that says a resource was imported.
pub const IMPORT_ACTOR: &str = "import";

/// A row of the Go service's `hosting_provisions`, as read (text trimmed of nothing: the
/// rules below decide what an empty value means).
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyNode {
    pub id: Uuid,
    pub subscription_id: String,
    pub user_id: String,
    pub hosting_node_id: Option<String>,
    pub provider: String,
    pub region: String,
    pub public_ip: Option<String>,
    pub api_port: Option<i32>,
    pub api_key: Option<String>,
    pub vless_port: Option<i32>,
    pub ss_port: Option<i32>,
    pub public_key: Option<String>,
    pub short_id: Option<String>,
    pub status: String,
    pub error_message: Option<String>,
    pub plan_tier: String,
    pub traffic_limit: Option<i64>,
    pub traffic_used: Option<i64>,
    /// A VPS the Go service failed to delete (false where its migration 007 never ran).
    pub needs_cleanup: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ready_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A row of the Go service's `vpn_provisions`.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyVpnRow {
    pub id: Uuid,
    pub user_id: String,
    pub subscription_id: Option<String>,
    pub channel: Option<String>,
    pub business_type: String,
    pub service_tier: String,
    pub otun_uuid: Option<String>,
    pub plan_tier: Option<String>,
    pub status: String,
    pub traffic_limit: Option<i64>,
    pub traffic_used: Option<i64>,
    pub expire_at: Option<DateTime<Utc>>,
    pub email: Option<String>,
    pub device_id: Option<String>,
    pub note: Option<String>,
    pub is_current: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl LegacyVpnRow {
    /// A trial: one per user, per device id and per email, across imported and new rows.
    pub fn is_trial(&self) -> bool {
        self.business_type.trim() == "trial"
    }
}

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

/// What a hosting row's status becomes here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeFate {
    /// `active`: serving, taken as it is.
    Active,
    /// Still being created (`pending`, `creating`, `running`, `installing`): the engine
    /// carries on from the creation step it reached.
    Creating {
        phase: i32,
    },
    /// `stopping`: a deletion the Go service lost; the engine finishes it.
    LostDeletion,
    Failed,
    /// `deleted`, or any row with `deleted_at`: history.
    Deleted,
    /// A status the Go service never defined: failed, naming it.
    Unknown(String),
}

impl NodeFate {
    /// Reads a row's status (`deleted_at` set counts as deleted).
    pub fn of(status: &str, deleted_at: Option<DateTime<Utc>>) -> Self {
        if deleted_at.is_some() {
            return NodeFate::Deleted;
        }
        match status {
            "active" => NodeFate::Active,
            "pending" | "creating" => NodeFate::Creating { phase: 2 },
            "running" | "installing" => NodeFate::Creating { phase: 3 },
            "stopping" => NodeFate::LostDeletion,
            "failed" => NodeFate::Failed,
            "deleted" => NodeFate::Deleted,
            other => NodeFate::Unknown(other.to_owned()),
        }
    }

    /// Our status for it.
    pub fn status(&self) -> Status {
        match self {
            NodeFate::Active => Status::Active,
            NodeFate::Creating { .. } => Status::Creating,
            NodeFate::LostDeletion => Status::Deleting,
            NodeFate::Failed | NodeFate::Unknown(_) => Status::Failed,
            NodeFate::Deleted => Status::Deleted,
        }
    }

    /// Our desired state for it.
    pub fn desired(&self) -> Desired {
        match self {
            NodeFate::LostDeletion | NodeFate::Deleted => Desired::Deleted,
            _ => Desired::Active,
        }
    }

    /// Whether it holds a slot of its subscription (our live nodes do: desired active and
    /// not deleted).
    pub fn is_live(&self) -> bool {
        self.desired() == Desired::Active && self.status() != Status::Deleted
    }
}

/// What one hosting row becomes: a hosting node with the row's id.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePlan {
    pub id: Uuid,
    pub subscription_id: String,
    pub user_id: String,
    pub provider: String,
    pub region: String,
    pub plan_tier: String,
    pub status: Status,
    pub desired: Desired,
    pub node_id: Option<String>,
    pub phase: i32,
    pub connection: Connection,
    pub traffic_limit: i64,
    pub traffic_used: i64,
    pub error_message: Option<String>,
    /// True when nothing is left for us to delete upstream.
    pub upstream_released: bool,
    pub deadline_at: Option<DateTime<Utc>>,
    /// Whether the engine must take a step at once (carry on, finish, clean up).
    pub due: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ready_at: Option<DateTime<Utc>>,
    /// The slot of its subscription, for a live node (see `plan_subscription`).
    pub slot: Option<i32>,
    /// The Go service's status, for the history entry that says where it came from.
    pub legacy_status: String,
}

/// The rule a refused row breaks, for people.
pub type Rule = String;

fn rule(field: &str, e: InputError) -> Rule {
    format!("{field}: {e}")
}

/// An id as our input rules have it (1..256 characters, no control characters).
fn checked_id(value: &str, field: &str) -> Result<String, Rule> {
    input::id(value, field, "missing", "too_long")
        .map(str::to_owned)
        .map_err(|e| rule(field, e))
}

/// Optional text: blank reads as absent; a control character is refused.
fn checked_text(value: Option<&str>, field: &str) -> Result<Option<String>, Rule> {
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
fn checked_plan(value: Option<&str>) -> Result<PlanTier, Rule> {
    let value = value.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Err("plan_tier is empty".into());
    }
    input::plan_tier(value).map_err(|_| format!("plan_tier {value:?} is not a plan we sell"))
}

/// A port the Go service left: `0` (its placeholder) and values outside 1..65535 read as
/// absent.
fn port(value: Option<i32>) -> Option<i32> {
    value.filter(|p| (1..=65_535).contains(p))
}

/// What a hosting row becomes, or the rule it breaks. `now` is the import's time: an
/// unfinished creation's deadline counts from it (a creation the Go service lost long ago
/// still gets its chance to be adopted).
pub fn plan_node(
    row: &LegacyNode,
    now: DateTime<Utc>,
    ready_timeout: Duration,
) -> Result<(NodePlan, Vec<Finding>), Rule> {
    let subscription_id = checked_id(&row.subscription_id, "subscription_id")?;
    let user_id = checked_id(&row.user_id, "user_id")?;
    let region = checked_id(&row.region, "region")?;
    let provider = checked_id(&row.provider, "provider")?;
    let plan = checked_plan(Some(&row.plan_tier))?;
    let node_id = checked_text(row.hosting_node_id.as_deref(), "hosting_node_id")?;
    let connection = Connection {
        public_ip: checked_text(row.public_ip.as_deref(), "public_ip")?,
        api_port: port(row.api_port),
        api_key: checked_text(row.api_key.as_deref(), "api_key")?,
        vless_port: port(row.vless_port),
        ss_port: port(row.ss_port),
        public_key: checked_text(row.public_key.as_deref(), "public_key")?,
        short_id: checked_text(row.short_id.as_deref(), "short_id")?,
    };
    let fate = NodeFate::of(&row.status, row.deleted_at);
    let finding = |kind: FindingKind, detail: String| Finding {
        kind,
        ids: vec![row.id],
        user_id: Some(user_id.clone()),
        subscription_id: Some(subscription_id.clone()),
        detail,
    };
    let mut findings = Vec::new();
    // A VPS the Go service failed to delete is deleted; the resource keeps its status.
    let clean_up = row.needs_cleanup
        && node_id.is_some()
        && matches!(fate, NodeFate::Failed | NodeFate::Deleted);
    if clean_up {
        findings.push(finding(
            FindingKind::VpsToCleanUp,
            format!(
                "VPS {} is deleted by the engine (the Go service failed to delete it)",
                node_id.as_deref().unwrap_or_default()
            ),
        ));
    }
    let error_message = match &fate {
        NodeFate::Failed => Some(
            row.error_message
                .as_deref()
                .and_then(input::free_text)
                .unwrap_or_else(|| "failed in the Go service".into()),
        ),
        NodeFate::Unknown(status) => {
            findings.push(finding(
                FindingKind::UnknownStatus,
                format!("status {status:?} is not one the Go service defined: imported as failed"),
            ));
            Some(format!(
                "the Go service left this node in status {status:?}"
            ))
        }
        _ => None,
    };
    match &fate {
        NodeFate::Creating { .. } => findings.push(finding(
            FindingKind::UnfinishedCreation,
            match &node_id {
                Some(n) => format!("the engine follows VPS {n} and adopts it once active"),
                None => "no VPS recorded: the engine looks for one before it creates".into(),
            },
        )),
        NodeFate::LostDeletion => findings.push(finding(
            FindingKind::LostDeletion,
            "the engine finishes the deletion and reports it deleted".into(),
        )),
        _ => {}
    }
    let status = fate.status();
    let (phase, due, deadline_at, upstream_released) = match &fate {
        NodeFate::Active => (4, node_id.is_none(), None, false),
        NodeFate::Creating { phase } => (
            *phase,
            true,
            Some(super::units::after(now, ready_timeout)),
            false,
        ),
        // The Go service may have made a VPS it never recorded: look for it.
        NodeFate::LostDeletion => (2, true, None, false),
        NodeFate::Failed | NodeFate::Deleted | NodeFate::Unknown(_) => (
            if node_id.is_some() { 2 } else { 1 },
            clean_up,
            None,
            !clean_up,
        ),
    };
    let ready_at = match fate {
        NodeFate::Active => Some(row.ready_at.unwrap_or(row.updated_at)),
        _ => row.ready_at,
    };
    let plan_tier = plan.as_str().to_owned();
    Ok((
        NodePlan {
            id: row.id,
            subscription_id,
            user_id,
            provider,
            region,
            status,
            desired: fate.desired(),
            node_id,
            phase,
            connection,
            traffic_limit: row
                .traffic_limit
                .filter(|l| *l > 0)
                .unwrap_or_else(|| plan.node_traffic_limit()),
            traffic_used: row.traffic_used.unwrap_or(0).max(0),
            error_message,
            upstream_released,
            deadline_at,
            due,
            created_at: row.created_at,
            updated_at: row.updated_at,
            ready_at,
            slot: None,
            plan_tier,
            legacy_status: row.status.clone(),
        },
        findings,
    ))
}

/// What the rows of one subscription become.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriptionPlan {
    /// Nodes to write (not imported before), live ones with their slot.
    pub nodes: Vec<NodePlan>,
    /// Rows an earlier run imported.
    pub already_imported: usize,
    /// Refused rows (`refused_row` findings).
    pub refused: Vec<Finding>,
    /// Everything else to tell, the same on every run.
    pub findings: Vec<Finding>,
}

/// Plans the hosting rows of one subscription (oldest first). `imported` names the rows
/// an earlier run imported; `taken` the slots our live nodes of the subscription hold.
/// Every live row is kept, each in the lowest free slot by age: the Go service's duplicate
/// VPSes are not deleted on the import's judgement, only flagged (the subscription's node
/// limit stays 1, so it shows in the operator queue as over its limit).
pub fn plan_subscription(
    rows: &[LegacyNode],
    imported: &HashSet<Uuid>,
    taken: &[i32],
    now: DateTime<Utc>,
    ready_timeout: Duration,
) -> SubscriptionPlan {
    let mut plan = SubscriptionPlan::default();
    let mut live = Vec::new();
    let mut taken: Vec<i32> = taken.to_vec();
    for row in rows {
        match plan_node(row, now, ready_timeout) {
            Err(rule) => plan.refused.push(refusal(
                row.id,
                Some(&row.user_id),
                Some(&row.subscription_id),
                rule,
            )),
            Ok((mut node, findings)) => {
                plan.findings.extend(findings);
                let is_live = node.desired == Desired::Active && node.status.is_live();
                if is_live {
                    live.push(row.id);
                }
                if imported.contains(&row.id) {
                    plan.already_imported += 1;
                    continue;
                }
                if is_live {
                    let slot = (1..).find(|s| !taken.contains(s)).unwrap_or(1);
                    taken.push(slot);
                    node.slot = Some(slot);
                }
                plan.nodes.push(node);
            }
        }
    }
    if live.len() > 1 {
        let first = rows.iter().find(|r| r.id == live[0]);
        plan.findings.push(Finding {
            kind: FindingKind::DuplicateLiveNodes,
            detail: format!(
                "{} live nodes for one subscription; all are kept, in slots by age, and the \
                 subscription shows in the operator queue as over_node_limit",
                live.len()
            ),
            ids: live,
            user_id: first.map(|r| r.user_id.clone()),
            subscription_id: first.map(|r| r.subscription_id.clone()),
        });
    }
    plan
}

fn refusal(id: Uuid, user_id: Option<&str>, subscription_id: Option<&str>, rule: Rule) -> Finding {
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

/// Trials already granted (ours, and those accepted earlier in the import): one per user,
/// per device id and per email (case-insensitive), across imported and new rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrialsTaken {
    pub users: HashSet<String>,
    pub devices: HashSet<String>,
    pub emails: HashSet<String>,
}

impl TrialsTaken {
    /// The rule a trial of `user` on `device` with `email` breaks, if any.
    fn collision(&self, user: &str, device: Option<&str>, email: Option<&str>) -> Option<Rule> {
        if self.users.contains(user) {
            return Some("a second trial for this user".into());
        }
        if let Some(d) = device.filter(|d| self.devices.contains(*d)) {
            return Some(format!("device {d:?} already had a trial"));
        }
        if let Some(e) = email.filter(|e| self.emails.contains(&e.to_lowercase())) {
            return Some(format!("email {e:?} already had a trial"));
        }
        None
    }

    fn take(&mut self, user: &str, device: Option<&str>, email: Option<&str>) {
        self.users.insert(user.to_owned());
        if let Some(d) = device {
            self.devices.insert(d.to_owned());
        }
        if let Some(e) = email {
            self.emails.insert(e.to_lowercase());
        }
    }
}

/// One VPN row as an entitlement.
#[derive(Debug, Clone, PartialEq)]
pub struct EntitlementPlan {
    pub id: Uuid,
    pub subscription_id: Option<String>,
    pub channel: String,
    pub business_type: String,
    pub plan_tier: String,
    pub service_tier: String,
    pub traffic_limit: i64,
    pub traffic_used: i64,
    pub expire_at: DateTime<Utc>,
    pub email: Option<String>,
    pub device_id: Option<String>,
    pub note: Option<String>,
    pub is_trial: bool,
    pub is_current: bool,
    pub status: EntitlementStatus,
    pub created_at: DateTime<Utc>,
    pub otun_uuid: Option<String>,
}

/// The user's VPN user resource, made from the row `/my/vpn` showed.
#[derive(Debug, Clone, PartialEq)]
pub struct VpnResourcePlan {
    /// The id of the row the Go service's `/my/vpn` showed (the current one, else the
    /// newest).
    pub id: Uuid,
    pub subscription_id: String,
    pub email: Option<String>,
    pub plan_tier: String,
    pub service_tier: String,
    pub status: Status,
    pub desired: Desired,
    pub vpn_user_id: Option<String>,
    pub traffic_limit: i64,
    pub traffic_used: i64,
    pub expire_at: DateTime<Utc>,
    /// Whether the engine must act (create an account the Go service never made).
    pub due: bool,
    /// The next traffic sync takes expiry, limit and usage from the VPN manager.
    pub adopt_upstream_terms: bool,
    pub created_at: DateTime<Utc>,
}

/// What one user's VPN rows become.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VpnUserPlan {
    /// A new resource, unless the user already has one (an earlier run, or our own).
    pub resource: Option<VpnResourcePlan>,
    pub entitlements: Vec<EntitlementPlan>,
    pub already_imported: usize,
    pub refused: Vec<Finding>,
    pub findings: Vec<Finding>,
}

const VPN_STATUSES: &[&str] = &["active", "converted", "disabled", "expired", "revoked"];
const BUSINESS_TYPES: &[&str] = &["purchase", "subscription", "trial", "gift"];

/// A VPN row as an entitlement (not yet placed: `is_current` and `status` are the row's
/// own), or the rule it breaks.
fn entitlement(row: &LegacyVpnRow, now: DateTime<Utc>) -> Result<EntitlementPlan, Rule> {
    checked_id(&row.user_id, "user_id")?;
    let plan = checked_plan(row.plan_tier.as_deref())?;
    let business_type = row.business_type.trim();
    if !BUSINESS_TYPES.contains(&business_type) {
        return Err(format!(
            "business_type {business_type:?} is not one we know"
        ));
    }
    if !VPN_STATUSES.contains(&row.status.as_str()) {
        return Err(format!(
            "status {:?} is not one the Go service defined",
            row.status
        ));
    }
    let email = input::email(row.email.as_deref()).map_err(|e| rule("email", e))?;
    let channel = checked_text(row.channel.as_deref(), "channel")?
        .unwrap_or_else(|| business_type.to_owned());
    let service_tier = checked_text(Some(&row.service_tier), "service_tier")?
        .unwrap_or_else(|| plan.service_tier().to_owned());
    let created_at = row.created_at.or(row.updated_at).unwrap_or(now);
    Ok(EntitlementPlan {
        id: row.id,
        subscription_id: checked_text(row.subscription_id.as_deref(), "subscription_id")?,
        channel,
        business_type: business_type.to_owned(),
        plan_tier: plan.as_str().to_owned(),
        service_tier,
        traffic_limit: plan.vpn_traffic_limit(row.traffic_limit),
        traffic_used: row.traffic_used.unwrap_or(0).max(0),
        // No expiry recorded reads as expired at once; the VPN manager's expiry replaces
        // the current row's at the first traffic sync.
        expire_at: row.expire_at.unwrap_or(created_at),
        email,
        device_id: checked_text(row.device_id.as_deref(), "device_id")?,
        note: row.note.as_deref().and_then(input::free_text),
        is_trial: row.is_trial(),
        is_current: row.is_current,
        status: EntitlementStatus::Active,
        created_at,
        otun_uuid: checked_text(row.otun_uuid.as_deref(), "otun_uuid")?,
    })
}

/// Where a legacy VPN row that is not the current one stands here.
fn history_status(legacy: &str) -> EntitlementStatus {
    match legacy {
        "disabled" | "revoked" => EntitlementStatus::Cancelled,
        _ => EntitlementStatus::Superseded,
    }
}

/// Plans one user's VPN rows (oldest first). `imported` names rows an earlier run
/// imported; `has_resource` says the user already has a VPN user resource here (its new
/// rows become history beside what it holds); `trials` is what trials are taken, and
/// grows with the trials this user's rows are granted.
pub fn plan_vpn_user(
    rows: &[LegacyVpnRow],
    imported: &HashSet<Uuid>,
    has_resource: bool,
    trials: &mut TrialsTaken,
    now: DateTime<Utc>,
) -> VpnUserPlan {
    let mut plan = VpnUserPlan::default();
    let mut accepted: Vec<(EntitlementPlan, &LegacyVpnRow)> = Vec::new();
    for row in rows {
        if imported.contains(&row.id) {
            plan.already_imported += 1;
            continue;
        }
        let checked = entitlement(row, now).and_then(|e| {
            if e.is_trial {
                let (device, email) = (e.device_id.as_deref(), e.email.as_deref());
                if let Some(rule) = trials.collision(&row.user_id, device, email) {
                    return Err(rule);
                }
                trials.take(&row.user_id, device, email);
            }
            Ok(e)
        });
        match checked {
            Ok(e) => accepted.push((e, row)),
            Err(rule) => plan.refused.push(refusal(
                row.id,
                Some(&row.user_id),
                row.subscription_id.as_deref(),
                rule,
            )),
        }
    }
    let current_rows: Vec<Uuid> = rows.iter().filter(|r| r.is_current).map(|r| r.id).collect();
    // The current entitlement: the newest accepted row that is current and active.
    let current = accepted
        .iter()
        .rposition(|(e, row)| e.is_current && row.status == "active");
    if current_rows.len() > 1 {
        let kept = current.map(|i| accepted[i].0.id);
        plan.findings.push(Finding {
            kind: FindingKind::SeveralCurrentVpnRows,
            ids: current_rows,
            user_id: rows.first().map(|r| r.user_id.clone()),
            subscription_id: None,
            detail: match kept {
                Some(id) => format!("row {id} stays current; the others become history"),
                None => "none of them is active: all become history".into(),
            },
        });
    }
    if accepted.is_empty() {
        return plan;
    }
    let current = current.filter(|_| !has_resource);
    for (i, (e, row)) in accepted.iter_mut().enumerate() {
        let is_current = Some(i) == current;
        e.is_current = is_current;
        e.status = if is_current {
            EntitlementStatus::Active
        } else {
            history_status(&row.status)
        };
    }
    if !has_resource {
        plan.resource = Some(vpn_resource(&accepted, current, &mut plan.findings));
    }
    plan.entitlements = accepted.into_iter().map(|(e, _)| e).collect();
    plan
}

/// The user's resource from their accepted rows (oldest first) and the current one.
fn vpn_resource(
    accepted: &[(EntitlementPlan, &LegacyVpnRow)],
    current: Option<usize>,
    findings: &mut Vec<Finding>,
) -> VpnResourcePlan {
    let shown = &accepted[current.unwrap_or(accepted.len() - 1)].0;
    // The account: the shown row's, else the newest one any row names.
    let account = shown
        .otun_uuid
        .clone()
        .or_else(|| accepted.iter().rev().find_map(|(e, _)| e.otun_uuid.clone()));
    let user_id = accepted[0].1.user_id.clone();
    let (status, desired, due, adopt) = match (current, &account) {
        // Taken as it is at the VPN manager: nothing is pushed because of the import.
        (Some(_), Some(_)) => (Status::Active, Desired::Active, false, true),
        (Some(_), None) => {
            findings.push(Finding {
                kind: FindingKind::UnfinishedCreation,
                ids: vec![shown.id],
                user_id: Some(user_id),
                subscription_id: shown.subscription_id.clone(),
                detail: "no VPN account recorded: the engine creates it (the VPN manager \
                         de-duplicates by user)"
                    .into(),
            });
            (Status::Pending, Desired::Active, true, false)
        }
        // Nothing current: history only, and the account is left as it is.
        (None, _) => (Status::Deleted, Desired::Deleted, false, false),
    };
    VpnResourcePlan {
        id: shown.id,
        subscription_id: shown.subscription_id.clone().unwrap_or_default(),
        email: shown.email.clone(),
        plan_tier: shown.plan_tier.clone(),
        service_tier: shown.service_tier.clone(),
        status,
        desired,
        vpn_user_id: account,
        traffic_limit: shown.traffic_limit,
        traffic_used: shown.traffic_used,
        expire_at: shown.expire_at,
        due,
        adopt_upstream_terms: adopt,
        created_at: accepted[0].0.created_at,
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

impl NodePlan {
    /// The history entry the import writes for this node, where it decided more than a
    /// copy: a status it translated ("stopping" is deleting here) or a step the engine
    /// takes next (carry on, finish, clean up). A row taken as it was (active, failed,
    /// deleted) has the Go service's own history, and `legacy_imports`, to say so.
    pub fn arrival_note(&self) -> Option<String> {
        if !self.due && self.legacy_status == self.status.as_str() {
            return None;
        }
        let legacy = input::free_text(&self.legacy_status).unwrap_or_default();
        let next = match (self.status, self.due) {
            (Status::Creating, _) => "; the engine carries on with its creation",
            (Status::Deleting, _) => "; the engine finishes its deletion",
            (_, true) => "; the engine deletes the VPS the Go service left",
            _ => "",
        };
        Some(format!(
            "imported from the Go service: its status {legacy:?} is {} here{next}",
            self.status
        ))
    }
}

impl VpnResourcePlan {
    /// The history entry the import writes for this VPN user: only where the engine acts
    /// (an account the Go service never made). The traffic sync records taking the VPN
    /// manager's terms itself.
    pub fn arrival_note(&self) -> Option<String> {
        self.due.then(|| {
            "imported from the Go service without a VPN account: the engine creates it".into()
        })
    }
}

#[cfg(test)]
#[path = "legacy_tests.rs"]
mod tests;

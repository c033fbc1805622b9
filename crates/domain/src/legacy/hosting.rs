//! Hosting rows: what each becomes (`plan_node`, its status by `NodeFate`), and the rows
//! of one subscription in slots by age (`plan_subscription`), duplicates kept and flagged.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Finding, FindingKind, Rule, checked_id, checked_plan, checked_text, input, port, refusal,
};
use crate::{Connection, Desired, Phase, Status};

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

/// What a hosting row's status becomes here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeFate {
    /// `active`: serving, taken as it is.
    Active,
    /// Still being created (`pending`, `creating`, `running`, `installing`): the engine
    /// carries on from the creation step it reached.
    Creating {
        phase: Phase,
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
            "pending" | "creating" => NodeFate::Creating {
                phase: Phase::VpsRequested,
            },
            "running" | "installing" => NodeFate::Creating {
                phase: Phase::Installing,
            },
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
    pub phase: Phase,
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
        NodeFate::Active => (Phase::Finalizing, node_id.is_none(), None, false),
        NodeFate::Creating { phase } => (
            *phase,
            true,
            Some(crate::units::after(now, ready_timeout)),
            false,
        ),
        // The Go service may have made a VPS it never recorded: look for it.
        NodeFate::LostDeletion => (Phase::VpsRequested, true, None, false),
        NodeFate::Failed | NodeFate::Deleted | NodeFate::Unknown(_) => (
            if node_id.is_some() {
                Phase::VpsRequested
            } else {
                Phase::Ordered
            },
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

#[cfg(test)]
#[path = "hosting_tests.rs"]
mod tests;

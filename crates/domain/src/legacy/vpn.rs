//! VPN rows: one user's rows become one VPN user resource, named by the row the Go
//! service's `/my/vpn` showed, and one entitlement per row (`plan_vpn_user`); trials stay
//! unique across imported and new rows (`TrialsTaken`).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Finding, FindingKind, Rule, checked_id, checked_plan, checked_text, input, refusal, rule,
};
use crate::entitlement::EntitlementStatus;
use crate::{Desired, Status};

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
#[path = "vpn_tests.rs"]
mod tests;

//! VPN rows: a batch's users, their resources and trials, the entitlements they become.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{ROWS_PER_STATEMENT, already_imported, record_arrivals, record_imports};
use crate::db::Tx;
use crate::news::Topic;
use crate::row;
use domain::Status;
use domain::legacy::{self, LegacyVpnRow, TrialsTaken, VpnResourcePlan};
use ports::store::{ImportedVpn, StoreResult};

/// The users among `users` who already have a VPN user resource here: a live one (ours or
/// imported), else one an earlier run imported.
async fn vpn_resources_of(
    tx: &mut Tx,
    users: &HashSet<&str>,
) -> StoreResult<HashMap<String, Uuid>> {
    let mut q = tx.sql(
        "select r.user_id, r.id from resources r where r.resource_type = 'vpn_user' \
         and ((r.desired_state = 'active' and r.status <> 'deleted') or exists \
         (select 1 from legacy_imports l where l.resource_id = r.id)) and ",
    );
    q.push_in("r.user_id", users.iter().map(|u| u.to_string()).collect());
    q.push(" order by case when r.status <> 'deleted' then 0 else 1 end desc");
    let rows: Vec<(String, String)> = q.fetch_all().await?;
    // Ordered so that a live resource comes last and wins.
    let mut found = HashMap::new();
    for (user, id) in rows {
        found.insert(user, row::uuid(&id)?);
    }
    Ok(found)
}

/// The trials already granted to these users, devices or emails.
async fn trials_taken(tx: &mut Tx, rows: &[LegacyVpnRow]) -> StoreResult<TrialsTaken> {
    let trials: Vec<&LegacyVpnRow> = rows.iter().filter(|r| r.is_trial()).collect();
    let mut taken = TrialsTaken::default();
    if trials.is_empty() {
        return Ok(taken);
    }
    let users: HashSet<String> = trials.iter().map(|r| r.user_id.clone()).collect();
    let devices: HashSet<String> = trials
        .iter()
        .filter_map(|r| r.device_id.as_deref().map(str::trim))
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .collect();
    let emails: HashSet<String> = trials
        .iter()
        .filter_map(|r| r.email.as_deref().map(|e| e.trim().to_lowercase()))
        .filter(|e| !e.is_empty())
        .collect();
    let mut q = tx.sql("select user_id, device_id, email from entitlements where is_trial and (");
    q.push_in("user_id", users.into_iter().collect());
    if !devices.is_empty() {
        q.push(" or ")
            .push_in("device_id", devices.into_iter().collect());
    }
    if !emails.is_empty() {
        q.push(" or ")
            .push_in("lower(email)", emails.into_iter().collect());
    }
    q.push(")");
    let held: Vec<(String, Option<String>, Option<String>)> = q.fetch_all().await?;
    for (user, device, email) in held {
        taken.users.insert(user);
        taken.devices.extend(device);
        taken.emails.extend(email.map(|e| e.to_lowercase()));
    }
    Ok(taken)
}

pub(super) async fn import_vpn(
    tx: &mut Tx,
    rows: &[LegacyVpnRow],
    now: DateTime<Utc>,
) -> StoreResult<ImportedVpn> {
    let mut out = ImportedVpn::default();
    if rows.is_empty() {
        return Ok(out);
    }
    let imported = already_imported(tx, rows.iter().map(|r| r.id)).await?;
    let users: HashSet<&str> = rows.iter().map(|r| r.user_id.as_str()).collect();
    let existing = vpn_resources_of(tx, &users).await?;
    let mut trials = trials_taken(tx, rows).await?;
    let mut resources: Vec<(VpnResourcePlan, String)> = Vec::new();
    // (entitlement, its resource, the user, the resource's spec version it belongs to)
    let mut entitlements = Vec::new();
    for group in rows.chunk_by(|a, b| a.user_id == b.user_id) {
        let user = &group[0].user_id;
        let has = existing.get(user).copied();
        let plan = legacy::plan_vpn_user(group, &imported, has.is_some(), &mut trials, now);
        out.already_imported += plan.already_imported;
        out.refused.extend(plan.refused);
        out.findings.extend(plan.findings);
        let (resource_id, version) = match (&plan.resource, has) {
            (Some(r), _) => (r.id, 1),
            (None, Some(id)) => (id, 0),
            (None, None) => continue,
        };
        for e in plan.entitlements {
            entitlements.push((e, resource_id, user.clone(), version));
        }
        if let Some(r) = plan.resource {
            resources.push((r, user.clone()));
        }
    }
    for chunk in resources.chunks(ROWS_PER_STATEMENT) {
        insert_vpn_resources(tx, chunk, now).await?;
    }
    for chunk in entitlements.chunks(ROWS_PER_STATEMENT) {
        let mut q = tx.sql("");
        q.push(
            "insert into entitlements (id, user_id, resource_id, subscription_id, channel, \
             business_type, plan_tier, service_tier, traffic_limit, expire_at, email, \
             device_id, note, is_trial, is_current, status, spec_version, reported, \
             created_at, updated_at) values ",
        );
        for (i, (e, resource_id, user, version)) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            q.push_bind(e.id.to_string()).push(", ");
            q.push_bind(user.clone()).push(", ");
            q.push_bind(resource_id.to_string()).push(", ");
            q.push_bind(e.subscription_id.clone()).push(", ");
            q.push_bind(e.channel.clone()).push(", ");
            q.push_bind(e.business_type.clone()).push(", ");
            q.push_bind(e.plan_tier.clone()).push(", ");
            q.push_bind(e.service_tier.clone()).push(", ");
            q.push_bind(e.traffic_limit).push(", ");
            q.push_bind(e.expire_at).push(", ");
            q.push_bind(e.email.clone()).push(", ");
            q.push_bind(e.device_id.clone()).push(", ");
            q.push_bind(e.note.clone()).push(", ");
            q.push_bind(e.is_trial).push(", ");
            q.push_bind(e.is_current).push(", ");
            q.push_bind(e.status.as_str()).push(", ");
            q.push_bind(*version).push(", true, ");
            q.push_bind(e.created_at).push(", ");
            q.push_bind(now).push(")");
        }
        q.execute().await?;
    }
    let pairs: Vec<(Uuid, Uuid)> = entitlements.iter().map(|(e, r, _, _)| (e.id, *r)).collect();
    record_imports(tx, "vpn", &pairs, now).await?;
    let arrivals: Vec<(Uuid, String, Option<String>)> = resources
        .iter()
        .map(|(r, user)| (r.id, user.clone(), r.arrival_note()))
        .collect();
    record_arrivals(tx, &arrivals, now).await?;
    // Entitlements added beside a resource that was here before change its user's VPN.
    for (_, _, user, version) in &entitlements {
        if *version == 0 {
            tx.changed(user.clone());
        }
    }
    if resources.iter().any(|(r, _)| r.due) {
        tx.wake(Topic::Resources);
    }
    out.users = resources.len();
    out.entitlements = entitlements.len();
    Ok(out)
}

async fn insert_vpn_resources(
    tx: &mut Tx,
    resources: &[(VpnResourcePlan, String)],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut q = tx.sql("");
    q.push(
        "insert into resources (id, resource_type, subscription_id, user_id, user_email, \
         order_key, provider, region, plan_tier, status, desired_state, generation, phase, \
         traffic_limit, traffic_used, attempts, upstream_released, next_attempt_at, \
         created_at, updated_at, vpn_user_id, expire_at, service_tier, spec_version, \
         applied_version, adopt_upstream_terms) values ",
    );
    for (i, (r, user)) in resources.iter().enumerate() {
        let applied = if r.status == Status::Active { 1 } else { 0 };
        q.push(if i == 0 { "(" } else { ", (" });
        q.push_bind(r.id.to_string()).push(", 'vpn_user', ");
        q.push_bind(r.subscription_id.clone()).push(", ");
        q.push_bind(user.clone()).push(", ");
        q.push_bind(r.email.clone()).push(", ");
        q.push_bind(format!("legacy|{}", r.id))
            .push(", 'otun', '', ");
        q.push_bind(r.plan_tier.clone()).push(", ");
        q.push_bind(r.status.as_str()).push(", ");
        q.push_bind(r.desired.as_str()).push(", 0, 1, ");
        q.push_bind(r.traffic_limit).push(", ");
        q.push_bind(r.traffic_used).push(", 0, ");
        q.push_bind(r.status == Status::Deleted).push(", ");
        q.push_bind(r.due.then_some(now)).push(", ");
        q.push_bind(r.created_at).push(", ");
        q.push_bind(now).push(", ");
        q.push_bind(r.vpn_user_id.clone()).push(", ");
        q.push_bind(r.expire_at).push(", ");
        q.push_bind(r.service_tier.clone()).push(", 1, ");
        q.push_bind(applied).push(", ");
        q.push_bind(r.adopt_upstream_terms).push(")");
    }
    q.execute().await?;
    Ok(())
}

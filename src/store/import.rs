//! The import's writes (`ports::store::Import`): each batch of legacy rows in one
//! transaction, its rows planned by `domain::legacy` from what the batch reads under the
//! same transaction, and recorded in `legacy_imports` beside what they became. A batch is
//! many rows per statement (a few statements per batch, whatever its size), so the import
//! runs at a fair fraction of the database's own copying speed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::SqlStore;
use super::db::{Db, Pool, Topic, Tx};
use super::row;
use crate::domain::legacy::{
    self, IMPORT_ACTOR, LEGACY_ACTOR, LegacyLog, LegacyNode, LegacyVpnRow, NodePlan, TrialsTaken,
    VpnResourcePlan,
};
use crate::domain::{EventKind, Status};
use crate::ports::store::{
    Import, ImportSession, ImportedLogs, ImportedNodes, ImportedVpn, Region, StoreResult,
};

/// Rows per `insert`: well under either database's limit on bound values (SQLite's is
/// 32,766) at the widest row (hosting nodes, 27 values).
const ROWS_PER_STATEMENT: usize = 400;

#[async_trait]
impl Import for SqlStore {
    async fn begin_import(&self, dry_run: bool) -> StoreResult<Box<dyn ImportSession>> {
        let dry = if dry_run {
            Some(Mutex::new(self.db.begin().await?))
        } else {
            None
        };
        Ok(Box::new(Session {
            db: self.db.clone(),
            dry,
            batches: AtomicU64::new(0),
            trials: Mutex::new(()),
        }))
    }
}

/// An import in progress: a dry run's one transaction, or none (each batch has its own,
/// and batches may be written side by side).
struct Session {
    db: Db,
    dry: Option<Mutex<Tx>>,
    /// Batches written so far.
    batches: AtomicU64,
    /// Held by a batch of VPN rows with a trial among them until it commits: trials are
    /// unique across users, so two such batches side by side could both grant one.
    trials: Mutex<()>,
}

/// The tables whose statistics the import refreshes as it fills them.
const FILLED: [&str; 3] = ["resources", "legacy_imports", "entitlements"];

/// After the 1st, 8th, 64th… batch the planner's statistics of the tables being filled
/// are refreshed: planned as empty, a batch's lookups would scan them whole, slower as
/// they grow.
fn refresh_after(batches: u64) -> bool {
    batches.is_power_of_two() && batches.trailing_zeros().is_multiple_of(3)
}

async fn refresh_statistics(tx: &mut Tx) -> StoreResult<()> {
    for table in FILLED {
        let mut q = tx.sql("");
        q.push("analyze ").push(table);
        q.execute().await?;
    }
    Ok(())
}

/// Runs `$body` with `$tx` bound to the batch's transaction: the dry run's, or a new one
/// committed after the body succeeds.
macro_rules! in_batch {
    ($self:ident, |$tx:ident| $body:expr) => {{
        let mut dry = match &$self.dry {
            Some(tx) => Some(tx.lock().await),
            None => None,
        };
        let mut own = None;
        let $tx: &mut Tx = match dry.as_deref_mut() {
            Some(tx) => tx,
            None => {
                let tx = own.insert($self.db.begin().await?);
                if matches!($self.db.pool(), Pool::Postgres(_)) {
                    // A batch's commit need not wait for its flush to disk: a server
                    // crash loses the last batches whole (never one in the middle), and
                    // the next run imports them again.
                    tx.sql("set local synchronous_commit = off")
                        .execute()
                        .await?;
                }
                tx
            }
        };
        let out = $body;
        if refresh_after($self.batches.fetch_add(1, Ordering::Relaxed) + 1) {
            refresh_statistics($tx).await?;
        }
        if let Some(tx) = own {
            tx.commit().await?;
        }
        Ok(out)
    }};
}

#[async_trait]
impl ImportSession for Session {
    fn parallelism(&self) -> usize {
        // PostgreSQL writes two batches side by side (both of this machine's cores are then
        // at work); SQLite has one writer, and a dry run one transaction.
        match (self.db.pool(), &self.dry) {
            (Pool::Postgres(_), None) => 2,
            _ => 1,
        }
    }

    async fn regions(&self, regions: &[Region]) -> StoreResult<usize> {
        in_batch!(self, |tx| {
            for r in regions {
                tx.sql(
                    "insert into regions (code, name, provider, available, sort_order) \
                     values ($1, $2, $3, $4, (select coalesce(max(sort_order), 0) + 1 \
                     from regions)) on conflict (code) do update set name = excluded.name, \
                     provider = excluded.provider, available = excluded.available",
                )
                .bind(&r.code)
                .bind(&r.name)
                .bind(&r.provider)
                .bind(r.available)
                .execute()
                .await?;
            }
            regions.len()
        })
    }

    async fn nodes(
        &self,
        rows: &[LegacyNode],
        now: DateTime<Utc>,
        ready_timeout: Duration,
    ) -> StoreResult<ImportedNodes> {
        in_batch!(self, |tx| import_nodes(tx, rows, now, ready_timeout)
            .await?)
    }

    async fn vpn_users(
        &self,
        rows: &[LegacyVpnRow],
        now: DateTime<Utc>,
    ) -> StoreResult<ImportedVpn> {
        let _trials = match rows.iter().any(LegacyVpnRow::is_trial) {
            true => Some(self.trials.lock().await),
            false => None,
        };
        in_batch!(self, |tx| import_vpn(tx, rows, now).await?)
    }

    async fn logs(&self, rows: &[LegacyLog]) -> StoreResult<ImportedLogs> {
        in_batch!(self, |tx| import_logs(tx, rows).await?)
    }

    async fn finish(self: Box<Self>) -> StoreResult<()> {
        match self.dry {
            Some(tx) => tx.into_inner().rollback().await,
            None => Ok(()),
        }
    }
}

/// The legacy ids of `ids` an earlier run imported.
async fn already_imported(
    tx: &mut Tx,
    ids: impl IntoIterator<Item = Uuid>,
) -> StoreResult<HashSet<Uuid>> {
    let mut q = tx.sql("select legacy_id from legacy_imports where ");
    q.push_in(
        "legacy_id",
        ids.into_iter().map(|id| id.to_string()).collect(),
    );
    let rows: Vec<(String,)> = q.fetch_all().await?;
    rows.iter().map(|(id,)| row::uuid(id)).collect()
}

/// Records which resource each legacy row became.
async fn record_imports(
    tx: &mut Tx,
    source: &str,
    pairs: &[(Uuid, Uuid)],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
        let mut q = tx.sql("");
        q.push("insert into legacy_imports (legacy_id, source, resource_id, imported_at) values ");
        for (i, (legacy_id, resource_id)) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            q.push_bind(legacy_id.to_string())
                .push(", ")
                .push_bind(source.to_owned())
                .push(", ")
                .push_bind(resource_id.to_string())
                .push(", ")
                .push_bind(now)
                .push(")");
        }
        q.execute().await?;
    }
    Ok(())
}

/// The import's history entry of each new resource that has one (`arrival_note`), and the
/// news of every one of them for the read models and streams.
async fn record_arrivals(
    tx: &mut Tx,
    arrivals: &[(Uuid, String, Option<String>)],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let noted: Vec<(&Uuid, &String)> = arrivals
        .iter()
        .filter_map(|(id, _, note)| Some((id, note.as_ref()?)))
        .collect();
    for chunk in noted.chunks(ROWS_PER_STATEMENT) {
        let mut q = tx.sql("");
        q.push("insert into resource_events (resource_id, kind, actor, message, at) values ");
        for (i, (id, message)) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            q.push_bind(id.to_string())
                .push(", ")
                .push_bind(EventKind::Legacy.as_str())
                .push(", ")
                .push_bind(IMPORT_ACTOR)
                .push(", ")
                .push_bind((*message).clone())
                .push(", ")
                .push_bind(now)
                .push(")");
        }
        q.execute().await?;
    }
    for (_, user, _) in arrivals {
        tx.changed(user.clone());
    }
    Ok(())
}

async fn import_nodes(
    tx: &mut Tx,
    rows: &[LegacyNode],
    now: DateTime<Utc>,
    ready_timeout: Duration,
) -> StoreResult<ImportedNodes> {
    let mut out = ImportedNodes::default();
    if rows.is_empty() {
        return Ok(out);
    }
    let imported = already_imported(tx, rows.iter().map(|r| r.id)).await?;
    let subscriptions: HashSet<&str> = rows.iter().map(|r| r.subscription_id.as_str()).collect();
    let mut q = tx.sql(
        "select subscription_id, slot from resources where resource_type = 'hosting_node' \
         and desired_state = 'active' and status <> 'deleted' and slot is not null and ",
    );
    q.push_in(
        "subscription_id",
        subscriptions.iter().map(|s| s.to_string()).collect(),
    );
    let held: Vec<(String, i32)> = q.fetch_all().await?;
    let mut taken: HashMap<&str, Vec<i32>> = HashMap::new();
    for (sub, slot) in &held {
        taken.entry(sub.as_str()).or_default().push(*slot);
    }
    let mut nodes: Vec<NodePlan> = Vec::new();
    for group in rows.chunk_by(|a, b| a.subscription_id == b.subscription_id) {
        let slots = taken.get(group[0].subscription_id.as_str());
        let plan = legacy::plan_subscription(
            group,
            &imported,
            slots.map_or(&[][..], Vec::as_slice),
            now,
            ready_timeout,
        );
        out.already_imported += plan.already_imported;
        out.refused.extend(plan.refused);
        out.findings.extend(plan.findings);
        nodes.extend(plan.nodes);
    }
    for chunk in nodes.chunks(ROWS_PER_STATEMENT) {
        insert_nodes(tx, chunk, now).await?;
    }
    let pairs: Vec<(Uuid, Uuid)> = nodes.iter().map(|n| (n.id, n.id)).collect();
    record_imports(tx, "hosting", &pairs, now).await?;
    let arrivals: Vec<(Uuid, String, Option<String>)> = nodes
        .iter()
        .map(|n| (n.id, n.user_id.clone(), n.arrival_note()))
        .collect();
    record_arrivals(tx, &arrivals, now).await?;
    if nodes.iter().any(|n| n.due) {
        tx.wake(Topic::Resources);
    }
    out.imported = nodes.iter().map(|n| n.status).collect();
    Ok(out)
}

async fn insert_nodes(tx: &mut Tx, nodes: &[NodePlan], now: DateTime<Utc>) -> StoreResult<()> {
    let mut q = tx.sql("");
    q.push(
        "insert into resources (id, resource_type, subscription_id, user_id, order_key, \
         provider, region, plan_tier, status, desired_state, generation, node_id, phase, \
         public_ip, api_port, api_key, vless_port, ss_port, public_key, short_id, \
         traffic_limit, traffic_used, error_message, attempts, upstream_released, \
         deadline_at, next_attempt_at, created_at, updated_at, ready_at, slot) values ",
    );
    for (i, n) in nodes.iter().enumerate() {
        let c = &n.connection;
        q.push(if i == 0 { "(" } else { ", (" });
        q.push_bind(n.id.to_string()).push(", 'hosting_node', ");
        q.push_bind(n.subscription_id.clone()).push(", ");
        q.push_bind(n.user_id.clone()).push(", ");
        q.push_bind(format!("legacy|{}", n.id)).push(", ");
        q.push_bind(n.provider.clone()).push(", ");
        q.push_bind(n.region.clone()).push(", ");
        q.push_bind(n.plan_tier.clone()).push(", ");
        q.push_bind(n.status.as_str()).push(", ");
        q.push_bind(n.desired.as_str()).push(", 0, ");
        q.push_bind(n.node_id.clone()).push(", ");
        q.push_bind(n.phase).push(", ");
        q.push_bind(c.public_ip.clone()).push(", ");
        q.push_bind(c.api_port).push(", ");
        q.push_bind(c.api_key.clone()).push(", ");
        q.push_bind(c.vless_port).push(", ");
        q.push_bind(c.ss_port).push(", ");
        q.push_bind(c.public_key.clone()).push(", ");
        q.push_bind(c.short_id.clone()).push(", ");
        q.push_bind(n.traffic_limit).push(", ");
        q.push_bind(n.traffic_used).push(", ");
        q.push_bind(n.error_message.clone()).push(", 0, ");
        q.push_bind(n.upstream_released).push(", ");
        q.push_bind(n.deadline_at).push(", ");
        q.push_bind(n.due.then_some(now)).push(", ");
        q.push_bind(n.created_at).push(", ");
        q.push_bind(n.updated_at).push(", ");
        q.push_bind(n.ready_at).push(", ");
        q.push_bind(n.slot).push(")");
    }
    q.execute().await?;
    Ok(())
}

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

async fn import_vpn(
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

async fn import_logs(tx: &mut Tx, rows: &[LegacyLog]) -> StoreResult<ImportedLogs> {
    let mut out = ImportedLogs::default();
    if rows.is_empty() {
        return Ok(out);
    }
    let named: HashSet<String> = rows.iter().map(|r| r.provision_id.to_string()).collect();
    let mut q = tx.sql("select legacy_id, resource_id from legacy_imports where ");
    q.push_in("legacy_id", named.into_iter().collect());
    let pairs: Vec<(String, String)> = q.fetch_all().await?;
    let owner: HashMap<String, String> = pairs.into_iter().collect();
    let mut history = Vec::with_capacity(rows.len());
    for log in rows {
        match owner.get(&log.provision_id.to_string()) {
            Some(resource_id) => history.push((log, resource_id)),
            None => out.skipped += 1,
        }
    }
    for chunk in history.chunks(ROWS_PER_STATEMENT * 2) {
        let mut q = tx.sql("");
        q.push(
            "insert into resource_events (resource_id, kind, actor, message, at, legacy_id) \
             values ",
        );
        for (i, (log, resource_id)) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            q.push_bind((*resource_id).clone()).push(", ");
            q.push_bind(EventKind::Legacy.as_str()).push(", ");
            q.push_bind(LEGACY_ACTOR).push(", ");
            q.push_bind(legacy::log_message(log)).push(", ");
            q.push_bind(log.created_at).push(", ");
            q.push_bind(log.id.to_string()).push(")");
        }
        q.push(" on conflict do nothing");
        out.imported += q.execute().await? as usize;
    }
    out.already_imported = history.len() - out.imported;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::refresh_after;

    #[test]
    fn statistics_are_refreshed_after_the_first_and_every_eightfold_batch() {
        let refreshed: Vec<u64> = (1..=5000).filter(|n| refresh_after(*n)).collect();
        assert_eq!(refreshed, [1, 8, 64, 512, 4096]);
    }
}

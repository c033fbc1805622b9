//! Hosting rows: a batch's subscriptions, their taken slots, the nodes they become.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{ROWS_PER_STATEMENT, already_imported, record_arrivals, record_imports};
use crate::db::Tx;
use crate::news::Topic;
use domain::legacy::{self, LegacyNode, NodePlan};
use ports::store::{ImportedNodes, StoreResult};

pub(super) async fn import_nodes(
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
        q.push_bind(n.phase.step()).push(", ");
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

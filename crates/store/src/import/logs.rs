//! Log rows: history of the resources their rows became, each copied once.

use std::collections::{HashMap, HashSet};

use super::ROWS_PER_STATEMENT;
use crate::db::Tx;
use domain::EventKind;
use domain::legacy::{self, LEGACY_ACTOR, LegacyLog};
use ports::store::{ImportedLogs, StoreResult};

pub(super) async fn import_logs(tx: &mut Tx, rows: &[LegacyLog]) -> StoreResult<ImportedLogs> {
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

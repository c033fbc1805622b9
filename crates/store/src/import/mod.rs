//! The import's writes (`ports::store::Import`): each batch of legacy rows in one
//! transaction, its rows planned by `domain::legacy` from what the batch reads under the
//! same transaction, and recorded in `legacy_imports` beside what they became. A batch is
//! many rows per statement (a few statements per batch, whatever its size), so the import
//! runs at a fair fraction of the database's own copying speed.

mod logs;
mod nodes;
mod vpn;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::SqlStore;
use super::db::{Db, Pool, Tx};
use super::row;
use domain::EventKind;
use domain::legacy::{IMPORT_ACTOR, LegacyLog, LegacyNode, LegacyVpnRow};
use logs::import_logs;
use nodes::import_nodes;
use ports::store::{
    Import, ImportSession, ImportedLogs, ImportedNodes, ImportedVpn, Region, StoreResult,
};
use vpn::import_vpn;

/// Rows per `insert`: well under either database's limit on bound values (SQLite's is
/// 32,766) at the widest row (hosting nodes, 27 values).
pub(super) const ROWS_PER_STATEMENT: usize = 400;

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
pub(super) async fn already_imported(
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
pub(super) async fn record_imports(
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
pub(super) async fn record_arrivals(
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

#[cfg(test)]
mod tests {
    use super::refresh_after;

    #[test]
    fn statistics_are_refreshed_after_the_first_and_every_eightfold_batch() {
        let refreshed: Vec<u64> = (1..=5000).filter(|n| refresh_after(*n)).collect();
        assert_eq!(refreshed, [1, 8, 64, 512, 4096]);
    }
}

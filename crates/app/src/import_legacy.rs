//! `fulfillment import-legacy`: taking over the Go service's database (CONTRACTS.md §5.2).
//!
//! Four passes, in this order: regions, hosting rows, VPN rows, logs (a log names a row
//! the earlier passes made into a resource). Each pass streams its table: a reader fills
//! batches (whole subscriptions, whole users) while the store writes earlier ones (two
//! side by side on PostgreSQL), each batch in one transaction that also records which
//! legacy row became what. So memory holds a few batches whatever the database's size (and
//! the findings, a line each), and a run killed at any instant and run again imports every
//! row exactly once. It calls no upstream and sends no
//! callback: what the engine does with what was imported, it does once the service runs.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::sync::mpsc;

use domain::legacy::{Finding, LegacyLog, LegacyNode, LegacyVpnRow};
use ports::Clock;
use ports::legacy::{LegacyCounts, LegacyError, LegacySource, LegacyStream};
use ports::store::{Import, StoreError};

/// How an import runs.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Change nothing; say what a real run would do.
    pub dry_run: bool,
    /// An unfinished creation's deadline from the import (`NODE_READY_TIMEOUT_SECS`).
    pub ready_timeout: Duration,
    /// Rows per batch (a batch is extended to the end of its subscription or user).
    pub batch_rows: usize,
}

impl ImportOptions {
    pub fn new(dry_run: bool, ready_timeout: Duration) -> Self {
        ImportOptions {
            dry_run,
            ready_timeout,
            batch_rows: 2000,
        }
    }
}

/// Where a long import is, for a progress bar.
pub trait Progress: Send + Sync {
    /// A pass over `table` of `total` rows begins.
    fn begin(&self, table: &'static str, total: u64);
    /// `rows` more rows of it are done.
    fn advance(&self, rows: u64);
    fn end(&self);
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Legacy(#[from] LegacyError),
    #[error("writing our database: {0}")]
    Store(#[from] StoreError),
}

/// The report (`--json` prints it as it is).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    pub hosting: HostingCounts,
    pub vpn: VpnCounts,
    pub history: HistoryCounts,
    pub regions: usize,
    pub findings: Vec<FindingView>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostingCounts {
    pub read: usize,
    pub imported: usize,
    pub already_imported: usize,
    pub refused: usize,
    /// Rows imported by this run, by the status they have here.
    pub by_status: BTreeMap<&'static str, usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VpnCounts {
    pub read: usize,
    /// VPN user resources made (one per user).
    pub users: usize,
    /// Rows imported as entitlements.
    pub entitlements: usize,
    pub already_imported: usize,
    pub refused: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HistoryCounts {
    pub imported: usize,
    /// Log rows naming no imported row.
    pub skipped: usize,
    /// Log rows an earlier run copied.
    pub already_imported: usize,
}

/// A finding as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingView {
    pub kind: &'static str,
    pub ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    pub detail: String,
}

impl From<Finding> for FindingView {
    fn from(f: Finding) -> Self {
        FindingView {
            kind: f.kind.as_str(),
            ids: f.ids.iter().map(ToString::to_string).collect(),
            user_id: f.user_id,
            subscription_id: f.subscription_id,
            detail: f.detail,
        }
    }
}

impl ImportReport {
    fn tell(&mut self, findings: Vec<Finding>) {
        self.findings
            .extend(findings.into_iter().map(FindingView::from));
    }

    /// The summary for people.
    pub fn summary(&self) -> String {
        let h = &self.hosting;
        let v = &self.vpn;
        let mut out = String::new();
        let verb = if self.dry_run {
            "would import"
        } else {
            "imported"
        };
        out.push_str(if self.dry_run {
            "Dry run: nothing was written. A real run would do this:\n"
        } else {
            "Import finished.\n"
        });
        let statuses: Vec<String> = h
            .by_status
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        out.push_str(&format!(
            "  hosting rows: {} read, {} {verb}{}, {} already imported, {} refused\n",
            h.read,
            h.imported,
            if statuses.is_empty() {
                String::new()
            } else {
                format!(" ({})", statuses.join(", "))
            },
            h.already_imported,
            h.refused
        ));
        out.push_str(&format!(
            "  VPN rows: {} read, {} {verb} as entitlements of {} users, {} already imported, \
             {} refused\n",
            v.read, v.entitlements, v.users, v.already_imported, v.refused
        ));
        out.push_str(&format!(
            "  history: {} log rows {verb}, {} already imported, {} naming no imported row \
             (skipped)\n  regions: {}\n",
            self.history.imported,
            self.history.already_imported,
            self.history.skipped,
            self.regions
        ));
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &self.findings {
            *kinds.entry(f.kind).or_default() += 1;
        }
        if kinds.is_empty() {
            out.push_str("  findings: none\n");
        } else {
            out.push_str("  findings (--json lists each, with the rows it names):\n");
            for (kind, n) in kinds {
                out.push_str(&format!("    {kind}: {n}\n"));
            }
        }
        out
    }
}

/// Runs the import.
pub async fn import_legacy(
    source: &dyn LegacySource,
    store: &dyn Import,
    clock: &dyn Clock,
    options: &ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportReport, ImportError> {
    // Nothing is written before the legacy schema is known to be whole.
    let counts: LegacyCounts = source.check().await?;
    let regions = source.regions().await?;
    let now = clock.now();
    let mut report = ImportReport {
        dry_run: options.dry_run,
        ..ImportReport::default()
    };
    let owner = store.begin_import(options.dry_run).await?;
    let session = owner.as_ref();
    report.regions = session.regions(&regions).await?;
    let size = options.batch_rows.max(1);
    let parallel = session.parallelism();

    progress.begin("hosting_provisions", counts.nodes);
    let timeout = options.ready_timeout;
    let write = move |batch: Vec<LegacyNode>| async move {
        let done = session.nodes(&batch, now, timeout).await?;
        Ok((batch.len(), done))
    };
    let same = |a: &LegacyNode, b: &LegacyNode| a.subscription_id == b.subscription_id;
    pass(source.nodes(), size, same, parallel, write, |read, done| {
        let h = &mut report.hosting;
        h.read += read;
        h.imported += done.imported.len();
        h.already_imported += done.already_imported;
        h.refused += done.refused.len();
        for status in done.imported {
            *h.by_status.entry(status.as_str()).or_default() += 1;
        }
        report.tell(done.findings);
        report.tell(done.refused);
        progress.advance(read as u64);
    })
    .await?;
    progress.end();

    progress.begin("vpn_provisions", counts.vpn_rows);
    let write = move |batch: Vec<LegacyVpnRow>| async move {
        let done = session.vpn_users(&batch, now).await?;
        Ok((batch.len(), done))
    };
    let same = |a: &LegacyVpnRow, b: &LegacyVpnRow| a.user_id == b.user_id;
    pass(
        source.vpn_rows(),
        size,
        same,
        parallel,
        write,
        |read, done| {
            let v = &mut report.vpn;
            v.read += read;
            v.users += done.users;
            v.entitlements += done.entitlements;
            v.already_imported += done.already_imported;
            v.refused += done.refused.len();
            report.tell(done.findings);
            report.tell(done.refused);
            progress.advance(read as u64);
        },
    )
    .await?;
    progress.end();

    progress.begin("provision_logs", counts.logs);
    let write = move |batch: Vec<LegacyLog>| async move {
        let done = session.logs(&batch).await?;
        Ok((batch.len(), done))
    };
    pass(
        source.logs(),
        size * 4,
        |_, _| false,
        parallel,
        write,
        |read, done| {
            report.history.imported += done.imported;
            report.history.already_imported += done.already_imported;
            report.history.skipped += done.skipped;
            progress.advance(read as u64);
        },
    )
    .await?;
    progress.end();

    owner.finish().await?;
    Ok(report)
}

/// Streams `rows` in batches of about `size` (never splitting rows that `same` groups)
/// to `write`, up to `parallel` batches at once while the next one is read; `tally` takes
/// each written batch's row count and outcome, one at a time.
async fn pass<T: Send, O, W: Future<Output = Result<(usize, O), ImportError>>>(
    rows: LegacyStream<'_, T>,
    size: usize,
    same: impl Fn(&T, &T) -> bool,
    parallel: usize,
    write: impl Fn(Vec<T>) -> W,
    mut tally: impl FnMut(usize, O),
) -> Result<(), ImportError> {
    // Batches wait in a channel of one: memory holds `parallel` + 2 batches at most.
    let (tx, rx) = mpsc::channel::<Vec<T>>(1);
    let read = async move {
        let mut rows = rows;
        let mut batch: Vec<T> = Vec::with_capacity(size);
        while let Some(row) = rows.try_next().await? {
            if batch.len() >= size && batch.last().is_some_and(|last| !same(last, &row)) {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(size));
                if tx.send(full).await.is_err() {
                    return Ok(());
                }
            }
            batch.push(row);
        }
        if !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        Ok::<(), ImportError>(())
    };
    let written = async {
        let batches = futures::stream::unfold(rx, |mut rx| async {
            rx.recv().await.map(|batch| (batch, rx))
        });
        // In order, so the findings come in the legacy tables' order on every run.
        let mut done = std::pin::pin!(batches.map(&write).buffered(parallel.max(1)));
        while let Some(outcome) = done.next().await {
            let (read, outcome) = outcome?;
            tally(read, outcome);
        }
        Ok::<(), ImportError>(())
    };
    tokio::try_join!(read, written)?;
    Ok(())
}

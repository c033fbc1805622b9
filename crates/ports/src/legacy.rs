//! The Go service's database, read for the cut-over (CONTRACTS.md §5): the import reads it
//! through this port and never writes it.

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::store::{BoxError, Region};
use domain::legacy::{LegacyLog, LegacyNode, LegacyVpnRow};

/// Why the legacy database cannot be read. Each is an exit status 1 with nothing written.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error("the legacy database cannot be read: {0}")]
    Unreadable(#[source] BoxError),
    #[error("the legacy database has no table {0}")]
    MissingTable(String),
    #[error("the legacy table {table} has no column {column}")]
    MissingColumn { table: String, column: String },
    #[error("a legacy {table} row cannot be read: {detail}")]
    BadRow { table: &'static str, detail: String },
}

/// How many rows each table holds, for progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegacyCounts {
    pub nodes: u64,
    pub vpn_rows: u64,
    pub logs: u64,
}

pub type LegacyStream<'a, T> = BoxStream<'a, Result<T, LegacyError>>;

#[async_trait]
pub trait LegacySource: Send + Sync {
    /// Checks that every table and column the import needs is there (a missing one is an
    /// error naming it), and counts the rows.
    async fn check(&self) -> Result<LegacyCounts, LegacyError>;
    async fn regions(&self) -> Result<Vec<Region>, LegacyError>;
    /// Hosting rows, by subscription, then age: a subscription's rows come together.
    fn nodes(&self) -> LegacyStream<'_, LegacyNode>;
    /// VPN rows, by user, then age: a user's rows come together.
    fn vpn_rows(&self) -> LegacyStream<'_, LegacyVpnRow>;
    /// Log rows, in no particular order (a resource's history lists them by their time).
    fn logs(&self) -> LegacyStream<'_, LegacyLog>;
}

//! Writing what the Go service left (CONTRACTS.md §5.2): each batch of legacy rows in one
//! transaction, with the record of which legacy row became what, so a run killed at any
//! instant and run again imports nothing twice and nothing by halves.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Region, StoreResult};
use domain::Status;
use domain::legacy::{Finding, LegacyLog, LegacyNode, LegacyVpnRow};

/// What a batch of hosting rows did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportedNodes {
    /// The status each row imported now has here.
    pub imported: Vec<Status>,
    pub already_imported: usize,
    /// One `refused_row` finding per refused row.
    pub refused: Vec<Finding>,
    pub findings: Vec<Finding>,
}

/// What a batch of VPN rows did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportedVpn {
    /// VPN user resources made.
    pub users: usize,
    pub entitlements: usize,
    pub already_imported: usize,
    pub refused: Vec<Finding>,
    pub findings: Vec<Finding>,
}

/// What a batch of log rows did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportedLogs {
    pub imported: usize,
    pub already_imported: usize,
    /// Rows naming no imported resource.
    pub skipped: usize,
}

#[async_trait]
pub trait Import: Send + Sync {
    /// Starts an import: each batch commits on its own; a dry run writes every batch in one
    /// transaction that `finish` rolls back (so it answers what a real run would do, later
    /// batches seeing earlier ones, and changes no row).
    async fn begin_import(&self, dry_run: bool) -> StoreResult<Box<dyn ImportSession>>;
}

#[async_trait]
pub trait ImportSession: Send + Sync {
    /// How many batches may be written side by side (a pass's batches never share a
    /// subscription or a user, and a log is copied once whoever copies it; batches of VPN
    /// rows with trials, unique across users, are written one at a time all the same).
    fn parallelism(&self) -> usize;
    /// Upserts the regions (code, name, provider, available).
    async fn regions(&self, regions: &[Region]) -> StoreResult<usize>;
    /// Hosting rows, whole subscriptions only (see `LegacySource::nodes`).
    async fn nodes(
        &self,
        rows: &[LegacyNode],
        now: DateTime<Utc>,
        ready_timeout: Duration,
    ) -> StoreResult<ImportedNodes>;
    /// VPN rows, whole users only.
    async fn vpn_users(
        &self,
        rows: &[LegacyVpnRow],
        now: DateTime<Utc>,
    ) -> StoreResult<ImportedVpn>;
    /// Log rows, as history of the resources their rows became.
    async fn logs(&self, rows: &[LegacyLog]) -> StoreResult<ImportedLogs>;
    /// Ends the import (a dry run rolls everything back here).
    async fn finish(self: Box<Self>) -> StoreResult<()>;
}

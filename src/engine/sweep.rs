//! The orphan sweep: the backstop for a billed VPS that no resource claims (a create whose
//! answer came after we gave up, a cleanup that thought the node was gone). It fails
//! closed at every step:
//!
//! - only nodes the hosting service lists as `purpose=obox` *and* that carry one of our
//!   resource ids are considered (shared VPN nodes are never touched), or, without our
//!   correlation, a VPS that a row imported from the Go service as `failed` or `deleted`
//!   names (the Go service leaked it; its VPSes never carried our id);
//! - only nodes older than the grace period (a node made a moment ago may not be linked
//!   yet), with a known creation time;
//! - only when our own record says the node is not wanted: its resource is deleted, or was
//!   cleaned up, or holds a different node (a duplicate); a resource id we do not know
//!   (another deployment's?) is left alone;
//! - any failed lookup (the listing, the database) ends the run before anything is deleted;
//! - at most `orphan_max_per_run` deletions a run, and a dry-run switch that only reports.

use std::sync::Arc;

use uuid::Uuid;

use super::Engine;
use super::jobs::{Job, Summary};
use super::step::to_chrono;
use crate::domain::EventKind;
use crate::domain::orphans::{self, Listed, Standing};
use crate::ports::UpstreamError;
use crate::ports::store::{NewEvent, StoreError, StoreResult};

/// The job row of the sweep.
pub const SWEEP_JOB: &str = "orphan_sweep";
const ACTOR: &str = "orphan_sweep";

/// What one run found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Nodes the hosting service listed.
    pub listed: usize,
    /// Orphans found (`node_id`), deleted unless `dry_run`, at most the cap.
    pub orphans: Vec<String>,
    /// Orphans deleted.
    pub deleted: usize,
    /// Deletions the hosting service refused this run (tried again next run).
    pub failed: usize,
    /// Ours, but younger than the grace period.
    pub too_young: usize,
    /// Listed as ours but without a resource id we know (nor a leaked legacy VPS): left
    /// alone.
    pub unattributed: usize,
    pub dry_run: bool,
}

/// The lookup that failed and ended a run (nothing was deleted after it).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("listing nodes: {0}")]
    Listing(#[source] UpstreamError),
    #[error("reading resource {0}: {1}")]
    Reading(Uuid, #[source] StoreError),
    #[error("looking up node {0}: {1}")]
    LookingUp(String, #[source] StoreError),
    #[error("recording the deletion: {0}")]
    Recording(#[source] StoreError),
}

impl Engine {
    /// Runs the sweep if it is due and no other worker is running it.
    pub async fn sweep_tick(self: &Arc<Self>) -> StoreResult<Option<SweepReport>> {
        let job = Job {
            name: SWEEP_JOB,
            // Long enough for a whole run; a run that dies frees the job after this.
            lease: std::time::Duration::from_secs(600),
            interval: self.config.sweep.interval,
            // Right after a deployment there is nothing the first sweep would find that
            // the next one would not.
            first_at_once: false,
        };
        let summarize = |r: &SweepReport| Summary {
            line: format!(
                "listed {} orphans {} deleted {} failed {} young {} unattributed {}{}",
                r.listed,
                r.orphans.len(),
                r.deleted,
                r.failed,
                r.too_young,
                r.unattributed,
                if r.dry_run { " (dry run)" } else { "" }
            ),
            notable: !r.orphans.is_empty(),
        };
        let ran = self.run_job(&job, self.sweep_orphans(), summarize).await?;
        Ok(ran.and_then(Result::ok))
    }

    /// One sweep. An error means a lookup failed and the run stopped there.
    pub async fn sweep_orphans(&self) -> Result<SweepReport, SweepError> {
        let mut report = SweepReport {
            dry_run: self.config.sweep.dry_run,
            ..SweepReport::default()
        };
        let nodes = self
            .ports
            .hosting
            .list_nodes()
            .await
            .map_err(SweepError::Listing)?;
        report.listed = nodes.len();
        let now = self.now();
        let grace = to_chrono(self.config.sweep.grace);
        let mut orphans: Vec<(Uuid, String)> = Vec::new();
        for node in nodes {
            let listed = Listed {
                node_id: &node.node_id,
                purpose: node.purpose.as_deref(),
                status: &node.status,
                resource_id: node.resource_id.as_deref(),
                created_at: node.created_at,
            };
            let store = &self.ports.store;
            let rid = match orphans::standing(&listed, now, grace) {
                Standing::NotOurs => continue,
                Standing::ByNodeId => {
                    let claims = store
                        .node_claims(&node.node_id)
                        .await
                        .map_err(|e| SweepError::LookingUp(node.node_id.clone(), e))?;
                    match orphans::leaked(&node.node_id, &claims) {
                        Some(rid) => orphans.push((rid, node.node_id)),
                        None => report.unattributed += 1,
                    }
                    continue;
                }
                Standing::TooYoung => {
                    report.too_young += 1;
                    continue;
                }
                Standing::Judge(rid) => rid,
            };
            let owner = store
                .resource(rid)
                .await
                .map_err(|e| SweepError::Reading(rid, e))?;
            let Some(owner) = owner else {
                report.unattributed += 1;
                continue;
            };
            let holder = store
                .node_owner(&node.node_id)
                .await
                .map_err(|e| SweepError::LookingUp(node.node_id.clone(), e))?;
            if orphans::unwanted(&owner, &node.node_id, holder) {
                orphans.push((owner.id, node.node_id));
            }
        }
        for (rid, node_id) in orphans.into_iter().take(self.config.sweep.max_per_run) {
            report.orphans.push(node_id.clone());
            if report.dry_run {
                continue;
            }
            match self.ports.hosting.delete_node(&node_id).await {
                Ok(()) => {
                    report.deleted += 1;
                    let event =
                        NewEvent::new(EventKind::OrphanDeleted, ACTOR).with_message(node_id);
                    self.ports
                        .store
                        .append_event(rid, &event, self.now())
                        .await
                        .map_err(SweepError::Recording)?;
                }
                Err(e) => {
                    tracing::warn!(%node_id, error = %e, "deleting an orphan failed; next run");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }
}

//! The orphan sweep: the backstop for a billed VPS that no resource claims (a create whose
//! answer came after we gave up, a cleanup that thought the node was gone). It fails
//! closed at every step:
//!
//! - only nodes the hosting service lists as `purpose=obox` *and* that carry one of our
//!   resource ids are considered (shared VPN nodes and nodes without our correlation are
//!   never touched);
//! - only nodes older than the grace period (a node made a moment ago may not be linked
//!   yet), with a known creation time;
//! - only when our own record says the node is not wanted: its resource is deleted, or was
//!   cleaned up, or holds a different node (a duplicate); a resource id we do not know
//!   (another deployment's?) is left alone;
//! - any failed lookup (the listing, the database) ends the run before anything is deleted;
//! - at most `orphan_max_per_run` deletions a run, and a dry-run switch that only reports.

use std::sync::Arc;

use uuid::Uuid;

use super::hosting::{HOSTING_APP, to_chrono};
use super::{Engine, Job};

use crate::domain::{EventKind, Status};
use crate::ports::store::{NewEvent, StoreResult};

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
    /// Listed as ours but without a resource id we know: left alone.
    pub unattributed: usize,
    pub dry_run: bool,
}

impl Engine {
    /// Runs the sweep if it is due and no other worker is running it.
    pub async fn sweep_tick(self: &Arc<Self>) -> StoreResult<Option<SweepReport>> {
        let job = Job {
            name: SWEEP_JOB,
            // Long enough for a whole run; a run that dies frees the job after this.
            lease: std::time::Duration::from_secs(600),
            interval: self.config.orphan_sweep_interval,
            // Right after a deployment there is nothing the first sweep would find that
            // the next one would not.
            first_at_once: false,
        };
        let pass = async {
            let result = self.sweep_orphans().await;
            let summary = match &result {
                Ok(r) => format!(
                    "listed {} orphans {} deleted {} failed {} young {} unattributed {}{}",
                    r.listed,
                    r.orphans.len(),
                    r.deleted,
                    r.failed,
                    r.too_young,
                    r.unattributed,
                    if r.dry_run { " (dry run)" } else { "" }
                ),
                Err(e) => format!("aborted, nothing deleted after: {e}"),
            };
            (result, summary)
        };
        let Some((result, summary)) = self.leased_pass(&job, pass).await? else {
            return Ok(None);
        };
        match &result {
            Ok(r) if !r.orphans.is_empty() => tracing::warn!(%summary, "orphan sweep"),
            Ok(_) => tracing::info!(%summary, "orphan sweep"),
            Err(_) => tracing::warn!(%summary, "orphan sweep"),
        }
        Ok(result.ok())
    }

    /// One sweep. An error means a lookup failed and the run stopped there.
    pub async fn sweep_orphans(&self) -> Result<SweepReport, String> {
        let mut report = SweepReport {
            dry_run: self.config.orphan_dry_run,
            ..SweepReport::default()
        };
        let nodes = self
            .ports
            .hosting
            .list_nodes()
            .await
            .map_err(|e| format!("listing nodes: {e}"))?;
        report.listed = nodes.len();
        let now = self.now();
        let grace = to_chrono(self.config.orphan_grace);
        let mut orphans: Vec<(Uuid, String)> = Vec::new();
        for node in nodes {
            // Ours by the hosting service's word *and* by our correlation id, or not at all.
            if node.purpose.as_deref() != Some(HOSTING_APP) || node.status == "deleted" {
                continue;
            }
            let Some(rid) = node
                .resource_id
                .as_deref()
                .and_then(|id| Uuid::parse_str(id).ok())
            else {
                report.unattributed += 1;
                continue;
            };
            if node.created_at.is_none_or(|at| now - at < grace) {
                report.too_young += 1;
                continue;
            }
            let owner = self
                .ports
                .store
                .resource(rid)
                .await
                .map_err(|e| format!("reading resource {rid}: {e}"))?;
            let Some(owner) = owner else {
                report.unattributed += 1;
                continue;
            };
            let unwanted = match owner.status {
                Status::Deleted => true,
                Status::Failed => owner.upstream_released,
                _ => owner
                    .node_id
                    .as_deref()
                    .is_some_and(|mine| mine != node.node_id),
            };
            // No other resource may hold this node either.
            let claimed_elsewhere = self
                .ports
                .store
                .node_owner(&node.node_id)
                .await
                .map_err(|e| format!("looking up node {}: {e}", node.node_id))?
                .is_some_and(|holder| holder != owner.id);
            if unwanted && !claimed_elsewhere {
                orphans.push((owner.id, node.node_id));
            }
        }
        for (rid, node_id) in orphans.into_iter().take(self.config.orphan_max_per_run) {
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
                        .map_err(|e| format!("recording the deletion: {e}"))?;
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

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
//!
//! The sweep also reconciles the other way, for a database that went back in time (a
//! restored backup, a replica that lost the last seconds; docs/OPERATIONS.md, "Backups and
//! restore"):
//!
//! - a VPS carrying a resource id of ours that the database does not know is recorded
//!   again when the subscription service confirms the subscription it names is active
//!   (the order came after the backup); unconfirmed, it is left alone and reported;
//! - a live node whose VPS the listing lacks is woken: its step asks the hosting service
//!   about that VPS and, when it is gone, moves the node to a VPS that carries its id (a
//!   replacement the backup missed) or records it deleted (`Engine::confirm_node`). A node
//!   whose own VPS is not listed keeps any other VPS that carries its id meanwhile.

use std::collections::HashSet;
use std::sync::Arc;

use uuid::Uuid;

use super::Engine;
use super::jobs::{Job, Summary};
use super::step::to_chrono;
use domain::orphans::{self, Listed, Recovery, Standing};
use domain::product::HOSTING;
use domain::slots::SlotChoice;
use domain::{EventKind, PlanTier, ResourceKind};
use ports::store::{Inserted, NewEvent, NewResource, StoreError, StoreResult};
use ports::{HostingNode, UpstreamError};

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
    /// Listed as ours but without a resource id we know (nor a leaked legacy VPS) and not
    /// recovered: left alone.
    pub unattributed: usize,
    /// VPSes (`node_id`) with a resource id we did not know, recorded again (unless
    /// `dry_run`) because their subscription is active.
    pub recovered: Vec<String>,
    /// Live nodes whose VPS the listing lacks, woken for their step to look (unless
    /// `dry_run`).
    pub unlisted: Vec<Uuid>,
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
    #[error("reading the live nodes: {0}")]
    ReadingNodes(#[source] StoreError),
    #[error("recording: {0}")]
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
                "listed {} orphans {} deleted {} failed {} young {} unattributed {} \
                 recovered {} unlisted {}{}",
                r.listed,
                r.orphans.len(),
                r.deleted,
                r.failed,
                r.too_young,
                r.unattributed,
                r.recovered.len(),
                r.unlisted.len(),
                if r.dry_run { " (dry run)" } else { "" }
            ),
            notable: !r.orphans.is_empty() || !r.recovered.is_empty() || !r.unlisted.is_empty(),
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
        let alive: HashSet<String> = nodes
            .iter()
            .filter(|n| n.status != "deleted")
            .map(|n| n.node_id.clone())
            .collect();
        let listed = |node_id: &str| alive.contains(node_id);
        let mut orphans: Vec<(Uuid, String)> = Vec::new();
        let mut unknown: Vec<(Uuid, HostingNode)> = Vec::new();
        for node in nodes {
            let view = Listed {
                node_id: &node.node_id,
                purpose: node.purpose.as_deref(),
                status: &node.status,
                resource_id: node.resource_id.as_deref(),
                created_at: node.created_at,
            };
            let store = &self.ports.store;
            let rid = match orphans::standing(&view, now, grace) {
                Standing::NotOurs => continue,
                Standing::ByNodeId => {
                    let claims = store
                        .node_claims(&node.node_id)
                        .await
                        .map_err(|e| SweepError::LookingUp(node.node_id.clone(), e))?;
                    match orphans::leaked(&node.node_id, &claims, listed) {
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
                unknown.push((rid, node));
                continue;
            };
            let holder = store
                .node_owner(&node.node_id)
                .await
                .map_err(|e| SweepError::LookingUp(node.node_id.clone(), e))?;
            if orphans::unwanted(&owner, &node.node_id, holder, listed) {
                orphans.push((owner.id, node.node_id));
            }
        }
        self.wake_unlisted(&mut report, listed).await?;
        // At most the cap of subscription lookups a run: a hosting account shared with
        // another deployment may list many VPSes whose ids we do not know.
        for (looked, (rid, node)) in unknown.into_iter().enumerate() {
            if looked >= self.config.sweep.max_per_run {
                report.unattributed += 1;
                continue;
            }
            if self.recover(rid, &node, report.dry_run).await? {
                report.recovered.push(node.node_id);
            } else {
                report.unattributed += 1;
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

    /// Wakes every live node whose VPS the listing lacks: its step looks for itself.
    async fn wake_unlisted(
        &self,
        report: &mut SweepReport,
        listed: impl Fn(&str) -> bool + Copy,
    ) -> Result<(), SweepError> {
        let store = &self.ports.store;
        let serving = store
            .serving_nodes()
            .await
            .map_err(SweepError::ReadingNodes)?;
        let (now, grace) = (self.now(), to_chrono(self.config.sweep.grace));
        for r in serving {
            if !orphans::serving_unlisted(&r, listed, now, grace) {
                continue;
            }
            tracing::warn!(resource_id = %r.id, node_id = ?r.node_id, "a live node's VPS is not listed by the hosting service");
            if !report.dry_run {
                store
                    .wake_resource(r.id, now)
                    .await
                    .map_err(SweepError::Recording)?;
            }
            report.unlisted.push(r.id);
        }
        Ok(())
    }

    /// Records again a resource our database does not know, from the VPS that carries its
    /// id, when the subscription service confirms the subscription the VPS names is
    /// active; the engine then takes it up as a node coming up on that VPS (and reports it
    /// `active` again). Whether it was (or, in a dry run, would be) recorded.
    async fn recover(
        &self,
        rid: Uuid,
        node: &HostingNode,
        dry_run: bool,
    ) -> Result<bool, SweepError> {
        let facts = (
            node.user_id.as_deref(),
            node.subscription_id.as_deref(),
            node.cloud_region.as_deref(),
            node.cloud_provider.as_deref(),
        );
        let (Some(user), Some(subscription), Some(region), Some(provider)) = facts else {
            tracing::warn!(node_id = %node.node_id, resource_id = %rid, "a VPS with an unknown resource id of ours does not say whose or where it is; left alone");
            return Ok(false);
        };
        let active = match self.ports.subscriptions.active(user, HOSTING).await {
            Ok(active) => active,
            Err(e) => {
                tracing::warn!(node_id = %node.node_id, error = %e, "cannot ask the subscription service about a VPS with an unknown resource id; next run");
                return Ok(false);
            }
        };
        let (plan_tier, slots) = match orphans::recovery(subscription, active.as_ref()) {
            Recovery::Adopt { plan_tier, slots } => (plan_tier, slots),
            Recovery::Unconfirmed => {
                tracing::warn!(node_id = %node.node_id, resource_id = %rid, user_id = %user, "a VPS with an unknown resource id of ours and no active subscription to match; left alone");
                return Ok(false);
            }
        };
        if dry_run {
            return Ok(true);
        }
        let new = NewResource {
            id: rid,
            kind: ResourceKind::HostingNode,
            subscription_id: subscription.to_owned(),
            user_id: user.to_owned(),
            user_email: None,
            order_key: format!("recovered:{}", node.node_id),
            provider: provider.to_owned(),
            region: region.to_owned(),
            traffic_limit: PlanTier::parse(&plan_tier).node_traffic_limit(),
            plan_tier,
            actor: ACTOR.into(),
            slots: SlotChoice::UpTo(slots),
            recovered_node: Some(node.node_id.clone()),
        };
        let inserted = self
            .ports
            .store
            .insert_resource(&new, self.now())
            .await
            .map_err(SweepError::Recording)?;
        match inserted {
            Inserted::Created(_) => {
                tracing::warn!(node_id = %node.node_id, resource_id = %rid, "recorded a node again that the database had lost");
                Ok(true)
            }
            Inserted::Full(_) => {
                tracing::warn!(node_id = %node.node_id, resource_id = %rid, "a VPS with an unknown resource id of ours, but its subscription's nodes are all there; left alone");
                Ok(false)
            }
        }
    }
}

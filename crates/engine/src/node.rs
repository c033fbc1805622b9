//! One reconcile step for a hosting node. Each step reads where the row is, does at most
//! one kind of upstream work, and records the outcome with a compare-and-set write; a
//! crash anywhere leaves a row that the next step continues from.
//!
//! Creating a node is the dangerous part (a duplicate is a second bill), so the step
//! commits `creating` *before* calling the hosting service, sends our resource id for
//! correlation, and, when it finds `creating` without a node id (a crashed or timed-out
//! attempt), looks for the node that attempt may have made before making another.

use super::Engine;
use super::step::{ACTOR, StepError};
use domain::Phase;
use domain::attribution::{self, Attribution};
use domain::product::HOSTING;
use domain::{
    Connection, DeleteReason, Desired, EventKind, PlanTier, Resource, Status, credential,
};
use ports::store::{Attempts, Change, NewEvent, StoreResult};
use ports::{CreateNode, HostingNode};

impl Engine {
    pub(super) async fn reconcile_node(&self, r: Resource) -> StoreResult<()> {
        let now = self.now();
        match (r.desired, r.status) {
            (Desired::Active, Status::Active) if r.node_id.is_none() => self.learn_node_id(r).await,
            (Desired::Active, Status::Active) => self.maintain_node(r).await,
            // A VPS the Go service failed to delete (an imported `needs_cleanup` row).
            (_, Status::Deleted) if !r.upstream_released => self.clean_up_failed(r).await,
            (_, Status::Deleted) => self.settle(&r).await,
            (Desired::Active, Status::Pending | Status::Creating)
                if r.deadline_at.is_some_and(|d| now >= d) =>
            {
                let msg = format!(
                    "the node was not ready within {}",
                    human_duration(self.config.ready_timeout)
                );
                let c = self.change(&r);
                self.fail_resource(r, c, msg).await
            }
            (Desired::Active, Status::Pending) => self.start_create(r).await,
            (Desired::Active, Status::Creating) => match r.node_id.clone() {
                None => self.resume_create(r).await,
                Some(node_id) => self.poll_node(r, &node_id).await,
            },
            (Desired::Active, Status::Failed) => self.clean_up_failed(r).await,
            (
                Desired::Deleted,
                Status::Pending | Status::Creating | Status::Active | Status::Failed,
            ) => self.begin_delete(r).await,
            (_, Status::Deleting) => self.finish_delete(r).await,
        }
    }

    /// pending → creating (committed first), then ask for the node.
    async fn start_create(&self, r: Resource) -> StoreResult<()> {
        let (token, digest) = credential::mint();
        let mut c = self.creating(&r);
        c.callback_token_hash = Some(digest);
        c.events
            .push(NewEvent::new(EventKind::VpsCreateRequested, ACTOR));
        match self.commit_creating(r, c).await? {
            Some(r) => self.create_node(r, token).await,
            None => Ok(()),
        }
    }

    /// creating without a node id: an earlier attempt may have created the node. Look
    /// before creating again; never create when the look failed.
    async fn resume_create(&self, r: Resource) -> StoreResult<()> {
        let mut found = match self.find_our_nodes(&r).await {
            Ok(found) => found,
            Err(e) => {
                return self
                    .retry(&r, "looking for a node from an earlier attempt", e)
                    .await;
            }
        };
        if found.is_empty() {
            let (token, digest) = credential::mint();
            let mut c = self.change(&r);
            c.callback_token_hash = Some(digest);
            if !self.commit(c).await? {
                return Ok(());
            }
            return self.create_node(r, token).await;
        }
        found.sort_by_key(|n| n.created_at);
        let keep = found.remove(0);
        for extra in &found {
            // Two attempts both took effect: keep one, delete the rest before they bill.
            if let Err(e) = self.ports.hosting.delete_node(&extra.node_id).await {
                return self.retry(&r, "deleting a duplicate node", e).await;
            }
        }
        tracing::info!(resource_id = %r.id, node_id = %keep.node_id, "adopted a node from an earlier attempt");
        let mut c = self.change(&r);
        c.node_id = Some(keep.node_id.clone());
        c.events
            .push(NewEvent::new(EventKind::NodeAdopted, ACTOR).with_message(keep.node_id.clone()));
        self.on_node_seen(r, c, keep).await
    }

    /// The node agent reported ready before we learned the node's id (our create call's
    /// answer was lost): find the node so that deleting it later needs no search.
    async fn learn_node_id(&self, r: Resource) -> StoreResult<()> {
        let found = match self.find_our_nodes(&r).await {
            Ok(found) => found,
            Err(e) => return self.retry(&r, "looking up the node's id", e).await,
        };
        let mut c = self.change(&r);
        if let Some(node) = found.into_iter().min_by_key(|n| n.created_at) {
            c.node_id = Some(node.node_id.clone());
            c.events
                .push(NewEvent::new(EventKind::NodeAdopted, ACTOR).with_message(node.node_id));
        }
        c.attempts = Attempts::Reset;
        c.rest();
        c.release_lease = true;
        self.commit(c).await.map(|_| ())
    }

    /// An active node woken with nothing else to do (the sweep found its VPS missing from
    /// the listing, or an operator asked): asks the hosting service about its VPS. When
    /// that is gone, the node moves to a ready VPS that carries its id (a replacement our
    /// database missed: it went back in time), or waits while one comes up; with none, the
    /// node is recorded deleted the usual way, so the subscription service hears it. When
    /// the hosting service cannot answer, nothing changes (the sweep asks again).
    pub(super) async fn confirm_node(&self, r: Resource) -> StoreResult<()> {
        let Some(node_id) = r.node_id.clone() else {
            return self.settle(&r).await;
        };
        match self.ports.hosting.get_node(&node_id).await {
            Ok(Some(node)) if node.status != "deleted" => return self.settle(&r).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(resource_id = %r.id, %node_id, error = %e, "cannot confirm the node's VPS; the sweep asks again");
                return self.settle(&r).await;
            }
        }
        let found = match self.find_our_nodes(&r).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(resource_id = %r.id, error = %e, "cannot look for the node's other VPSes; the sweep asks again");
                return self.settle(&r).await;
            }
        };
        let mut others: Vec<HostingNode> = found
            .into_iter()
            .filter(|n| n.node_id != node_id && !matches!(n.status.as_str(), "deleted" | "failed"))
            .collect();
        others.sort_by_key(|n| n.created_at);
        if let Some(next) = others.iter().rev().find(|n| n.status == "active") {
            return self.move_to(r, &node_id, next).await;
        }
        if !others.is_empty() {
            // A VPS of this node is still coming up: look again once it may be ready.
            return self.poll_later(self.change(&r)).await;
        }
        self.vanished(r, &node_id).await
    }

    /// The node serves from `next` now: its VPS `gone` is gone and `next` carries its id.
    async fn move_to(&self, r: Resource, gone: &str, next: &HostingNode) -> StoreResult<()> {
        tracing::warn!(resource_id = %r.id, %gone, node_id = %next.node_id, "the node's VPS is gone; another carrying its id serves it");
        let mut c = self.change(&r);
        c.node_id = Some(next.node_id.clone());
        c.connection = Some(self.connection_of(next));
        c.replace_connection = true;
        c.region = next.cloud_region.clone();
        c.events.push(
            NewEvent::new(EventKind::NodeAdopted, ACTOR).with_message(format!(
                "{}: the VPS {gone} is gone and this one carries the node's id",
                next.node_id
            )),
        );
        c.rest();
        c.release_lease = true;
        self.commit(c).await.map(|_| ())
    }

    /// The node's VPS is gone and none other carries its id: recorded, then deleted the
    /// usual way (a 404 counts as gone), so the subscription service hears `deleted`.
    async fn vanished(&self, r: Resource, gone: &str) -> StoreResult<()> {
        tracing::warn!(resource_id = %r.id, node_id = %gone, "the node's VPS no longer exists; recording the node deleted");
        let mut c = self.change(&r);
        c.events.push(
            NewEvent::new(EventKind::NodeVanished, ACTOR).with_message(format!(
                "the VPS {gone} no longer exists at the hosting service"
            )),
        );
        // Resting until the deletion request below makes it due: the row is not claimed
        // again in between (if this process dies there, the sweep wakes it again).
        c.rest();
        c.release_lease = true;
        if !self.commit(c).await? {
            return Ok(());
        }
        self.ports
            .store
            .request_deletion(r.id, DeleteReason::Admin, ACTOR, self.now())
            .await
            .map(|_| ())
    }

    /// The hosting service's create request for a VPS of `r` in `region` on `plan_tier`
    /// (its own, or a migration's new one), correlated by our resource id.
    pub(super) fn create_request(
        &self,
        r: &Resource,
        region: &str,
        plan_tier: &str,
        token: String,
    ) -> CreateNode {
        CreateNode {
            cloud_provider: r.provider.clone(),
            region: region.to_owned(),
            bundle_id: PlanTier::parse(plan_tier).bundle_id().into(),
            subscription_id: r.subscription_id.clone(),
            user_id: r.user_id.clone(),
            resource_id: r.id.to_string(),
            callback_url: self.config.node_callback_url.clone(),
            callback_token: token,
        }
    }

    async fn create_node(&self, r: Resource, token: String) -> StoreResult<()> {
        let req = self.create_request(&r, &r.region, &r.plan_tier, token);
        let node_id = match self.ports.hosting.create_node(&req).await {
            Ok(id) => id,
            Err(e) if e.is_retryable() => return self.retry(&r, "creating the node", e).await,
            Err(e) => {
                let c = self.change(&r);
                let msg = format!("the hosting service refused to create the node: {e}");
                return self.fail_resource(r, c, msg).await;
            }
        };
        tracing::info!(resource_id = %r.id, %node_id, "node requested");
        let mut c = self.change(&r);
        c.node_id = Some(node_id.clone());
        c.attempts = Attempts::Reset;
        // A fast hosting service may be done already; one look saves a whole poll round.
        match self.ports.hosting.get_node(&node_id).await {
            Ok(Some(node)) => self.on_node_seen(r, c, node).await,
            _ => self.poll_later(c).await,
        }
    }

    async fn poll_node(&self, r: Resource, node_id: &str) -> StoreResult<()> {
        match self.ports.hosting.get_node(node_id).await {
            Ok(Some(node)) => {
                let c = self.change(&r);
                self.on_node_seen(r, c, node).await
            }
            Ok(None) => {
                let c = self.change(&r);
                let msg = "the node disappeared at the hosting service".to_owned();
                self.fail_resource(r, c, msg).await
            }
            Err(e) => self.retry(&r, "polling the node", e).await,
        }
    }

    /// Records what the hosting service reports about a node that is coming up.
    async fn on_node_seen(&self, r: Resource, mut c: Change, node: HostingNode) -> StoreResult<()> {
        match node.status.as_str() {
            "active" => {
                let conn = self.connection_of(&node).merged_over(&r.connection);
                if conn.is_complete() {
                    return self.activate(&r, c, conn, ACTOR).await;
                }
                // Up, but its details are not all reported yet: the last step.
                if r.phase < Phase::Finalizing {
                    c.phase = Some(Phase::Finalizing);
                    c.events
                        .push(NewEvent::new(EventKind::NodeFinalizing, ACTOR));
                }
                c.connection = Some(conn);
                self.poll_later(c).await
            }
            "installing" => {
                if r.phase < Phase::Installing {
                    c.phase = Some(Phase::Installing);
                    c.events
                        .push(NewEvent::new(EventKind::NodeInstalling, ACTOR));
                }
                self.poll_later(c).await
            }
            "failed" => {
                let msg = node
                    .error_message
                    .unwrap_or_else(|| "the hosting service reported the node failed".into());
                self.fail_resource(r, c, msg).await
            }
            "deleted" => {
                let msg = "the node was deleted at the hosting service".to_owned();
                self.fail_resource(r, c, msg).await
            }
            _ => self.poll_later(c).await,
        }
    }

    pub(super) fn connection_of(&self, node: &HostingNode) -> Connection {
        Connection {
            public_ip: node.public_ip.clone(),
            api_port: Some(self.config.node_api_port),
            api_key: node.node_api_key.clone(),
            vless_port: node.vless_port,
            ss_port: node.ss_port,
            public_key: node.public_key.clone(),
            short_id: node.short_id.clone(),
        }
    }

    pub(super) async fn poll_later(&self, mut c: Change) -> StoreResult<()> {
        c.next_step_at(domain::units::after(self.now(), self.config.node_poll));
        c.release_lease = true;
        self.commit(c).await.map(|_| ())
    }

    /// creating → active, with the callback in the same transaction.
    async fn activate(
        &self,
        r: &Resource,
        mut c: Change,
        conn: Connection,
        actor: &str,
    ) -> StoreResult<()> {
        self.mark_ready(&mut c, r, conn, actor);
        // A plan ordered while it came up is applied next (`maintain_node`).
        c.next_step_now_if(r.plan_wanted.is_some());
        c.release_lease = true;
        if self.commit(c).await? {
            self.activated(r);
        }
        Ok(())
    }

    /// Deletes the resource's node at the hosting service, finding it first when its id
    /// was never learned.
    pub(super) async fn release_node(&self, r: &Resource) -> Result<(), StepError> {
        // A node deleted mid-migration has up to three VPSes: the one that served, the
        // one being prepared, and one a switch retired.
        if let Some(old) = &r.retire_node_id {
            self.ports.hosting.delete_node(old).await?;
        }
        if let Some(m) = &r.migration {
            self.release_new_vps(r, m).await?;
        }
        if let Some(node_id) = &r.node_id {
            return Ok(self.ports.hosting.delete_node(node_id).await?);
        }
        if r.phase < Phase::VpsRequested {
            // Never got as far as asking the hosting service.
            return Ok(());
        }
        for node in self.find_our_nodes(r).await? {
            self.ports.hosting.delete_node(&node.node_id).await?;
        }
        Ok(())
    }

    /// The nodes the hosting service holds for this resource. Matching is by our resource
    /// id when the hosting service echoes it; otherwise by subscription and user, and only
    /// when that cannot be another resource's node (fail closed: an ambiguous answer is an
    /// error, retried later).
    pub(super) async fn find_our_nodes(&self, r: &Resource) -> Result<Vec<HostingNode>, StepError> {
        let nodes = self.ports.hosting.list_nodes().await?;
        let id = r.id.to_string();
        let mut ours = Vec::new();
        // The subscription's resources, read once, when a node carries no resource id.
        let mut siblings: Option<Vec<Resource>> = None;
        for node in nodes {
            if node.purpose.as_deref().is_some_and(|p| p != HOSTING.app) {
                continue;
            }
            match &node.resource_id {
                Some(rid) if *rid == id => ours.push(node),
                Some(_) => {}
                None => {
                    let same_owner = node.subscription_id.as_deref() == Some(&r.subscription_id)
                        && node.user_id.as_deref() == Some(&r.user_id);
                    if !same_owner || matches!(node.status.as_str(), "deleted") {
                        continue;
                    }
                    let owner = self.ports.store.node_owner(&node.node_id).await?;
                    match owner {
                        Some(o) if o == r.id => ours.push(node),
                        Some(_) => {}
                        None => {
                            if siblings.is_none() {
                                let all = self
                                    .ports
                                    .store
                                    .resources_for_subscription(&r.subscription_id)
                                    .await?;
                                siblings = Some(all);
                            }
                            let all = siblings.as_deref().unwrap_or_default();
                            match attribution::attribute(r, node.public_ip.as_deref(), all) {
                                Attribution::Ours => ours.push(node),
                                Attribution::NotOurs => {}
                                Attribution::Unsure => return Err(StepError::Ambiguous),
                            }
                        }
                    }
                }
            }
        }
        Ok(ours)
    }
}

/// "10 minutes", "90 seconds": for messages people read.
pub(super) fn human_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 120.0 {
        format!("{:.0} minutes", secs / 60.0)
    } else {
        format!("{secs:.0} seconds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn deadlines_read_naturally_in_messages() {
        assert_eq!(human_duration(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human_duration(Duration::from_secs(90)), "90 seconds");
        assert_eq!(human_duration(Duration::from_secs(1)), "1 seconds");
    }
}

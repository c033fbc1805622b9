//! One reconcile step for a hosting node. Each step reads where the row is, does at most
//! one kind of upstream work, and records the outcome with a compare-and-set write; a
//! crash anywhere leaves a row that the next step continues from.
//!
//! Creating a node is the dangerous part (a duplicate is a second bill), so the step
//! commits `creating` *before* calling the hosting service, sends our resource id for
//! correlation, and, when it finds `creating` without a node id (a crashed or timed-out
//! attempt), looks for the node that attempt may have made before making another.

use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::Engine;
use super::vpn::VPN_APP;
use crate::domain::{
    CallbackStatus, Connection, DeleteReason, Desired, EventKind, PlanTier, Resource, ResourceKind,
    Status, credential,
};
use crate::ports::store::{Attempts, Change, Claim, Guard, NewEvent, StoreResult};
use crate::ports::{CreateNode, FulfillmentCallback, HostingNode, UpstreamError};

/// Who the engine is in the event log.
pub(super) const ACTOR: &str = "engine";
/// The app name of hosting nodes in callbacks.
pub const HOSTING_APP: &str = "obox";

/// The callback that reports a resource's outcome.
pub fn node_callback(
    r: &Resource,
    status: CallbackStatus,
    reason: Option<DeleteReason>,
    error: Option<String>,
) -> FulfillmentCallback {
    let (app, message) = match (r.kind, status) {
        (ResourceKind::HostingNode, CallbackStatus::Active) => {
            (HOSTING_APP, "hosting node is active")
        }
        (ResourceKind::HostingNode, CallbackStatus::Failed) => {
            (HOSTING_APP, "hosting node provisioning failed")
        }
        (ResourceKind::HostingNode, CallbackStatus::Deleted) => {
            (HOSTING_APP, "hosting node deleted")
        }
        (ResourceKind::VpnUser, CallbackStatus::Active) => (VPN_APP, "vpn user is active"),
        (ResourceKind::VpnUser, CallbackStatus::Failed) => {
            (VPN_APP, "vpn user provisioning failed")
        }
        (ResourceKind::VpnUser, CallbackStatus::Deleted) => (VPN_APP, "vpn user deleted"),
    };
    FulfillmentCallback {
        subscription_id: r.subscription_id.clone(),
        app: app.into(),
        status: status.as_str().into(),
        reason: reason.map(|r| r.as_str().into()),
        error,
        message: Some(message.into()),
    }
}

impl Engine {
    pub(super) async fn claim_resources(&self, limit: i64) -> StoreResult<Vec<Resource>> {
        let claim = Claim {
            owner: &self.config.owner,
            now: self.now(),
            lease: self.config.lease,
            limit,
        };
        self.ports.store.claim_resources(claim).await
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        self.ports.clock.now()
    }

    pub(super) fn change(&self, r: &Resource) -> Change {
        Change::on(r, Guard::Lease(self.config.owner.clone()), self.now())
    }

    /// Applies a change; when the row moved under us (a callback, a delete request), gives
    /// the lease back so the row is looked at again right away.
    pub(super) async fn commit(&self, c: Change) -> StoreResult<bool> {
        let (id, now) = (c.id, c.now);
        let applied = self.ports.store.apply(&c).await?;
        if let (true, Some(Some(at))) = (applied, c.next_attempt_at) {
            Engine::schedule_wake(&self.next_resource_wake, at);
        }
        if !applied {
            tracing::debug!(resource_id = %id, "resource changed during the step; re-reading");
            self.ports
                .store
                .release(id, &self.config.owner, now)
                .await?;
        }
        Ok(applied)
    }

    /// Schedules a retry with backoff after a failed upstream call.
    pub(super) async fn retry(
        &self,
        r: &Resource,
        what: &str,
        err: impl std::fmt::Display,
    ) -> StoreResult<()> {
        let msg = format!("{what}: {err}");
        tracing::warn!(resource_id = %r.id, attempts = r.attempts + 1, error = %msg, "step failed; will retry");
        let mut c = self.change(r);
        c.attempts = Attempts::Increment;
        c.last_error = Some(msg.clone());
        c.next_attempt_at = Some(Some(crate::domain::units::after(
            self.now(),
            self.config.backoff.delay(r.attempts),
        )));
        c.release_lease = true;
        c.events
            .push(NewEvent::new(EventKind::AttemptFailed, ACTOR).with_message(msg));
        self.commit(c).await.map(|_| ())
    }

    /// Nothing to do until something changes.
    pub(super) async fn settle(&self, r: &Resource) -> StoreResult<()> {
        let mut c = self.change(r);
        c.next_attempt_at = Some(None);
        c.release_lease = true;
        self.commit(c).await.map(|_| ())
    }

    /// One step for a claimed resource, keeping its lease alive while the step runs (a
    /// step waits on upstream calls; the lease can then stay short, so a dead worker's rows
    /// are taken over quickly).
    pub(super) async fn reconcile(&self, r: Resource) -> anyhow::Result<()> {
        // The heartbeat runs in a task of its own: it must never hold up the step (whose
        // open transaction its update may wait for).
        let _heartbeat = AbortOnDrop(tokio::spawn({
            let (store, owner, id) = (self.ports.store.clone(), self.config.owner.clone(), r.id);
            let (clock, lease) = (self.ports.clock.clone(), self.config.lease);
            let every = (lease / 3).max(std::time::Duration::from_millis(100));
            async move {
                loop {
                    tokio::time::sleep(every).await;
                    let until = crate::domain::units::after(clock.now(), lease);
                    match store.extend_lease(id, &owner, until).await {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(e) => {
                            tracing::warn!(resource_id = %id, error = %e, "could not extend a lease");
                        }
                    }
                }
            }
        }));
        // Stopped however the step ends, even if it is dropped half-way.
        self.reconcile_once(r).await
    }

    async fn reconcile_once(&self, r: Resource) -> anyhow::Result<()> {
        let span = tracing::info_span!("reconcile", resource_id = %r.id, status = %r.status, desired = %r.desired);
        async move {
            match r.kind {
                ResourceKind::HostingNode => self.reconcile_node(r).await,
                ResourceKind::VpnUser => self.reconcile_vpn(r).await,
            }
        }
        .instrument(span)
        .await?;
        Ok(())
    }

    async fn reconcile_node(&self, r: Resource) -> StoreResult<()> {
        let now = self.now();
        match (r.desired, r.status) {
            (Desired::Active, Status::Active) if r.node_id.is_none() => self.learn_node_id(r).await,
            (_, Status::Deleted) | (Desired::Active, Status::Active) => self.settle(&r).await,
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

    /// pending → creating, with the creation deadline: committed before any upstream call.
    pub(super) fn creating(&self, r: &Resource) -> Change {
        let mut c = self.change(r);
        c.status = Some(Status::Creating);
        c.phase = Some(2);
        c.deadline_at = Some(Some(crate::domain::units::after(
            self.now(),
            self.config.ready_timeout,
        )));
        c.attempts = Attempts::Reset;
        c
    }

    /// Commits a `creating` change; the resource as it now is, or `None` if the row moved.
    pub(super) async fn commit_creating(
        &self,
        r: Resource,
        c: Change,
    ) -> StoreResult<Option<Resource>> {
        if !self.commit(c).await? {
            return Ok(None);
        }
        Ok(Some(Resource {
            status: Status::Creating,
            phase: r.phase.max(2),
            attempts: 0,
            ..r
        }))
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
        c.next_attempt_at = Some(None);
        c.release_lease = true;
        self.commit(c).await.map(|_| ())
    }

    async fn create_node(&self, r: Resource, token: String) -> StoreResult<()> {
        let req = CreateNode {
            cloud_provider: r.provider.clone(),
            region: r.region.clone(),
            bundle_id: PlanTier::parse(&r.plan_tier).bundle_id().into(),
            subscription_id: r.subscription_id.clone(),
            user_id: r.user_id.clone(),
            resource_id: r.id.to_string(),
            callback_url: self.config.node_callback_url.clone(),
            callback_token: token,
        };
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
                if r.phase < 4 {
                    c.phase = Some(4);
                    c.events
                        .push(NewEvent::new(EventKind::NodeFinalizing, ACTOR));
                }
                c.connection = Some(conn);
                self.poll_later(c).await
            }
            "installing" => {
                if r.phase < 3 {
                    c.phase = Some(3);
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

    fn connection_of(&self, node: &HostingNode) -> Connection {
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

    async fn poll_later(&self, mut c: Change) -> StoreResult<()> {
        c.next_attempt_at = Some(Some(crate::domain::units::after(
            self.now(),
            self.config.node_poll,
        )));
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
        c.next_attempt_at = Some(None);
        c.release_lease = true;
        self.commit(c).await.map(|_| ())
    }

    /// What recording a ready node writes, whoever noticed it: status, connection details,
    /// history, and the `active` callback.
    fn mark_ready(&self, c: &mut Change, r: &Resource, conn: Connection, actor: &str) {
        c.status = Some(Status::Active);
        c.phase = Some(4);
        c.connection = Some(conn);
        c.ready_at = Some(self.now());
        c.deadline_at = Some(None);
        c.attempts = Attempts::Reset;
        c.events.push(NewEvent::new(EventKind::NodeReady, actor));
        c.callbacks
            .push(node_callback(r, CallbackStatus::Active, None, None));
    }

    /// What recording a failed node writes, whoever noticed it: status, message, history,
    /// and the `failed` callback. Cleanup of the VPS follows in the engine.
    fn mark_failed(&self, c: &mut Change, r: &Resource, msg: &str, actor: &str) {
        c.status = Some(Status::Failed);
        c.error_message = Some(msg.to_owned());
        c.deadline_at = Some(None);
        c.attempts = Attempts::Reset;
        c.events
            .push(NewEvent::new(EventKind::Failed, actor).with_message(msg));
        c.callbacks.push(node_callback(
            r,
            CallbackStatus::Failed,
            Some(DeleteReason::ProvisionFailed),
            Some(msg.to_owned()),
        ));
    }

    /// → failed, reported, then clean up whatever may exist upstream.
    pub(super) async fn fail_resource(
        &self,
        r: Resource,
        mut c: Change,
        msg: String,
    ) -> StoreResult<()> {
        tracing::warn!(resource_id = %r.id, error = %msg, "node failed");
        self.mark_failed(&mut c, &r, &msg, ACTOR);
        let node_id = c.node_id.clone().or(r.node_id.clone());
        if !self.commit(c).await? {
            return Ok(());
        }
        let r = Resource {
            status: Status::Failed,
            node_id,
            error_message: Some(msg),
            attempts: 0,
            ..r
        };
        self.clean_up_failed(r).await
    }

    /// A failed node must not keep billing: delete whatever exists upstream.
    async fn clean_up_failed(&self, r: Resource) -> StoreResult<()> {
        if r.upstream_released {
            return self.settle(&r).await;
        }
        if let Err(e) = self.release_upstream(&r).await {
            return self.retry(&r, "cleaning up the failed node", e).await;
        }
        let mut c = self.change(&r);
        c.upstream_released = Some(true);
        c.attempts = Attempts::Reset;
        c.events
            .push(NewEvent::new(EventKind::UpstreamReleased, ACTOR));
        c.next_attempt_at = Some(None);
        c.release_lease = true;
        self.commit(c).await.map(|_| ())
    }

    /// Any live status → deleting (committed first), then delete.
    pub(super) async fn begin_delete(&self, r: Resource) -> StoreResult<()> {
        let mut c = self.change(&r);
        c.status = Some(Status::Deleting);
        c.deadline_at = Some(None);
        c.attempts = Attempts::Reset;
        c.events.push(NewEvent::new(EventKind::Deleting, ACTOR));
        if !self.commit(c).await? {
            return Ok(());
        }
        let r = Resource {
            status: Status::Deleting,
            attempts: 0,
            ..r
        };
        self.finish_delete(r).await
    }

    /// deleting → deleted once nothing exists upstream; retried (with backoff) until then,
    /// however long it takes: giving up would leak a billed server.
    pub(super) async fn finish_delete(&self, r: Resource) -> StoreResult<()> {
        if let Err(e) = self.release_upstream(&r).await {
            return self.retry(&r, "deleting the node", e).await;
        }
        let reason = r.delete_reason.unwrap_or(DeleteReason::Admin);
        let mut c = self.change(&r);
        c.status = Some(Status::Deleted);
        c.upstream_released = Some(true);
        c.attempts = Attempts::Reset;
        c.events
            .push(NewEvent::new(EventKind::Deleted, ACTOR).with_message(reason.as_str()));
        c.callbacks.push(node_callback(
            &r,
            CallbackStatus::Deleted,
            Some(reason),
            None,
        ));
        c.next_attempt_at = Some(None);
        c.release_lease = true;
        self.commit(c).await.map(|_| ())
    }

    /// Makes sure no node of this resource exists upstream. A 404 counts as gone.
    async fn release_upstream(&self, r: &Resource) -> Result<(), String> {
        if r.upstream_released {
            return Ok(());
        }
        if r.kind == ResourceKind::VpnUser {
            return self.release_vpn_user(r).await;
        }
        if let Some(node_id) = &r.node_id {
            return self
                .ports
                .hosting
                .delete_node(node_id)
                .await
                .map_err(|e| e.to_string());
        }
        if r.phase < 2 {
            // Never got as far as asking the hosting service.
            return Ok(());
        }
        for node in self.find_our_nodes(r).await? {
            self.ports
                .hosting
                .delete_node(&node.node_id)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The nodes the hosting service holds for this resource. Matching is by our resource
    /// id when the hosting service echoes it; otherwise by subscription and user, and only
    /// when that cannot be another resource's node (fail closed: an ambiguous answer is an
    /// error, retried later).
    async fn find_our_nodes(&self, r: &Resource) -> Result<Vec<HostingNode>, String> {
        let nodes = self
            .ports
            .hosting
            .list_nodes()
            .await
            .map_err(|e: UpstreamError| e.to_string())?;
        let id = r.id.to_string();
        let mut ours = Vec::new();
        for node in nodes {
            if node.purpose.as_deref().is_some_and(|p| p != HOSTING_APP) {
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
                    let owner = self
                        .ports
                        .store
                        .node_owner(&node.node_id)
                        .await
                        .map_err(|e| e.to_string())?;
                    match owner {
                        Some(o) if o == r.id => ours.push(node),
                        Some(_) => {}
                        None => {
                            self.ensure_unambiguous(r).await?;
                            ours.push(node);
                        }
                    }
                }
            }
        }
        Ok(ours)
    }

    /// Without a resource id on the node, a node of this subscription and user is ours
    /// only if no other resource of the subscription may be creating one right now.
    async fn ensure_unambiguous(&self, r: &Resource) -> Result<(), String> {
        let siblings = self
            .ports
            .store
            .resources_for_subscription(&r.subscription_id)
            .await
            .map_err(|e| e.to_string())?;
        let racing = siblings.iter().any(|s| {
            s.id != r.id
                && s.kind == ResourceKind::HostingNode
                && s.node_id.is_none()
                && matches!(s.status, Status::Creating)
        });
        if racing {
            Err("cannot tell this resource's node from a sibling's that is being created".into())
        } else {
            Ok(())
        }
    }

    /// Applies a ready report from the node agent (or the hosting service) unless the
    /// resource is no longer meant to come up. Returns whether anything changed.
    pub async fn node_ready(&self, r: &Resource, conn: Connection) -> StoreResult<bool> {
        if r.desired != Desired::Active || r.status != Status::Creating {
            return Ok(false);
        }
        let conn = Connection {
            api_port: conn.api_port.or(Some(self.config.node_api_port)),
            ..conn
        }
        .merged_over(&r.connection);
        if !conn.is_complete() {
            return Ok(false);
        }
        let mut c = Change::on(r, Guard::Unleased, self.now());
        c.expect_desired = Some(Desired::Active);
        self.mark_ready(&mut c, r, conn, "node");
        // Without the node's id (a lost create answer), the engine still has to find it.
        c.next_attempt_at = Some(r.node_id.is_none().then(|| self.now()));
        self.ports.store.apply(&c).await
    }

    /// Applies a failure report from the node agent: failed, reported, cleanup scheduled.
    pub async fn node_failed(&self, r: &Resource, msg: String) -> StoreResult<bool> {
        self.fail_from_outside(r, &msg, "node").await
    }

    /// Fails a resource that is coming up, for someone outside the engine (a node agent,
    /// an operator): failed, reported, cleanup scheduled. `false` when it is not coming up.
    pub async fn fail_from_outside(
        &self,
        r: &Resource,
        msg: &str,
        actor: &str,
    ) -> StoreResult<bool> {
        if r.desired != Desired::Active || !matches!(r.status, Status::Pending | Status::Creating) {
            return Ok(false);
        }
        let mut c = Change::on(r, Guard::Unleased, self.now());
        c.expect_desired = Some(Desired::Active);
        self.mark_failed(&mut c, r, msg, actor);
        // The VPS must go: make the row due for cleanup now.
        c.next_attempt_at = Some(Some(self.now()));
        self.ports.store.apply(&c).await
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// "10 minutes", "90 seconds": for messages people read.
fn human_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 120.0 {
        format!("{:.0} minutes", secs / 60.0)
    } else {
        format!("{secs:.0} seconds")
    }
}

pub(super) fn to_chrono(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
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

//! The lifecycle writes both kinds share: going `creating` before any upstream call,
//! recording ready and failed (whoever noticed), cleaning up what a failure left upstream,
//! and deleting. Each is committed before the upstream work it announces.

use super::Engine;
use super::step::{ACTOR, StepError};
use domain::{
    CallbackStatus, Connection, DeleteReason, EventKind, Phase, Resource, ResourceKind, Status,
    callback,
};
use ports::store::{Attempts, Change, NewEvent, StoreResult};

impl Engine {
    /// pending → creating, with the creation deadline: committed before any upstream call.
    pub(super) fn creating(&self, r: &Resource) -> Change {
        let mut c = self.change(r);
        c.status = Some(Status::Creating);
        c.phase = Some(Phase::VpsRequested);
        c.deadline(domain::units::after(self.now(), self.config.ready_timeout));
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
            phase: r.phase.max(Phase::VpsRequested),
            attempts: 0,
            ..r
        }))
    }

    /// What recording a ready node writes, whoever noticed it: status, connection details,
    /// history, and the `active` callback.
    pub(super) fn mark_ready(&self, c: &mut Change, r: &Resource, conn: Connection, actor: &str) {
        c.status = Some(Status::Active);
        c.phase = Some(Phase::Finalizing);
        c.connection = Some(conn);
        c.ready_at = Some(self.now());
        c.clear_deadline();
        c.attempts = Attempts::Reset;
        c.events.push(NewEvent::new(EventKind::NodeReady, actor));
        c.callbacks
            .push(outcome(r, CallbackStatus::Active, None, None));
    }

    /// Reports that `r` has just become active (after the commit that made it so).
    pub(super) fn activated(&self, r: &Resource) {
        let seconds = (self.now() - r.created_at).num_milliseconds() as f64 / 1000.0;
        self.ports.telemetry.provisioned(r.kind, seconds);
    }

    /// What recording a failed node writes, whoever noticed it: status, message, history,
    /// and the `failed` callback. Cleanup of the VPS follows in the engine.
    pub(super) fn mark_failed(&self, c: &mut Change, r: &Resource, msg: &str, actor: &str) {
        c.status = Some(Status::Failed);
        c.error_message = Some(msg.to_owned());
        c.clear_deadline();
        c.attempts = Attempts::Reset;
        c.events
            .push(NewEvent::new(EventKind::Failed, actor).with_message(msg));
        c.callbacks.push(outcome(
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
        self.ports.telemetry.provisioning_failed(r.kind);
        let r = Resource {
            status: Status::Failed,
            node_id,
            error_message: Some(msg),
            attempts: 0,
            ..r
        };
        self.clean_up_failed(r).await
    }

    /// A failed node must not keep billing: deletes whatever exists upstream for a
    /// resource that keeps its status (a failed one, or a deleted one the Go service left
    /// a VPS behind for), then rests.
    pub(super) async fn clean_up_failed(&self, r: Resource) -> StoreResult<()> {
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
        c.rest();
        c.release_lease = true;
        self.commit(c).await.map(|_| ())
    }

    /// Any live status → deleting (committed first), then delete.
    pub(super) async fn begin_delete(&self, r: Resource) -> StoreResult<()> {
        let mut c = self.change(&r);
        c.status = Some(Status::Deleting);
        c.clear_deadline();
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
        c.callbacks
            .push(outcome(&r, CallbackStatus::Deleted, Some(reason), None));
        c.rest();
        c.release_lease = true;
        self.commit(c).await.map(|_| ())
    }

    /// Makes sure nothing of this resource exists upstream. A 404 counts as gone.
    async fn release_upstream(&self, r: &Resource) -> Result<(), StepError> {
        if r.upstream_released {
            return Ok(());
        }
        match r.kind {
            ResourceKind::HostingNode => self.release_node(r).await,
            ResourceKind::VpnUser => self.release_vpn_user(r).await,
        }
    }
}

/// The callback that reports `r`'s outcome to its subscription.
fn outcome(
    r: &Resource,
    status: CallbackStatus,
    reason: Option<DeleteReason>,
    error: Option<String>,
) -> domain::callback::FulfillmentCallback {
    callback::outcome(
        r.kind,
        &r.id.to_string(),
        &r.subscription_id,
        status,
        reason,
        error,
    )
}

//! The step machinery every resource kind shares: claim due rows, take one step per row
//! while a heartbeat keeps the lease, and commit its outcome as one compare-and-set
//! change. A change that lost its race gives the lease back so the row is read again; a
//! failed upstream call is retried with backoff.

use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::Engine;
use domain::{EventKind, Resource, ResourceKind};
use ports::UpstreamError;
use ports::store::{Attempts, Change, Claim, Guard, NewEvent, StoreError, StoreResult};

/// Who the engine is in the event log.
pub(super) const ACTOR: &str = "engine";

/// Why a step's outside work could not finish: an upstream call failed, our own record
/// could not be read, or the answer could not be trusted. The step is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot tell this resource's node from a sibling's that is being created")]
    Ambiguous,
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
        Change::on(
            r,
            Guard::Lease {
                owner: self.config.owner.clone(),
                epoch: r.lease_epoch,
            },
            self.now(),
        )
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
        c.next_step_at(domain::units::after(
            self.now(),
            self.config.backoff.delay(r.attempts),
        ));
        c.release_lease = true;
        c.events
            .push(NewEvent::new(EventKind::AttemptFailed, ACTOR).with_message(msg));
        self.commit(c).await.map(|_| ())
    }

    /// Nothing to do until something changes.
    pub(super) async fn settle(&self, r: &Resource) -> StoreResult<()> {
        let mut c = self.change(r);
        c.rest();
        c.release_lease = true;
        self.commit(c).await.map(|_| ())
    }

    /// One step for a claimed resource, keeping its lease alive while the step runs (a
    /// step waits on upstream calls; the lease can then stay short, so a dead worker's rows
    /// are taken over quickly).
    pub(super) async fn reconcile(&self, r: Resource) -> StoreResult<()> {
        let _held = self.hold();
        // The heartbeat runs in a task of its own: it must never hold up the step (whose
        // open transaction its update may wait for).
        let _heartbeat = AbortOnDrop(tokio::spawn({
            let (store, owner, id) = (self.ports.store.clone(), self.config.owner.clone(), r.id);
            let (clock, lease) = (self.ports.clock.clone(), self.config.lease);
            let every = (lease / 3).max(std::time::Duration::from_millis(100));
            async move {
                loop {
                    tokio::time::sleep(every).await;
                    let until = domain::units::after(clock.now(), lease);
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

    async fn reconcile_once(&self, r: Resource) -> StoreResult<()> {
        let span = tracing::info_span!("reconcile", resource_id = %r.id, status = %r.status, desired = %r.desired);
        async move {
            match r.kind {
                ResourceKind::HostingNode => self.reconcile_node(r).await,
                ResourceKind::VpnUser => self.reconcile_vpn(r).await,
            }
        }
        .instrument(span)
        .await
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) fn to_chrono(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

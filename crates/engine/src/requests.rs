//! The engine's seam for writes asked from outside its steps: a request starting or
//! cancelling a migration, a node agent reporting ready or failed, an operator failing a
//! resource. Each is one unleased compare-and-set `Change` built from the resource as the
//! caller read it, with the same rules and history the steps use, and answers `Applied`:
//! done, refused by the rules (nothing written), or stale (the row changed since it was
//! read: the caller reads it again and asks again, or gives up).

use super::Engine;
use domain::migration::{self, Migration, NothingToCancel, Refusal};
use domain::{Connection, Desired, EventKind, Resource, Status};
use ports::store::{Change, Guard, NewEvent, StoreResult};

/// What a write asked from outside the engine's steps did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied<R> {
    /// Written (or nothing was left to write).
    Done,
    /// The rules refuse it: nothing was written.
    Refused(R),
    /// The resource changed since it was read: nothing was written.
    Stale,
}

/// A report about a resource that is not coming up (or not meant to any more), or that
/// lacks what it must say: it changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotComingUp;

impl Engine {
    async fn apply<R>(&self, c: &Change) -> StoreResult<Applied<R>> {
        Ok(match self.ports.store.apply(c).await? {
            true => Applied::Done,
            false => Applied::Stale,
        })
    }

    /// Asks for a migration of `r` (from the API, an operator, or a plan change).
    pub async fn request_migration(
        &self,
        r: &Resource,
        to_region: &str,
        to_plan_tier: &str,
        actor: &str,
    ) -> StoreResult<Applied<Refusal>> {
        let now = self.now();
        let deadline = domain::units::after(now, self.config.ready_timeout);
        let m = match migration::start(r, to_region, to_plan_tier, now, deadline, actor) {
            Ok(m) => m,
            Err(refusal) => return Ok(Applied::Refused(refusal)),
        };
        let mut c = Change::on(r, Guard::Unleased, now);
        c.expect_desired = Some(Desired::Active);
        c.migrate(r, Some(m));
        c.bump_generation = true;
        c.next_step_now();
        c.events.push(
            NewEvent::new(EventKind::MigrationRequested, actor).with_message(format!(
                "{} {} -> {to_region} {to_plan_tier}",
                r.region, r.plan_tier
            )),
        );
        self.apply(&c).await
    }

    /// Cancels a running migration (its new VPS is deleted; nothing else changes) or
    /// dismisses a failed one.
    pub async fn cancel_migration(
        &self,
        r: &Resource,
        actor: &str,
    ) -> StoreResult<Applied<NothingToCancel>> {
        let from = r.migration.as_ref().map(|m| m.status);
        let to = match migration::cancel(from) {
            Ok(to) => to,
            Err(none) => return Ok(Applied::Refused(none)),
        };
        if to == from {
            return Ok(Applied::Done);
        }
        let now = self.now();
        let mut c = Change::on(r, Guard::Unleased, now);
        let to = match (to, &r.migration) {
            (Some(status), Some(m)) => Some(Migration {
                status,
                ..m.clone()
            }),
            _ => None,
        };
        c.migrate(r, to);
        c.bump_generation = true;
        c.next_step_now();
        c.events
            .push(NewEvent::new(EventKind::MigrationCancelled, actor));
        self.apply(&c).await
    }

    /// Applies a ready report from the node agent (or the hosting service) unless the
    /// resource is no longer meant to come up, or the report still lacks what a client
    /// needs (then the engine's own polls finish it).
    pub async fn node_ready(
        &self,
        r: &Resource,
        conn: Connection,
    ) -> StoreResult<Applied<NotComingUp>> {
        if r.desired != Desired::Active || r.status != Status::Creating {
            return Ok(Applied::Refused(NotComingUp));
        }
        let conn = Connection {
            api_port: conn.api_port.or(Some(self.config.node_api_port)),
            ..conn
        }
        .merged_over(&r.connection);
        if !conn.is_complete() {
            return Ok(Applied::Refused(NotComingUp));
        }
        let mut c = Change::on(r, Guard::Unleased, self.now());
        c.expect_desired = Some(Desired::Active);
        self.mark_ready(&mut c, r, conn, "node");
        // Without the node's id (a lost create answer), the engine still has to find it;
        // a plan ordered while it came up is applied next.
        let more = r.node_id.is_none() || r.plan_wanted.is_some();
        c.next_step_now_if(more);
        let applied = self.apply(&c).await?;
        if applied == Applied::Done {
            self.activated(r);
        }
        Ok(applied)
    }

    /// Applies a failure report from the node agent: failed, reported, cleanup scheduled.
    pub async fn node_failed(
        &self,
        r: &Resource,
        msg: String,
    ) -> StoreResult<Applied<NotComingUp>> {
        self.fail_from_outside(r, &msg, "node").await
    }

    /// Fails a resource that is coming up, for someone outside the engine (a node agent,
    /// an operator): failed, reported, cleanup scheduled.
    pub async fn fail_from_outside(
        &self,
        r: &Resource,
        msg: &str,
        actor: &str,
    ) -> StoreResult<Applied<NotComingUp>> {
        if r.desired != Desired::Active || !matches!(r.status, Status::Pending | Status::Creating) {
            return Ok(Applied::Refused(NotComingUp));
        }
        let mut c = Change::on(r, Guard::Unleased, self.now());
        c.expect_desired = Some(Desired::Active);
        self.mark_failed(&mut c, r, msg, actor);
        // The VPS must go: make the row due for cleanup now.
        c.next_step_now();
        let applied = self.apply(&c).await?;
        if applied == Applied::Done {
            self.ports.telemetry.provisioning_failed(r.kind);
        }
        Ok(applied)
    }
}

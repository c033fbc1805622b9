//! Reports from outside the engine: a node agent saying its node is ready or failed,
//! an operator failing a resource. Each is one unleased compare-and-set that only applies
//! while the resource is still coming up and meant to.

use super::Engine;
use crate::domain::{Connection, Desired, Resource, Status};
use crate::ports::store::{Change, Guard, StoreResult};

impl Engine {
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
        // Without the node's id (a lost create answer), the engine still has to find it;
        // a plan ordered while it came up is applied next.
        let more = r.node_id.is_none() || r.plan_wanted.is_some();
        c.next_step_now_if(more);
        let applied = self.ports.store.apply(&c).await?;
        if applied {
            self.activated(r);
        }
        Ok(applied)
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
        c.next_step_now();
        let applied = self.ports.store.apply(&c).await?;
        if applied {
            self.ports.telemetry.provisioning_failed(r.kind);
        }
        Ok(applied)
    }
}

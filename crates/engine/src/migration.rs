//! Replacing a live node's VPS (region migration, plan change, rebuild): the engine's
//! side of `domain::migration`. Every write names the migration status it expects, so a
//! cancel from outside and a step of the engine never both win; every upstream call is
//! announced by a committed write first, as on the create path:
//!
//! - `requested → creating` is committed (with the new VPS's credential) before the
//!   create call; `creating` without the new VPS's id looks for it before creating again.
//! - When the new VPS is `active` with all its details, one transaction switches the
//!   resource to it (node id, region, plan, traffic limit, connection, credential) and
//!   records the old VPS as retired; the old one is then deleted until it is gone.
//! - A new VPS that fails or is late, or whose migration is cancelled, is deleted, and
//!   the old one serves on throughout.

use super::Engine;
use super::step::{ACTOR, StepError};
use domain::migration::{self, Migration, MigrationStatus};
use domain::{Connection, EventKind, PlanTier, Resource, credential};
use ports::HostingNode;
use ports::store::{Attempts, Change, NewEvent, StoreError, StoreResult};

/// A migration's next state, checked against the table (a refusal is a bug, reported as
/// a store error so the step is retried and logged rather than silently skipped).
fn moved(m: &Migration, to: MigrationStatus) -> StoreResult<Migration> {
    m.to(to).map_err(|e| StoreError::Other(e.into()))
}

impl Engine {
    /// The step of an active node that is meant to stay: delete a retired VPS, then move
    /// a migration along; with neither, nothing to do.
    pub(super) async fn maintain_node(&self, r: Resource) -> StoreResult<()> {
        if let Some(old) = r.retire_node_id.clone() {
            return self.delete_retired(r, old).await;
        }
        let Some(m) = r.migration.clone() else {
            return self.follow_wanted_plan(r).await;
        };
        use MigrationStatus::*;
        match m.status {
            // A failed attempt stays shown; a plan asked for meanwhile replaces it.
            Failed => self.follow_wanted_plan(r).await,
            Failing | Cancelling => self.drop_new_vps(r, m).await,
            _ if self.now() >= m.deadline_at => {
                let msg = format!(
                    "the new VPS was not ready within {}",
                    super::node::human_duration(self.config.ready_timeout)
                );
                self.migration_failed(r, m, msg).await
            }
            Requested => self.start_new_vps(r, m).await,
            Creating | Installing | Switching => match m.node_id.clone() {
                None => self.resume_new_vps(r, m).await,
                Some(node_id) => self.poll_new_vps(r, m, &node_id).await,
            },
        }
    }

    /// An active node with nothing else to do: if an order asked for another plan while it
    /// was coming up or migrating (`plan_wanted`), migrate it in place now; else make sure
    /// its VPS is still there and settle.
    async fn follow_wanted_plan(&self, r: Resource) -> StoreResult<()> {
        let Some(wanted) = r.plan_wanted.clone() else {
            return self.confirm_node(r).await;
        };
        let now = self.now();
        let deadline = domain::units::after(now, self.config.ready_timeout);
        let actor = "subscription_service";
        let mut c = self.change(&r);
        c.clear_plan_wanted();
        if let Some(m) = migration::plan_change(&r, &wanted, now, deadline, actor) {
            c.events.push(
                NewEvent::new(EventKind::MigrationRequested, actor)
                    .with_message(format!("plan {} -> {wanted}", r.plan_tier)),
            );
            c.migrate(&r, Some(m));
            c.next_step_now();
        } else {
            c.rest();
        }
        c.release_lease = true;
        self.commit(c).await.map(|_| ())
    }

    /// Deletes the VPS a switch replaced (a 404 counts as gone), then forgets it.
    async fn delete_retired(&self, r: Resource, old: String) -> StoreResult<()> {
        if let Err(e) = self.ports.hosting.delete_node(&old).await {
            return self.retry(&r, "deleting the replaced VPS", e).await;
        }
        tracing::info!(resource_id = %r.id, node_id = %old, "replaced VPS deleted");
        let mut c = self.change(&r);
        c.clear_retired();
        c.attempts = Attempts::Reset;
        c.events
            .push(NewEvent::new(EventKind::RetiredNodeDeleted, ACTOR).with_message(old));
        // A migration asked for meanwhile goes on at once.
        c.next_step_now_if(r.migration.is_some());
        c.release_lease = true;
        self.commit(c).await.map(|_| ())
    }

    /// requested → creating, committed with the new VPS's credential, then create it.
    async fn start_new_vps(&self, r: Resource, m: Migration) -> StoreResult<()> {
        let (token, digest) = credential::mint();
        let mut next = moved(&m, MigrationStatus::Creating)?;
        next.token_hash = Some(digest);
        let mut c = self.change(&r);
        c.migrate(&r, Some(next.clone()));
        c.attempts = Attempts::Reset;
        c.events.push(
            NewEvent::new(EventKind::MigrationVpsRequested, ACTOR)
                .with_message(format!("{} {}", next.to_region, next.to_plan_tier)),
        );
        if !self.commit(c).await? {
            return Ok(());
        }
        let r = Resource {
            migration: Some(next.clone()),
            attempts: 0,
            ..r
        };
        self.create_new_vps(r, next, token).await
    }

    /// creating without the new VPS's id: an earlier attempt may have made it. Look
    /// before creating again; never create when the look failed.
    async fn resume_new_vps(&self, r: Resource, m: Migration) -> StoreResult<()> {
        let mut found = match self.find_new_vps(&r).await {
            Ok(found) => found,
            Err(e) => {
                return self
                    .retry(&r, "looking for the new VPS of an earlier attempt", e)
                    .await;
            }
        };
        if found.is_empty() {
            let (token, digest) = credential::mint();
            let mut next = m.clone();
            next.token_hash = Some(digest);
            let mut c = self.change(&r);
            c.migrate(&r, Some(next.clone()));
            if !self.commit(c).await? {
                return Ok(());
            }
            let r = Resource {
                migration: Some(next.clone()),
                ..r
            };
            return self.create_new_vps(r, next, token).await;
        }
        found.sort_by_key(|n| n.created_at);
        let keep = found.remove(0);
        for extra in &found {
            if let Err(e) = self.ports.hosting.delete_node(&extra.node_id).await {
                return self.retry(&r, "deleting a duplicate new VPS", e).await;
            }
        }
        tracing::info!(resource_id = %r.id, node_id = %keep.node_id, "adopted the new VPS of an earlier attempt");
        let mut next = m;
        next.node_id = Some(keep.node_id.clone());
        let mut c = self.change(&r);
        c.migrate(&r, Some(next.clone()));
        c.events.push(
            NewEvent::new(EventKind::MigrationNodeCreated, ACTOR)
                .with_message(keep.node_id.clone()),
        );
        self.on_new_vps_seen(r, next, c, keep).await
    }

    async fn create_new_vps(&self, r: Resource, m: Migration, token: String) -> StoreResult<()> {
        let req = self.create_request(&r, &m.to_region, &m.to_plan_tier, token);
        let node_id = match self.ports.hosting.create_node(&req).await {
            Ok(id) => id,
            Err(e) if e.is_retryable() => return self.retry(&r, "creating the new VPS", e).await,
            Err(e) => {
                let msg = format!("the hosting service refused to create the new VPS: {e}");
                return self.migration_failed(r, m, msg).await;
            }
        };
        tracing::info!(resource_id = %r.id, %node_id, "new VPS requested");
        let mut next = m;
        next.node_id = Some(node_id.clone());
        let mut c = self.change(&r);
        c.migrate(&r, Some(next.clone()));
        c.attempts = Attempts::Reset;
        c.events.push(
            NewEvent::new(EventKind::MigrationNodeCreated, ACTOR).with_message(node_id.clone()),
        );
        match self.ports.hosting.get_node(&node_id).await {
            Ok(Some(node)) => self.on_new_vps_seen(r, next, c, node).await,
            _ => self.poll_later(c).await,
        }
    }

    async fn poll_new_vps(&self, r: Resource, m: Migration, node_id: &str) -> StoreResult<()> {
        match self.ports.hosting.get_node(node_id).await {
            Ok(Some(node)) => {
                let c = self.change(&r);
                self.on_new_vps_seen(r, m, c, node).await
            }
            Ok(None) => {
                let msg = "the new VPS disappeared at the hosting service".to_owned();
                self.migration_failed(r, m, msg).await
            }
            Err(e) => self.retry(&r, "polling the new VPS", e).await,
        }
    }

    /// Records what the hosting service reports about the new VPS; switches when it is
    /// active with every detail the app needs.
    async fn on_new_vps_seen(
        &self,
        r: Resource,
        m: Migration,
        mut c: Change,
        node: HostingNode,
    ) -> StoreResult<()> {
        match node.status.as_str() {
            "active" => {
                let conn = self.connection_of(&node);
                if conn.is_complete() {
                    return self.switch(r, m, c, conn).await;
                }
                // Up, but its details are not all reported yet: the last step.
                if m.status != MigrationStatus::Switching {
                    c.migrate(&r, Some(moved(&m, MigrationStatus::Switching)?));
                    c.events
                        .push(NewEvent::new(EventKind::MigrationFinishing, ACTOR));
                }
                self.poll_later(c).await
            }
            "installing" => {
                if m.status == MigrationStatus::Creating {
                    c.migrate(&r, Some(moved(&m, MigrationStatus::Installing)?));
                    c.events
                        .push(NewEvent::new(EventKind::MigrationInstalling, ACTOR));
                }
                self.poll_later(c).await
            }
            "failed" | "deleted" => {
                let msg = node
                    .error_message
                    .filter(|_| node.status == "failed")
                    .unwrap_or_else(|| {
                        format!("the new VPS is {} at the hosting service", node.status)
                    });
                self.migration_failed(r, m, msg).await
            }
            _ => self.poll_later(c).await,
        }
    }

    /// The switch, in one transaction: the resource now is the new VPS (node id, region,
    /// plan, traffic limit, connection, credential), the migration is over, and the old
    /// VPS is retired (deleted next, until it is gone).
    async fn switch(
        &self,
        r: Resource,
        m: Migration,
        mut c: Change,
        conn: Connection,
    ) -> StoreResult<()> {
        let Some(new_id) = m.node_id.clone() else {
            return self.poll_later(c).await;
        };
        let old = r.node_id.clone();
        c.migrate(&r, None);
        c.node_id = Some(new_id.clone());
        c.region = Some(m.to_region.clone());
        c.plan_tier = Some(m.to_plan_tier.clone());
        c.traffic_limit = Some(PlanTier::parse(&m.to_plan_tier).node_traffic_limit());
        c.connection = Some(conn);
        c.replace_connection = true;
        c.callback_token_hash = m.token_hash.clone();
        c.retire_node_id = Some(old.clone());
        c.attempts = Attempts::Reset;
        c.events.push(
            NewEvent::new(EventKind::MigrationSwitched, ACTOR).with_message(format!(
                "{} -> {new_id} ({} {})",
                old.as_deref().unwrap_or("unknown"),
                m.to_region,
                m.to_plan_tier
            )),
        );
        c.next_step_now();
        c.release_lease = true;
        if self.commit(c).await? {
            tracing::info!(resource_id = %r.id, node_id = %new_id, "switched to the new VPS");
        }
        Ok(())
    }

    /// The new VPS failed or is late: `failing` (shown as failed), then delete it.
    async fn migration_failed(&self, r: Resource, m: Migration, msg: String) -> StoreResult<()> {
        tracing::warn!(resource_id = %r.id, error = %msg, "migration failed");
        let mut next = moved(&m, MigrationStatus::Failing)?;
        next.error_message = Some(msg.clone());
        let mut c = self.change(&r);
        c.migrate(&r, Some(next.clone()));
        c.attempts = Attempts::Reset;
        c.events
            .push(NewEvent::new(EventKind::MigrationFailed, ACTOR).with_message(msg));
        if !self.commit(c).await? {
            return Ok(());
        }
        let r = Resource {
            migration: Some(next.clone()),
            attempts: 0,
            ..r
        };
        self.drop_new_vps(r, next).await
    }

    /// Deletes the new VPS of a failed or cancelled migration (found first when its id
    /// was never learned); then `failed` stays shown, or a cancelled one is gone.
    async fn drop_new_vps(&self, r: Resource, m: Migration) -> StoreResult<()> {
        if let Err(e) = self.release_new_vps(&r, &m).await {
            return self.retry(&r, "deleting the new VPS", e).await;
        }
        let to = match m.status {
            MigrationStatus::Failing => Some(moved(&m, MigrationStatus::Failed)?),
            _ => None,
        };
        let mut c = self.change(&r);
        c.migrate(&r, to);
        c.attempts = Attempts::Reset;
        let deleted = NewEvent::new(EventKind::MigrationNodeDeleted, ACTOR);
        c.events.push(match &m.node_id {
            Some(id) => deleted.with_message(id.clone()),
            None => deleted,
        });
        c.rest();
        c.release_lease = true;
        self.commit(c).await.map(|_| ())
    }

    /// Makes sure the migration's new VPS does not exist. Without its id, a create may
    /// still have been made (its credential was minted): look for it.
    pub(super) async fn release_new_vps(
        &self,
        r: &Resource,
        m: &Migration,
    ) -> Result<(), StepError> {
        if let Some(id) = &m.node_id {
            return Ok(self.ports.hosting.delete_node(id).await?);
        }
        if m.token_hash.is_none() {
            // Never got as far as asking the hosting service.
            return Ok(());
        }
        for node in self.find_new_vps(r).await? {
            self.ports.hosting.delete_node(&node.node_id).await?;
        }
        Ok(())
    }

    /// Our nodes for this resource other than the one that serves and the one retired.
    async fn find_new_vps(&self, r: &Resource) -> Result<Vec<HostingNode>, StepError> {
        let known = [r.node_id.as_deref(), r.retire_node_id.as_deref()];
        Ok(self
            .find_our_nodes(r)
            .await?
            .into_iter()
            .filter(|n| n.status != "deleted" && !known.contains(&Some(n.node_id.as_str())))
            .collect())
    }
}

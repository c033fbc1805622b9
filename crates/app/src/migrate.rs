//! Replacing a node's VPS on request (CONTRACTS.md §4.5): a user moves their node to
//! another region (or rebuilds it in place), an operator or the subscription service may
//! also change its plan. The engine does the work (`engine::migration`); here the request
//! is checked and recorded, and a cancel or dismissal is taken.

use super::ids::{ResourceId, UserId};
use super::{App, AppError};
use domain::budget::Budget;
use domain::input;
use domain::migration::{self, NothingToCancel, Refusal};
use domain::{Resource, ResourceKind};
use engine::Applied;

/// Which node a user names: one of theirs by id, or the one `/my/node` shows.
#[derive(Debug, Clone, Copy)]
pub enum MyNodeRef<'a> {
    Id(&'a str),
    Shown,
}

/// The actor of what a user asks for themselves, in a resource's history.
const USER: &str = "user";

/// Attempts at recording a request when the row keeps changing under it (the engine's
/// own writes to an active node are rare and short).
const ROUNDS: usize = 3;

impl App {
    /// The user's node a migration request names.
    async fn migration_target(
        &self,
        user: &UserId,
        node: MyNodeRef<'_>,
    ) -> Result<Resource, AppError> {
        match node {
            MyNodeRef::Id(id) => self.own_node(user, id).await,
            MyNodeRef::Shown => self
                .ports
                .store
                .current_hosting_node(user.as_str())
                .await?
                .ok_or_else(|| AppError::not_found("no_node", "you have no node")),
        }
    }

    /// `POST /my/nodes/{id}/migrate`, `POST /my/node/migrate`: to `region` (the same
    /// region rebuilds the node onto a fresh VPS).
    pub async fn migrate_my_node(
        &self,
        user: &UserId,
        node: MyNodeRef<'_>,
        region: Option<&str>,
    ) -> Result<Resource, AppError> {
        let region = input::chosen_region(region)?;
        let r = self.migration_target(user, node).await?;
        self.within_migration_budget(&r).await?;
        self.migrate(r, Some(region), None, USER).await
    }

    /// A user starts at most `MIGRATIONS_PER_DAY` migrations or rebuilds of a node in any
    /// 24 hours, cancelled ones included (CONTRACTS.md §4.7), as its history records them.
    async fn within_migration_budget(&self, r: &Resource) -> Result<(), AppError> {
        let started: Vec<_> = self
            .ports
            .store
            .events(r.id)
            .await?
            .into_iter()
            .filter(|e| migration::started_by(e, USER))
            .map(|e| e.at)
            .collect();
        let budget = Budget {
            limit: self.config.migrations_per_day,
            window: chrono::Duration::hours(24),
        };
        budget
            .admit(&started, self.ports.clock.now())
            .map_err(|wait| AppError::OverBudget {
                code: "migration_budget",
                message: format!(
                    "a node may be migrated or rebuilt {} times in 24 hours; \
                     the next one may start later",
                    budget.limit
                ),
                retry_after_secs: (wait.num_milliseconds() + 999).div_euclid(1000) as u64,
            })
    }

    /// `POST /api/internal/resources/{id}/migrate`: region and plan both optional.
    pub async fn migrate_resource(
        &self,
        id: &str,
        region: Option<&str>,
        plan_tier: Option<&str>,
        actor: &str,
    ) -> Result<Resource, AppError> {
        let r = self.internal_node(id).await?;
        self.migrate(r, region, plan_tier, actor).await
    }

    /// `DELETE /my/nodes/{id}/migrate`, `DELETE /my/node/migrate`.
    pub async fn cancel_my_migration(
        &self,
        user: &UserId,
        node: MyNodeRef<'_>,
    ) -> Result<Resource, AppError> {
        let r = self.migration_target(user, node).await?;
        self.cancel(r, USER).await
    }

    /// `DELETE /api/internal/resources/{id}/migrate`.
    pub async fn cancel_resource_migration(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<Resource, AppError> {
        let r = self.internal_node(id).await?;
        self.cancel(r, actor).await
    }

    async fn internal_node(&self, id: &str) -> Result<Resource, AppError> {
        let not_found = || AppError::not_found("resource_not_found", "resource not found");
        let id = ResourceId::parse(id).map_err(|_| not_found())?.0;
        match self.ports.store.resource(id).await? {
            Some(r) if r.kind == ResourceKind::HostingNode => Ok(r),
            _ => Err(not_found()),
        }
    }

    async fn migrate(
        &self,
        mut r: Resource,
        region: Option<&str>,
        plan_tier: Option<&str>,
        actor: &str,
    ) -> Result<Resource, AppError> {
        let region = match region.map(str::trim).filter(|r| !r.is_empty()) {
            Some(code) => self.available_region(Some(code)).await?.code,
            None => r.region.clone(),
        };
        let plan = match plan_tier.map(str::trim).filter(|p| !p.is_empty()) {
            Some(p) => input::plan_tier(p)?.as_str().to_owned(),
            None => r.plan_tier.clone(),
        };
        for _ in 0..ROUNDS {
            match self
                .engine
                .request_migration(&r, &region, &plan, actor)
                .await?
            {
                Applied::Done => return self.reread(r.id).await,
                Applied::Stale => r = self.reread(r.id).await?,
                Applied::Refused(Refusal::InProgress) => {
                    return Err(AppError::conflict(
                        "migration_in_progress",
                        "this node is already being migrated",
                    ));
                }
                Applied::Refused(Refusal::NodeNotActive) => {
                    return Err(AppError::conflict(
                        "node_not_active",
                        "only an active node can be migrated",
                    ));
                }
            }
        }
        Err(AppError::conflict(
            "node_busy",
            "the node is changing; try again",
        ))
    }

    async fn cancel(&self, mut r: Resource, actor: &str) -> Result<Resource, AppError> {
        for _ in 0..ROUNDS {
            match self.engine.cancel_migration(&r, actor).await? {
                Applied::Done => return self.reread(r.id).await,
                Applied::Stale => r = self.reread(r.id).await?,
                Applied::Refused(NothingToCancel) => {
                    return Err(AppError::not_found(
                        "no_migration",
                        "this node is not being migrated",
                    ));
                }
            }
        }
        Err(AppError::conflict(
            "node_busy",
            "the node is changing; try again",
        ))
    }

    async fn reread(&self, id: uuid::Uuid) -> Result<Resource, AppError> {
        self.ports
            .store
            .resource(id)
            .await?
            .ok_or_else(|| AppError::not_found("resource_not_found", "resource not found"))
    }
}

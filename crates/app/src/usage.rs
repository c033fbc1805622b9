//! Traffic by period (CONTRACTS.md §4.8): the meter every view shows traffic with, and a
//! node's usage by day for its owner and for the internal API.

use uuid::Uuid;

use super::ids::{ResourceId, UserId};
use super::{App, AppError};
use domain::ResourceKind;
use domain::usage::{DayUsage, Meter, Window};

/// A node's usage over a window: every day of it, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUsage {
    pub resource_id: Uuid,
    pub days: Vec<DayUsage>,
}

impl App {
    /// The policy and the moment traffic figures are shown at (a read's "now").
    pub fn meter(&self) -> Meter {
        Meter {
            policy: self.config.traffic_period,
            now: self.ports.clock.now(),
        }
    }

    /// `GET /my/nodes/{id}/usage?days=N`: the user's own live node only; anything else is
    /// the same 404 as every other node read.
    pub async fn my_node_usage(
        &self,
        user: &UserId,
        id: &str,
        days: Option<i64>,
    ) -> Result<NodeUsage, AppError> {
        let window = Window::ending(self.ports.clock.now(), days)?;
        let node = self.own_node(user, id).await?;
        self.usage_in(node.id, window).await
    }

    /// `GET /api/internal/resources/{id}/usage?days=N`: any hosting node, deleted ones
    /// included (their rows are kept until retention).
    pub async fn resource_usage(
        &self,
        id: ResourceId,
        days: Option<i64>,
    ) -> Result<NodeUsage, AppError> {
        let window = Window::ending(self.ports.clock.now(), days)?;
        let r = self.resource(id).await?;
        if r.kind != ResourceKind::HostingNode {
            return Err(AppError::invalid(
                "not_a_node",
                "usage by day is kept for hosting nodes; the VPN manager counts a VPN account's",
            ));
        }
        self.usage_in(r.id, window).await
    }

    /// The last `DEFAULT_WINDOW_DAYS` of a node the caller already holds (the page's chart
    /// of each of the user's own nodes).
    pub async fn recent_usage(&self, node: Uuid) -> Result<Vec<DayUsage>, AppError> {
        let window = Window::ending(self.ports.clock.now(), None)?;
        Ok(self.usage_in(node, window).await?.days)
    }

    async fn usage_in(&self, id: Uuid, window: Window) -> Result<NodeUsage, AppError> {
        let rows = self
            .ports
            .store
            .node_usage(id, window.first_day, window.last_day)
            .await?;
        Ok(NodeUsage {
            resource_id: id,
            days: window.fill(&rows),
        })
    }
}

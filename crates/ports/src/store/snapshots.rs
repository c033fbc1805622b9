//! What the store remembers of the world: the subscription service's last answers, and
//! the hosting regions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use domain::progress::SubscriptionSnapshot;

/// A hosting region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub code: String,
    pub name: String,
    pub provider: String,
    pub available: bool,
}

/// What the store remembers of a user's subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSnapshot {
    /// Whether the last answer said "active".
    pub active: bool,
    /// The last active subscription seen.
    pub last_active: Option<SubscriptionSnapshot>,
    pub fetched_at: DateTime<Utc>,
}

#[async_trait]
pub trait Snapshots: Send + Sync {
    async fn regions(&self) -> StoreResult<Vec<Region>>;
    /// Records the subscription service's answer (`None`: no active subscription) and
    /// returns the last active subscription on record after the write.
    async fn save_subscription(
        &self,
        user_id: &str,
        app: &str,
        active: Option<&SubscriptionSnapshot>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<SubscriptionSnapshot>>;
    async fn subscription(&self, user_id: &str, app: &str) -> StoreResult<Option<StoredSnapshot>>;
}

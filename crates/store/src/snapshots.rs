//! The subscription service's last answers, and the hosting regions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqlStore;
use super::error::corrupt;
use super::row::SnapshotRow;
use domain::progress::SubscriptionSnapshot;
use ports::store::{Region, Snapshots, StoreError, StoreResult, StoredSnapshot};

fn decode(body: Option<&str>) -> StoreResult<Option<SubscriptionSnapshot>> {
    body.map(serde_json::from_str).transpose().map_err(corrupt)
}

#[async_trait]
impl Snapshots for SqlStore {
    async fn regions(&self) -> StoreResult<Vec<Region>> {
        let rows: Vec<(String, String, String, bool)> = self
            .db
            .sql("select code, name, provider, available from regions order by sort_order, code")
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(|(code, name, provider, available)| Region {
                code,
                name,
                provider,
                available,
            })
            .collect())
    }

    async fn save_subscription(
        &self,
        user_id: &str,
        app: &str,
        active: Option<&SubscriptionSnapshot>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<SubscriptionSnapshot>> {
        let body = active
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Other(e.into()))?;
        let stored: Option<String> = self
            .db
            .sql(
                "insert into subscription_snapshots (user_id, app, active, body, fetched_at) \
                 values ($1, $2, $3, $4, $5) on conflict (user_id, app) do update set \
                 active = excluded.active, \
                 body = coalesce(excluded.body, subscription_snapshots.body), \
                 fetched_at = excluded.fetched_at returning body",
            )
            .bind(user_id)
            .bind(app)
            .bind(active.is_some())
            .bind(body)
            .bind(now)
            .scalar()
            .await?;
        decode(stored.as_deref())
    }

    async fn subscription(&self, user_id: &str, app: &str) -> StoreResult<Option<StoredSnapshot>> {
        let row: Option<SnapshotRow> = self
            .db
            .sql(
                "select active, body, fetched_at from subscription_snapshots \
                 where user_id = $1 and app = $2",
            )
            .bind(user_id)
            .bind(app)
            .fetch_optional()
            .await?;
        row.map(|r| {
            Ok(StoredSnapshot {
                active: r.active,
                last_active: decode(r.body.as_deref())?,
                fetched_at: r.fetched_at,
            })
        })
        .transpose()
    }
}

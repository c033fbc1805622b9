//! The VPN manager client, otun-manager (`CONTRACTS.md` §2.3).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::{Method, Url};
use serde::Deserialize;

use super::Endpoint;
use ports::{
    CreateVpnUser, ProtocolLink, UpstreamError, UpstreamResult, VpnManager, VpnSubscription,
    VpnUser, VpnUserUpdate,
};

/// Calls `OTUN_MANAGER_URL` with `X-Internal-Secret`.
#[derive(Clone)]
pub struct VpnClient {
    api: Endpoint,
}

impl VpnClient {
    pub fn new(http: reqwest::Client, base: Url, secret: String) -> Self {
        VpnClient {
            api: Endpoint::new(http, base, "X-Internal-Secret", secret),
        }
    }

    /// Allows at most `n` calls in flight at once (64 by default).
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.api = self.api.max_in_flight(n);
        self
    }
}

/// A user on the wire; absent and empty values read as unknown.
#[derive(Deserialize)]
struct WireUser {
    #[serde(default)]
    uuid: String,
    email: Option<String>,
    ss_password: Option<String>,
    #[serde(default)]
    traffic_limit: i64,
    #[serde(default)]
    traffic_used: i64,
    expire_at: Option<String>,
    #[serde(default)]
    enabled: bool,
}

#[derive(Deserialize)]
struct WireSubscription {
    #[serde(default)]
    uuid: String,
    #[serde(default)]
    traffic_limit: i64,
    #[serde(default)]
    traffic_used: i64,
    expire_at: Option<String>,
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    protocols: Vec<ProtocolLink>,
}

fn timestamp(v: Option<String>) -> Option<DateTime<Utc>> {
    v.filter(|s| !s.is_empty())
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn user(w: WireUser) -> UpstreamResult<VpnUser> {
    if w.uuid.trim().is_empty() {
        return Err(UpstreamError::InvalidBody("user without a uuid".into()));
    }
    Ok(VpnUser {
        uuid: w.uuid,
        email: w.email.filter(|e| !e.is_empty()),
        ss_password: w.ss_password.filter(|p| !p.is_empty()),
        traffic_limit: w.traffic_limit,
        traffic_used: w.traffic_used,
        expire_at: timestamp(w.expire_at),
        enabled: w.enabled,
    })
}

fn subscription(w: WireSubscription) -> UpstreamResult<VpnSubscription> {
    if w.uuid.trim().is_empty() {
        return Err(UpstreamError::InvalidBody(
            "subscription without a uuid".into(),
        ));
    }
    Ok(VpnSubscription {
        uuid: w.uuid,
        traffic_limit: w.traffic_limit,
        traffic_used: w.traffic_used,
        expire_at: timestamp(w.expire_at),
        enabled: w.enabled,
        protocols: w.protocols,
    })
}

#[async_trait]
impl VpnManager for VpnClient {
    async fn create_user(&self, req: &CreateVpnUser) -> UpstreamResult<VpnUser> {
        let post = self.api.request(Method::POST, &["api", "users"]).json(req);
        user(self.api.fetch(post).await?)
    }

    async fn get_user(&self, uuid: &str) -> UpstreamResult<Option<VpnUser>> {
        let get = self.api.request(Method::GET, &["api", "users", uuid]);
        let found: Option<WireUser> = self.api.fetch_optional(get).await?;
        found.map(user).transpose()
    }

    async fn update_user(&self, uuid: &str, update: &VpnUserUpdate) -> UpstreamResult<()> {
        let put = self
            .api
            .request(Method::PUT, &["api", "users", uuid])
            .json(update);
        self.api.send(put).await
    }

    async fn delete_user(&self, uuid: &str) -> UpstreamResult<()> {
        self.api.delete(&["api", "users", uuid]).await
    }

    async fn subscribe(&self, device_id: &str) -> UpstreamResult<VpnSubscription> {
        let body = serde_json::json!({ "device_id": device_id });
        let post = self
            .api
            .request(Method::POST, &["api", "subscribe"])
            .json(&body);
        subscription(self.api.fetch(post).await?)
    }

    async fn sync(&self, uuid: &str) -> UpstreamResult<VpnSubscription> {
        let get = self
            .api
            .request(Method::GET, &["api", "users", uuid, "sync"]);
        subscription(self.api.fetch(get).await?)
    }
}

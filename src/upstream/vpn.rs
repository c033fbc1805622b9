//! The VPN manager client, otun-manager (`CONTRACTS.md` §2.3).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::Url;
use serde::Deserialize;

use super::{Gate, expect_success, is_not_found, json, url_with_segments};
use crate::ports::{
    CreateVpnUser, ProtocolLink, UpstreamError, UpstreamResult, VpnManager, VpnSubscription,
    VpnUser, VpnUserUpdate,
};

/// Calls `OTUN_MANAGER_URL` with `X-Internal-Secret`.
#[derive(Clone)]
pub struct VpnClient {
    http: reqwest::Client,
    gate: Gate,
    base: Url,
    secret: String,
}

impl VpnClient {
    pub fn new(http: reqwest::Client, base: Url, secret: String) -> Self {
        VpnClient {
            http,
            gate: Gate::default(),
            base,
            secret,
        }
    }

    /// Allows at most `n` calls in flight at once (64 by default).
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.gate = Gate::new(n);
        self
    }

    fn url(&self, segments: &[&str]) -> Url {
        url_with_segments(&self.base, segments)
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
        let _in_flight = self.gate.enter().await;
        let resp = self
            .http
            .post(self.url(&["api", "users"]))
            .header("X-Internal-Secret", &self.secret)
            .json(req)
            .send()
            .await?;
        user(json(expect_success(resp).await?).await?)
    }

    async fn get_user(&self, uuid: &str) -> UpstreamResult<Option<VpnUser>> {
        let _in_flight = self.gate.enter().await;
        let resp = self
            .http
            .get(self.url(&["api", "users", uuid]))
            .header("X-Internal-Secret", &self.secret)
            .send()
            .await?;
        if is_not_found(&resp) {
            return Ok(None);
        }
        user(json(expect_success(resp).await?).await?).map(Some)
    }

    async fn update_user(&self, uuid: &str, update: &VpnUserUpdate) -> UpstreamResult<()> {
        let _in_flight = self.gate.enter().await;
        let resp = self
            .http
            .put(self.url(&["api", "users", uuid]))
            .header("X-Internal-Secret", &self.secret)
            .json(update)
            .send()
            .await?;
        expect_success(resp).await?;
        Ok(())
    }

    async fn delete_user(&self, uuid: &str) -> UpstreamResult<()> {
        let _in_flight = self.gate.enter().await;
        let resp = self
            .http
            .delete(self.url(&["api", "users", uuid]))
            .header("X-Internal-Secret", &self.secret)
            .send()
            .await?;
        if is_not_found(&resp) {
            return Ok(());
        }
        expect_success(resp).await?;
        Ok(())
    }

    async fn subscribe(&self, device_id: &str) -> UpstreamResult<VpnSubscription> {
        let _in_flight = self.gate.enter().await;
        let resp = self
            .http
            .post(self.url(&["api", "subscribe"]))
            .header("X-Internal-Secret", &self.secret)
            .json(&serde_json::json!({ "device_id": device_id }))
            .send()
            .await?;
        subscription(json(expect_success(resp).await?).await?)
    }

    async fn sync(&self, uuid: &str) -> UpstreamResult<VpnSubscription> {
        let _in_flight = self.gate.enter().await;
        let resp = self
            .http
            .get(self.url(&["api", "users", uuid, "sync"]))
            .header("X-Internal-Secret", &self.secret)
            .send()
            .await?;
        subscription(json(expect_success(resp).await?).await?)
    }
}

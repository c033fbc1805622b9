//! The subscription service client (`CONTRACTS.md` §2.2).

use async_trait::async_trait;
use reqwest::Url;

use super::{Gate, expect_success, is_not_found, json, url_with_segments};
use crate::ports::{FulfillmentCallback, SubscriptionSnapshot, Subscriptions, UpstreamResult};

/// Calls `SUBSCRIPTION_SERVICE_URL` with `X-Internal-Secret`.
#[derive(Clone)]
pub struct SubscriptionsClient {
    http: reqwest::Client,
    gate: Gate,
    base: Url,
    secret: String,
}

impl SubscriptionsClient {
    pub fn new(http: reqwest::Client, base: Url, secret: String) -> Self {
        SubscriptionsClient {
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
}

#[async_trait]
impl Subscriptions for SubscriptionsClient {
    async fn active(
        &self,
        user_id: &str,
        app: &str,
        service_type: &str,
    ) -> UpstreamResult<Option<SubscriptionSnapshot>> {
        let _in_flight = self.gate.enter().await;
        let url = url_with_segments(
            &self.base,
            &[
                "api",
                "internal",
                "users",
                user_id,
                "active",
                app,
                service_type,
            ],
        );
        let resp = self
            .http
            .get(url)
            .header("X-Internal-Secret", &self.secret)
            .send()
            .await?;
        if is_not_found(&resp) {
            return Ok(None);
        }
        Ok(Some(json(expect_success(resp).await?).await?))
    }

    async fn callback(&self, cb: &FulfillmentCallback) -> UpstreamResult<()> {
        let _in_flight = self.gate.enter().await;
        let url = url_with_segments(&self.base, &["api", "internal", "fulfillment", "callback"]);
        let resp = self
            .http
            .post(url)
            .header("X-Internal-Secret", &self.secret)
            .json(cb)
            .send()
            .await?;
        expect_success(resp).await?;
        Ok(())
    }
}

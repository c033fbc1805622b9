//! The subscription service client (`CONTRACTS.md` §2.2).

use async_trait::async_trait;
use reqwest::{Method, Url};

use super::Endpoint;
use domain::product::Product;
use ports::{FulfillmentCallback, SubscriptionSnapshot, Subscriptions, UpstreamResult};

/// Calls `SUBSCRIPTION_SERVICE_URL` with `X-Internal-Secret`.
#[derive(Clone)]
pub struct SubscriptionsClient {
    api: Endpoint,
}

impl SubscriptionsClient {
    pub fn new(http: reqwest::Client, base: Url, secret: String) -> Self {
        SubscriptionsClient {
            api: Endpoint::new(http, base, "X-Internal-Secret", secret),
        }
    }

    /// Allows at most `n` calls in flight at once (64 by default).
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.api = self.api.max_in_flight(n);
        self
    }
}

#[async_trait]
impl Subscriptions for SubscriptionsClient {
    async fn active(
        &self,
        user_id: &str,
        product: Product,
    ) -> UpstreamResult<Option<SubscriptionSnapshot>> {
        let path = [
            "api",
            "internal",
            "users",
            user_id,
            "active",
            product.app,
            product.service,
        ];
        let get = self.api.request(Method::GET, &path);
        self.api.fetch_optional(get).await
    }

    async fn callback(&self, cb: &FulfillmentCallback) -> UpstreamResult<()> {
        let path = ["api", "internal", "fulfillment", "callback"];
        let post = self.api.request(Method::POST, &path).json(cb);
        self.api.send(post).await
    }
}

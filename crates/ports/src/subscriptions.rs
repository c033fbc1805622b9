//! The subscription service: who has paid, and where outcomes are reported.

use async_trait::async_trait;

use super::UpstreamResult;
use domain::callback::FulfillmentCallback;
use domain::product::Product;
use domain::progress::SubscriptionSnapshot;

/// The subscription service.
#[async_trait]
pub trait Subscriptions: Send + Sync {
    /// The user's active subscription to `product`, `None` when there is none.
    async fn active(
        &self,
        user_id: &str,
        product: Product,
    ) -> UpstreamResult<Option<SubscriptionSnapshot>>;
    /// Delivers one callback; `Ok` means acknowledged (any 2xx).
    async fn callback(&self, cb: &FulfillmentCallback) -> UpstreamResult<()>;
}

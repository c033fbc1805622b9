//! The subscription service: who has paid, and where outcomes are reported.

use async_trait::async_trait;

use super::UpstreamResult;
use crate::domain::callback::FulfillmentCallback;
use crate::domain::progress::SubscriptionSnapshot;

/// The app name and service type of hosting subscriptions.
pub const HOSTING: (&str, &str) = ("obox", "hosting");
/// The app name and service type of VPN subscriptions.
pub const VPN: (&str, &str) = ("otun", "vpn");

/// The subscription service.
#[async_trait]
pub trait Subscriptions: Send + Sync {
    /// The user's active subscription for (`app`, `service_type`), `None` when there is none.
    async fn active(
        &self,
        user_id: &str,
        app: &str,
        service_type: &str,
    ) -> UpstreamResult<Option<SubscriptionSnapshot>>;
    /// Delivers one callback; `Ok` means acknowledged (any 2xx).
    async fn callback(&self, cb: &FulfillmentCallback) -> UpstreamResult<()>;
}

//! Each upstream port wrapped so that every call is counted and timed by outcome
//! (`fulfillment_upstream_requests_total`, `…_duration_seconds`), whichever adapter is
//! behind it: the HTTP clients, or the simulators of the demo.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use domain::callback::FulfillmentCallback;
use domain::product::Product;
use ports::{
    CallOutcome, CreateNode, CreateVpnUser, Hosting, HostingNode, SubscriptionSnapshot,
    Subscriptions, Telemetry, UpstreamResult, VpnManager, VpnSubscription, VpnUser, VpnUserUpdate,
};

/// An upstream port and where its calls are reported.
pub struct Metered<T: ?Sized> {
    inner: Arc<T>,
    telemetry: Arc<dyn Telemetry>,
}

impl<T: ?Sized> Metered<T> {
    pub fn new(inner: Arc<T>, telemetry: Arc<dyn Telemetry>) -> Self {
        Metered { inner, telemetry }
    }

    async fn call<R>(
        &self,
        upstream: &'static str,
        operation: &'static str,
        call: impl Future<Output = UpstreamResult<R>>,
    ) -> UpstreamResult<R> {
        let started = Instant::now();
        let result = call.await;
        let seconds = started.elapsed().as_secs_f64();
        self.telemetry
            .upstream_call(upstream, operation, CallOutcome::of(&result), seconds);
        result
    }
}

const HOSTING: &str = "hosting";
const SUBSCRIPTIONS: &str = "subscriptions";
const VPN_MANAGER: &str = "vpn_manager";

#[async_trait]
impl Hosting for Metered<dyn Hosting> {
    async fn create_node(&self, req: &CreateNode) -> UpstreamResult<String> {
        self.call(HOSTING, "create_node", self.inner.create_node(req))
            .await
    }
    async fn get_node(&self, node_id: &str) -> UpstreamResult<Option<HostingNode>> {
        self.call(HOSTING, "get_node", self.inner.get_node(node_id))
            .await
    }
    async fn delete_node(&self, node_id: &str) -> UpstreamResult<()> {
        self.call(HOSTING, "delete_node", self.inner.delete_node(node_id))
            .await
    }
    async fn list_nodes(&self) -> UpstreamResult<Vec<HostingNode>> {
        self.call(HOSTING, "list_nodes", self.inner.list_nodes())
            .await
    }
}

#[async_trait]
impl Subscriptions for Metered<dyn Subscriptions> {
    async fn active(
        &self,
        user_id: &str,
        product: Product,
    ) -> UpstreamResult<Option<SubscriptionSnapshot>> {
        let call = self.inner.active(user_id, product);
        self.call(SUBSCRIPTIONS, "active", call).await
    }
    async fn callback(&self, cb: &FulfillmentCallback) -> UpstreamResult<()> {
        self.call(SUBSCRIPTIONS, "callback", self.inner.callback(cb))
            .await
    }
}

#[async_trait]
impl VpnManager for Metered<dyn VpnManager> {
    async fn create_user(&self, req: &CreateVpnUser) -> UpstreamResult<VpnUser> {
        self.call(VPN_MANAGER, "create_user", self.inner.create_user(req))
            .await
    }
    async fn get_user(&self, uuid: &str) -> UpstreamResult<Option<VpnUser>> {
        self.call(VPN_MANAGER, "get_user", self.inner.get_user(uuid))
            .await
    }
    async fn update_user(&self, uuid: &str, update: &VpnUserUpdate) -> UpstreamResult<()> {
        let call = self.inner.update_user(uuid, update);
        self.call(VPN_MANAGER, "update_user", call).await
    }
    async fn delete_user(&self, uuid: &str) -> UpstreamResult<()> {
        self.call(VPN_MANAGER, "delete_user", self.inner.delete_user(uuid))
            .await
    }
    async fn subscribe(&self, device_id: &str) -> UpstreamResult<VpnSubscription> {
        self.call(VPN_MANAGER, "subscribe", self.inner.subscribe(device_id))
            .await
    }
    async fn sync(&self, uuid: &str) -> UpstreamResult<VpnSubscription> {
        self.call(VPN_MANAGER, "sync", self.inner.sync(uuid)).await
    }
}

//! What the subscription service sells, as it names it: an app and a service type. Hosting
//! nodes are the `obox` app's `hosting` service, VPN users the `otun` app's `vpn` service
//! (CONTRACTS.md §2.2); callbacks and node listings name the app alone.

/// One product of the subscription service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Product {
    /// The app name: in callbacks, active-subscription lookups and node purposes.
    pub app: &'static str,
    /// The service type of active-subscription lookups.
    pub service: &'static str,
}

/// Hosting nodes.
pub const HOSTING: Product = Product {
    app: "obox",
    service: "hosting",
};

/// VPN users.
pub const VPN: Product = Product {
    app: "otun",
    service: "vpn",
};

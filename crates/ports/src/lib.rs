//! The seams between the core and the world: storage (split by aggregate), the three
//! upstream services, the Go service's database (read once, at the cut-over), the clock,
//! and telemetry (what the core reports for monitoring). The engine and the application
//! services depend on these traits only; adapters (`store`, `upstream`, `sim`, the top
//! crate's `legacy`, `prometheus`) implement them. This crate depends on none of ours but
//! `domain`.

mod change_bus;
mod clock;
mod hosting;
pub mod legacy;
pub mod store;
mod subscriptions;
mod telemetry;
mod upstream;
mod vpn_manager;

use std::sync::Arc;

pub use clock::{Clock, ShiftedClock, SystemClock};
pub use domain::callback::FulfillmentCallback;
pub use domain::progress::SubscriptionSnapshot;
pub use hosting::{CreateNode, Hosting, HostingNode};
pub use store::{Store, StoreError, StoreResult};
pub use subscriptions::Subscriptions;
pub use telemetry::{CallOutcome, NoTelemetry, NodeLoad, Telemetry};
pub use upstream::{UpstreamError, UpstreamResult};
pub use vpn_manager::{
    CreateVpnUser, ProtocolLink, VpnManager, VpnSubscription, VpnUser, VpnUserUpdate,
};

/// Everything the core talks to, bundled so wiring passes one value around.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub hosting: Arc<dyn Hosting>,
    pub subscriptions: Arc<dyn Subscriptions>,
    pub vpn: Arc<dyn VpnManager>,
    pub clock: Arc<dyn Clock>,
    pub telemetry: Arc<dyn Telemetry>,
}

//! Use cases: what the API can ask for, each one a short function over the ports. Intent is
//! recorded in one transaction and the engine does the rest; nothing here calls the hosting
//! service.

mod error;
mod hosting;
mod regions;
mod subscriptions;

use std::sync::Arc;

pub use error::AppError;
pub use hosting::{
    Deprovision, DeprovisionOutcome, HOSTING, MyNode, NodeCaller, NodeReport, Provision,
    ProvisionOutcome,
};
pub use regions::Regions;
pub use subscriptions::SubscriptionLookup;

use crate::engine::Engine;
use crate::ports::Ports;

/// Settings the use cases need.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub default_region: String,
    pub cloud_provider: String,
    /// How long a subscription answer is reused before asking again.
    pub subscription_ttl: std::time::Duration,
}

/// The application: ports, the engine (for callbacks that change state), and caches.
pub struct App {
    pub ports: Ports,
    pub engine: Arc<Engine>,
    pub config: AppConfig,
    pub subscriptions: SubscriptionLookup,
    pub regions: Regions,
}

impl App {
    pub fn new(ports: Ports, engine: Arc<Engine>, config: AppConfig) -> Self {
        App {
            subscriptions: SubscriptionLookup::new(&ports, config.subscription_ttl),
            regions: Regions::new(ports.store.clone()),
            ports,
            engine,
            config,
        }
    }
}

//! Use cases: what the API can ask for, each one a short function over the ports. Intent is
//! recorded in one transaction and the engine does the rest; nothing here calls the hosting
//! service.

mod deprovision;
mod error;
mod idempotency;
mod ids;
pub mod import_legacy;
mod last_known;
pub mod live;
mod migrate;
mod my_node;
mod my_nodes;
mod my_vpn;
mod node_reports;
mod operator;
mod provision;
pub mod read_model;
mod reads;
mod regions;
mod resources;
mod subscriptions;
mod usage;
mod vpn_admin;
mod vpn_orders;

use std::sync::Arc;

pub use deprovision::{Deprovision, DeprovisionOutcome};
pub use error::AppError;
pub use idempotency::Keyed;
pub use ids::{ResourceId, SubscriptionId, UserId};
pub use last_known::LastKnown;
pub use migrate::MyNodeRef;
pub use my_node::MyNode;
pub use my_nodes::{MyNodes, NodeCreate, NodeEntry};
pub use my_vpn::{MyVpn, VpnConfig};
pub use node_reports::{NodeCaller, NodeReport, NodeStatsReport};
pub use operator::{OperatorAction, Queue, STUCK_ATTEMPTS};
pub use provision::{Provision, ProvisionOutcome};
pub use regions::Regions;
pub use subscriptions::SubscriptionLookup;
pub use usage::NodeUsage;
pub use vpn_admin::VpnChange;
pub use vpn_orders::{Gift, VpnOutcome};

use domain::usage::{PeriodPolicy, VpnTrafficReset};
use engine::Engine;
use ports::Ports;
use read_model::ReadModel;

/// Settings the use cases need.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub default_region: String,
    pub cloud_provider: String,
    /// How long a subscription answer is reused before asking again.
    pub subscription_ttl: std::time::Duration,
    /// How old the last answer of `/my/node` or `/my/vpn` may be to be served while the
    /// database is unavailable.
    pub last_known_max_age: std::time::Duration,
    pub vpn: VpnSettings,
    /// Event streams this process holds at most (`EVENTS_MAX_STREAMS`).
    pub events_max_streams: usize,
    /// Migrations or rebuilds a user may start per node in any 24 hours
    /// (`MIGRATIONS_PER_DAY`).
    pub migrations_per_day: u32,
    /// The most nodes one hosting subscription may pay for (`MAX_NODES_PER_SUBSCRIPTION`).
    pub max_nodes_per_subscription: u32,
    /// Users whose `/my/node` and `/my/vpn` documents are kept in memory, each
    /// (`READ_MODEL_USERS`; 0: off). A document is some 3 KB.
    pub read_model_users: usize,
    /// What a node's traffic figures count: the calendar month, or all time
    /// (`NODE_TRAFFIC_PERIOD`, CONTRACTS.md §4.8).
    pub traffic_period: PeriodPolicy,
}

/// How VPN requests behave.
#[derive(Debug, Clone)]
pub struct VpnSettings {
    /// How long a VPN request waits for the VPN manager before answering `pending`.
    pub wait: std::time::Duration,
    /// Public base of VPN subscription links (`subscribe_url` is `{base}/{uuid}`).
    pub subscribe_base: Option<String>,
    /// Whether a renewal sets the account's usage back to 0 (`VPN_TRAFFIC_RESET`).
    pub traffic_reset: VpnTrafficReset,
}

/// The application: ports, the engine (for callbacks that change state), and caches.
pub struct App {
    pub ports: Ports,
    pub engine: Arc<Engine>,
    pub config: AppConfig,
    pub subscriptions: SubscriptionLookup,
    pub regions: Regions,
    /// The last answers of the user reads, for while the database is unavailable.
    pub last_nodes: LastKnown<MyNode>,
    pub last_vpns: LastKnown<MyVpn>,
    /// The documents of the user reads, kept until a commit changes them (`read_model`).
    pub read_nodes: Arc<ReadModel<MyNode>>,
    pub read_vpns: Arc<ReadModel<MyVpn>>,
    /// The live event streams of this process.
    pub live: Arc<live::Hub>,
}

impl App {
    pub fn new(ports: Ports, engine: Arc<Engine>, config: AppConfig) -> Self {
        let read_nodes = Arc::new(ReadModel::new(config.read_model_users));
        let read_vpns = Arc::new(ReadModel::new(config.read_model_users));
        let live = live::Hub::new(config.events_max_streams);
        // Who hears of a change, and in which order (docs/ARCHITECTURE.md, "Who hears a
        // commit"): the read models first, so that a stream poked next reads fresh.
        let (nodes, vpns, streams) = (read_nodes.clone(), read_vpns.clone(), live.clone());
        ports
            .store
            .bus()
            .observe(Arc::new(move |change: &ports::store::Changed| {
                nodes.heard(change);
                vpns.heard(change);
                streams.changed(change);
            }));
        App {
            read_nodes,
            read_vpns,
            subscriptions: SubscriptionLookup::new(&ports, config.subscription_ttl),
            regions: Regions::new(ports.store.clone()),
            last_nodes: LastKnown::new("my node", config.last_known_max_age),
            last_vpns: LastKnown::new("my vpn", config.last_known_max_age),
            live,
            ports,
            engine,
            config,
        }
    }

    /// Spends an event-stream ticket by its nonce: `true` the first time, on any replica
    /// (the replicas share the database), `false` ever after.
    pub async fn spend_ticket(&self, nonce: &str, expires_at: i64) -> Result<bool, AppError> {
        let until = chrono::DateTime::from_timestamp(expires_at, 0)
            .unwrap_or_else(|| self.ports.clock.now());
        Ok(self.ports.store.spend_ticket(nonce, until).await?)
    }
}

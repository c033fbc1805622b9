//! Simulated upstreams, faithful to `CONTRACTS.md`: the hosting service, the subscription
//! service and the VPN manager. Each is a model (state plus the records tests assert on) that can
//! be used in process (it implements the port directly) or served over real HTTP
//! (`fulfillment sim`, and the end-to-end tests), with knobs for latency, failures and
//! timeouts, scripted per operation or drawn at random.

mod faults;
mod hosting;
mod http;
mod subscriptions;
mod vpn;

pub use faults::{Fault, Faults, Knobs, Op};
pub use hosting::{HostingSim, NodeTiming, SimNode};
pub use http::{SimAuth, router, serve};
pub use subscriptions::{ReceivedCallback, SubscriptionsSim};
pub use vpn::{SimVpnUser, VpnSim};

use std::sync::Arc;

/// The simulated world: every upstream, sharing one set of fault knobs.
#[derive(Clone)]
pub struct Sim {
    pub hosting: Arc<HostingSim>,
    pub subscriptions: Arc<SubscriptionsSim>,
    pub vpn: Arc<VpnSim>,
    pub faults: Arc<Faults>,
}

impl Sim {
    pub fn new(knobs: Knobs, timing: NodeTiming) -> Self {
        let faults = Arc::new(Faults::new(knobs));
        Sim {
            hosting: HostingSim::new(faults.clone(), timing),
            subscriptions: Arc::new(SubscriptionsSim::new(faults.clone())),
            vpn: Arc::new(VpnSim::new(faults.clone())),
            faults,
        }
    }
}

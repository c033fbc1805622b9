//! The business model, free of IO: resources and their state machine, plan tables, and the
//! read models the apps see (`hosting_status`, `creation_progress`). Everything here is a pure
//! function of its inputs and is unit-tested exhaustively.

pub mod attribution;
pub mod budget;
pub mod callback;
pub mod credential;
pub mod entitlement;
pub mod expiry;
pub mod input;
pub mod legacy;
pub mod migration;
pub mod orphans;
pub mod plan;
pub mod product;
pub mod progress;
pub mod resource;
pub mod schema;
pub mod slots;
pub mod state;
pub mod units;
pub mod usage;
pub mod vpn_order;

pub use plan::PlanTier;
pub use progress::Phase;
pub use resource::{
    CallbackStatus, Connection, DeleteReason, Desired, Event, EventKind, Resource, ResourceKind,
    Status, VpnSpec,
};

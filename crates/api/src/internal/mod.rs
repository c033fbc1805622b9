//! The internal API (`X-Internal-Secret`, or an operator token where staff may call): the
//! subscription service's orders, resource reads and the internal migrate, the VPN's
//! endpoints, and the operators' queue and actions.

pub mod operator;
pub mod orders;
pub mod resources;
pub mod vpn;

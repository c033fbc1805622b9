//! The app's API, for a signed-in user (a user JWT): the node `/my/node` shows, all their
//! nodes and their migrations, their VPN, and the regions.

pub mod node;
pub mod nodes;
pub mod regions;
pub mod vpn;

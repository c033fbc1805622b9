//! One reconcile step for a VPN user.

/// The app name of VPN users in callbacks.
pub const VPN_APP: &str = "otun";

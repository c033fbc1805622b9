//! Plan tiers and what they buy: the VPS bundle and the node's traffic allowance.

use super::units::GIB;

/// A plan tier as the subscription service names it. Unknown names are kept verbatim so
/// that a new tier upstream never breaks provisioning; they get the smallest allowances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanTier {
    Basic,
    Standard,
    Premium,
    Unlimited,
    Tb1,
    Tb2,
    Tb3,
    Other(String),
}

impl PlanTier {
    pub fn parse(s: &str) -> Self {
        match s {
            "basic" => Self::Basic,
            "standard" => Self::Standard,
            "premium" => Self::Premium,
            "unlimited" => Self::Unlimited,
            "1tb" => Self::Tb1,
            "2tb" => Self::Tb2,
            "3tb" => Self::Tb3,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Basic => "basic",
            Self::Standard => "standard",
            Self::Premium => "premium",
            Self::Unlimited => "unlimited",
            Self::Tb1 => "1tb",
            Self::Tb2 => "2tb",
            Self::Tb3 => "3tb",
            Self::Other(s) => s,
        }
    }

    /// The hosting service's VPS bundle for this plan.
    pub fn bundle_id(&self) -> &'static str {
        match self {
            Self::Premium | Self::Tb3 => "small_3_0",
            Self::Standard | Self::Tb2 => "micro_3_0",
            _ => "nano_3_0",
        }
    }

    /// Traffic allowance of a VPN user, in bytes: the order's own `traffic_limit` when it
    /// gives one (> 0), else the plan's.
    pub fn vpn_traffic_limit(&self, order_override: Option<i64>) -> i64 {
        if let Some(bytes) = order_override.filter(|b| *b > 0) {
            return bytes;
        }
        let gib = match self {
            Self::Unlimited => 10_000,
            Self::Premium => 500,
            Self::Standard => 200,
            Self::Basic => 50,
            _ => 100,
        };
        gib * GIB
    }

    /// The VPN manager's service tier for this plan.
    pub fn service_tier(&self) -> &'static str {
        match self {
            Self::Premium | Self::Unlimited => "premium",
            _ => "standard",
        }
    }

    /// Traffic allowance of a dedicated node, in bytes.
    pub fn node_traffic_limit(&self) -> i64 {
        let tib = 1024 * GIB;
        match self {
            Self::Premium | Self::Tb3 => 3 * tib,
            Self::Standard | Self::Tb2 => 2 * tib,
            _ => tib,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plan_maps_to_its_vpn_allowance_and_service_tier() {
        let table = [
            ("unlimited", 10_000, "premium"),
            ("premium", 500, "premium"),
            ("standard", 200, "standard"),
            ("basic", 50, "standard"),
            ("1tb", 100, "standard"),
            ("something-new", 100, "standard"),
        ];
        for (name, gib, tier) in table {
            let plan = PlanTier::parse(name);
            assert_eq!(plan.vpn_traffic_limit(None), gib * GIB, "{name}");
            assert_eq!(
                plan.vpn_traffic_limit(Some(0)),
                gib * GIB,
                "{name}: 0 is no override"
            );
            assert_eq!(plan.service_tier(), tier, "{name}");
        }
        assert_eq!(
            PlanTier::Basic.vpn_traffic_limit(Some(123)),
            123,
            "an order's limit overrides"
        );
    }

    #[test]
    fn every_plan_maps_to_its_bundle_and_node_allowance() {
        let tib = 1024 * GIB;
        let table = [
            ("premium", "small_3_0", 3 * tib),
            ("3tb", "small_3_0", 3 * tib),
            ("standard", "micro_3_0", 2 * tib),
            ("2tb", "micro_3_0", 2 * tib),
            ("basic", "nano_3_0", tib),
            ("1tb", "nano_3_0", tib),
            ("unlimited", "nano_3_0", tib),
            ("something-new", "nano_3_0", tib),
        ];
        for (name, bundle, limit) in table {
            let plan = PlanTier::parse(name);
            assert_eq!(plan.as_str(), name);
            assert_eq!(plan.bundle_id(), bundle, "{name}");
            assert_eq!(plan.node_traffic_limit(), limit, "{name}");
        }
    }
}

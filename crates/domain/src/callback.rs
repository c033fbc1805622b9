//! What we tell the subscription service about an order: the callback's shape and, for
//! each outcome, which app it names and what its message says.

use serde::{Deserialize, Serialize};

use super::product::{HOSTING, VPN};
use super::{CallbackStatus, DeleteReason, ResourceKind};

/// `POST /api/internal/fulfillment/callback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfillmentCallback {
    pub subscription_id: String,
    pub app: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The node it reports on (a subscription may have several; CONTRACTS.md §4.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
}

/// The app a resource kind is sold as.
pub fn app_of(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::HostingNode => HOSTING.app,
        ResourceKind::VpnUser => VPN.app,
    }
}

/// The callback that reports a resource's outcome to the subscription it serves; a
/// hosting node's names the node (`resource_id`), since a subscription may have several.
pub fn outcome(
    kind: ResourceKind,
    resource_id: &str,
    subscription_id: &str,
    status: CallbackStatus,
    reason: Option<DeleteReason>,
    error: Option<String>,
) -> FulfillmentCallback {
    let message = match (kind, status) {
        (ResourceKind::HostingNode, CallbackStatus::Active) => "hosting node is active",
        (ResourceKind::HostingNode, CallbackStatus::Failed) => "hosting node provisioning failed",
        (ResourceKind::HostingNode, CallbackStatus::Deleted) => "hosting node deleted",
        (ResourceKind::VpnUser, CallbackStatus::Active) => "vpn user is active",
        (ResourceKind::VpnUser, CallbackStatus::Failed) => "vpn user provisioning failed",
        (ResourceKind::VpnUser, CallbackStatus::Deleted) => "vpn user deleted",
    };
    FulfillmentCallback {
        subscription_id: subscription_id.to_owned(),
        app: app_of(kind).into(),
        status: status.as_str().into(),
        reason: reason.map(|r| r.as_str().into()),
        error,
        message: Some(message.into()),
        resource_id: (kind == ResourceKind::HostingNode).then(|| resource_id.to_owned()),
    }
}

/// An order's VPN access is live at the VPN manager.
pub fn vpn_active(subscription_id: &str) -> FulfillmentCallback {
    outcome(
        ResourceKind::VpnUser,
        "",
        subscription_id,
        CallbackStatus::Active,
        None,
        None,
    )
}

/// A subscription's VPN entitlement ended while the account lives on (it serves a newer
/// entitlement, or is already being deleted): reported at once, since nothing changes at
/// the VPN manager.
pub fn vpn_entitlement_ended(subscription_id: &str, reason: DeleteReason) -> FulfillmentCallback {
    FulfillmentCallback {
        subscription_id: subscription_id.to_owned(),
        app: VPN.app.into(),
        status: CallbackStatus::Deleted.as_str().into(),
        reason: Some(reason.as_str().into()),
        error: None,
        message: Some("vpn entitlement ended".into()),
        resource_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_names_its_app_and_says_what_happened() {
        let cases = [
            (
                ResourceKind::HostingNode,
                CallbackStatus::Active,
                "obox",
                "hosting node is active",
            ),
            (
                ResourceKind::HostingNode,
                CallbackStatus::Failed,
                "obox",
                "hosting node provisioning failed",
            ),
            (
                ResourceKind::HostingNode,
                CallbackStatus::Deleted,
                "obox",
                "hosting node deleted",
            ),
            (
                ResourceKind::VpnUser,
                CallbackStatus::Active,
                "otun",
                "vpn user is active",
            ),
            (
                ResourceKind::VpnUser,
                CallbackStatus::Failed,
                "otun",
                "vpn user provisioning failed",
            ),
            (
                ResourceKind::VpnUser,
                CallbackStatus::Deleted,
                "otun",
                "vpn user deleted",
            ),
        ];
        for (kind, status, app, message) in cases {
            let cb = outcome(kind, "r-1", "sub-1", status, None, None);
            assert_eq!(cb.subscription_id, "sub-1");
            let named = (kind == ResourceKind::HostingNode).then_some("r-1");
            assert_eq!(cb.resource_id.as_deref(), named, "only a node is named");
            assert_eq!(cb.app, app);
            assert_eq!(cb.status, status.as_str());
            assert_eq!(cb.message.as_deref(), Some(message));
            assert_eq!((cb.reason, cb.error), (None, None));
        }
    }

    #[test]
    fn a_failure_carries_its_reason_and_error() {
        let cb = outcome(
            ResourceKind::HostingNode,
            "r-1",
            "sub-1",
            CallbackStatus::Failed,
            Some(DeleteReason::ProvisionFailed),
            Some("no capacity".into()),
        );
        assert_eq!(cb.reason.as_deref(), Some("provision_failed"));
        assert_eq!(cb.error.as_deref(), Some("no capacity"));
    }

    #[test]
    fn an_ended_entitlement_is_reported_deleted_with_its_reason() {
        let cb = vpn_entitlement_ended("sub-9", DeleteReason::SubscriptionExpired);
        let json = serde_json::to_value(&cb).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "subscription_id": "sub-9",
                "app": "otun",
                "status": "deleted",
                "reason": "subscription_expired",
                "message": "vpn entitlement ended",
            })
        );
        assert_eq!(vpn_active("sub-9").status, "active");
    }
}

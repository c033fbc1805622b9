//! VPN response shapes, byte-exact with `CONTRACTS.md` §1.2–1.3.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::views::{SubscriptionView, TrafficView};
use app::{MyVpn, VpnConfig, VpnOutcome};
use domain::entitlement::{Entitlement, VpnStatus};
use domain::progress::SubscriptionState;
use domain::units::{rfc3339, rfc3339_opt};
use domain::{Resource, Status};
use ports::store::VpnRecord;

fn vpn_message(status: VpnStatus, account: bool) -> &'static str {
    match (status, account) {
        (VpnStatus::Active, true) => "VPN is active.",
        (VpnStatus::Active, false) => "Your VPN is being set up.",
        (VpnStatus::Expired, _) => "Your VPN subscription has expired.",
        (VpnStatus::Disabled, _) => "Your VPN is disabled.",
        (VpnStatus::NoSubscription, _) => "You have no VPN subscription.",
    }
}

/// A VPN account as its owner sees it (`vpn_user` in `GET /my/vpn`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = VpnUser)]
pub struct VpnUserView {
    pub resource_id: String,
    pub vpn_user_id: String,
    /// The account's lifecycle status, or `expired`/`disabled` for an active one.
    pub status: &'static str,
    pub plan_tier: String,
    #[serde(flatten)]
    pub traffic: TrafficView,
    #[serde(
        serialize_with = "rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub expire_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

/// What the apps call the account's state: our lifecycle, with an active account past
/// its expiry shown as `expired`.
fn account_status(r: &Resource, status: VpnStatus) -> &'static str {
    match (r.status, status) {
        (Status::Active, VpnStatus::Expired) => "expired",
        (Status::Active, VpnStatus::Disabled) => "disabled",
        (s, _) => s.as_str(),
    }
}

impl VpnUserView {
    fn new(r: &Resource, status: VpnStatus) -> Option<Self> {
        let uuid = r.vpn.vpn_user_id.clone()?;
        Some(VpnUserView {
            resource_id: r.id.to_string(),
            vpn_user_id: uuid,
            status: account_status(r, status),
            plan_tier: r.plan_tier.clone(),
            traffic: TrafficView::vpn(r),
            expire_at: r.vpn.expire_at,
            created_at: r.created_at,
        })
    }
}

/// `GET /api/v1/my/vpn`, and each `vpn` message of the event streams.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MyVpn)]
pub struct VpnStatusView<'a> {
    pub vpn_status: VpnStatus,
    pub has_subscription: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription: Option<SubscriptionView<'a>>,
    pub has_vpn_user: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpn_user: Option<VpnUserView>,
    pub message: String,
}

impl<'a> VpnStatusView<'a> {
    pub fn new(m: &'a MyVpn, now: DateTime<Utc>) -> Self {
        // A deleted account is not shown; one being deleted reads as disabled.
        let user = m
            .record
            .resource
            .as_ref()
            .filter(|r| r.status != Status::Deleted)
            .and_then(|r| VpnUserView::new(r, m.status));
        let running = m
            .record
            .entitlement
            .as_ref()
            .is_some_and(|e| e.is_current && e.is_running(now));
        let (has_subscription, subscription) = match &m.subscription {
            SubscriptionState::Active(s) => (true, Some(SubscriptionView::from(s))),
            SubscriptionState::Inactive { .. } => (false, None),
            // The subscription service is down: our own record answers.
            SubscriptionState::Unknown => (running, None),
        };
        VpnStatusView {
            vpn_status: m.status,
            has_subscription,
            subscription,
            has_vpn_user: user.is_some(),
            message: vpn_message(m.status, user.is_some()).into(),
            vpn_user: user,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Protocol)]
pub struct ProtocolView {
    pub protocol: String,
    /// The same as `protocol` (two app versions read different keys).
    pub protocol_name: String,
    pub url: String,
    pub node: String,
}

/// `GET /api/v1/my/vpn/subscribe`.
// Decoded strictly by the iOS app.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = VpnSubscribe)]
pub struct VpnSubscribeView {
    pub status: &'static str,
    pub channel: String,
    pub plan_tier: String,
    pub service_tier: String,
    pub subscribe_url: String,
    pub device_id: String,
    pub protocols: Vec<ProtocolView>,
    /// Bytes.
    pub traffic_limit: i64,
    /// Bytes.
    pub traffic_used: i64,
    #[serde(serialize_with = "rfc3339")]
    pub expire_at: DateTime<Utc>,
    pub message: String,
}

impl VpnSubscribeView {
    pub fn new(c: &VpnConfig, subscribe_base: Option<&str>) -> Self {
        let uuid = &c.live.uuid;
        VpnSubscribeView {
            status: "active",
            channel: c.entitlement.channel.clone(),
            plan_tier: c.entitlement.plan_tier.clone(),
            service_tier: c.entitlement.service_tier.clone(),
            // Only ever our public base: the VPN manager's own URL is internal.
            subscribe_url: subscribe_base
                .map(|b| format!("{}/{uuid}", b.trim_end_matches('/')))
                .unwrap_or_default(),
            device_id: c
                .entitlement
                .device_id
                .clone()
                .unwrap_or_else(|| c.resource.user_id.clone()),
            protocols: c
                .live
                .protocols
                .iter()
                .map(|p| ProtocolView {
                    protocol: p.protocol.clone(),
                    protocol_name: p.protocol.clone(),
                    url: p.url.clone(),
                    node: p.node.clone(),
                })
                .collect(),
            traffic_limit: c.live.traffic_limit,
            traffic_used: c.live.traffic_used,
            expire_at: c.entitlement.expire_at,
            message: "VPN is active.".into(),
        }
    }
}

// `data` of `GET /api/internal/vpn/user/{user_id}/status`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = VpnRecord)]
pub struct VpnRecordView {
    pub status: VpnStatus,
    pub channel: String,
    pub plan_tier: String,
    pub traffic_limit: i64,
    pub traffic_used: i64,
    #[serde(
        serialize_with = "rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub expire_at: Option<DateTime<Utc>>,
}

impl VpnRecordView {
    pub fn new(status: VpnStatus, record: &VpnRecord) -> Option<Self> {
        let e = record.entitlement.as_ref()?;
        let r = record.resource.as_ref();
        Some(VpnRecordView {
            status,
            channel: e.channel.clone(),
            plan_tier: e.plan_tier.clone(),
            traffic_limit: r.map_or(e.traffic_limit, |r| r.traffic_limit),
            traffic_used: r.map_or(0, |r| r.traffic_used),
            expire_at: Some(e.expire_at),
        })
    }
}

// `POST /api/internal/entitlements/gift` → 201.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Gifted)]
pub struct GiftView {
    pub entitlement_id: String,
    /// The VPN manager's uuid, `null` while the account is being made.
    #[schema(required = true)]
    pub otun_uuid: Option<String>,
    // The user's limit now, gift included.
    pub traffic_limit: i64,
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(required = true)]
    pub expire_at: Option<DateTime<Utc>>,
    pub protocols: Vec<&'static str>,
}

impl From<&VpnOutcome> for GiftView {
    fn from(o: &VpnOutcome) -> Self {
        GiftView {
            entitlement_id: o.entitlement.id.to_string(),
            otun_uuid: o.resource.vpn.vpn_user_id.clone(),
            traffic_limit: o.resource.traffic_limit,
            expire_at: o.resource.vpn.expire_at,
            protocols: vec!["vless", "shadowsocks"],
        }
    }
}

// One row of `GET /api/internal/entitlements`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Entitlement)]
pub struct EntitlementView {
    pub entitlement_id: String,
    pub user_id: String,
    pub resource_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    pub channel: String,
    pub business_type: String,
    pub plan_tier: String,
    pub service_tier: String,
    pub traffic_limit: i64,
    #[serde(serialize_with = "rfc3339")]
    pub expire_at: DateTime<Utc>,
    pub status: &'static str,
    pub current: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

impl EntitlementView {
    pub fn new(e: &Entitlement, now: DateTime<Utc>) -> Self {
        EntitlementView {
            entitlement_id: e.id.to_string(),
            user_id: e.user_id.clone(),
            resource_id: e.resource_id.to_string(),
            subscription_id: e.subscription_id.clone(),
            channel: e.channel.clone(),
            business_type: e.business_type.clone(),
            plan_tier: e.plan_tier.clone(),
            service_tier: e.service_tier.clone(),
            traffic_limit: e.traffic_limit,
            expire_at: e.expire_at,
            status: e.status_at(now),
            current: e.is_current,
            device_id: e.device_id.clone(),
            email: e.email.clone(),
            note: e.note.clone(),
            created_at: e.created_at,
        }
    }
}

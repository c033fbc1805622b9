//! Response shapes, byte-exact with `CONTRACTS.md`. Absent optional fields are omitted,
//! timestamps are RFC 3339 UTC with a `Z`, and whole-number GiB values are written as
//! integers (`3072`, not `3072.0`) because the apps decode some of them as integers.

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

use app::{MyNode, NodeUsage};
use domain::migration::ShownMigration;
use domain::progress::{
    self, CreationProgress, HostingStatus, SubscriptionSnapshot, SubscriptionState, visible_node,
};
use domain::units::{gib, percent, rfc3339, rfc3339_opt};
use domain::usage::{self, Meter, Shown};
use domain::{Connection, Resource, ResourceKind, Status};
use ports::store::Region;

/// A number that is written as an integer when it is whole.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Num(pub f64);

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rounded = (self.0 * 100.0).round() / 100.0;
        if rounded.fract() == 0.0 && rounded.abs() < 9.0e15 {
            s.serialize_i64(rounded as i64)
        } else {
            s.serialize_f64(rounded)
        }
    }
}

// Views borrow from what they show: `GET /my/node` is the hottest path, and copying a
// dozen strings into a view only to serialise and free them cost a measurable share of it.

/// A subscription as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Subscription)]
pub struct SubscriptionView<'a> {
    pub subscription_id: &'a str,
    /// `active`; `expired` or `inactive` for the last one known when none is active.
    pub status: &'a str,
    pub plan_tier: &'a str,
    #[serde(
        serialize_with = "rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<DateTime<Utc>>,
    pub auto_renew: bool,
}

impl<'a> From<&'a SubscriptionSnapshot> for SubscriptionView<'a> {
    fn from(s: &'a SubscriptionSnapshot) -> Self {
        SubscriptionView {
            subscription_id: &s.subscription_id,
            status: &s.status,
            plan_tier: &s.plan_tier,
            expires_at: s.expires_at,
            auto_renew: s.auto_renew,
        }
    }
}

/// How a user sees a node's lifecycle. The apps know `creating`, `active`, `failed` and
/// `deleted`; our `pending` is the first moment of creation, and a node being deleted is
/// not shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Creating,
    Active,
    Failed,
    Deleted,
}

impl From<Status> for NodeStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Pending | Status::Creating => NodeStatus::Creating,
            Status::Active => NodeStatus::Active,
            Status::Failed => NodeStatus::Failed,
            Status::Deleting | Status::Deleted => NodeStatus::Deleted,
        }
    }
}

/// Traffic allowance and use, in GiB and percent.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Traffic)]
pub struct TrafficView {
    /// GiB; an integer when whole.
    #[schema(value_type = f64)]
    pub traffic_limit_gb: Num,
    #[schema(value_type = f64)]
    pub traffic_used_gb: Num,
    #[schema(value_type = f64)]
    pub traffic_percent: Num,
    /// The calendar month (UTC) a node's figures count; absent for all-time figures
    /// (`NODE_TRAFFIC_PERIOD=none`, and VPN accounts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_period: Option<PeriodView>,
}

impl TrafficView {
    /// A resource's figures as `meter` shows them: a node's current period (CONTRACTS.md
    /// §4.8), a VPN account's count.
    pub fn of(r: &Resource, meter: &Meter) -> Self {
        Self::shown(r.traffic_limit, meter.shown(r))
    }

    /// A VPN account's figures: what the VPN manager counts, with no period.
    pub fn vpn(r: &Resource) -> Self {
        Self::shown(r.traffic_limit, usage::all_time(r.traffic_used))
    }

    fn shown(limit: i64, shown: Shown) -> Self {
        TrafficView {
            traffic_limit_gb: Num(gib(limit)),
            traffic_used_gb: Num(gib(shown.used)),
            traffic_percent: Num(percent(shown.used, limit)),
            traffic_period: shown.period.map(|p| PeriodView {
                start: p.start(),
                end: p.end(),
            }),
        }
    }
}

/// The period a node's traffic figures count (RFC 3339; the end is the next period's
/// start).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TrafficPeriod)]
pub struct PeriodView {
    #[serde(serialize_with = "rfc3339")]
    pub start: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub end: DateTime<Utc>,
}

/// A hosting node as its owner sees it. Connection fields are omitted until known.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Node)]
pub struct NodeView<'a> {
    pub resource_id: String,
    pub region: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_name: Option<&'a str>,
    pub status: NodeStatus,
    #[serde(flatten)]
    pub connection: &'a Connection,
    pub plan_tier: &'a str,
    #[serde(flatten)]
    pub traffic: TrafficView,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// While a replacement VPS is prepared, or after one failed (CONTRACTS.md §4.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationView<'a>>,
    /// In the lists of `/my/nodes`, while the node is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_progress: Option<CreationProgress>,
}

impl<'a> NodeView<'a> {
    pub fn new(r: &'a Resource, region: Option<&'a Region>, meter: &Meter) -> Self {
        NodeView {
            resource_id: r.id.to_string(),
            region: &r.region,
            region_name: region.map(|g| g.name.as_str()),
            status: r.status.into(),
            connection: &r.connection,
            plan_tier: &r.plan_tier,
            traffic: TrafficView::of(r, meter),
            created_at: r.created_at,
            migration: MigrationView::of(r),
            creation_progress: None,
        }
    }
}

/// `GET /api/v1/my/node` (and `data` of `GET /api/internal/users/{id}/resources`), and
/// each `node` message of the event streams.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MyNode)]
pub struct MyNodeView<'a> {
    pub hosting_status: HostingStatus,
    pub has_subscription: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription: Option<SubscriptionView<'a>>,
    pub has_node: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeView<'a>>,
    /// Only while `node_creating`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_progress: Option<CreationProgress>,
    pub message: String,
}

impl<'a> MyNodeView<'a> {
    pub fn new(m: &'a MyNode, meter: &Meter) -> Self {
        let node = visible_node(m.node.as_ref());
        let subscription = match &m.subscription {
            SubscriptionState::Active(s) => Some(SubscriptionView::from(s)),
            // The last one we saw is no longer active: say so rather than echo "active".
            SubscriptionState::Inactive { last_known } => {
                last_known.as_ref().map(|s| SubscriptionView {
                    status: if s.expires_at.is_some_and(|e| e <= chrono::Utc::now()) {
                        "expired"
                    } else {
                        "inactive"
                    },
                    ..SubscriptionView::from(s)
                })
            }
            SubscriptionState::Unknown => None,
        };
        MyNodeView {
            hosting_status: m.status,
            has_subscription: matches!(m.subscription, SubscriptionState::Active(_)),
            subscription,
            has_node: node.is_some(),
            node: node.map(|n| NodeView::new(n, m.region.as_ref(), meter)),
            creation_progress: match node {
                Some(n) if m.status == HostingStatus::NodeCreating => {
                    Some(progress::creation_progress(n, &m.events))
                }
                _ => None,
            },
            message: progress::hosting_message(m.status, node),
        }
    }
}

/// A node's replacement VPS, while it is prepared or after it failed (§4.5).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Migration)]
pub struct MigrationView<'a> {
    #[schema(value_type = String)]
    pub to_region: std::borrow::Cow<'a, str>,
    /// Only when the migration changes the plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub to_plan_tier: Option<std::borrow::Cow<'a, str>>,
    pub status: ShownMigration,
    #[serde(serialize_with = "rfc3339")]
    pub started_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub error_message: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> MigrationView<'a> {
    /// The migration the apps see: none while one is being cancelled.
    pub fn of(r: &'a Resource) -> Option<Self> {
        let m = r.migration.as_ref()?;
        Some(MigrationView {
            to_region: m.to_region.as_str().into(),
            to_plan_tier: (m.to_plan_tier != r.plan_tier).then(|| m.to_plan_tier.as_str().into()),
            status: m.status.shown()?,
            started_at: m.started_at,
            error_message: m.error_message.as_deref().map(Into::into),
        })
    }

    fn owned(self) -> MigrationView<'static> {
        MigrationView {
            to_region: self.to_region.into_owned().into(),
            to_plan_tier: self.to_plan_tier.map(|p| p.into_owned().into()),
            status: self.status,
            started_at: self.started_at,
            error_message: self.error_message.map(|e| e.into_owned().into()),
        }
    }
}

/// `POST /api/v1/my/node` and `POST /api/v1/my/nodes`, on success.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateNode)]
pub struct CreateNodeView {
    pub success: bool,
    pub resource_id: String,
    /// `creating`.
    pub status: &'static str,
    pub creation_progress: CreationProgress,
    pub message: String,
}

/// A region a node may be created in.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Region)]
pub struct RegionView {
    pub code: String,
    pub name: String,
    pub provider: String,
    pub available: bool,
}

/// The regions (`GET /api/v1/regions`, `GET /api/v1/public/regions`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Regions)]
pub struct RegionsView {
    pub regions: Vec<RegionView>,
}

impl From<&[Region]> for RegionsView {
    fn from(regions: &[Region]) -> Self {
        RegionsView {
            regions: regions
                .iter()
                .map(|r| RegionView {
                    code: r.code.clone(),
                    name: r.name.clone(),
                    provider: r.provider.clone(),
                    available: r.available,
                })
                .collect(),
        }
    }
}

/// `GET /api/internal/resources/{id}`: a resource's true lifecycle, for internal callers
/// and operators.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Resource)]
pub struct ResourceStatus {
    pub resource_id: String,
    pub subscription_id: String,
    pub user_id: String,
    pub resource_type: ResourceKind,
    pub provider: String,
    pub region: String,
    pub status: Status,
    #[serde(flatten)]
    pub connection: Connection,
    pub plan_tier: String,
    #[serde(flatten)]
    pub traffic: TrafficView,
    #[serde(
        serialize_with = "rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ready_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationView<'static>>,
}

impl ResourceStatus {
    pub fn new(r: &Resource, meter: &Meter) -> Self {
        ResourceStatus {
            resource_id: r.id.to_string(),
            subscription_id: r.subscription_id.clone(),
            user_id: r.user_id.clone(),
            resource_type: r.kind,
            provider: r.provider.clone(),
            region: r.region.clone(),
            status: r.status,
            connection: r.connection.clone(),
            plan_tier: r.plan_tier.clone(),
            traffic: TrafficView::of(r, meter),
            ready_at: r.ready_at,
            created_at: r.created_at,
            error_message: r.error_message.clone(),
            migration: MigrationView::of(r).map(MigrationView::owned),
        }
    }
}

/// `{"success": true, "message"}`: an action accepted.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuccessMessage {
    pub success: bool,
    pub message: &'static str,
}

impl SuccessMessage {
    pub fn new(message: &'static str) -> Self {
        SuccessMessage {
            success: true,
            message,
        }
    }
}

/// `{"status": "ok"}` and its kin.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusMessage {
    /// `ok`, or `pending` when it is applied later.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
}

impl StatusMessage {
    pub fn ok() -> Self {
        StatusMessage {
            status: "ok",
            message: None,
        }
    }
}

/// `{"message"}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageOnly {
    pub message: &'static str,
}

/// `POST /api/internal/provision`: what the order is now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Provisioned)]
pub struct ProvisionView {
    pub resource_id: String,
    /// The resource's lifecycle status (VPN orders: `active`, `pending`, `failed`, `deleted`).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_ready_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpn_user_id: Option<String>,
    /// Every live node of a subscription that has more than one (CONTRACTS.md §4.4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_ids: Option<Vec<String>>,
    pub message: String,
}

/// `POST /api/internal/deprovision`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Deprovisioned)]
pub struct DeprovisionView {
    pub resource_id: String,
    pub status: &'static str,
    pub message: String,
}

/// A node's use by UTC day (`GET …/usage`, CONTRACTS.md §4.8): every day of the window,
/// oldest first, 0 for a day without use.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NodeUsage)]
pub struct NodeUsageView {
    pub resource_id: String,
    pub days: Vec<DayUsageView>,
}

/// One day of a node's use, in bytes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DayUsage)]
pub struct DayUsageView {
    /// The UTC day, `YYYY-MM-DD`.
    pub date: chrono::NaiveDate,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
}

impl From<&NodeUsage> for NodeUsageView {
    fn from(u: &NodeUsage) -> Self {
        NodeUsageView {
            resource_id: u.resource_id.to_string(),
            days: u
                .days
                .iter()
                .map(|d| DayUsageView {
                    date: d.date,
                    rx_bytes: d.rx_bytes,
                    tx_bytes: d.tx_bytes,
                })
                .collect(),
        }
    }
}

/// `?days=N` of the usage reads.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Days up to today's (UTC), 30 when absent.
    #[param(minimum = 1, maximum = 90)]
    pub days: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_are_written_as_integers_and_others_to_two_places() {
        let json = |n: f64| serde_json::to_string(&Num(n)).unwrap();
        assert_eq!(json(3072.0), "3072");
        assert_eq!(json(12.5), "12.5");
        assert_eq!(json(1.0 / 3.0), "0.33");
        assert_eq!(json(0.0), "0");
    }
}

//! VPN users and their entitlements: recording orders and gifts, adjusting and ending
//! them, and the traffic the VPN manager counts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreResult;
use domain::entitlement::Entitlement;
pub use domain::vpn_order::{VpnAdjustment, VpnOrder};
use domain::{DeleteReason, Resource};

/// What recording a VPN order did.
#[derive(Debug, Clone, PartialEq)]
pub enum VpnOrderOutcome {
    /// Recorded, with the VPN user resource as it is after the write.
    Recorded {
        entitlement: Entitlement,
        resource: Resource,
    },
    /// The same order was recorded before; nothing changed.
    Duplicate {
        entitlement: Entitlement,
        resource: Resource,
    },
    /// A trial was asked for, but the user, device or email had one already.
    TrialUsed,
    /// Nothing was written: the order stacks on the expiry of the account the VPN manager
    /// holds under this uuid (`domain::vpn_order::ask_upstream`). Ask it, and record the
    /// order again with the answer.
    AskUpstream { vpn_user_id: String },
}

/// Filters of `GET /api/internal/entitlements`.
#[derive(Debug, Clone, Default)]
pub struct EntitlementFilter {
    pub user_id: Option<String>,
    pub business_type: Option<String>,
    /// A stored status, or `expired` (an `active` row past its expiry).
    pub status: Option<String>,
    pub limit: i64,
}

/// A user's VPN as the store knows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VpnRecord {
    /// The current entitlement, else the latest one.
    pub entitlement: Option<Entitlement>,
    /// The latest VPN user resource.
    pub resource: Option<Resource>,
}

#[async_trait]
pub trait VpnUsers: Send + Sync {
    /// Records a VPN order in one transaction: the entitlement (demoting the current one,
    /// or folding a gift into it), the VPN user resource's new terms (creating the resource
    /// if the user has none live), and the history. The same order twice, even
    /// concurrently, is recorded once; a second trial for a user, device or email is
    /// refused.
    async fn record_vpn_order(
        &self,
        order: &VpnOrder,
        now: DateTime<Utc>,
    ) -> StoreResult<VpnOrderOutcome>;
    async fn vpn_of_user(&self, user_id: &str) -> StoreResult<VpnRecord>;
    async fn entitlements(
        &self,
        filter: &EntitlementFilter,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Entitlement>>;
    async fn entitlements_for_subscription(
        &self,
        subscription_id: &str,
    ) -> StoreResult<Vec<Entitlement>>;
    /// Ends a subscription's entitlements. When one of them was the user's current one, the
    /// VPN user is to be deleted (returned); otherwise the `deleted` callback is queued at
    /// once, since nothing changes at the VPN manager. `None` when nothing matches.
    async fn cancel_vpn_subscription(
        &self,
        subscription_id: &str,
        reason: DeleteReason,
        actor: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Resource>>;
    /// Changes the current entitlement of a VPN user resource and schedules the update at
    /// the VPN manager; `None` when the resource is not a live VPN user with one.
    async fn adjust_vpn(
        &self,
        resource_id: Uuid,
        adjustment: &VpnAdjustment,
        due_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(Entitlement, Resource)>>;
    /// Records a user's new email on their live resources and current entitlement, and
    /// schedules the VPN manager update of a live VPN user. `false`, with nothing
    /// written, for a user with no resource and no entitlement at all.
    async fn set_user_email(
        &self,
        user_id: &str,
        email: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Whether another VPN user resource of this user is still being deleted (a new
    /// account must wait: the VPN manager keeps one per user).
    async fn vpn_user_deleting(&self, user_id: &str, except: Uuid) -> StoreResult<bool>;
    /// Live VPN users with an account and unexpired terms (or terms still to be taken
    /// from the VPN manager, whatever our copy says), by id after `after`: the id, the
    /// account, and whether its terms are to be taken (`adopt_vpn_terms`).
    async fn vpn_sync_page(
        &self,
        after: Option<Uuid>,
        limit: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(Uuid, String, bool)>>;
    /// Records traffic read from the VPN manager, one statement for the whole batch.
    async fn record_vpn_usage(&self, usage: &[(Uuid, i64)], now: DateTime<Utc>) -> StoreResult<()>;
    /// Takes the terms the VPN manager holds for imported accounts as ours (expiry, limit
    /// and usage, on the resource and its current entitlement), once: the Go service's own
    /// copy was often stale.
    async fn adopt_vpn_terms(
        &self,
        terms: &[(Uuid, AdoptedTerms)],
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
}

/// What the VPN manager holds for an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdoptedTerms {
    pub expire_at: Option<DateTime<Utc>>,
    pub traffic_limit: i64,
    pub traffic_used: i64,
}

//! The user's own VPN, as they (or the internal API) read it: its status, with the subscription
//! service's word on paid entitlements, the live connection config, and our record.

use super::ids::UserId;
use super::reads::{Document, Shelves};
use super::{App, AppError};
use domain::Resource;
use domain::entitlement::{Entitlement, PaidBy, VpnStatus, gated_vpn_status, vpn_status};
use domain::product::VPN;
use domain::progress::SubscriptionState;
use ports::VpnSubscription;
use ports::store::VpnRecord;

/// Everything `GET /my/vpn` shows.
#[derive(Debug, Clone)]
pub struct MyVpn {
    pub status: VpnStatus,
    pub subscription: SubscriptionState,
    /// The subscription service's word on paid entitlements, as it was read.
    pub paid_by: PaidBy,
    pub record: VpnRecord,
    /// Until when this answer holds with no change committed (see `MyNode::fresh_until`).
    pub fresh_until: Option<std::time::Instant>,
}

/// The connection config (`GET /my/vpn/subscribe`).
#[derive(Debug, Clone)]
pub struct VpnConfig {
    pub entitlement: Entitlement,
    pub resource: Resource,
    pub live: VpnSubscription,
}

impl Document for MyVpn {
    fn fresh_until(&self) -> Option<std::time::Instant> {
        self.fresh_until
    }
}

impl App {
    /// `GET /my/vpn`: our entitlements decide the status (an expired or deprovisioned VPN
    /// never reads `active`, whatever the subscription service says).
    pub async fn my_vpn(&self, user: &UserId) -> Result<std::sync::Arc<MyVpn>, AppError> {
        let user_id = user.as_str();
        let shelves = Shelves {
            model: &self.read_vpns,
            last: &self.last_vpns,
        };
        self.read_through(
            shelves,
            user_id,
            |kept| self.vpn_now(kept),
            async |kept| self.renew_vpn(user_id, kept).await.map(Some),
            self.read_my_vpn(user_id),
        )
        .await
    }

    /// An answer read earlier, its status brought up to the clock (an expiry passes).
    fn vpn_now(&self, kept: std::sync::Arc<MyVpn>) -> std::sync::Arc<MyVpn> {
        let status = gate(&kept.record, kept.paid_by, self.ports.clock.now());
        if status == kept.status {
            return kept;
        }
        std::sync::Arc::new(MyVpn {
            status,
            ..MyVpn::clone(&kept)
        })
    }

    /// A kept answer whose subscription part expired, with a new subscription answer and
    /// our record as the database last said (no change heard since): what a full read
    /// would answer, without the database read.
    async fn renew_vpn(&self, user_id: &str, kept: &MyVpn) -> Result<MyVpn, AppError> {
        let (subscription, live, fresh_until) =
            self.subscriptions.lookup_until(user_id, VPN).await?;
        let paid_by = PaidBy::of(&subscription, live);
        Ok(MyVpn {
            status: gate(&kept.record, paid_by, self.ports.clock.now()),
            subscription,
            paid_by,
            fresh_until,
            ..kept.clone()
        })
    }

    async fn read_my_vpn(&self, user_id: &str) -> Result<MyVpn, AppError> {
        let (record, lookup) = tokio::join!(
            self.ports.store.vpn_of_user(user_id),
            self.subscriptions.lookup_until(user_id, VPN),
        );
        let record = record?;
        let (subscription, live, fresh_until) = lookup?;
        let paid_by = PaidBy::of(&subscription, live);
        Ok(MyVpn {
            status: gate(&record, paid_by, self.ports.clock.now()),
            subscription,
            paid_by,
            record,
            fresh_until,
        })
    }

    /// The connection config, only while the VPN is active. Read from the VPN manager
    /// with a read that never changes the user's terms there.
    pub async fn vpn_config(&self, user: &UserId) -> Result<VpnConfig, AppError> {
        let user_id = user.as_str();
        let (record, lookup) = tokio::join!(
            self.ports.store.vpn_of_user(user_id),
            self.subscriptions.lookup(user_id, VPN),
        );
        let record = record?;
        let (subscription, live) = lookup?;
        let now = self.ports.clock.now();
        let paid_by = PaidBy::of(&subscription, live);
        let status = gated_vpn_status(
            record.entitlement.as_ref(),
            record.resource.as_ref(),
            paid_by,
            now,
        );
        let (Some(entitlement), Some(resource)) = (record.entitlement, record.resource) else {
            return Err(AppError::not_found("no_vpn", "no VPN subscription"));
        };
        if status == VpnStatus::NoSubscription {
            return Err(AppError::not_found(
                "no_subscription",
                "no active VPN subscription",
            ));
        }
        if status != VpnStatus::Active {
            return Err(AppError::forbidden(
                "vpn_not_active",
                format!("the VPN is {status}"),
            ));
        }
        let Some(uuid) = resource.vpn.vpn_user_id.clone() else {
            return Err(AppError::conflict(
                "vpn_provisioning",
                "the VPN account is still being created; try again shortly",
            ));
        };
        let live =
            self.ports.vpn.sync(&uuid).await.map_err(|e| {
                AppError::Unavailable(format!("the VPN manager is unreachable: {e}"))
            })?;
        Ok(VpnConfig {
            entitlement,
            resource,
            live,
        })
    }

    /// The user's VPN as we record it (no upstream call).
    pub async fn vpn_record(&self, user: &UserId) -> Result<(VpnStatus, VpnRecord), AppError> {
        let user_id = user.as_str();
        let record = self.ports.store.vpn_of_user(user_id).await?;
        if record.entitlement.is_none() {
            return Err(AppError::not_found("no_vpn", "no VPN subscription"));
        }
        let now = self.ports.clock.now();
        let status = vpn_status(record.entitlement.as_ref(), record.resource.as_ref(), now);
        Ok((status, record))
    }
}

/// The status a user sees of our record, as what the subscription service says gates it.
fn gate(record: &VpnRecord, paid_by: PaidBy, now: chrono::DateTime<chrono::Utc>) -> VpnStatus {
    gated_vpn_status(
        record.entitlement.as_ref(),
        record.resource.as_ref(),
        paid_by,
        now,
    )
}

//! One reconcile step for a VPN user. The VPN manager keeps one account per user and
//! de-duplicates creates by our user id, so a create is safe to repeat; the uuid it answers
//! with is authoritative, and a de-duplicated create did not apply the order, so it is
//! followed by an update. The terms to enforce are on the resource (`spec_version`); a step
//! pushes them and records the version the VPN manager confirmed, queuing the `active`
//! callback of every order it covered in the same transaction. Nothing is reported before
//! the VPN manager has confirmed it.

use super::Engine;
use super::step::{ACTOR, StepError};
use domain::{Desired, EventKind, Phase, Resource, Status, credential, plan::PlanTier};
use ports::store::{Attempts, Change, NewEvent, StoreResult};
use ports::{CreateVpnUser, UpstreamError, VpnUserUpdate};

/// Everything the VPN manager must hold for this user, as one update.
fn full_update(r: &Resource) -> VpnUserUpdate {
    VpnUserUpdate {
        traffic_limit: Some(r.traffic_limit),
        // A renewal's reset rides on the push of its terms (VPN_TRAFFIC_RESET=on_renewal).
        traffic_used: r.vpn.owes_reset().then_some(0),
        expire_at: r.vpn.expire_at,
        enabled: Some(true),
        email: r.user_email.clone().filter(|e| !e.is_empty()),
    }
}

impl Engine {
    pub(super) async fn reconcile_vpn(&self, r: Resource) -> StoreResult<()> {
        let now = self.now();
        match (r.desired, r.status) {
            (_, Status::Deleted) | (Desired::Active, Status::Failed) => self.settle(&r).await,
            (Desired::Active, Status::Pending | Status::Creating)
                if r.deadline_at.is_some_and(|d| now >= d) =>
            {
                let c = self.change(&r);
                let msg = "the VPN manager did not create the user in time".to_owned();
                self.fail_resource(r, c, msg).await
            }
            (Desired::Active, Status::Pending) => {
                let c = self.creating(&r);
                match self.commit_creating(r, c).await? {
                    Some(r) => self.create_vpn_user(r).await,
                    None => Ok(()),
                }
            }
            (Desired::Active, Status::Creating) => self.create_vpn_user(r).await,
            (Desired::Active, Status::Active) if r.vpn.is_pending() => self.push_vpn_terms(r).await,
            (Desired::Active, Status::Active) => self.settle(&r).await,
            (
                Desired::Deleted,
                Status::Pending | Status::Creating | Status::Active | Status::Failed,
            ) => self.begin_delete(r).await,
            (_, Status::Deleting) => self.finish_delete(r).await,
        }
    }

    /// Creates (or finds, since the VPN manager de-duplicates) the user's account and makes
    /// it hold the current terms.
    async fn create_vpn_user(&self, r: Resource) -> StoreResult<()> {
        let Some(expire_at) = r.vpn.expire_at else {
            let c = self.change(&r);
            return self
                .fail_resource(r, c, "the order has no expiry".into())
                .await;
        };
        let req = CreateVpnUser {
            uuid: r.id.to_string(),
            email: r.user_email.clone().unwrap_or_default(),
            auth_user_id: r.user_id.clone(),
            protocols: vec!["vless".into(), "shadowsocks".into()],
            ss_password: credential::mint().0[..24].to_owned(),
            traffic_limit: r.traffic_limit,
            expire_at,
            service_tier: r
                .vpn
                .service_tier
                .clone()
                .unwrap_or_else(|| PlanTier::parse(&r.plan_tier).service_tier().into()),
        };
        let user = match self.ports.vpn.create_user(&req).await {
            Ok(user) => user,
            Err(e) if e.is_retryable() => {
                return self.retry(&r, "creating the VPN user", e).await;
            }
            Err(e) => {
                let c = self.change(&r);
                let msg = format!("the VPN manager refused to create the user: {e}");
                return self.fail_resource(r, c, msg).await;
            }
        };
        // An account of another uuid is one the VPN manager already had for this user: if
        // a previous resource of the user is still deleting it, it is not ours to take.
        // (Asked only then: a fresh account needs no look.)
        if user.uuid != req.uuid && self.ports.store.vpn_user_deleting(&r.user_id, r.id).await? {
            let why = "the user's previous VPN account is still being deleted";
            return self.retry(&r, "waiting", why).await;
        }
        let applied = user.uuid == req.uuid
            && user.enabled
            && user.traffic_limit == req.traffic_limit
            && user.expire_at.map(|t| t.timestamp()) == Some(expire_at.timestamp());
        if !applied {
            // An existing account (de-duplicated by our user id): the order is not on it yet.
            if let Err(e) = self
                .ports
                .vpn
                .update_user(&user.uuid, &full_update(&r))
                .await
            {
                return self
                    .retry(&r, "applying the order to the VPN user", e)
                    .await;
            }
        }
        let mut c = self.change(&r);
        c.vpn_user_id = Some(user.uuid.clone());
        self.vpn_applied(&r, c).await
    }

    /// Pushes changed terms (a renewal, an adjustment, a new email) to the account.
    async fn push_vpn_terms(&self, r: Resource) -> StoreResult<()> {
        let Some(uuid) = r.vpn.vpn_user_id.clone() else {
            return self.create_vpn_user(r).await;
        };
        match self.ports.vpn.update_user(&uuid, &full_update(&r)).await {
            Ok(()) => {
                let c = self.change(&r);
                self.vpn_applied(&r, c).await
            }
            // The account is gone at the VPN manager: make it again.
            Err(UpstreamError::Status { status: 404, .. }) => self.create_vpn_user(r).await,
            Err(e) => self.retry(&r, "updating the VPN user", e).await,
        }
    }

    /// Records that the VPN manager holds `r`'s terms, with the `active` callback of every
    /// order they cover (`report_through`), in one transaction.
    async fn vpn_applied(&self, r: &Resource, mut c: Change) -> StoreResult<()> {
        let version = r.vpn.spec_version;
        c.report_through = Some(version);
        c.applied_version = Some(version);
        if r.status == Status::Creating {
            c.status = Some(Status::Active);
            c.phase = Some(Phase::Finalizing);
            c.ready_at = Some(self.now());
            c.events.push(
                NewEvent::new(EventKind::VpnUserCreated, ACTOR)
                    .with_message(c.vpn_user_id.clone().unwrap_or_default()),
            );
        } else {
            c.events
                .push(NewEvent::new(EventKind::VpnUserUpdated, ACTOR));
        }
        c.clear_deadline();
        c.attempts = Attempts::Reset;
        c.rest();
        c.release_lease = true;
        let activates = c.status == Some(Status::Active);
        if self.commit(c).await? && activates {
            self.activated(r);
        }
        Ok(())
    }

    /// Deletes the user's account at the VPN manager; an unknown account counts as gone.
    /// Without its uuid (a create whose answer was lost), the account is found by our
    /// user id.
    pub(super) async fn release_vpn_user(&self, r: &Resource) -> Result<(), StepError> {
        let uuid = match &r.vpn.vpn_user_id {
            Some(uuid) => uuid.clone(),
            None if r.phase < Phase::VpsRequested => return Ok(()),
            None => match self.ports.vpn.subscribe(&r.user_id).await {
                Ok(found) => found.uuid,
                Err(UpstreamError::Status { status: 404, .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            },
        };
        Ok(self.ports.vpn.delete_user(&uuid).await?)
    }
}

impl Engine {
    /// Takes the first step for a VPN user in the caller's own task (a request that wants
    /// to answer `active`), then waits until the VPN manager holds `version` of the terms,
    /// the step fails, or `wait` is over. The step is not cancelled when the wait ends: its
    /// outcome is durable either way, and if this process dies the row's schedule hands it
    /// to any worker. Returns the resource as it then is.
    pub async fn drive_vpn(
        self: &std::sync::Arc<Self>,
        id: uuid::Uuid,
        version: i64,
        wait: std::time::Duration,
    ) -> StoreResult<Option<Resource>> {
        let until = tokio::time::Instant::now() + wait;
        let claim = ports::store::Claim {
            owner: &self.config.owner,
            now: self.now(),
            lease: self.config.lease,
            limit: 1,
        };
        if let Some(r) = self.ports.store.claim_resource(id, claim).await? {
            let engine = self.clone();
            let step = tokio::spawn(async move { engine.reconcile(r).await });
            let _ = tokio::time::timeout_at(until, step).await;
        }
        // Another worker holds the row, or the step is still going: watch the outcome.
        loop {
            let r = self.ports.store.resource(id).await?;
            let settled = r.as_ref().is_none_or(|r| {
                r.vpn.applied_version >= version
                    || matches!(
                        r.status,
                        Status::Failed | Status::Deleting | Status::Deleted
                    )
            });
            if settled || tokio::time::Instant::now() >= until {
                return Ok(r);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

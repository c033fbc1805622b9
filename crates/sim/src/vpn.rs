//! The simulated VPN manager (otun-manager): users keyed by uuid and de-duplicated by
//! `auth_user_id` as the real one does (a repeated create answers with the existing user,
//! whose uuid differs from the one proposed, and does not apply the order), connection
//! links per protocol, and a record of every create, update and delete.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::hosting::run_with_faults;
use super::{Faults, Op};
use ports::{
    CreateVpnUser, ProtocolLink, UpstreamError, UpstreamResult, VpnManager, VpnSubscription,
    VpnUser, VpnUserUpdate,
};

/// One VPN user as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimVpnUser {
    pub uuid: String,
    pub email: String,
    pub auth_user_id: String,
    pub protocols: Vec<String>,
    pub ss_password: String,
    pub traffic_limit: i64,
    pub traffic_used: i64,
    pub expire_at: DateTime<Utc>,
    pub enabled: bool,
    pub service_tier: String,
}

impl SimVpnUser {
    /// `GET /api/users/{uuid}` and the create answer.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "uuid": self.uuid, "email": self.email, "ss_password": self.ss_password,
            "protocols": self.protocols, "traffic_limit": self.traffic_limit,
            "traffic_used": self.traffic_used, "expire_at": rfc3339(self.expire_at),
            "enabled": self.enabled,
        })
    }

    /// `POST /api/subscribe` and `GET /api/users/{uuid}/sync`.
    pub fn subscription_view(&self) -> serde_json::Value {
        serde_json::json!({
            "uuid": self.uuid, "traffic_limit": self.traffic_limit, "traffic_used": self.traffic_used,
            "expire_at": rfc3339(self.expire_at), "enabled": self.enabled, "protocols": self.links(),
        })
    }

    /// One link per protocol; the host is a documentation name, never a real address.
    pub fn links(&self) -> Vec<ProtocolLink> {
        self.protocols
            .iter()
            .map(|p| ProtocolLink {
                protocol: p.clone(),
                url: match p.as_str() {
                    "shadowsocks" => {
                        format!("ss://{}@vpn.example.net:8388#primary", self.ss_password)
                    }
                    other => format!(
                        "{other}://{}@vpn.example.net:443?security=reality#primary",
                        self.uuid
                    ),
                },
                node: "primary".into(),
            })
            .collect()
    }

    fn user(&self) -> VpnUser {
        VpnUser {
            uuid: self.uuid.clone(),
            email: Some(self.email.clone()).filter(|e| !e.is_empty()),
            ss_password: Some(self.ss_password.clone()),
            traffic_limit: self.traffic_limit,
            traffic_used: self.traffic_used,
            expire_at: Some(self.expire_at),
            enabled: self.enabled,
        }
    }

    fn subscription(&self) -> VpnSubscription {
        VpnSubscription {
            uuid: self.uuid.clone(),
            traffic_limit: self.traffic_limit,
            traffic_used: self.traffic_used,
            expire_at: Some(self.expire_at),
            enabled: self.enabled,
            protocols: self.links(),
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[derive(Default)]
struct State {
    users: BTreeMap<String, SimVpnUser>,
    by_auth: HashMap<String, String>,
    creates: Vec<CreateVpnUser>,
    updates: Vec<(String, VpnUserUpdate)>,
    deletes: Vec<String>,
}

pub struct VpnSim {
    faults: Arc<Faults>,
    state: Mutex<State>,
}

impl VpnSim {
    pub fn new(faults: Arc<Faults>) -> Self {
        VpnSim {
            faults,
            state: Mutex::new(State::default()),
        }
    }

    /// Creates a user, or returns the existing one of the same `auth_user_id` unchanged.
    /// The second value says whether a user was created.
    pub fn create(&self, req: &CreateVpnUser) -> (SimVpnUser, bool) {
        let mut st = self.state.lock().unwrap();
        st.creates.push(req.clone());
        if let Some(existing) = st
            .by_auth
            .get(&req.auth_user_id)
            .and_then(|u| st.users.get(u))
        {
            return (existing.clone(), false);
        }
        let uuid = if st.users.contains_key(&req.uuid) || req.uuid.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            req.uuid.clone()
        };
        let user = SimVpnUser {
            uuid: uuid.clone(),
            email: req.email.clone(),
            auth_user_id: req.auth_user_id.clone(),
            protocols: req.protocols.clone(),
            ss_password: req.ss_password.clone(),
            traffic_limit: req.traffic_limit,
            traffic_used: 0,
            expire_at: req.expire_at,
            enabled: true,
            service_tier: req.service_tier.clone(),
        };
        st.by_auth.insert(req.auth_user_id.clone(), uuid.clone());
        st.users.insert(uuid, user.clone());
        (user, true)
    }

    /// Adds an account made before us (by the Go service), recording no request.
    pub fn add_user(&self, user: SimVpnUser) {
        let mut st = self.state.lock().unwrap();
        st.by_auth
            .insert(user.auth_user_id.clone(), user.uuid.clone());
        st.users.insert(user.uuid.clone(), user);
    }

    pub fn user(&self, uuid: &str) -> Option<SimVpnUser> {
        self.state.lock().unwrap().users.get(uuid).cloned()
    }

    pub fn user_by_auth(&self, auth_user_id: &str) -> Option<SimVpnUser> {
        let st = self.state.lock().unwrap();
        st.by_auth
            .get(auth_user_id)
            .and_then(|u| st.users.get(u))
            .cloned()
    }

    /// Applies an update; `false` when the user does not exist.
    pub fn update(&self, uuid: &str, update: &VpnUserUpdate) -> bool {
        let mut st = self.state.lock().unwrap();
        st.updates.push((uuid.to_owned(), update.clone()));
        let Some(user) = st.users.get_mut(uuid) else {
            return false;
        };
        if let Some(v) = update.traffic_limit {
            user.traffic_limit = v;
        }
        if let Some(v) = update.traffic_used {
            user.traffic_used = v;
        }
        if let Some(v) = update.expire_at {
            user.expire_at = v;
        }
        if let Some(v) = update.enabled {
            user.enabled = v;
        }
        if let Some(v) = &update.email {
            user.email = v.clone();
        }
        true
    }

    /// Deletes a user; `false` when it does not exist.
    pub fn delete(&self, uuid: &str) -> bool {
        let mut st = self.state.lock().unwrap();
        st.deletes.push(uuid.to_owned());
        match st.users.remove(uuid) {
            Some(user) => {
                st.by_auth.remove(&user.auth_user_id);
                true
            }
            None => false,
        }
    }

    /// Sets a user's traffic counter, as the VPN nodes would.
    pub fn set_traffic_used(&self, uuid: &str, bytes: i64) -> bool {
        match self.state.lock().unwrap().users.get_mut(uuid) {
            Some(user) => {
                user.traffic_used = bytes;
                true
            }
            None => false,
        }
    }

    pub fn users(&self) -> Vec<SimVpnUser> {
        self.state.lock().unwrap().users.values().cloned().collect()
    }

    pub fn creates(&self) -> Vec<CreateVpnUser> {
        self.state.lock().unwrap().creates.clone()
    }

    pub fn updates(&self) -> Vec<(String, VpnUserUpdate)> {
        self.state.lock().unwrap().updates.clone()
    }

    pub fn deletes(&self) -> Vec<String> {
        self.state.lock().unwrap().deletes.clone()
    }
}

fn not_found() -> UpstreamError {
    UpstreamError::Status {
        status: 404,
        body: "user not found".into(),
    }
}

#[async_trait]
impl VpnManager for VpnSim {
    async fn create_user(&self, req: &CreateVpnUser) -> UpstreamResult<VpnUser> {
        run_with_faults(&self.faults, Op::VpnCreate, || self.create(req).0.user()).await
    }

    async fn get_user(&self, uuid: &str) -> UpstreamResult<Option<VpnUser>> {
        run_with_faults(&self.faults, Op::VpnGet, || {
            self.user(uuid).map(|u| u.user())
        })
        .await
    }

    async fn update_user(&self, uuid: &str, update: &VpnUserUpdate) -> UpstreamResult<()> {
        let found =
            run_with_faults(&self.faults, Op::VpnUpdate, || self.update(uuid, update)).await?;
        if found { Ok(()) } else { Err(not_found()) }
    }

    async fn delete_user(&self, uuid: &str) -> UpstreamResult<()> {
        run_with_faults(&self.faults, Op::VpnDelete, || {
            self.delete(uuid);
        })
        .await
    }

    async fn subscribe(&self, device_id: &str) -> UpstreamResult<VpnSubscription> {
        run_with_faults(&self.faults, Op::VpnSubscribe, || {
            self.user_by_auth(device_id)
        })
        .await?
        .map(|u| u.subscription())
        .ok_or_else(not_found)
    }

    async fn sync(&self, uuid: &str) -> UpstreamResult<VpnSubscription> {
        run_with_faults(&self.faults, Op::VpnSync, || self.user(uuid))
            .await?
            .map(|u| u.subscription())
            .ok_or_else(not_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Knobs;

    fn order(uuid: &str, auth: &str) -> CreateVpnUser {
        CreateVpnUser {
            uuid: uuid.into(),
            email: format!("{auth}@example.com"),
            auth_user_id: auth.into(),
            protocols: vec!["vless".into(), "shadowsocks".into()],
            ss_password: "pw".into(),
            traffic_limit: 100,
            expire_at: Utc::now(),
            service_tier: "standard".into(),
        }
    }

    #[test]
    fn a_repeated_create_answers_with_the_existing_user_unchanged() {
        let sim = VpnSim::new(Arc::new(Faults::new(Knobs::default())));
        let (first, created) = sim.create(&order("uuid-1", "auth-1"));
        assert!(created);
        assert_eq!(first.uuid, "uuid-1");
        let mut again = order("uuid-2", "auth-1");
        again.traffic_limit = 999;
        let (second, created) = sim.create(&again);
        assert!(!created);
        assert_eq!(
            second.uuid, "uuid-1",
            "the existing user's uuid is returned"
        );
        assert_eq!(
            second.traffic_limit, 100,
            "the order is not applied to the existing user"
        );
        assert_eq!(sim.users().len(), 1);
        assert_eq!(sim.creates().len(), 2);
    }

    #[test]
    fn updates_apply_only_the_given_fields_and_deletes_free_the_auth_id() {
        let sim = VpnSim::new(Arc::new(Faults::new(Knobs::default())));
        sim.create(&order("uuid-1", "auth-1"));
        assert!(sim.update(
            "uuid-1",
            &VpnUserUpdate {
                traffic_limit: Some(5),
                ..Default::default()
            }
        ));
        let user = sim.user("uuid-1").unwrap();
        assert_eq!((user.traffic_limit, user.enabled), (5, true));
        assert!(!sim.update("nope", &VpnUserUpdate::default()));
        assert!(sim.delete("uuid-1"));
        assert!(sim.user_by_auth("auth-1").is_none());
        let (fresh, created) = sim.create(&order("uuid-3", "auth-1"));
        assert!(created);
        assert_eq!(fresh.uuid, "uuid-3");
        assert_eq!(sim.user("uuid-3").unwrap().links().len(), 2);
    }
}

//! The simulated subscription service: who has an active subscription, and every
//! fulfillment callback received, in arrival order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::hosting::run_with_faults;
use super::{Faults, Op};
use domain::product::Product;
use ports::{FulfillmentCallback, SubscriptionSnapshot, Subscriptions, UpstreamResult};

/// A callback as received.
#[derive(Debug, Clone, Serialize)]
pub struct ReceivedCallback {
    #[serde(flatten)]
    pub callback: FulfillmentCallback,
    pub received_at: DateTime<Utc>,
}

type Key = (String, String, String);

#[derive(Default)]
struct State {
    subscriptions: HashMap<Key, SubscriptionSnapshot>,
    callbacks: Vec<ReceivedCallback>,
    /// When set, users without an entry have an active subscription of this plan.
    default_plan: Option<String>,
}

pub struct SubscriptionsSim {
    faults: Arc<Faults>,
    state: Mutex<State>,
}

impl SubscriptionsSim {
    pub fn new(faults: Arc<Faults>) -> Self {
        SubscriptionsSim {
            faults,
            state: Mutex::new(State::default()),
        }
    }

    /// Sets (or with `None` ends) a user's subscription for (`app`, `service_type`).
    pub fn set(
        &self,
        user_id: &str,
        app: &str,
        service_type: &str,
        sub: Option<SubscriptionSnapshot>,
    ) {
        let key = (user_id.to_owned(), app.to_owned(), service_type.to_owned());
        let mut st = self.state.lock().unwrap();
        match sub {
            Some(s) => st.subscriptions.insert(key, s),
            None => st.subscriptions.remove(&key),
        };
    }

    /// Gives every user without an explicit entry an active subscription of `plan`.
    pub fn set_default_plan(&self, plan: Option<String>) {
        self.state.lock().unwrap().default_plan = plan;
    }

    pub fn get(
        &self,
        user_id: &str,
        app: &str,
        service_type: &str,
    ) -> Option<SubscriptionSnapshot> {
        let st = self.state.lock().unwrap();
        let key = (user_id.to_owned(), app.to_owned(), service_type.to_owned());
        st.subscriptions.get(&key).cloned().or_else(|| {
            st.default_plan.as_ref().map(|plan| SubscriptionSnapshot {
                subscription_id: format!("sub_{app}_{user_id}"),
                status: "active".into(),
                plan_tier: plan.clone(),
                expires_at: Some(Utc::now() + chrono::Duration::days(30)),
                auto_renew: true,
                quantity: None,
            })
        })
    }

    pub fn receive(&self, callback: FulfillmentCallback) {
        self.state.lock().unwrap().callbacks.push(ReceivedCallback {
            callback,
            received_at: Utc::now(),
        });
    }

    /// Every callback received, in arrival order.
    pub fn callbacks(&self) -> Vec<ReceivedCallback> {
        self.state.lock().unwrap().callbacks.clone()
    }

    /// Callbacks received for one subscription, in arrival order.
    pub fn callbacks_for(&self, subscription_id: &str) -> Vec<FulfillmentCallback> {
        self.callbacks()
            .into_iter()
            .filter(|c| c.callback.subscription_id == subscription_id)
            .map(|c| c.callback)
            .collect()
    }
}

#[async_trait]
impl Subscriptions for SubscriptionsSim {
    async fn active(
        &self,
        user_id: &str,
        product: Product,
    ) -> UpstreamResult<Option<SubscriptionSnapshot>> {
        run_with_faults(&self.faults, Op::ActiveSubscription, || {
            self.get(user_id, product.app, product.service)
        })
        .await
    }

    async fn callback(&self, cb: &FulfillmentCallback) -> UpstreamResult<()> {
        run_with_faults(&self.faults, Op::Callback, || self.receive(cb.clone())).await
    }
}

//! Subscription lookups for the user API: a short-lived in-memory answer, the subscription
//! service behind it, and the last answer on record in the database for when the
//! subscription service is down, so an outage never hides a customer's node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::progress::{SubscriptionSnapshot, SubscriptionState};
use ports::store::{Store, StoreResult};
use ports::{Clock, Ports, Subscriptions};

/// Entries kept in memory at most; past this, stale ones are dropped.
const MAX_ENTRIES: usize = 100_000;

type Key = (String, Product);

use domain::product::Product;

pub struct SubscriptionLookup {
    upstream: Arc<dyn Subscriptions>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    cache: Mutex<HashMap<Key, (Instant, SubscriptionState)>>,
}

impl SubscriptionLookup {
    pub fn new(ports: &Ports, ttl: Duration) -> Self {
        SubscriptionLookup {
            upstream: ports.subscriptions.clone(),
            store: ports.store.clone(),
            clock: ports.clock.clone(),
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The user's subscription to `product` (hosting or VPN).
    pub async fn state(&self, user_id: &str, product: Product) -> StoreResult<SubscriptionState> {
        Ok(self.lookup(user_id, product).await?.0)
    }

    /// `state`, and whether it is the subscription service's own answer (`true`) rather
    /// than the last snapshot on record, served while it is unreachable (`false`).
    pub async fn lookup(
        &self,
        user_id: &str,
        product: Product,
    ) -> StoreResult<(SubscriptionState, bool)> {
        let (state, live, _) = self.lookup_until(user_id, product).await?;
        Ok((state, live))
    }

    /// `lookup`, and until when its answer holds (`None` when it is not the subscription
    /// service's: the last snapshot, served while the service is unreachable).
    pub async fn lookup_until(
        &self,
        user_id: &str,
        product: Product,
    ) -> StoreResult<(SubscriptionState, bool, Option<Instant>)> {
        let (key, app) = ((user_id.to_owned(), product), product.app);
        let previous = self.cache.lock().unwrap().get(&key).cloned();
        if let Some((at, state)) = &previous
            && at.elapsed() < self.ttl
        {
            return Ok((state.clone(), true, Some(*at + self.ttl)));
        }
        let now = self.clock.now();
        let state = match self.upstream.active(user_id, product).await {
            Ok(Some(snapshot)) => {
                let unchanged =
                    matches!(&previous, Some((_, SubscriptionState::Active(s))) if *s == snapshot);
                if !unchanged {
                    self.store
                        .save_subscription(user_id, app, Some(&snapshot), now)
                        .await?;
                }
                SubscriptionState::Active(snapshot)
            }
            // Still none, as the last answer said: the record already says so.
            Ok(None) if matches!(&previous, Some((_, SubscriptionState::Inactive { .. }))) => {
                previous.map(|(_, state)| state).expect("matched")
            }
            Ok(None) => {
                let last_known = self
                    .store
                    .save_subscription(user_id, app, None, now)
                    .await?;
                SubscriptionState::Inactive { last_known }
            }
            Err(e) => {
                tracing::warn!(%user_id, app, error = %e, "subscription service unavailable; serving the last snapshot");
                // Not cached: the next request asks the subscription service again.
                return Ok((self.last_known(user_id, app).await?, false, None));
            }
        };
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        let at = Instant::now();
        cache.insert(key, (at, state.clone()));
        Ok((state, true, Some(at + self.ttl)))
    }

    /// What the database remembers, for when the subscription service cannot answer.
    async fn last_known(&self, user_id: &str, app: &str) -> StoreResult<SubscriptionState> {
        let now = self.clock.now();
        Ok(match self.store.subscription(user_id, app).await? {
            None => SubscriptionState::Unknown,
            Some(stored) => match stored.last_active {
                Some(s) if stored.active && s.expires_at.is_none_or(|e| e > now) => {
                    SubscriptionState::Active(s)
                }
                last_known => SubscriptionState::Inactive { last_known },
            },
        })
    }
}

/// A snapshot's `subscription_id` is needed to record a node against it.
pub fn subscription_of(state: &SubscriptionState) -> Option<&SubscriptionSnapshot> {
    match state {
        SubscriptionState::Active(s) => Some(s),
        _ => None,
    }
}

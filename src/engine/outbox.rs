//! The outbox dispatcher: delivers callbacks to the subscription service until each is
//! acknowledged. Only the oldest undelivered callback of a subscription is ever claimed,
//! so a subscription's callbacks arrive in the order their status changes committed.

use super::Engine;
use crate::ports::store::{Claim, OutboxMessage, StoreResult};

impl Engine {
    pub(super) async fn claim_outbox(&self, limit: i64) -> StoreResult<Vec<OutboxMessage>> {
        let claim = Claim {
            owner: &self.config.owner,
            now: self.ports.clock.now(),
            lease: self.config.lease,
            limit,
        };
        self.ports.store.claim_outbox(claim).await
    }

    /// Sends one callback and records the outcome. Every failure is retried: a callback
    /// the subscription service refuses is still owed to it, and an operator can see the
    /// error on the row.
    pub(super) async fn deliver(&self, m: OutboxMessage) {
        let _held = self.hold();
        let result = self.ports.subscriptions.callback(&m.callback).await;
        let store = &self.ports.store;
        let owner = &self.config.owner;
        let now = self.ports.clock.now();
        let outcome = match result {
            Ok(()) => {
                tracing::info!(outbox_id = m.id, subscription_id = %m.subscription_id,
                    status = %m.callback.status, "callback delivered");
                store.outbox_delivered(m.id, owner, now).await
            }
            Err(e) => {
                let next = crate::domain::units::after(now, self.config.backoff.delay(m.attempts));
                tracing::warn!(outbox_id = m.id, subscription_id = %m.subscription_id,
                    attempts = m.attempts + 1, error = %e, "callback not delivered; will retry");
                Engine::schedule_wake(&self.next_outbox_wake, next);
                store.outbox_retry(m.id, owner, next, &e.to_string()).await
            }
        };
        if let Err(e) = outcome {
            // The lease will expire and the callback will be sent again: at least once.
            tracing::error!(outbox_id = m.id, error = %e, "could not record a delivery outcome");
        }
    }
}

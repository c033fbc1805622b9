//! The outbox dispatcher: delivers callbacks to the subscription service until each is
//! acknowledged. Only the oldest undelivered callback of a subscription is ever claimed,
//! so a subscription's callbacks arrive in the order their status changes committed.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::Engine;
use ports::store::{Claim, OutboxMessage, StoreError, StoreResult};

/// Deliveries waiting to be recorded: the first of a burst waits `batch_window` for the
/// rest, and all are marked delivered in one statement (one transaction, not one each).
#[derive(Default)]
pub(super) struct Acks {
    pending: Mutex<Vec<(i64, oneshot::Sender<bool>)>>,
}

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
    pub(super) async fn deliver(self: &Arc<Self>, m: OutboxMessage) {
        let _held = self.hold();
        let result = self.ports.subscriptions.callback(&m.callback).await;
        let now = self.ports.clock.now();
        let outcome = match result {
            Ok(()) => {
                tracing::info!(outbox_id = m.id, subscription_id = %m.subscription_id,
                    status = %m.callback.status, "callback delivered");
                self.record_delivered(m.id).await
            }
            Err(e) => {
                let next = domain::units::after(now, self.config.backoff.delay(m.attempts));
                tracing::warn!(outbox_id = m.id, subscription_id = %m.subscription_id,
                    attempts = m.attempts + 1, error = %e, "callback not delivered; will retry");
                Engine::schedule_wake(&self.next_outbox_wake, next);
                let owner = &self.config.owner;
                self.ports
                    .store
                    .outbox_retry(m.id, owner, next, &e.to_string())
                    .await
            }
        };
        if let Err(e) = outcome {
            // The lease will expire and the callback will be sent again: at least once.
            tracing::error!(outbox_id = m.id, error = %e, "could not record a delivery outcome");
        }
    }

    /// Records a delivery with the others of its burst (see `Acks`). The write runs in a
    /// task of its own, so no waiting delivery is left hanging if one is dropped.
    async fn record_delivered(self: &Arc<Self>, id: i64) -> StoreResult<()> {
        let (sent, recorded) = oneshot::channel();
        let first = {
            let mut pending = self.acks.pending.lock().unwrap();
            pending.push((id, sent));
            pending.len() == 1
        };
        if first {
            let engine = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(engine.config.batch_window).await;
                let batch = std::mem::take(&mut *engine.acks.pending.lock().unwrap());
                let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
                let (owner, now) = (&engine.config.owner, engine.ports.clock.now());
                let written = engine.ports.store.outbox_delivered(&ids, owner, now).await;
                if let Err(e) = &written {
                    tracing::error!(error = %e, deliveries = ids.len(), "could not record deliveries");
                }
                for (_, sent) in batch {
                    let _ = sent.send(written.is_ok());
                }
            });
        }
        match recorded.await {
            Ok(true) => Ok(()),
            _ => Err(StoreError::Other(
                "the deliveries could not be recorded".into(),
            )),
        }
    }
}

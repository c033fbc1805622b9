//! `Idempotency-Key` as a use case: a request under a key runs once, a repeat with the
//! same body gets the first answer again, a different body or a key still in flight is
//! refused. Refusals of the request itself are not remembered, so the caller may fix the
//! cause and retry. Nothing here knows HTTP: an answer is a status number and a body.

use sha2::{Digest, Sha256};

use super::{App, AppError};
use ports::store::IdempotencyBegin;

/// Longest key accepted.
const MAX_KEY_LEN: usize = 255;

/// What to answer.
#[derive(Debug)]
pub enum Keyed<T> {
    /// The request ran now.
    Ran(T),
    /// A repeat: the first request's answer.
    Replay { status: u16, body: String },
}

impl App {
    /// Runs `run` under `key` (or plainly, without one). `answer` is what a repeat is to
    /// get back: the status and body of the answer `run` produced.
    pub async fn once<T, E, Fut>(
        &self,
        scope: &str,
        key: Option<&str>,
        request: &[u8],
        run: impl FnOnce() -> Fut,
        answer: impl FnOnce(&T) -> (u16, String),
    ) -> Result<Keyed<T>, E>
    where
        Fut: Future<Output = Result<T, E>>,
        E: From<AppError>,
    {
        let Some(key) = key.map(str::trim).filter(|k| !k.is_empty()) else {
            return run().await.map(Keyed::Ran);
        };
        if key.len() > MAX_KEY_LEN {
            return Err(AppError::invalid(
                "invalid_idempotency_key",
                "Idempotency-Key is longer than 255 characters",
            )
            .into());
        }
        let fingerprint = hex::encode(Sha256::digest(request));
        let store = &self.ports.store;
        let now = self.ports.clock.now();
        let begun = store
            .idempotency_begin(scope, key, &fingerprint, now)
            .await
            .map_err(AppError::from)?;
        match begun {
            IdempotencyBegin::Replay { status, body } => Ok(Keyed::Replay { status, body }),
            IdempotencyBegin::Mismatch => Err(AppError::invalid(
                "idempotency_key_reused",
                "Idempotency-Key was used with a different request body",
            )
            .into()),
            IdempotencyBegin::InFlight => Err(AppError::conflict(
                "idempotency_key_in_flight",
                "a request with this Idempotency-Key is still being processed",
            )
            .into()),
            IdempotencyBegin::Proceed => {
                let result = run().await;
                let recorded = match &result {
                    Ok(done) => {
                        let (status, body) = answer(done);
                        store.idempotency_finish(scope, key, status, &body).await
                    }
                    Err(_) => store.idempotency_abandon(scope, key).await,
                };
                recorded.map_err(AppError::from)?;
                result.map(Keyed::Ran)
            }
        }
    }
}

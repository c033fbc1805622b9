//! The last answer of a user read, served while the database is unavailable (a restart, a
//! failover), so the app keeps showing a customer's node or VPN instead of an error.
//! Nothing changes in the database while it is down, so such an answer is at worst as old
//! as the moment this process last read it, and that age is bounded (`max_age`). Other
//! failures are never masked: only `StoreError::Unavailable` falls back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::AppError;
use ports::store::StoreError;

/// Users remembered at most; past this, expired entries are dropped, and if that is not
/// enough, new ones are not remembered until some expire. A "my node" answer costs about
/// 2.7 KB (the read benchmark's peak RSS grew from 26 to 54 MB with 10,000 users), so this
/// bounds each cache to about 27 MB.
const MAX_ENTRIES: usize = 10_000;

pub struct LastKnown<T> {
    what: &'static str,
    max_age: Duration,
    /// Shared with the answers handed out, so remembering one copies nothing.
    entries: Mutex<HashMap<String, (Instant, Arc<T>)>>,
}

/// An answer, and whether it is the remembered one (served while the database is down).
pub struct Answer<T> {
    pub value: Arc<T>,
    pub remembered: bool,
}

impl<T> LastKnown<T> {
    pub fn new(what: &'static str, max_age: Duration) -> Self {
        LastKnown {
            what,
            max_age,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `fresh`'s answer, remembered for `user`; or, when the database is unavailable, the
    /// last answer remembered within `max_age`.
    pub async fn read(
        &self,
        user: &str,
        fresh: impl Future<Output = Result<T, AppError>>,
    ) -> Result<Answer<T>, AppError> {
        match fresh.await {
            Ok(value) => {
                let value = Arc::new(value);
                self.remember(user, &value);
                Ok(Answer {
                    value,
                    remembered: false,
                })
            }
            Err(AppError::Store(StoreError::Unavailable(why))) => match self.recall(user) {
                Some(value) => {
                    tracing::warn!(what = self.what, user, error = %why, "database unavailable; serving the last answer");
                    Ok(Answer {
                        value,
                        remembered: true,
                    })
                }
                None => Err(AppError::Store(StoreError::Unavailable(why))),
            },
            Err(e) => Err(e),
        }
    }

    fn remember(&self, user: &str, value: &Arc<T>) {
        if self.max_age.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap();
        if let Some(entry) = entries.get_mut(user) {
            *entry = (Instant::now(), value.clone());
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            let max_age = self.max_age;
            entries.retain(|_, (at, _)| at.elapsed() < max_age);
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(user.to_owned(), (Instant::now(), value.clone()));
    }

    fn recall(&self, user: &str) -> Option<Arc<T>> {
        let entries = self.entries.lock().unwrap();
        entries
            .get(user)
            .filter(|(at, _)| at.elapsed() < self.max_age)
            .map(|(_, value)| value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> AppError {
        AppError::Store(StoreError::Unavailable("connection refused".into()))
    }

    #[tokio::test]
    async fn only_an_unavailable_database_falls_back_to_the_last_answer() {
        let last = LastKnown::new("test", Duration::from_secs(60));
        assert!(matches!(
            last.read("u", async { Err::<u32, _>(down()) }).await,
            Err(AppError::Store(StoreError::Unavailable(_)))
        ));
        assert_eq!(*last.read("u", async { Ok(7) }).await.unwrap().value, 7);
        let remembered = last.read("u", async { Err(down()) }).await.unwrap();
        assert_eq!((*remembered.value, remembered.remembered), (7, true));
        assert!(
            last.read("other", async { Err(down()) }).await.is_err(),
            "per user"
        );
        let corrupt = last
            .read("u", async {
                Err(AppError::Store(StoreError::Corrupt("bad row".into())))
            })
            .await;
        assert!(
            matches!(corrupt, Err(AppError::Store(StoreError::Corrupt(_)))),
            "other errors are not masked"
        );
        let missing = last
            .read("u", async { Err(AppError::not_found("no_node", "none")) })
            .await;
        assert!(matches!(missing, Err(AppError::NotFound { .. })));
    }

    #[tokio::test]
    async fn an_answer_older_than_max_age_is_not_served() {
        let last = LastKnown::new("test", Duration::from_millis(20));
        last.read("u", async { Ok(1) }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(last.read("u", async { Err(down()) }).await.is_err());

        let off = LastKnown::new("test", Duration::ZERO);
        off.read("u", async { Ok(1) }).await.unwrap();
        assert!(
            off.read("u", async { Err(down()) }).await.is_err(),
            "0 turns it off"
        );
    }
}

//! The net under the news of other replicas' changes: a per-process periodic job, run
//! where other processes may write the database (`Store::shared`, PostgreSQL).

use std::sync::Arc;

use tokio::sync::watch;

use ports::store::{Changed, Store};

/// How often a process looks for changes it may not have heard of.
pub const NET_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The net under the news of other replicas' changes (PostgreSQL): a writer killed in the
/// moment between its commit and its batch of news (`store::news`) leaves this process's
/// documents of those users stale. Every `NET_EVERY` it reads the users with history newer
/// than the last it read (one query, whatever the number of users) and tells of them as
/// of changes heard. Every write a reader can see records an event, except traffic
/// figures, which the next usage report renews.
pub(super) async fn run(store: Arc<dyn Store>, mut stop: watch::Receiver<bool>) {
    let mut after = None;
    loop {
        match store.users_with_events_after(after, 10_000).await {
            Ok((last, users)) => {
                let bus = store.bus();
                for user in users {
                    bus.changed(Changed::User(user.into()));
                }
                let more = after.is_some_and(|a| last - a >= 10_000);
                after = Some(last);
                if more {
                    continue;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not look for missed changes"),
        }
        tokio::select! {
            _ = tokio::time::sleep(NET_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

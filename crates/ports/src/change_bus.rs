//! The change bus: how a commit is heard in this process. It carries the engine loops'
//! wake-ups and the news of whose documents changed to its observers (the read models,
//! then the live streams: wired in `App::new`). Commits post to it (`store::news::
//! committed`), this process's own before the commit returns; PostgreSQL's listener posts
//! the other replicas' news as it hears it, and the engine's news net what it may have
//! missed. It is not storage: the store only holds one and posts to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Wake-ups for the engine's loops, and news of whose documents changed for the read
/// models and the live streams.
pub struct ChangeBus {
    pub resources: Signal,
    pub outbox: Signal,
    /// Told of every change synchronously, in the order they were registered: this
    /// process's own before its commit returns, other replicas' as they are heard.
    observers: std::sync::RwLock<Vec<Observer>>,
    /// Whether every replica's changes reach this process now (false while PostgreSQL's
    /// listener is not listening: changes may be missed, so nothing may be cached).
    hearing: AtomicBool,
}

/// One engine loop's wake-up, and how many more items it could take on now.
#[derive(Default)]
pub struct Signal {
    notify: Notify,
    /// Set by the loop as its steps start and end; 0 where no loop runs.
    room: AtomicUsize,
}

impl Signal {
    /// Wakes the loop if it is waiting (or about to look: see `notified`).
    pub fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// A wake-up to wait for; `enable` it before looking for work, so one sent meanwhile
    /// is not missed.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Says how many more items the loop could take on now.
    pub fn set_room(&self, room: usize) {
        self.room.store(room, Ordering::Release);
    }

    /// Whether this process's loop would take new work now: then it is woken here and
    /// the other replicas need not be.
    pub fn has_room(&self) -> bool {
        self.room.load(Ordering::Acquire) > 0
    }
}

/// Something told of every change to users' documents (see `ChangeBus::observe`).
pub type Observer = Arc<dyn Fn(&Changed) + Send + Sync>;

impl std::fmt::Debug for ChangeBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeBus")
            .field("hearing", &self.hearing())
            .finish_non_exhaustive()
    }
}

/// News that what `GET /my/node` or `GET /my/vpn` answers may have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// This user's documents.
    User(Arc<str>),
    /// Only the traffic figures in this user's documents (a usage report, the traffic
    /// sync): what is kept of them is stale, but no live stream is told (they may lag by
    /// 60 s, `CONTRACTS.md` §4.1, and a stream's own re-read picks them up).
    Usage(Arc<str>),
    /// Anyone's: notifications may have been missed (the listener reconnected).
    Everyone,
}

impl Default for ChangeBus {
    fn default() -> Self {
        ChangeBus {
            resources: Signal::default(),
            outbox: Signal::default(),
            observers: std::sync::RwLock::new(Vec::new()),
            hearing: AtomicBool::new(true),
        }
    }
}

impl ChangeBus {
    /// Tells the observers.
    pub fn changed(&self, change: Changed) {
        self.observed(&change);
    }

    /// Registers an observer of every change (see `observers`).
    pub fn observe(&self, observer: Observer) {
        self.observers.write().unwrap().push(observer);
    }

    /// Whether news of every replica's changes reaches this process now.
    pub fn hearing(&self) -> bool {
        self.hearing.load(Ordering::Acquire)
    }

    /// Says whether news of every replica's changes reaches this process. Stopping to hear
    /// is itself news: whatever was known may go stale unheard.
    pub fn set_hearing(&self, hearing: bool) {
        let was = self.hearing.swap(hearing, Ordering::AcqRel);
        if was && !hearing {
            self.observed(&Changed::Everyone);
        }
    }

    fn observed(&self, change: &Changed) {
        for observer in self.observers.read().unwrap().iter() {
            observer(change);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_has_room_only_once_it_says_so() {
        let signal = Signal::default();
        assert!(!signal.has_room(), "no loop runs yet");
        signal.set_room(3);
        assert!(signal.has_room());
        signal.set_room(0);
        assert!(!signal.has_room());
    }

    #[tokio::test]
    async fn a_wake_reaches_a_waiter_enabled_before_it() {
        let signal = Signal::default();
        let woken = signal.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        signal.wake();
        tokio::time::timeout(std::time::Duration::from_secs(5), woken)
            .await
            .expect("the wake-up was kept");
    }
}

//! The hub of live streams in this process: one latest-value channel per connected user,
//! poked when the store reports that the user's documents changed (on any replica). A
//! stream only learns *that* something changed and re-reads the documents itself, so a
//! slow client never builds a queue and a burst of changes coalesces into one re-read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::ids::UserId;
use ports::store::Changed;

/// Streams one user may hold open at once (SSE and WebSocket together).
pub const STREAMS_PER_USER: usize = 5;

/// The two ways of following the documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Sse,
    Ws,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Sse, Transport::Ws];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::Ws => "ws",
        }
    }
}

/// Why a stream was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The user already holds `STREAMS_PER_USER` streams.
    UserFull,
    /// The process holds its `EVENTS_MAX_STREAMS`.
    ProcessFull,
    /// The process is shutting down.
    ShuttingDown,
}

struct Entry {
    poke: watch::Sender<()>,
    streams: usize,
}

/// Live streams of this process.
pub struct Hub {
    users: Mutex<HashMap<Arc<str>, Entry>>,
    max_streams: usize,
    open: [AtomicUsize; 2],
    stop: watch::Sender<bool>,
}

/// One open stream: it is told when its user's documents change and when to end, and it
/// leaves the hub when dropped.
pub struct Follower {
    hub: Arc<Hub>,
    user: Arc<str>,
    transport: Transport,
    pub changed: watch::Receiver<()>,
    pub stop: watch::Receiver<bool>,
}

impl Hub {
    pub fn new(max_streams: usize) -> Arc<Self> {
        Arc::new(Hub {
            users: Mutex::new(HashMap::new()),
            max_streams,
            open: [AtomicUsize::new(0), AtomicUsize::new(0)],
            stop: watch::channel(false).0,
        })
    }

    /// Opens a stream for `user`, within the per-user and per-process limits.
    pub fn follow(
        self: &Arc<Self>,
        user: &UserId,
        transport: Transport,
    ) -> Result<Follower, Refused> {
        if *self.stop.borrow() {
            return Err(Refused::ShuttingDown);
        }
        let mut users = self.users.lock().unwrap();
        if self.open_streams() >= self.max_streams {
            return Err(Refused::ProcessFull);
        }
        let entry = users
            .entry(Arc::from(user.as_str()))
            .or_insert_with(|| Entry {
                poke: watch::channel(()).0,
                streams: 0,
            });
        if entry.streams >= STREAMS_PER_USER {
            return Err(Refused::UserFull);
        }
        entry.streams += 1;
        self.open[transport as usize].fetch_add(1, Ordering::Relaxed);
        let mut changed = entry.poke.subscribe();
        changed.mark_unchanged();
        let (user, _) = users.get_key_value(user.as_str()).expect("just inserted");
        Ok(Follower {
            hub: self.clone(),
            user: user.clone(),
            transport,
            changed,
            stop: self.stop.subscribe(),
        })
    }

    /// Streams this process holds at most.
    pub fn max_streams(&self) -> usize {
        self.max_streams
    }

    /// Streams open now, of every transport.
    pub fn open_streams(&self) -> usize {
        self.open.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// Streams open now over `transport`.
    pub fn open_over(&self, transport: Transport) -> usize {
        self.open[transport as usize].load(Ordering::Relaxed)
    }

    /// Users with at least one stream open.
    pub fn users_following(&self) -> usize {
        self.users.lock().unwrap().len()
    }

    /// Pokes the streams a change concerns.
    pub fn changed(&self, change: &Changed) {
        let users = self.users.lock().unwrap();
        match change {
            Changed::User(user) => {
                if let Some(entry) = users.get(user) {
                    entry.poke.send_replace(());
                }
            }
            Changed::Everyone => {
                for entry in users.values() {
                    entry.poke.send_replace(());
                }
            }
            Changed::Usage(_) => {}
        }
    }

    /// Ends every stream, and refuses new ones (shutdown).
    pub fn stop_all(&self) {
        self.stop.send_replace(true);
    }

    fn leave(&self, user: &Arc<str>, transport: Transport) {
        let mut users = self.users.lock().unwrap();
        if let Some(entry) = users.get_mut(user) {
            entry.streams -= 1;
            if entry.streams == 0 {
                users.remove(user);
            }
        }
        self.open[transport as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.hub.leave(&self.user, self.transport);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    #[test]
    fn a_user_holds_at_most_five_streams_and_a_closed_one_frees_its_place() {
        let hub = Hub::new(100);
        let mut open: Vec<_> = (0..STREAMS_PER_USER)
            .map(|i| {
                let t = if i % 2 == 0 {
                    Transport::Sse
                } else {
                    Transport::Ws
                };
                hub.follow(&user("u"), t).unwrap()
            })
            .collect();
        assert_eq!(
            hub.follow(&user("u"), Transport::Sse).err(),
            Some(Refused::UserFull)
        );
        assert!(
            hub.follow(&user("other"), Transport::Sse).is_ok(),
            "others are not limited"
        );
        assert_eq!(
            (hub.open_over(Transport::Sse), hub.open_over(Transport::Ws)),
            (3, 2)
        );
        open.pop();
        assert!(hub.follow(&user("u"), Transport::Sse).is_ok());
    }

    #[test]
    fn the_process_limit_counts_every_user() {
        let hub = Hub::new(2);
        let _a = hub.follow(&user("a"), Transport::Sse).unwrap();
        let b = hub.follow(&user("b"), Transport::Ws).unwrap();
        assert_eq!(
            hub.follow(&user("c"), Transport::Sse).err(),
            Some(Refused::ProcessFull)
        );
        drop(b);
        assert_eq!(
            hub.users_following(),
            1,
            "a user with no stream leaves the hub"
        );
        assert!(hub.follow(&user("c"), Transport::Sse).is_ok());
    }

    #[test]
    fn a_change_pokes_only_its_user_and_everyone_pokes_all() {
        let hub = Hub::new(10);
        let mut a = hub.follow(&user("a"), Transport::Sse).unwrap();
        let b = hub.follow(&user("b"), Transport::Sse).unwrap();
        assert!(
            !a.changed.has_changed().unwrap(),
            "nothing has happened yet"
        );
        hub.changed(&Changed::User("a".into()));
        hub.changed(&Changed::User("a".into()));
        assert!(a.changed.has_changed().unwrap());
        assert!(!b.changed.has_changed().unwrap(), "another user's change");
        a.changed.mark_unchanged();
        hub.changed(&Changed::Everyone);
        assert!(a.changed.has_changed().unwrap() && b.changed.has_changed().unwrap());
    }

    #[test]
    fn stopping_ends_the_streams_and_refuses_new_ones() {
        let hub = Hub::new(10);
        let f = hub.follow(&user("a"), Transport::Sse).unwrap();
        hub.stop_all();
        assert!(*f.stop.borrow());
        assert_eq!(
            hub.follow(&user("a"), Transport::Sse).err(),
            Some(Refused::ShuttingDown)
        );
    }
}

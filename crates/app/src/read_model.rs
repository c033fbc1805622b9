//! The read model: the last `/my/node` and `/my/vpn` documents per user, served from
//! memory until a commit changes them. Every commit that changes a user's documents says
//! so (`ports::store::ChangeBus`): this process's own commits before they return (a replica
//! reads its own writes), other replicas' through PostgreSQL's notifications (within the
//! same bound as the live streams). While this process may be missing notifications (its
//! listener is reconnecting), nothing is cached and everything is forgotten.
//!
//! A read races the commits that land while it runs: each read takes a ticket (a sequence
//! number) before it reads, and its answer is kept only if no commit for that user, and no
//! forgetting of everyone, was heard since. A document also carries its own expiry (the
//! subscription answer inside it is only good for the subscription cache's lifetime);
//! past it, what the database said still stands (`kept`) until a change is heard, so
//! renewing it costs a subscription lookup, not a database read. Every write a reader can
//! see is heard of (statuses and history through their events, traffic figures through
//! usage reports and the sync); `catch_missed_news` catches what a killed writer never sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ports::store::Changed;

/// A read's place in the order of what was heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

struct Entry<T> {
    /// The last change heard for this user.
    changed_at: u64,
    doc: Option<(Arc<T>, Instant)>,
    /// When it was last served or stored (for eviction, least recently used first).
    used: u64,
}

struct Inner<T> {
    seq: u64,
    /// The last time everything was forgotten (a missed notification, an eviction).
    floor: u64,
    entries: HashMap<Arc<str>, Entry<T>>,
}

pub struct ReadModel<T> {
    /// Users kept at most (0: the read model is off).
    cap: usize,
    inner: Mutex<Inner<T>>,
}

impl<T> ReadModel<T> {
    pub fn new(cap: usize) -> Self {
        ReadModel {
            cap,
            inner: Mutex::new(Inner {
                seq: 0,
                floor: 0,
                entries: HashMap::new(),
            }),
        }
    }

    /// The user's document if one is kept and still fresh; else a ticket for the read
    /// that will replace it.
    pub fn get(&self, user: &str, now: Instant) -> Result<Arc<T>, Ticket> {
        let mut inner = self.inner.lock().unwrap();
        inner.seq += 1;
        let seq = inner.seq;
        if let Some(entry) = inner.entries.get_mut(user)
            && let Some((doc, fresh_until)) = &entry.doc
            && now < *fresh_until
        {
            entry.used = seq;
            return Ok(doc.clone());
        }
        Err(Ticket(seq))
    }

    /// The user's document as last kept, fresh or not, if no change for the user was heard
    /// since: what the database said is still true, and only the parts with their own
    /// expiry (the subscription answer) need asking again.
    pub fn kept(&self, user: &str) -> Option<Arc<T>> {
        let inner = self.inner.lock().unwrap();
        let (doc, _) = inner.entries.get(user)?.doc.as_ref()?;
        Some(doc.clone())
    }

    /// Keeps what a read that took `ticket` found, fresh until `fresh_until`, unless a
    /// change for the user (or everyone) was heard since the ticket was taken.
    pub fn put(&self, user: &str, ticket: Ticket, doc: Arc<T>, fresh_until: Instant) {
        if self.cap == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap();
        if ticket.0 <= inner.floor {
            return;
        }
        inner.seq += 1;
        let seq = inner.seq;
        match inner.entries.get_mut(user) {
            Some(entry) if entry.changed_at >= ticket.0 => {}
            Some(entry) => {
                entry.doc = Some((doc, fresh_until));
                entry.used = seq;
            }
            None => {
                inner.entries.insert(
                    user.into(),
                    Entry {
                        changed_at: 0,
                        doc: Some((doc, fresh_until)),
                        used: seq,
                    },
                );
                self.evict(&mut inner);
            }
        }
    }

    /// Forgets what `change` may have made stale.
    pub fn heard(&self, change: &Changed) {
        let mut inner = self.inner.lock().unwrap();
        inner.seq += 1;
        let seq = inner.seq;
        match change {
            Changed::User(user) | Changed::Usage(user) => match inner.entries.get_mut(&**user) {
                Some(entry) => {
                    entry.changed_at = seq;
                    entry.doc = None;
                }
                // A read of this user may be under way: its ticket must not pass.
                None if self.cap > 0 => {
                    inner.entries.insert(
                        user.clone(),
                        Entry {
                            changed_at: seq,
                            doc: None,
                            used: seq,
                        },
                    );
                    self.evict(&mut inner);
                }
                None => {}
            },
            Changed::Everyone => {
                inner.floor = seq;
                inner.entries.clear();
            }
        }
    }

    /// Users kept now (with a document or a recent change).
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Past the cap, drops the least recently used tenth. What a dropped entry knew of
    /// changes is kept as the floor, so no read in flight across it is kept.
    fn evict(&self, inner: &mut Inner<T>) {
        if inner.entries.len() <= self.cap {
            return;
        }
        let mut used: Vec<u64> = inner.entries.values().map(|e| e.used).collect();
        used.sort_unstable();
        let cut = used[(used.len() / 10).max(1).min(used.len() - 1)];
        let mut floor = inner.floor;
        inner.entries.retain(|_, e| {
            let keep = e.used >= cut;
            if !keep {
                floor = floor.max(e.changed_at);
            }
            keep
        });
        inner.floor = floor;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn user(u: &str) -> Changed {
        Changed::User(u.into())
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn a_kept_document_is_served_until_a_change_for_its_user() {
        let m = ReadModel::new(10);
        let t = m.get("a", Instant::now()).unwrap_err();
        m.put("a", t, Arc::new(1), later());
        let t = m.get("b", Instant::now()).unwrap_err();
        m.put("b", t, Arc::new(2), later());
        assert_eq!(*m.get("a", Instant::now()).unwrap(), 1);
        m.heard(&user("a"));
        assert!(
            m.get("a", Instant::now()).is_err(),
            "a's change forgets a's document"
        );
        assert_eq!(*m.get("b", Instant::now()).unwrap(), 2, "b's stays");
        m.heard(&Changed::Everyone);
        assert!(m.get("b", Instant::now()).is_err());
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_kept() {
        let m = ReadModel::new(10);
        // The read starts, a commit for the user is heard, the read ends with old data.
        let t = m.get("a", Instant::now()).unwrap_err();
        m.heard(&user("a"));
        m.put("a", t, Arc::new("before the commit"), later());
        assert!(m.get("a", Instant::now()).is_err());
        // Also when the user was not known when the change was heard.
        let t = m.get("new", Instant::now()).unwrap_err();
        m.heard(&user("new"));
        m.put("new", t, Arc::new("stale"), later());
        assert!(m.get("new", Instant::now()).is_err());
        // And across forgetting everyone.
        let t = m.get("b", Instant::now()).unwrap_err();
        m.heard(&Changed::Everyone);
        m.put("b", t, Arc::new("stale"), later());
        assert!(m.get("b", Instant::now()).is_err());
        // A read after the change is kept.
        let t = m.get("a", Instant::now()).unwrap_err();
        m.put("a", t, Arc::new("after"), later());
        assert_eq!(*m.get("a", Instant::now()).unwrap(), "after");
    }

    #[test]
    fn a_document_past_its_freshness_is_renewed_from_what_was_kept_until_a_change() {
        let m = ReadModel::new(10);
        let now = Instant::now();
        let t = m.get("a", now).unwrap_err();
        m.put("a", t, Arc::new(1), now + Duration::from_secs(5));
        assert!(m.get("a", now + Duration::from_secs(4)).is_ok());
        assert!(m.get("a", now + Duration::from_secs(5)).is_err());
        assert_eq!(
            m.kept("a").as_deref(),
            Some(&1),
            "what the database said stands"
        );
        m.heard(&user("a"));
        assert!(
            m.kept("a").is_none(),
            "until a change for the user is heard"
        );
        assert!(m.kept("b").is_none());
    }

    #[test]
    fn the_cap_holds_and_evicts_the_least_recently_used_without_letting_a_race_through() {
        let m = ReadModel::new(20);
        let t_slow = m.get("slow", Instant::now()).unwrap_err();
        m.heard(&user("slow"));
        for i in 0..100 {
            let u = format!("u{i}");
            let t = m.get(&u, Instant::now()).unwrap_err();
            m.put(&u, t, Arc::new(i), later());
            // u0 stays in use.
            let _ = m.get("u0", Instant::now());
        }
        assert!(m.len() <= 20, "{}", m.len());
        assert!(m.get("u0", Instant::now()).is_ok(), "the most used stays");
        // "slow"'s change was evicted; its read, begun before the change, is still refused.
        m.put("slow", t_slow, Arc::new(-1), later());
        assert!(m.get("slow", Instant::now()).is_err());
    }

    #[test]
    fn off_keeps_nothing() {
        let m = ReadModel::new(0);
        let t = m.get("a", Instant::now()).unwrap_err();
        m.put("a", t, Arc::new(1), later());
        m.heard(&user("b"));
        assert!(m.get("a", Instant::now()).is_err());
        assert!(m.is_empty());
    }
}

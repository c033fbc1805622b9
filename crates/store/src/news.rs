//! What this process's commits tell the other replicas (PostgreSQL only). A commit tells
//! this process at once, in process (see `Tx::commit`); the other replicas hear of it
//! within `COALESCE`, in batches: every commit the process made meanwhile, in one `NOTIFY`
//! statement. Each listening backend reads the notification queue in a transaction of its
//! own, once per notifying commit, so one `NOTIFY` per commit made every replica pay a
//! transaction for every change; a batch makes it one per `COALESCE` per process.
//!
//! The cost: a process killed in the `COALESCE` after a commit takes that commit's news
//! with it. The other replicas' nets catch it: the engine's fallback poll for work, and
//! for documents `engine::news_net` (once a minute).
//!
//! On `fulfillment_users` a notification's payload is this process's origin on the first
//! line and one user per line after it (user ids hold no control characters), so a
//! process skips its own news, which it has already heard; a line starting with a tab is
//! news of traffic figures only (`Changed::Usage`). A payload of one line is one user,
//! from a process that sends them one by one.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;

use ports::store::{ChangeBus, Changed, Signal};

/// Which engine loop a wake-up is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Resources,
    Outbox,
}

impl Topic {
    /// The PostgreSQL channel that carries it across replicas.
    pub const fn channel(self) -> &'static str {
        match self {
            Topic::Resources => "fulfillment_resources",
            Topic::Outbox => "fulfillment_outbox",
        }
    }

    /// This process's loop for it.
    pub fn signal(self, bus: &ChangeBus) -> &Signal {
        match self {
            Topic::Resources => &bus.resources,
            Topic::Outbox => &bus.outbox,
        }
    }
}

/// The PostgreSQL channel whose payload is a user whose documents changed.
pub const USERS_CHANNEL: &str = "fulfillment_users";

/// How long news gathers before it is sent: the delay the other replicas see.
pub const COALESCE: Duration = Duration::from_millis(50);

/// PostgreSQL's payload limit is 8000 bytes; a batch is cut well below it.
const PAYLOAD_BYTES: usize = 7_000;

/// News waiting to be sent.
pub struct Outgoing {
    origin: String,
    pending: Mutex<Pending>,
    ready: Notify,
}

#[derive(Default)]
struct Pending {
    topics: BTreeSet<&'static str>,
    users: BTreeSet<String>,
    usage: BTreeSet<String>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.topics.is_empty() && self.users.is_empty() && self.usage.is_empty()
    }
}

/// Marks a payload line as news of traffic figures only (`Changed::Usage`): a tab, which
/// no user id holds.
const USAGE: char = '\t';

impl Outgoing {
    pub fn new() -> Arc<Self> {
        Arc::new(Outgoing {
            origin: uuid::Uuid::new_v4().simple().to_string(),
            pending: Mutex::new(Pending::default()),
            ready: Notify::new(),
        })
    }

    /// Queues news of a commit: engine loops to wake elsewhere, users whose documents
    /// changed, users whose traffic figures alone changed.
    pub fn add(&self, topics: &[Topic], users: &[String], usage: &[String]) {
        if topics.is_empty() && users.is_empty() && usage.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().unwrap();
        pending.topics.extend(topics.iter().map(|t| t.channel()));
        pending.users.extend(users.iter().cloned());
        pending.usage.extend(usage.iter().cloned());
        drop(pending);
        self.ready.notify_one();
    }

    /// What a `fulfillment_users` payload says, unless it is this process's own news.
    pub fn heard(&self, payload: &str) -> Vec<Changed> {
        match payload.split_once('\n') {
            None => vec![Changed::User(payload.into())],
            Some((origin, _)) if origin == self.origin => Vec::new(),
            Some((_, users)) => users
                .lines()
                .map(|line| match line.strip_prefix(USAGE) {
                    Some(user) => Changed::Usage(user.into()),
                    None => Changed::User(line.into()),
                })
                .collect(),
        }
    }

    /// The notifications of one batch, as (channel, payload) pairs.
    fn notifications(&self, pending: &Pending) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> =
            pending.topics.iter().map(|c| (*c, String::new())).collect();
        let mut payload = String::new();
        let usage = pending.usage.iter().map(|u| (Some(USAGE), u));
        for (mark, user) in pending.users.iter().map(|u| (None, u)).chain(usage) {
            if !payload.is_empty() && payload.len() + 2 + user.len() > PAYLOAD_BYTES {
                out.push((USERS_CHANNEL, std::mem::take(&mut payload)));
            }
            if payload.is_empty() {
                payload.push_str(&self.origin);
            }
            payload.push('\n');
            payload.extend(mark);
            payload.push_str(user);
        }
        if !payload.is_empty() {
            out.push((USERS_CHANNEL, payload));
        }
        out
    }

    /// Sends what is pending now, in one statement (one commit). Failed, it stays pending.
    pub async fn flush(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap());
        if pending.is_empty() {
            return Ok(());
        }
        let (channels, payloads): (Vec<&str>, Vec<String>) =
            self.notifications(&pending).into_iter().unzip();
        let sent =
            sqlx::query("select pg_notify(c, p) from unnest($1::text[], $2::text[]) as n(c, p)")
                .bind(channels)
                .bind(payloads)
                .execute(pool)
                .await;
        if sent.is_err() {
            let mut now = self.pending.lock().unwrap();
            now.topics.extend(pending.topics);
            now.users.extend(pending.users);
            now.usage.extend(pending.usage);
        }
        sent.map(|_| ())
    }

    /// Sends news as it comes, gathering it for `COALESCE` first; runs until aborted.
    pub async fn run(self: Arc<Self>, pool: PgPool) {
        loop {
            self.ready.notified().await;
            tokio::time::sleep(COALESCE).await;
            if let Err(e) = self.flush(&pool).await {
                tracing::warn!(error = %e, "could not tell the other replicas; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.ready.notify_one();
            }
        }
    }
}

/// What a commit tells, once it is durable: this process at once (before the commit
/// returns, so that it reads its own writes): its engine loops, its read model and its live
/// streams; and, when there are other replicas (`outgoing`, PostgreSQL), them too, of the
/// users' changes and of the work this process has no room for. Alone (SQLite), its loops
/// are the only ones and are woken, room or not.
pub fn committed(
    bus: &ChangeBus,
    topics: &[Topic],
    users: &[String],
    usage: &[String],
    outgoing: Option<&Outgoing>,
) {
    let mut elsewhere = Vec::new();
    for &topic in topics {
        let signal = topic.signal(bus);
        if outgoing.is_none() || signal.has_room() {
            signal.wake();
        } else {
            elsewhere.push(topic);
        }
    }
    for user in users {
        bus.changed(Changed::User(user.as_str().into()));
    }
    for user in usage {
        bus.changed(Changed::Usage(user.as_str().into()));
    }
    if let Some(outgoing) = outgoing {
        outgoing.add(&elsewhere, users, usage);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_names_its_origin_and_each_user_once_per_line() {
        let out = Outgoing::new();
        out.add(&[Topic::Outbox], &["u1".into(), "u2".into()], &[]);
        out.add(&[Topic::Outbox], &["u1".into()], &["u3".into()]);
        let pending = std::mem::take(&mut *out.pending.lock().unwrap());
        let sent = out.notifications(&pending);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0], (Topic::Outbox.channel(), String::new()));
        assert_eq!(sent[1].0, USERS_CHANNEL);
        assert_eq!(sent[1].1, format!("{}\nu1\nu2\n\tu3", out.origin));
        assert!(out.heard(&sent[1].1).is_empty(), "its own news is not news");
        let other = Outgoing::new();
        assert_eq!(
            other.heard(&sent[1].1),
            vec![
                Changed::User("u1".into()),
                Changed::User("u2".into()),
                Changed::Usage("u3".into())
            ]
        );
        assert_eq!(other.heard("solo"), vec![Changed::User("solo".into())]);
    }

    #[test]
    fn a_large_batch_is_cut_below_the_payload_limit() {
        let out = Outgoing::new();
        let users: Vec<String> = (0..2_000).map(|i| format!("user-{i:06}")).collect();
        out.add(&[], &users, &[]);
        let pending = std::mem::take(&mut *out.pending.lock().unwrap());
        let sent = out.notifications(&pending);
        assert!(sent.len() > 1);
        let other = Outgoing::new();
        let mut heard = Vec::new();
        for (channel, payload) in &sent {
            assert_eq!(*channel, USERS_CHANNEL);
            assert!(payload.len() <= PAYLOAD_BYTES, "{}", payload.len());
            heard.extend(other.heard(payload));
        }
        assert_eq!(heard.len(), users.len(), "every user, once");
    }

    /// The channels a commit queued for the other replicas.
    fn queued(out: &Outgoing) -> Vec<&'static str> {
        let pending = std::mem::take(&mut *out.pending.lock().unwrap());
        out.notifications(&pending)
            .into_iter()
            .map(|(c, _)| c)
            .collect()
    }

    #[test]
    fn a_commit_wakes_here_the_loops_with_room_and_tells_the_others_the_rest() {
        let bus = ChangeBus::default();
        bus.resources.set_room(2);
        let out = Outgoing::new();
        let both = [Topic::Resources, Topic::Outbox];
        committed(&bus, &both, &["u1".into()], &[], Some(&out));
        assert_eq!(queued(&out), vec![Topic::Outbox.channel(), USERS_CHANNEL]);
    }

    #[test]
    fn alone_a_commit_wakes_every_loop_here_room_or_not() {
        let bus = ChangeBus::default();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        bus.observe(Arc::new(move |c: &Changed| {
            log.lock().unwrap().push(c.clone())
        }));
        let woken = bus.outbox.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        committed(&bus, &[Topic::Outbox], &["u1".into()], &[], None);
        assert!(futures_now(woken), "the outbox loop was woken without room");
        assert_eq!(*heard.lock().unwrap(), vec![Changed::User("u1".into())]);
    }

    /// Whether a future is ready at once.
    fn futures_now<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        f.poll(&mut cx).is_ready()
    }
}

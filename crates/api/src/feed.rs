//! One live stream's feed: it waits until the user's documents may have changed, re-reads
//! them through the same code as `GET /my/node` and `GET /my/vpn`, and yields each one that
//! differs from what it last sent. Idle, it holds a watch receiver and two timers: no
//! database connection, no queue.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::{Instant, sleep_until};

use super::ApiState;
use super::user::node::node_body;
use super::user::vpn::vpn_body;
use app::UserId;
use app::live::Follower;

/// Longest a stream goes without re-reading, notification or not (traffic figures change
/// without one, and a notification can be lost). Each re-read is scheduled at a random
/// point of the last sixth of it, so streams opened together (after a deploy, say) do not
/// re-read together ever after.
pub const REREAD_EVERY: Duration = Duration::from_secs(60);

fn next_reread() -> Instant {
    let jitter = REREAD_EVERY.mul_f64(rand::random::<f64>() / 6.0);
    Instant::now() + REREAD_EVERY - jitter
}
/// How soon a read that failed (the database or the subscription service down) is tried
/// again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// One message: a whole document and the id of the state it belongs to. Described as
/// one event of a stream (`StreamEvent`).
#[derive(Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = StreamEvent)]
pub struct Message {
    /// `node` or `vpn`.
    #[schema(value_type = String, pattern = "^(node|vpn)$")]
    pub event: &'static str,
    pub id: String,
    /// The JSON body, exactly as the GET answers it (`MyNode` or `MyVpn`).
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

impl Message {
    /// The WebSocket frame: `{"event", "id", "data"}`.
    pub fn frame(&self) -> String {
        format!(
            r#"{{"event":"{}","id":{},"data":{}}}"#,
            self.event,
            serde_json::Value::String(self.id.clone()),
            self.data
        )
    }
}

const KINDS: [&str; 2] = ["node", "vpn"];

pub struct Feed {
    st: Arc<ApiState>,
    user: UserId,
    follower: Follower,
    /// When the caller's credential expires: the stream ends there.
    until: Instant,
    /// A digest of what was last sent, per kind (the documents themselves are not kept:
    /// an idle stream should weigh little).
    sent: [Option<Digest8>; 2],
    /// `Last-Event-ID` of a client that reconnects: spared the documents it has.
    resume_from: Option<String>,
    /// A re-read is owed (set before waiting ends, cleared once a read completes, so a
    /// feed dropped mid-read by its caller loses nothing).
    dirty: bool,
    next_read: Instant,
    pending: VecDeque<Message>,
}

impl Feed {
    pub fn new(
        st: Arc<ApiState>,
        user: UserId,
        until: Instant,
        follower: Follower,
        resume_from: Option<String>,
    ) -> Self {
        Feed {
            st,
            user,
            follower,
            until,
            sent: [None, None],
            resume_from,
            dirty: true,
            next_read: next_reread(),
            pending: VecDeque::new(),
        }
    }

    /// The next message, or `None` when the stream is to end (credential expired,
    /// shutdown). Safe to drop at any await (`tokio::select!`).
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Some(m);
            }
            if !self.dirty {
                self.wait().await?;
            }
            // Boxed: the reads' state is large, and unboxed it would sit in every idle
            // stream's future (a future is as big as its biggest await point).
            let read = Box::pin(async {
                tokio::join!(
                    node_body(&self.st, &self.user),
                    vpn_body(&self.st, &self.user)
                )
            });
            let (node, vpn) = tokio::select! {
                biased;
                _ = self.follower.stop.wait_for(|stop| *stop) => return None,
                _ = sleep_until(self.until) => return None,
                docs = read => docs,
            };
            self.dirty = false;
            self.absorb([node.ok(), vpn.ok()]);
        }
    }

    /// Waits for a reason to re-read: a change, or the periodic re-read. `None` when the
    /// stream is to end.
    async fn wait(&mut self) -> Option<()> {
        tokio::select! {
            biased;
            _ = self.follower.stop.wait_for(|stop| *stop) => return None,
            _ = sleep_until(self.until) => return None,
            changed = self.follower.changed.changed() => changed.ok()?,
            _ = sleep_until(self.next_read) => {}
        }
        self.dirty = true;
        Some(())
    }

    /// Queues the documents that differ from those last sent. A document that could not
    /// be read keeps the last one sent, and is read again soon.
    fn absorb(&mut self, read: [Option<String>; 2]) {
        let failed = read.iter().any(Option::is_none);
        self.next_read = if failed {
            Instant::now() + RETRY_AFTER_FAILURE
        } else {
            next_reread()
        };
        let mut changed = Vec::new();
        for (i, doc) in read.into_iter().enumerate() {
            let Some(doc) = doc else { continue };
            let digest = digest(&doc);
            if self.sent[i] != Some(digest) {
                self.sent[i] = Some(digest);
                changed.push((i, doc));
            }
        }
        let id = state_id(&self.sent);
        if !failed && self.resume_from.take().is_some_and(|last| last == id) {
            return;
        }
        for (i, data) in changed {
            self.pending.push_back(Message {
                event: KINDS[i],
                id: id.clone(),
                data,
            });
        }
    }
}

/// The first 8 bytes of a document's SHA-256.
type Digest8 = [u8; 8];

fn digest(doc: &str) -> Digest8 {
    let full = Sha256::digest(doc);
    full[..8].try_into().expect("SHA-256 is 32 bytes")
}

/// The id of a state: a digest of each document, so every replica names one state alike
/// and a client resuming with it can be spared what it has.
fn state_id(sent: &[Option<Digest8>; 2]) -> String {
    let part = |d: &Option<Digest8>| hex::encode(d.unwrap_or_else(|| digest("")));
    format!("{}-{}", part(&sent[0]), part(&sent[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_id_changes_with_either_document_and_only_with_them() {
        let id = |n: &str, v: &str| state_id(&[Some(digest(n)), Some(digest(v))]);
        let a = id(r#"{"n":1}"#, r#"{"v":1}"#);
        assert_eq!(a, id(r#"{"n":1}"#, r#"{"v":1}"#));
        assert_ne!(a, id(r#"{"n":2}"#, r#"{"v":1}"#));
        assert_ne!(a, id(r#"{"n":1}"#, r#"{"v":2}"#));
        assert_eq!(a.len(), 33);
    }

    #[test]
    fn a_frame_wraps_the_document_unchanged() {
        let m = Message {
            event: "node",
            id: "ab-cd".into(),
            data: r#"{"has_node":false}"#.into(),
        };
        let frame: serde_json::Value = serde_json::from_str(&m.frame()).unwrap();
        assert_eq!(
            frame,
            serde_json::json!({"event": "node", "id": "ab-cd", "data": {"has_node": false}})
        );
    }
}

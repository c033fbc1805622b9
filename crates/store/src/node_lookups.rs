//! The query behind every `GET /my/node` on PostgreSQL: "the user's oldest live hosting
//! node".
//!
//! Under load many of these run at once, and each costs a round trip, a backend wake-up and
//! (through sqlx's pool) a second round trip to ping the connection on release. So lookups
//! that arrive while others are in flight are answered together: one query
//! (`user_id = any($1)`) per batch, at most `MAX_IN_FLIGHT` batches at a time, on
//! connections of our own that are not pinged. A lone lookup runs at once, so an idle
//! service pays no extra latency. Batches run in spawned tasks: a caller that goes away
//! (a client disconnect, a timeout) cannot leave a connection mid-query.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::oneshot;

use super::row::{ResourceRow, resource_columns};
use domain::ResourceKind;
use ports::store::{BoxError, StoreError, StoreResult};

/// Batches in flight at once (and connections held for them). Measured on 2 cores with 32
/// concurrent readers (`bench/run --which read`): one batch at a time gives the biggest
/// batches and the fewest round trips and wake-ups, 31-34k req/s against 16-21k with 2
/// (and 10k with 4, 8.4k with 8, measured earlier).
const MAX_IN_FLIGHT: usize = 1;
/// Longest a batch's query may take before its callers are answered "unavailable".
const QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Lookups answered by one query at most.
const MAX_BATCH: usize = 64;

type Reply = oneshot::Sender<StoreResult<Option<ResourceRow>>>;

pub struct NodeLookups {
    connections: deadpool::managed::Pool<Connections>,
    queue: Mutex<Vec<(String, Reply)>>,
    in_flight: AtomicUsize,
}

/// Plain connections, handed back without a ping: a batch only returns its connection
/// after its query completed, and drops it on any error.
struct Connections(PgConnectOptions);

impl deadpool::managed::Manager for Connections {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.0).await
    }

    async fn recycle(
        &self,
        _: &mut PgConnection,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<sqlx::Error> {
        Ok(())
    }
}

impl NodeLookups {
    pub fn new(options: PgConnectOptions) -> anyhow::Result<Arc<Self>> {
        let connections = deadpool::managed::Pool::builder(Connections(options))
            .max_size(MAX_IN_FLIGHT)
            .build()?;
        Ok(Arc::new(NodeLookups {
            connections,
            queue: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
        }))
    }

    /// The user's live hosting node, if any.
    pub async fn get(self: &Arc<Self>, user_id: &str) -> StoreResult<Option<ResourceRow>> {
        let (tx, rx) = oneshot::channel();
        self.queue.lock().unwrap().push((user_id.to_owned(), tx));
        self.start_batch_if_room();
        rx.await
            .map_err(|_| StoreError::Unavailable("node lookup was abandoned".into()))?
    }

    fn start_batch_if_room(self: &Arc<Self>) {
        let mut n = self.in_flight.load(Ordering::Acquire);
        while n < MAX_IN_FLIGHT {
            match self
                .in_flight
                .compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    tokio::spawn(self.clone().drain());
                    return;
                }
                Err(now) => n = now,
            }
        }
        // Every slot is busy: a running batch takes this lookup when it finishes.
    }

    /// Answers queued lookups, a batch at a time, until the queue is empty.
    async fn drain(self: Arc<Self>) {
        loop {
            let batch: Vec<(String, Reply)> = {
                let mut queue = self.queue.lock().unwrap();
                let n = queue.len().min(MAX_BATCH);
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                // A lookup queued after we looked, while every slot was busy, would wait
                // for nobody: look once more now that a slot is free.
                if !self.queue.lock().unwrap().is_empty() {
                    self.start_batch_if_room();
                }
                return;
            }
            let users: Vec<&str> = batch.iter().map(|(u, _)| u.as_str()).collect();
            match self.query(&users).await {
                Ok(rows) => {
                    // Oldest first: a user with several nodes is shown the oldest.
                    let mut by_user: HashMap<String, ResourceRow> =
                        HashMap::with_capacity(rows.len());
                    for r in rows {
                        by_user.entry(r.user_id.clone()).or_insert(r);
                    }
                    let mut wanted: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
                    for (user, _) in &batch {
                        *wanted.entry(user.as_str()).or_default() += 1;
                    }
                    let mut replies = Vec::with_capacity(batch.len());
                    for (user, _) in &batch {
                        // The row moves to its caller; a user twice in a batch gets a copy
                        // for all but the last.
                        let left = wanted.get_mut(user.as_str()).expect("counted above");
                        *left -= 1;
                        let row = if *left == 0 {
                            by_user.remove(user)
                        } else {
                            by_user.get(user).cloned()
                        };
                        replies.push(row);
                    }
                    drop(users);
                    for ((_, reply), row) in batch.into_iter().zip(replies) {
                        let _ = reply.send(Ok(row));
                    }
                }
                Err(e) => {
                    // Every caller gets the same error, its cause shared.
                    let unavailable = matches!(e, StoreError::Unavailable(_));
                    let cause: Arc<BoxError> = Arc::new(match e {
                        StoreError::Unavailable(e)
                        | StoreError::Corrupt(e)
                        | StoreError::Other(e) => e,
                        StoreError::Conflict(msg) => msg.into(),
                    });
                    for (_, reply) in batch {
                        let shared: BoxError = Box::new(Shared(cause.clone()));
                        let err = if unavailable {
                            StoreError::Unavailable(shared)
                        } else {
                            StoreError::Other(shared)
                        };
                        let _ = reply.send(Err(err));
                    }
                }
            }
        }
    }

    async fn query(&self, users: &[&str]) -> StoreResult<Vec<ResourceRow>> {
        let mut conn = self
            .connections
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(e.into()))?;
        let result = sqlx::query_as(concat!(
            "select ",
            resource_columns!(),
            " from resources where resource_type = $2 and desired_state = 'active' \
             and status <> 'deleted' and user_id = any($1) order by created_at, id"
        ))
        .bind(users)
        .bind(ResourceKind::HostingNode.as_str())
        .fetch_all(&mut *conn);
        // Every read waits on this one query: a connection that stopped answering (a
        // server gone without a reset) must not hold them all.
        let result = match tokio::time::timeout(QUERY_TIMEOUT, result).await {
            Ok(result) => result.map_err(crate::error::sorted),
            Err(_) => Err(StoreError::Unavailable("the node lookup timed out".into())),
        };
        if result.is_err() {
            // Whatever state the connection is in, it is not reused.
            drop(deadpool::managed::Object::take(conn));
        }
        result
    }
}

/// One error, handed to every caller of a batch (it reads as the error it wraps).
#[derive(Debug)]
struct Shared(Arc<BoxError>);

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

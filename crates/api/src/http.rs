//! Serving HTTP/1.1 with the limits `axum::serve` does not expose, so that no client can
//! take the service down without a credential:
//!
//! - a **header-read timeout**: a connection that has not sent a whole request head within
//!   it is closed, whether it sent half a head or nothing, on its first request or idle
//!   between kept-alive ones (hyper starts the timer whenever it waits for a head);
//! - a **connection cap**, kept below the descriptor limit with room left for the
//!   database pool and the upstream clients. At the cap, the oldest connection with no
//!   request in flight (idle, or still dribbling its head) is closed to make room, so a
//!   flood of held-open sockets cannot lock real clients out; when every connection is
//!   busy, the newcomer gets a quick `503` and is closed;
//! - a connection **upgraded** to a WebSocket stays counted (and busy) until the socket
//!   closes: the handler keeps the connection's `Hold`;
//! - the cap follows the descriptor limit as it is now (it may be lowered while the
//!   process runs), and when an accept fails for want of a descriptor (`EMFILE`,
//!   `ENFILE`), the oldest idle connection is closed at once to make room; other accept
//!   errors back off instead of spinning. Either is logged at most once a second;
//! - a request **head** over `MAX_HEAD` is refused (431, by hyper, before more is
//!   buffered), and a URI over `MAX_URI` with 414 and the error body (CONTRACTS.md §4.7).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

/// The limits of `serve`.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    pub header_read_timeout: Duration,
    /// Connections at once, before the descriptor budget lowers it.
    pub max_connections: usize,
    /// Descriptors to keep free for everything else (database, upstreams, files).
    pub reserved_descriptors: usize,
}

/// Fewest connections served whatever the descriptor budget says.
const MIN_CONNECTIONS: usize = 8;
/// Longest request head buffered, request line and headers together.
pub const MAX_HEAD: usize = 32 * 1024;
/// Longest request target.
pub const MAX_URI: usize = 8 * 1024;
/// How long a shutdown waits for requests in flight before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The cap that fits the process's descriptor limit (`RLIMIT_NOFILE`, soft).
pub fn connection_cap(limits: &ServeLimits) -> usize {
    let budget = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        .map(|n| n.saturating_sub(limits.reserved_descriptors));
    let cap = budget.map_or(limits.max_connections, |b| b.min(limits.max_connections));
    cap.max(MIN_CONNECTIONS)
}

/// One open connection, as the accept loop sees it.
struct Conn {
    opened: Instant,
    /// Requests being answered on it right now.
    in_flight: Arc<AtomicUsize>,
    /// Closes it at once (to make room).
    evict: watch::Sender<bool>,
}

#[derive(Default)]
struct Registry {
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Conn>>,
    /// Signalled when the last connection goes (for shutdown).
    emptied: tokio::sync::Notify,
}

impl Registry {
    /// Makes room for one more connection under `cap`: `false` when every connection is
    /// busy answering.
    fn admit(&self, cap: usize) -> bool {
        let conns = self.conns.lock().unwrap();
        conns.len() < cap || Self::evict_oldest_idle(&conns)
    }

    /// Closes the oldest connection with no request in flight: `false` if there is none.
    fn shed_idle(&self) -> bool {
        Self::evict_oldest_idle(&self.conns.lock().unwrap())
    }

    fn evict_oldest_idle(conns: &HashMap<u64, Conn>) -> bool {
        let idle = conns
            .values()
            .filter(|c| c.in_flight.load(Ordering::Relaxed) == 0 && !*c.evict.borrow())
            .min_by_key(|c| c.opened);
        match idle {
            Some(c) => {
                let _ = c.evict.send(true);
                true
            }
            None => false,
        }
    }

    fn add(&self, conn: Conn) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().unwrap().insert(id, conn);
        id
    }

    fn remove(&self, id: u64) {
        let mut conns = self.conns.lock().unwrap();
        conns.remove(&id);
        if conns.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// Waits until no connection is open.
    async fn all_closed(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            emptied.await;
        }
    }

    fn len(&self) -> usize {
        self.conns.lock().unwrap().len()
    }
}

/// A connection's place in the registry, given up when the last holder drops it: the
/// connection's task, and a WebSocket it was upgraded to.
struct Slot {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// What a request handler keeps to go on counting its connection once it is upgraded
/// (found in the request's extensions; `api::events` takes it into the WebSocket).
#[derive(Clone)]
pub struct Hold {
    slot: Arc<Slot>,
    in_flight: Arc<AtomicUsize>,
}

impl Hold {
    /// Keeps the connection counted, and busy (never closed to make room), for as long
    /// as the returned guard lives.
    pub fn busy(self) -> impl Send + 'static {
        (InFlight::enter(&self.in_flight), self.slot)
    }
}

/// Counts a request in flight for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in flight
/// finish (for at most `SHUTDOWN_GRACE`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut cap = connection_cap(&limits);
    tracing::info!(
        max_connections = cap,
        header_read_timeout_ms = limits.header_read_timeout.as_millis() as u64,
        "serving HTTP/1.1"
    );
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_HEAD)
        // A response (head and a small JSON body) is copied into one buffer and sent with
        // one write rather than a vectored one: the read benchmark went from 0.47-0.78 of
        // its baseline to 0.67-0.70 (bench/RESULTS.md).
        .writev(false);
    let builder = Arc::new(builder);
    let mut last_accept_error: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    let out_of_descriptors = matches!(
                        e.raw_os_error(),
                        Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
                            || code == rustix::io::Errno::NFILE.raw_os_error()
                    );
                    let shed = out_of_descriptors && registry.shed_idle();
                    if last_accept_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(error = %e, open = registry.len(), shed, "accept failed");
                        last_accept_error = Some(Instant::now());
                    }
                    // The closed connection gives its descriptor back within a moment.
                    let pause = if shed { 2 } else { 50 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // The descriptor limit may have been lowered since the start.
        let now_cap = connection_cap(&limits);
        if now_cap != cap {
            tracing::warn!(
                max_connections = now_cap,
                was = cap,
                "the descriptor limit changed"
            );
            cap = now_cap;
        }
        if !registry.admit(cap) {
            shed(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (evict, evicted) = watch::channel(false);
        let id = registry.add(Conn {
            opened: Instant::now(),
            in_flight: in_flight.clone(),
            evict,
        });
        let hold = Hold {
            slot: Arc::new(Slot {
                registry: registry.clone(),
                id,
            }),
            in_flight: in_flight.clone(),
        };
        let router = router.clone();
        let request_hold = hold.clone();
        let service =
            tower::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                let guard = InFlight::enter(&in_flight);
                let too_long = req
                    .uri()
                    .path_and_query()
                    .is_some_and(|pq| pq.as_str().len() > MAX_URI);
                // Only an upgrade can outlive its connection's task.
                if req.headers().contains_key(axum::http::header::UPGRADE) {
                    req.extensions_mut().insert(request_hold.clone());
                }
                let call = router.clone().oneshot(req.map(axum::body::Body::new));
                async move {
                    if too_long {
                        return Ok(uri_too_long());
                    }
                    let resp = call.await.map_err(|never: Infallible| match never {})?;
                    Ok::<_, Infallible>(busy_while_streaming(resp, guard))
                }
            });
        let conn = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .with_upgrades();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            run_connection(conn, stop, evicted).await;
            drop(hold);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, registry.all_closed()).await;
    Ok(())
}

/// An event stream keeps its connection busy (never evicted to make room) for as long as
/// its body runs, not only until its head is sent. Other bodies are left as they are.
fn busy_while_streaming(
    resp: axum::response::Response,
    guard: InFlight,
) -> axum::response::Response {
    use futures::StreamExt;
    let streaming = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        return resp;
    }
    resp.map(|body| {
        let chunks = body.into_data_stream().map(move |chunk| {
            let _busy = &guard;
            chunk
        });
        axum::body::Body::from_stream(chunks)
    })
}

/// Drives one connection: to its end, to a graceful close on shutdown, or to an abrupt
/// one when it is evicted to make room.
async fn run_connection<C>(
    conn: C,
    mut stop: watch::Receiver<bool>,
    mut evicted: watch::Receiver<bool>,
) where
    C: Future<Output = hyper::Result<()>> + GracefulClose,
{
    tokio::pin!(conn);
    tokio::select! {
        _ = &mut conn => {}
        _ = evicted.changed() => {}
        changed = stop.changed() => {
            if changed.is_ok() {
                conn.as_mut().close_gracefully();
            }
            let _ = (&mut conn).await;
        }
    }
}

/// A connection that can finish its request in flight and then close.
trait GracefulClose {
    fn close_gracefully(self: std::pin::Pin<&mut Self>);
}

impl<I, S> GracefulClose for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn close_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// 414 with the error body (CONTRACTS.md §4.7).
fn uri_too_long() -> axum::response::Response {
    let body = format!(
        r#"{{"error":"the request target is longer than {MAX_URI} bytes","code":"uri_too_long"}}"#
    );
    let mut resp = axum::response::Response::new(axum::body::Body::from(body));
    *resp.status_mut() = axum::http::StatusCode::URI_TOO_LONG;
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Refuses a connection quickly: a short 503 if the socket takes it at once, then close.
fn shed(stream: TcpStream) {
    const BODY: &str = r#"{"error":"the service is at its connection limit; try again shortly","code":"overloaded"}"#;
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(resp.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(age_ms: u64, busy: usize) -> (Conn, watch::Receiver<bool>) {
        let (evict, rx) = watch::channel(false);
        let conn = Conn {
            opened: Instant::now() - Duration::from_millis(age_ms),
            in_flight: Arc::new(AtomicUsize::new(busy)),
            evict,
        };
        (conn, rx)
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let registry = Registry::default();
        let (busy_old, busy_rx) = conn(3_000, 1);
        let (idle_old, idle_old_rx) = conn(2_000, 0);
        let (idle_new, idle_new_rx) = conn(1_000, 0);
        registry.add(busy_old);
        registry.add(idle_old);
        registry.add(idle_new);
        assert!(registry.admit(4), "under the cap nothing is closed");
        assert!(!*idle_old_rx.borrow());
        assert!(registry.admit(3));
        assert!(*idle_old_rx.borrow(), "the oldest idle one is closed");
        assert!(!*busy_rx.borrow(), "a busy one is never closed");
        assert!(registry.admit(3), "the next idle one goes next");
        assert!(*idle_new_rx.borrow());
        assert!(
            !registry.admit(3),
            "only busy ones are left: the newcomer is shed"
        );
        assert!(!*busy_rx.borrow());
    }

    #[test]
    fn an_upgraded_connection_stays_counted_and_busy_until_its_socket_goes() {
        let registry = Arc::new(Registry::default());
        let (c, evicted) = conn(1_000, 0);
        let in_flight = c.in_flight.clone();
        let id = registry.add(c);
        let hold = Hold {
            slot: Arc::new(Slot {
                registry: registry.clone(),
                id,
            }),
            in_flight,
        };
        // The handler keeps a hold; the connection's task then ends (the upgrade).
        let socket = hold.clone().busy();
        drop(hold);
        assert_eq!(registry.len(), 1, "still counted");
        assert!(!registry.admit(1), "busy: not closed to make room");
        assert!(!*evicted.borrow());
        drop(socket);
        assert_eq!(registry.len(), 0, "gone with its socket");
    }

    #[test]
    fn the_cap_leaves_the_reserved_descriptors_free() {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .expect("a finite descriptor limit") as usize;
        let limits = |max, reserved| ServeLimits {
            header_read_timeout: Duration::from_secs(1),
            max_connections: max,
            reserved_descriptors: reserved,
        };
        assert_eq!(
            connection_cap(&limits(usize::MAX, 100)),
            (soft - 100).max(MIN_CONNECTIONS)
        );
        assert_eq!(
            connection_cap(&limits(10, 0)),
            10.min(soft).max(MIN_CONNECTIONS)
        );
        assert_eq!(
            connection_cap(&limits(usize::MAX, usize::MAX)),
            MIN_CONNECTIONS
        );
    }
}

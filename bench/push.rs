//! `push`: as many concurrent SSE streams as the machine holds (aiming for `--users`),
//! then 1,000 state changes spread over those users; against the same users polling
//! `GET /my/node` every 5 s, in the same run. The service runs as its own process (the
//! release binary, against `fulfillment sim` in another), so its RSS and CPU are its own;
//! the clients here are raw sockets, a few kilobytes each.

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fulfillment::api::extract::mint_user_token;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Args, Db, INTERNAL, JWT, seed_active_nodes, verdict};

/// A child process, killed (by its pid) when dropped.
pub(super) struct Proc(pub(super) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(super) fn binary() -> String {
    let path = "target/release/fulfillment";
    assert!(
        std::path::Path::new(path).exists(),
        "{path} is built by bench/run (cargo build --release --bin fulfillment)"
    );
    path.into()
}

/// VmRSS of a process, in kB.
fn rss_kb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(f64::NAN)
}

/// User plus system CPU time of a process so far, in seconds (clock ticks of 1/100 s).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the state.
    f.get(10)
        .zip(f.get(11))
        .map_or(f64::NAN, |(u, s)| (u + s) / 100.0)
}

/// `fulfillment sim` on a free port, requiring the benchmarks' credentials; its URL.
pub(super) fn start_sim(extra: &[&str]) -> (Proc, String) {
    let sim_port = free_port();
    let sim = Proc(
        Command::new(binary())
            .args(["sim", "--listen", &format!("127.0.0.1:{sim_port}")])
            .args([
                "--admin-key",
                "bench-admin-key",
                "--internal-secret",
                INTERNAL,
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    (sim, format!("http://127.0.0.1:{sim_port}"))
}

/// `fulfillment serve` on `db` and port `port` against the simulators at `sim_url`, quiet,
/// with `env` over the configuration every benchmark shares (not started yet).
pub(super) fn service_command(
    db: &Db,
    sim_url: &str,
    port: u16,
    env: &[(&str, String)],
) -> Command {
    let mut cmd = Command::new(binary());
    cmd.arg("serve")
        .env_clear()
        .env("RUST_LOG", "warn")
        .env("DB_URL", &db.url)
        .env("JWT_SECRET", JWT)
        .env("INTERNAL_SECRET", INTERNAL)
        .env("HOSTING_SERVICE_URL", sim_url)
        .env("HOSTING_ADMIN_KEY", "bench-admin-key")
        .env("SUBSCRIPTION_SERVICE_URL", sim_url)
        .env("OTUN_MANAGER_URL", sim_url)
        .env("BIND_ADDR", "127.0.0.1")
        .env("SERVER_PORT", port.to_string())
        .env("METRICS_ADDR", "")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Starts `fulfillment sim` and the service on `db`; returns both and the service's port.
pub(super) async fn start_service(db: &Db, streams: usize) -> (Proc, Proc, u16) {
    let (sim, sim_url) = start_sim(&["--default-plan", "premium"]);
    let port = free_port();
    let env = [
        // Idle keep-alive connections are the per-connection baseline: keep them open.
        ("HEADER_READ_TIMEOUT_SECS", "300".to_owned()),
        ("SUBSCRIPTION_CACHE_SECS", "600".to_owned()),
        ("USER_RATE_PER_SEC", "1000000".to_owned()),
        ("USER_RATE_BURST", "1000000".to_owned()),
        ("MAX_CONNECTIONS", (streams * 2 + 1000).to_string()),
        ("EVENTS_MAX_STREAMS", (streams * 2).to_string()),
    ];
    let service = Proc(service_command(db, &sim_url, port, &env).spawn().unwrap());
    let http = fulfillment::upstream::http_client(Duration::from_secs(2));
    let ready = format!("http://127.0.0.1:{port}/ready");
    for _ in 0..300 {
        if http
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return (sim, service, port);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the service did not come up");
}

/// Opens one SSE stream and waits for its two initial documents.
pub(super) async fn open_stream(port: u16, token: &str) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let head = format!(
        "GET /api/v1/my/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while count(&seen, b"\nevent: ") + count(&seen, b"\r\nevent: ") < 2 {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("no initial documents"))??;
        if n == 0 {
            return Err(std::io::Error::other("closed"));
        }
        seen.extend_from_slice(&buf[..n]);
        if !seen.starts_with(b"HTTP/1.1 200") && seen.len() >= 12 {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&seen).into_owned(),
            ));
        }
    }
    Ok(s)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Reads a stream until it closes; the first `node` message after the user's change was
/// sent records its latency.
async fn follow(
    mut s: TcpStream,
    changed_at: Arc<AtomicU64>,
    latency_us: Arc<AtomicU64>,
    origin: Instant,
) {
    let mut buf = vec![0u8; 2048];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let sent = changed_at.load(Ordering::Acquire);
        if sent == 0 || latency_us.load(Ordering::Relaxed) != 0 {
            tail.clear();
            continue;
        }
        tail.extend_from_slice(&buf[..n]);
        if count(&tail, b"event: node") > 0 {
            let now = origin.elapsed().as_micros() as u64;
            latency_us.store(now.saturating_sub(sent).max(1), Ordering::Relaxed);
        }
        let keep = tail.len().saturating_sub(16);
        tail.drain(..keep);
    }
}

/// One user polling `GET /my/node` every 5 s until `until`, on a kept-alive connection
/// (made again if the service closes it).
async fn poll(
    port: u16,
    token: String,
    start_after: Duration,
    until: Instant,
    done: Arc<AtomicUsize>,
) {
    tokio::time::sleep(start_after).await;
    let head = format!(
        "GET /api/v1/my/node HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    let mut conn: Option<TcpStream> = None;
    while Instant::now() < until {
        let asked = Instant::now();
        if conn.is_none() {
            conn = TcpStream::connect(("127.0.0.1", port)).await.ok();
        }
        if let Some(s) = conn.as_mut() {
            match get(s, head.as_bytes()).await {
                Ok(true) => {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                _ => conn = None,
            }
        }
        tokio::time::sleep_until((asked + Duration::from_secs(5)).into()).await;
    }
}

/// One request on a kept-alive connection: whether it was answered 200.
async fn get(s: &mut TcpStream, head: &[u8]) -> std::io::Result<bool> {
    s.write_all(head).await?;
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed"));
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return Ok(head.starts_with("http/1.1 200"));
            }
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Opens one connection, makes one `GET /health` on it and keeps it open, idle.
async fn idle_connection(port: u16) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await?;
    if !buf[..n].starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other("not 200"));
    }
    Ok(s)
}

/// What an idle kept-alive HTTP/1.1 connection weighs in a fresh service, in kB: the part
/// of a stream's weight that is the connection's (hyper's buffers, its task).
async fn connection_kb(db: &Db, n: usize) -> f64 {
    let (_sim, service, port) = start_service(db, n).await;
    let pid = service.0.id();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = rss_kb(pid);
    let mut open = Vec::new();
    for _ in 0..n.div_ceil(100) {
        let batch = (0..100).map(|_| idle_connection(port));
        open.extend(
            futures::future::join_all(batch)
                .await
                .into_iter()
                .filter_map(Result::ok),
        );
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kb(pid);
    (after - before) / open.len().max(1) as f64
}

pub async fn push_bench(args: &Args, report: &mut String) {
    let users = args.users;
    let db = Db::create(&args.pg, "bench_push").await;
    seed_active_nodes(&db, users).await;
    let (_sim, service, port) = start_service(&db, users).await;
    let pid = service.0.id();
    let tokens: Vec<String> = (1..=users)
        .map(|i| mint_user_token(JWT, &format!("bench-user-{i}"), Duration::from_secs(3600)))
        .collect();
    // Warm the caches and the allocator with one read of each document per user, then idle.
    let http = fulfillment::upstream::http_client(Duration::from_secs(10));
    let base = format!("http://127.0.0.1:{port}");
    // Both documents: a stream reads both, and what the reads keep (the subscription
    // cache, the last answers) is the reads' memory, not the streams'.
    for path in ["/api/v1/my/node", "/api/v1/my/vpn"] {
        for chunk in tokens.chunks(200) {
            let reads = chunk
                .iter()
                .map(|t| http.get(format!("{base}{path}")).bearer_auth(t).send());
            for r in futures::future::join_all(reads).await {
                assert_eq!(r.unwrap().status(), 200);
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_before = rss_kb(pid);

    // Open the streams, 100 at a time, until all are open or one is refused.
    let origin = Instant::now();
    let changed: Vec<Arc<AtomicU64>> = (0..users).map(|_| Arc::default()).collect();
    let latency: Vec<Arc<AtomicU64>> = (0..users).map(|_| Arc::default()).collect();
    let mut readers = Vec::new();
    let mut refused = None;
    for (c, chunk) in tokens.chunks(100).enumerate() {
        let opens = chunk.iter().map(|t| open_stream(port, t));
        for (k, opened) in futures::future::join_all(opens)
            .await
            .into_iter()
            .enumerate()
        {
            match opened {
                Ok(s) => {
                    let i = c * 100 + k;
                    readers.push(tokio::spawn(follow(
                        s,
                        changed[i].clone(),
                        latency[i].clone(),
                        origin,
                    )));
                }
                Err(e) => refused = Some(e.to_string()),
            }
        }
        if refused.is_some() {
            break;
        }
    }
    let held = readers.len();
    // PostgreSQL's backends report their counts within 10 s of going idle: let the
    // opening's reads land before the idle window starts.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let rss_streams = rss_kb(pid);
    let per_stream_kb = (rss_streams - rss_before) / held.max(1) as f64;

    // Idle: CPU and database transactions with every stream open and nothing changing.
    // A whole re-read period (60 s), so the periodic re-reads are in it at their rate.
    let idle_secs = 60.0;
    let (cpu0, tx0) = (cpu_secs(pid), db.transactions().await);
    tokio::time::sleep(Duration::from_secs_f64(idle_secs)).await;
    let (cpu1, tx1) = (cpu_secs(pid), db.transactions().await);
    let idle_cpu = (cpu1 - cpu0) / idle_secs * 100.0;
    let idle_qps = (tx1 - tx0) as f64 / idle_secs;

    // 1,000 changes (a user deletes their node), 100 a second, spread over the users.
    let changes = 1_000.min(held);
    let step = held / changes;
    let tx_changes = db.transactions().await;
    let started = Instant::now();
    for k in 0..changes {
        let i = k * step;
        tokio::time::sleep_until((started + Duration::from_millis(10 * k as u64)).into()).await;
        changed[i].store(origin.elapsed().as_micros() as u64, Ordering::Release);
        let http = http.clone();
        let (url, token) = (format!("{base}/api/v1/my/node"), tokens[i].clone());
        tokio::spawn(async move {
            let r = http.delete(url).bearer_auth(token).send().await;
            assert!(
                r.is_ok_and(|r| r.status().is_success()),
                "the delete was accepted"
            );
        });
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline
        && (0..changes).any(|k| latency[k * step].load(Ordering::Relaxed) == 0)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let change_secs = started.elapsed().as_secs_f64();
    let change_qps = (db.transactions().await - tx_changes) as f64 / change_secs;
    let mut lat: Vec<f64> = (0..changes)
        .filter_map(|k| match latency[k * step].load(Ordering::Relaxed) {
            0 => None,
            us => Some(us as f64 / 1000.0),
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let delivered = lat.len();
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    for r in readers {
        r.abort();
    }
    // The service notices a client gone when its next keep-alive fails to write (15 s).
    tokio::time::sleep(Duration::from_secs(16)).await;

    // Baseline: the same users polling GET /my/node every 5 s, in the same run.
    let poll_secs = 30.0;
    let done = Arc::new(AtomicUsize::new(0));
    // Past the settling (11 s) and the window, with time to spare.
    let until = Instant::now() + Duration::from_secs_f64(11.0 + poll_secs + 5.0);
    let pollers: Vec<_> = tokens
        .iter()
        .take(held)
        .enumerate()
        .map(|(i, t)| {
            let spread = Duration::from_millis((i as u64 * 5_000) / held.max(1) as u64);
            tokio::spawn(poll(port, t.clone(), spread, until, done.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(11)).await;
    let (cpu0, tx0, n0) = (
        cpu_secs(pid),
        db.transactions().await,
        done.load(Ordering::Relaxed),
    );
    tokio::time::sleep(Duration::from_secs_f64(poll_secs)).await;
    let (cpu1, tx1, n1) = (
        cpu_secs(pid),
        db.transactions().await,
        done.load(Ordering::Relaxed),
    );
    let poll_cpu = (cpu1 - cpu0) / poll_secs * 100.0;
    let poll_qps = (tx1 - tx0) as f64 / poll_secs;
    let poll_rps = (n1 - n0) as f64 / poll_secs;
    for p in pollers {
        p.abort();
    }
    drop(service);
    let conn_kb = connection_kb(&db, held).await;
    db.drop().await;

    let _ = writeln!(
        report,
        "### push: {held} SSE streams held (of {users} asked{}), 1,000 changes at 100/s; \
         baseline: the same users polling every 5 s\n\n\
         | measure | value | target |\n|---|---|---|\n\
         | streams held | {held} | 10,000 |\n\
         | delivery, change sent to message received | p50 {p50:.1} ms, p99 {p99:.1} ms ({delivered} of {changes} within 15 s) | p99 < 500 ms: {} |\n\
         | service RSS per idle stream | {per_stream_kb:.1} kB ({:.0} MB before, {:.0} MB with the streams) | < 10 kB: {} |\n\
         | of which the HTTP/1.1 connection (an idle kept-alive one, in a fresh service) | {conn_kb:.1} kB | |\n\
         | service CPU, streams idle | {idle_cpu:.1}% of one core | near zero |\n\
         | service CPU, polling | {poll_cpu:.1}% of one core ({poll_rps:.0} req/s) | |\n\
         | database transactions/s: push idle, push during changes, polling | {idle_qps:.1}, {change_qps:.1}, {poll_qps:.1} | |\n\
         | ratio of database transactions/s, push idle / polling | {:.3} | |\n",
        refused
            .map(|e| format!("; the next was refused: {}", e.lines().next().unwrap_or("")))
            .unwrap_or_default(),
        verdict(delivered == changes && p99 < 500.0),
        rss_before / 1024.0,
        rss_streams / 1024.0,
        verdict(per_stream_kb < 10.0),
        idle_qps / poll_qps.max(f64::MIN_POSITIVE),
    );
}

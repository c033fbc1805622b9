//! `abuse`: the service's peak RSS, and whether `/health` still answers, under the attacks
//! of issue 23 (CONTRACTS.md §4.7), each against a fresh release binary on loopback:
//!
//! - `ws-fragments`: 3 users × 5 WebSockets, each sending 60 continuation frames of 1 MiB
//!   with no FIN;
//! - `sse-slots`: 820 users × 5 event streams at default settings;
//! - `ws-over-cap`: 50 WebSockets against `MAX_CONNECTIONS=30`;
//! - `heads`: 1,000 connections each sending 370 KB of an unfinished request head.
//!
//! The baseline is the same binary idle (its RSS after start). The attacks are bounded in
//! count and time and end by themselves.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fulfillment::api::extract::mint_user_token;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::push::{Proc, free_port, service_command, start_sim};
use super::{Args, Db, INTERNAL, JWT};

/// A service under attack: its process, port and the simulator beside it.
struct Target {
    _sim: Proc,
    service: Proc,
    port: u16,
}

impl Target {
    async fn start(db: &Db, env: &[(&str, &str)]) -> Target {
        let (sim, sim_url) = start_sim(&[]);
        let port = free_port();
        // The descriptor limit is this process's, raised to its hard limit (as a
        // production unit would set one).
        let env: Vec<_> = env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let service = Proc(service_command(db, &sim_url, port, &env).spawn().unwrap());
        let http = fulfillment::upstream::http_client(Duration::from_secs(2));
        for _ in 0..300 {
            let ready = http
                .get(format!("http://127.0.0.1:{port}/ready"))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Target {
                    _sim: sim,
                    service,
                    port,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the service did not come up");
    }

    fn pid(&self) -> u32 {
        self.service.0.id()
    }

    /// `/health` on ten fresh connections: how many answered 200 within 3 s.
    async fn health(&self) -> usize {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap();
        let mut ok = 0;
        for _ in 0..10 {
            let r = http
                .get(format!("http://127.0.0.1:{}/health", self.port))
                .send()
                .await;
            ok += usize::from(r.is_ok_and(|r| r.status().is_success()));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ok
    }
}

/// VmRSS or VmHWM of a process, in MiB.
fn mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(field))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Samples a process's RSS every 20 ms until stopped; the highest seen, in KiB.
fn sample_peak(pid: u32) -> (Arc<AtomicBool>, Arc<AtomicU64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let (s, p) = (stop.clone(), peak.clone());
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            p.fetch_max((mib(pid, "VmRSS:") * 1024.0) as u64, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    (stop, peak)
}

/// Opens a WebSocket on the event stream; `None` if the upgrade is refused.
async fn open_ws(port: u16, token: &str) -> Option<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let head = format!(
        "GET /api/v1/my/events/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.ok()?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    seen.starts_with(b"HTTP/1.1 101").then_some(s)
}

/// A client data frame header (masked with a zero key) for `len` bytes of payload.
fn frame_head(first: bool, len: u64) -> Vec<u8> {
    let opcode = if first { 0x01 } else { 0x00 };
    let mut h = vec![opcode, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

/// Sends `frames` fragments of 1 MiB, never finishing the message; stops when the server
/// closes. Returns the bytes it took.
async fn send_fragments(mut s: TcpStream, frames: usize) -> u64 {
    let chunk = vec![b'a'; 1 << 20];
    let mut sent = 0;
    for i in 0..frames {
        if s.write_all(&frame_head(i == 0, chunk.len() as u64))
            .await
            .is_err()
            || s.write_all(&chunk).await.is_err()
        {
            break;
        }
        sent += chunk.len() as u64;
    }
    // Hold the socket a moment, as an attacker would, then go.
    tokio::time::sleep(Duration::from_secs(1)).await;
    sent
}

struct Outcome {
    name: &'static str,
    what: String,
    idle_mib: f64,
    peak_mib: f64,
    after_mib: f64,
    health: usize,
}

async fn ws_fragments(db: &Db) -> Outcome {
    let t = Target::start(db, &[]).await;
    let idle = mib(t.pid(), "VmRSS:");
    let (stop, peak) = sample_peak(t.pid());
    let mut tasks = Vec::new();
    for u in 0..3 {
        let token = mint_user_token(JWT, &format!("abuse-ws-{u}"), Duration::from_secs(3600));
        for _ in 0..5 {
            if let Some(s) = open_ws(t.port, &token).await {
                tasks.push(tokio::spawn(send_fragments(s, 60)));
            }
        }
    }
    let opened = tasks.len();
    let mut taken = 0;
    for task in tasks {
        taken += task.await.unwrap();
    }
    let health = t.health().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    Outcome {
        name: "ws-fragments",
        what: format!(
            "{opened} WebSockets; the service took {} MiB of fragments",
            taken >> 20
        ),
        idle_mib: idle,
        peak_mib: peak.load(Ordering::Relaxed) as f64 / 1024.0,
        after_mib: mib(t.pid(), "VmRSS:"),
        health,
    }
}

async fn sse_slots(db: &Db) -> Outcome {
    let t = Target::start(db, &[]).await;
    let idle = mib(t.pid(), "VmRSS:");
    let (stop, peak) = sample_peak(t.pid());
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for u in 0..820 {
        let token = mint_user_token(JWT, &format!("abuse-sse-{u}"), Duration::from_secs(3600));
        for _ in 0..5 {
            let (gate, token, port) = (gate.clone(), token.clone(), t.port);
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                super::push::open_stream(port, &token).await.ok()
            }));
        }
    }
    let mut held = Vec::new();
    for task in tasks {
        held.extend(task.await.unwrap());
    }
    let health = t.health().await;
    let internal = internal_answers(t.port).await;
    stop.store(true, Ordering::Relaxed);
    let out = Outcome {
        name: "sse-slots",
        what: format!(
            "{} of 4,100 streams held; internal API answered: {internal}",
            held.len()
        ),
        idle_mib: idle,
        peak_mib: peak.load(Ordering::Relaxed) as f64 / 1024.0,
        after_mib: f64::NAN,
        health,
    };
    drop(held);
    out
}

async fn internal_answers(port: u16) -> bool {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    http.get(format!(
        "http://127.0.0.1:{port}/api/internal/users/nobody/resources"
    ))
    .header("x-internal-secret", INTERNAL)
    .send()
    .await
    .is_ok_and(|r| r.status().as_u16() < 500)
}

async fn ws_over_cap(db: &Db) -> Outcome {
    let t = Target::start(db, &[("MAX_CONNECTIONS", "30")]).await;
    let idle = mib(t.pid(), "VmRSS:");
    let (stop, peak) = sample_peak(t.pid());
    let mut held = Vec::new();
    for u in 0..10 {
        let token = mint_user_token(JWT, &format!("abuse-cap-{u}"), Duration::from_secs(3600));
        for _ in 0..5 {
            held.extend(open_ws(t.port, &token).await);
        }
    }
    let health = t.health().await;
    stop.store(true, Ordering::Relaxed);
    Outcome {
        name: "ws-over-cap",
        what: format!(
            "{} of 50 WebSockets held with MAX_CONNECTIONS=30",
            held.len()
        ),
        idle_mib: idle,
        peak_mib: peak.load(Ordering::Relaxed) as f64 / 1024.0,
        after_mib: f64::NAN,
        health,
    }
}

async fn heads(db: &Db) -> Outcome {
    let t = Target::start(db, &[("HEADER_READ_TIMEOUT_SECS", "30")]).await;
    let idle = mib(t.pid(), "VmRSS:");
    let (stop, peak) = sample_peak(t.pid());
    let line = format!("X-Pad: {}\r\n", "a".repeat(4000));
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (gate, line, port) = (gate.clone(), line.clone(), t.port);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
                return (0usize, None);
            };
            let mut sent = 0;
            if s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                .await
                .is_ok()
            {
                while sent < 370_000 && s.write_all(line.as_bytes()).await.is_ok() {
                    sent += line.len();
                }
            }
            (sent, Some(s))
        }));
    }
    let mut held = Vec::new();
    let mut taken = 0;
    for task in tasks {
        let (sent, s) = task.await.unwrap();
        taken += sent;
        held.extend(s);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let health = t.health().await;
    stop.store(true, Ordering::Relaxed);
    Outcome {
        name: "heads",
        what: format!(
            "1,000 unfinished heads; {} MiB written before the service refused",
            taken >> 20
        ),
        idle_mib: idle,
        peak_mib: peak.load(Ordering::Relaxed) as f64 / 1024.0,
        after_mib: f64::NAN,
        health,
    }
}

pub(super) async fn abuse_bench(args: &Args, report: &mut String) {
    // The attacks open thousands of sockets from this process.
    let _ = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .map(|max| {
            rustix::process::setrlimit(
                rustix::process::Resource::Nofile,
                rustix::process::Rlimit {
                    current: Some(max),
                    maximum: Some(max),
                },
            )
        });
    let db = Db::create(&args.pg, "bench_abuse").await;
    let mut outcomes = Vec::new();
    outcomes.push(ws_fragments(&db).await);
    outcomes.push(sse_slots(&db).await);
    outcomes.push(ws_over_cap(&db).await);
    outcomes.push(heads(&db).await);
    db.drop().await;
    let _ = writeln!(
        report,
        "### abuse: the service's RSS under the attacks of issue 23\n\n\
         | attack | what happened | idle RSS | peak RSS | peak / idle | RSS after | /health ok of 10 |\n\
         |---|---|---|---|---|---|---|"
    );
    for o in outcomes {
        let _ = writeln!(
            report,
            "| {} | {} | {:.1} MiB | {:.1} MiB | {:.1}× | {} | {} |",
            o.name,
            o.what,
            o.idle_mib,
            o.peak_mib,
            o.peak_mib / o.idle_mib,
            if o.after_mib.is_nan() {
                "".into()
            } else {
                format!("{:.1} MiB", o.after_mib)
            },
            o.health
        );
    }
    let _ = writeln!(report);
}

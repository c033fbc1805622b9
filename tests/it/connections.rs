//! Held-open sockets cannot take the service down: the real binary, under a lowered
//! descriptor limit (`prlimit` on its own child), keeps answering while a flood of
//! half-sent request heads is held, and closes idle connections by itself.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use fulfillment::sim::NodeTiming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::crash::free_port;
use crate::helpers::{Backend, SimServer, TestDb, test_env, wait_until};

pub(crate) struct Binary {
    pub child: Child,
    pub base: String,
    pub addr: String,
    pub log: std::path::PathBuf,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn start_limited(db: &TestDb, sims: &SimServer, nofile: u32) -> Binary {
    let port = free_port();
    let log = std::env::temp_dir().join(format!("ft-conn-{port}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("prlimit")
        .arg(format!("--nofile={nofile}:{nofile}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_fulfillment"))
        .arg("serve")
        .env_clear()
        .env("RUST_LOG", "info")
        .envs(test_env(&db.url, &sims.url))
        .env("SERVER_PORT", port.to_string())
        .env("HEADER_READ_TIMEOUT_SECS", "2")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("prlimit (util-linux) and the binary");
    let bin = Binary {
        child,
        base: format!("http://127.0.0.1:{port}"),
        addr: format!("127.0.0.1:{port}"),
        log,
    };
    let http = fulfillment::upstream::http_client(Duration::from_secs(5));
    let up = wait_until(Duration::from_secs(20), || async {
        http.get(format!("{}/ready", bin.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(up, "the service came up");
    bin
}

/// A fresh connection (no pooling) asking for `/health`, with a deadline.
pub(crate) async fn health(base: &str) -> Result<u16, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    match http.get(format!("{base}/health")).send().await {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) => Err(e.to_string()),
    }
}

/// 400 connections, each with half a request head, held open (at least 300 taken).
async fn hold_flood(addr: &str) -> Vec<TcpStream> {
    let mut flood = Vec::new();
    for _ in 0..400 {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            continue;
        };
        let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await;
        flood.push(s);
    }
    assert!(flood.len() >= 300, "the flood is held ({})", flood.len());
    flood
}

/// `/health` answers 200 on a fresh connection ten times in a row, a tenth of a second
/// apart.
async fn health_holds(base: &str, while_: &str) {
    for round in 0..10 {
        assert_eq!(health(base).await, Ok(200), "round {round}, {while_}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_half_open_connections_cannot_starve_the_service() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sims = SimServer::start(NodeTiming::default()).await;
    let bin = start_limited(&db, &sims, 300).await;

    // 400 connections, each with half a request head, held open: more than the service
    // has descriptors for.
    let flood = hold_flood(&bin.addr).await;
    health_holds(&bin.base, "with the flood held").await;

    // A connection that sends nothing is closed by the server after the header timeout
    // (2 s here), and so is one that sent half a head.
    let mut idle = TcpStream::connect(&bin.addr).await.unwrap();
    let mut half = TcpStream::connect(&bin.addr).await.unwrap();
    half.write_all(b"POST /api/internal/provision HTTP/1.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    for stream in [&mut idle, &mut half] {
        let mut buf = [0u8; 1024];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue, // a 408 or 503 before the close
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the server closed it");
    }
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before the timeout"
    );
    drop(flood);
    assert_eq!(health(&bin.base).await, Ok(200));
    let log = std::fs::read_to_string(&bin.log).unwrap();
    assert!(
        !log.contains("Too many open files"),
        "descriptors never ran out:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_limit_lowered_while_running_is_followed() {
    let db = TestDb::new(Backend::Sqlite).await;
    let sims = SimServer::start(NodeTiming::default()).await;
    let bin = start_limited(&db, &sims, 4096).await;
    // The operator (or the system) lowers the limit under the running process.
    let lowered = Command::new("prlimit")
        .args(["--pid", &bin.child.id().to_string(), "--nofile=300:300"])
        .status()
        .expect("prlimit (util-linux)");
    assert!(lowered.success());
    let _flood = hold_flood(&bin.addr).await;
    health_holds(&bin.base, "with the flood held under the lowered limit").await;
    let log = std::fs::read_to_string(&bin.log).unwrap();
    assert!(
        log.contains("the descriptor limit changed"),
        "the cap followed the limit:\n{log}"
    );
}

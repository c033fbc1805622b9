//! What running it where operators run it needs (issue 24): the image's health check is
//! `fulfillment health`, which asks `/ready` and answers by its exit status.

use std::process::Command;

use crate::crash::free_port;
use crate::helpers::{Backend, TestApp};

fn health(url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fulfillment"))
        .args(["health", "--url", url])
        .env_clear()
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_command_says_whether_the_service_is_ready() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let ready = health(&app.url("/ready"));
    assert!(
        ready.status.success(),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
    // Nothing listening: not ready, and it says why.
    let away = health(&format!("http://127.0.0.1:{}/ready", free_port()));
    assert_eq!(away.status.code(), Some(1));
    assert!(!away.stderr.is_empty());
    // An answer that is not a success: not ready.
    let missing = health(&app.url("/no-such-path"));
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
}

//! The real Prometheus (Debian's package) on loopback, scraping a running service and
//! loading `deploy/prometheus/alerts.yml`: it accepts the exposition, every rule evaluates
//! without error, every dashboard expression evaluates, and every series they query has
//! data. Bounded: Prometheus is stopped (by its pid) when the test ends.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, quiet_node, wait_until};

struct Prometheus {
    child: Child,
    base: String,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target: std::net::SocketAddr) -> Prometheus {
        let port = crate::crash::free_port();
        let dir = std::env::temp_dir().join(format!("ft-prometheus-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: fulfillment\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed (.ci/run installs Debian's prometheus package)");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: TempDir(dir),
        }
    }

    async fn query(&self, http: &reqwest::Client, expr: &str) -> Value {
        let resp = http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .await;
        match resp {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }
}

fn results(answer: &Value) -> usize {
    answer["data"]["result"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_service_and_evaluates_every_rule_and_panel() {
    let (app, id, token) = quiet_node(Backend::Sqlite, "u-prom").await;
    let stats = json!({"resource_id": id, "rx_bytes": 1, "tx_bytes": 1, "cpu_percent": 12.0,
        "mem_percent": 30.0, "load1": 0.2});
    let req = app
        .http
        .post(app.url("/api/callback/node/stats"))
        .bearer_auth(&token);
    assert_eq!(req.json(&stats).send().await.unwrap().status(), 200);
    let _stream = crate::sse_client::EventStream::open(&app, "u-prom").await;
    let prom = Prometheus::start(app.running().metrics_addr.unwrap());
    let http = &app.http;

    // Three scrapes at least, so that rates have two samples in any window.
    let scraped = wait_until(Duration::from_secs(60), || async {
        let a = prom
            .query(http, r#"count_over_time(up{job="fulfillment"}[1m])"#)
            .await;
        let up = prom.query(http, r#"up{job="fulfillment"}"#).await;
        let n = |v: &Value| {
            v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
        };
        n(&a).is_some_and(|n| n >= 3.0) && n(&up) == Some(1.0)
    })
    .await;
    assert!(scraped, "Prometheus scraped the service");

    // Every rule loaded and evaluated without error.
    let evaluated = wait_until(Duration::from_secs(30), || async {
        let rules: Value = match http.get(format!("{}/api/v1/rules", prom.base)).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => return false,
        };
        let all: Vec<&Value> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        all.len() == 6 && all.iter().all(|r| r["health"] == "ok")
    })
    .await;
    assert!(evaluated, "all six alert rules evaluate without error");

    // Every dashboard expression evaluates.
    let dashboard = crate::metrics::dashboard();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$job", ".*")
        })
        .collect();
    assert!(exprs.len() >= 15);
    for expr in &exprs {
        let answer = prom.query(http, expr).await;
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
    }
    // Every series they query has data in Prometheus.
    for name in crate::metrics::queried_names()
        .iter()
        .filter(|n| *n != "fulfillment_service")
    {
        let answer = prom
            .query(
                http,
                &format!(r#"{{__name__="{name}", job="fulfillment"}}"#),
            )
            .await;
        assert!(
            results(&answer) > 0,
            "{name} has data in Prometheus: {answer}"
        );
    }
    // And a panel shows what happened: one hosting node active.
    let active = prom
        .query(
            http,
            r#"fulfillment_resources{type="hosting_node",status="active"}"#,
        )
        .await;
    assert_eq!(active["data"]["result"][0]["value"][1], "1");
}

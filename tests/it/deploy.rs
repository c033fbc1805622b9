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

/// The rendered manifests (`deploy/kubernetes/render`), as JSON (PyYAML reads them; it
/// comes with kubernetes-validate, which `scripts/test` installs).
fn rendered() -> Vec<serde_json::Value> {
    let root = env!("CARGO_MANIFEST_DIR");
    let yaml = Command::new(format!("{root}/deploy/kubernetes/render"))
        .output()
        .expect("kubectl (scripts/test installs it)");
    assert!(
        yaml.status.success(),
        "{}",
        String::from_utf8_lossy(&yaml.stderr)
    );
    let mut to_json = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    to_json
        .stdin
        .take()
        .unwrap()
        .write_all(&yaml.stdout)
        .unwrap();
    let out = to_json.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn of_kind<'a>(objects: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("a {kind} is rendered"))
}

#[test]
fn the_deployment_keeps_two_pods_probes_them_and_runs_them_locked_down() {
    let objects = rendered();
    let deployment = of_kind(&objects, "Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let pod = &spec["template"]["spec"];
    // Longer than the service's shutdown (30 s for requests in flight, then the engine).
    assert!(pod["terminationGracePeriodSeconds"].as_i64().unwrap() > 30);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    for probe in ["startupProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/health", "{probe}");
    }
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    for kind in ["requests", "limits"] {
        assert!(container["resources"][kind]["memory"].is_string(), "{kind}");
        assert!(container["resources"][kind]["cpu"].is_string(), "{kind}");
    }
    // Configuration from the generated ConfigMap and the operator's Secret.
    let config = of_kind(&objects, "ConfigMap")["metadata"]["name"].clone();
    let from: Vec<_> = container["envFrom"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["configMapRef"]["name"]
                .as_str()
                .or(e["secretRef"]["name"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        from.contains(&config.as_str().unwrap().to_owned()),
        "{from:?}"
    );
    assert!(from.contains(&"fulfillment-secrets".to_owned()));
    // Never fewer than one pod through a voluntary disruption.
    assert_eq!(
        of_kind(&objects, "PodDisruptionBudget")["spec"]["minAvailable"],
        1
    );
}

#[test]
fn the_monitoring_objects_match_the_service_and_the_one_set_of_alert_rules() {
    let objects = rendered();
    let service = of_kind(&objects, "Service");
    let ports: Vec<_> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let monitor = of_kind(&objects, "ServiceMonitor");
    let scraped = monitor["spec"]["endpoints"][0]["port"].as_str().unwrap();
    assert!(ports.contains(&scraped), "{scraped} in {ports:?}");
    let labels = &service["metadata"]["labels"];
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&labels[k], v, "the monitor selects the service by {k}");
    }
    // The PrometheusRule is deploy/prometheus/alerts.yml, not a copy of it.
    let rule = of_kind(&objects, "PrometheusRule");
    let alerts = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yml"),
        ])
        .output()
        .unwrap();
    let alerts: serde_json::Value = serde_json::from_slice(&alerts.stdout).unwrap();
    assert_eq!(rule["spec"], alerts);
    assert!(!alerts["groups"][0]["rules"].as_array().unwrap().is_empty());
}

/// Pods of a new version start together, each applying the migrations at its start: they
/// take PostgreSQL's migration lock in turn, the first applies every migration once, and
/// all of them start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_starting_together_apply_the_migrations_once() {
    use sqlx::Connection;
    let admin = crate::helpers::pg_admin_url();
    let name = format!("ft_fresh_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::Executor::execute(
        &mut conn,
        sqlx::AssertSqlSafe(format!("create database {name}")),
    )
    .await
    .unwrap();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}");
    let starts = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { fulfillment::store::SqlStore::connect(&url, 2).await })
    });
    for started in futures::future::join_all(starts).await {
        assert!(started.unwrap().is_ok(), "every pod starts");
    }
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let (applied, failed): (i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where not success) from _sqlx_migrations",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    let shipped = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count() as i64;
    assert_eq!((applied, failed), (shipped, 0));
    drop(db);
    crate::helpers::drop_pg_database(&admin, &name);
}

#[test]
fn every_alert_names_its_runbook_and_the_runbook_has_its_section() {
    let root = env!("CARGO_MANIFEST_DIR");
    let rule = of_kind(&rendered(), "PrometheusRule").clone();
    let runbooks = std::fs::read_to_string(format!("{root}/docs/OPERATIONS.md")).unwrap();
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    assert!(!rules.is_empty());
    for r in rules {
        let name = r["alert"].as_str().unwrap();
        let url = r["annotations"]["runbook_url"].as_str().unwrap_or_default();
        assert_eq!(
            url,
            format!("docs/OPERATIONS.md#{}", name.to_lowercase()),
            "{name}"
        );
        // GitHub-style anchors: the heading, lower-cased.
        assert!(
            runbooks.contains(&format!("\n### {name}\n")),
            "docs/OPERATIONS.md has a section for {name}"
        );
    }
}

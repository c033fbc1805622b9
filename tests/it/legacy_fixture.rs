//! The Go service's database, made from `tests/fixtures/go_schema.sql` (written from
//! CONTRACTS.md §5.1) in a PostgreSQL database of the test's own, with its rows as the Go
//! service left them (`NULL`s, `''` node ids, duplicates…), and the import run as the real
//! binary.

#![allow(dead_code)]

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{drop_pg_database, pg_admin_url, test_env};

pub const GO_SCHEMA: &str = include_str!("../fixtures/go_schema.sql");

/// The Go service's database, dropped with the value.
pub struct GoDb {
    pub url: String,
    pub pool: PgPool,
    admin: String,
    name: String,
}

impl GoDb {
    pub async fn new() -> GoDb {
        let admin = pg_admin_url();
        let name = format!("go_{}", Uuid::new_v4().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .unwrap();
        sqlx::Executor::execute(
            &mut conn,
            sqlx::AssertSqlSafe(format!("create database {name}")),
        )
        .await
        .unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        let url = format!("{base}/{name}");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap();
        sqlx::raw_sql(GO_SCHEMA).execute(&pool).await.unwrap();
        GoDb {
            url,
            pool,
            admin,
            name,
        }
    }

    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await
            .unwrap();
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select count(*) from fulfillment.{table}"
        )))
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// A digest of every row of every table: the import must leave it as it was.
    pub async fn digest(&self) -> String {
        let mut all = String::new();
        for table in [
            "regions",
            "hosting_provisions",
            "vpn_provisions",
            "provision_logs",
        ] {
            let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "select t::text from fulfillment.{table} t order by t::text"
            )))
            .fetch_all(&self.pool)
            .await
            .unwrap();
            for (r,) in rows {
                all.push_str(&r);
                all.push('\n');
            }
        }
        all
    }

    pub async fn region(&self, code: &str, name: &str, available: Option<bool>) {
        sqlx::query(
            "insert into fulfillment.regions (code, name, provider, available) \
             values ($1, $2, 'lightsail', $3)",
        )
        .bind(code)
        .bind(name)
        .bind(available)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    pub async fn node(&self, n: &GoNode) -> Uuid {
        sqlx::query(
            "insert into fulfillment.hosting_provisions (id, subscription_id, user_id, \
             channel, hosting_node_id, provider, region, public_ip, api_port, api_key, \
             vless_port, ss_port, public_key, short_id, status, error_message, plan_tier, \
             traffic_limit, traffic_used, needs_cleanup, created_at, updated_at, ready_at, \
             deleted_at) values ($1::uuid, $2, $3, 'apple', $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)",
        )
        .bind(n.id.to_string())
        .bind(&n.subscription_id)
        .bind(&n.user_id)
        .bind(&n.hosting_node_id)
        .bind(&n.provider)
        .bind(&n.region)
        .bind(&n.public_ip)
        .bind(n.api_port)
        .bind(&n.api_key)
        .bind(n.vless_port)
        .bind(n.ss_port)
        .bind(&n.public_key)
        .bind(&n.short_id)
        .bind(&n.status)
        .bind(&n.error_message)
        .bind(&n.plan_tier)
        .bind(n.traffic_limit)
        .bind(n.traffic_used)
        .bind(n.needs_cleanup)
        .bind(n.created_at)
        .bind(n.updated_at)
        .bind(n.ready_at)
        .bind(n.deleted_at)
        .execute(&self.pool)
        .await
        .unwrap();
        n.id
    }

    pub async fn vpn(&self, v: &GoVpn) -> Uuid {
        sqlx::query(
            "insert into fulfillment.vpn_provisions (id, user_id, subscription_id, channel, \
             business_type, service_tier, otun_uuid, plan_tier, status, traffic_limit, \
             traffic_used, expire_at, email, device_id, granted_by, note, is_current, \
             created_at, updated_at) values ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
             $12, $13, $14, null, $15, $16, $17, $18)",
        )
        .bind(v.id.to_string())
        .bind(&v.user_id)
        .bind(&v.subscription_id)
        .bind(&v.channel)
        .bind(&v.business_type)
        .bind(&v.service_tier)
        .bind(&v.otun_uuid)
        .bind(&v.plan_tier)
        .bind(&v.status)
        .bind(v.traffic_limit)
        .bind(v.traffic_used)
        .bind(v.expire_at)
        .bind(&v.email)
        .bind(&v.device_id)
        .bind(&v.note)
        .bind(v.is_current)
        .bind(v.created_at)
        .bind(v.updated_at)
        .execute(&self.pool)
        .await
        .unwrap();
        v.id
    }

    pub async fn log(
        &self,
        provision_id: Uuid,
        kind: &str,
        action: &str,
        message: &str,
        at: DateTime<Utc>,
    ) -> Uuid {
        let id = Uuid::new_v4();
        sqlx::query(
            "insert into fulfillment.provision_logs (id, provision_id, provision_type, action, \
             status, message, metadata, created_at) values ($1::uuid, $2::uuid, $3, $4, 'ok', $5, \
             '{\"by\": \"go\"}', $6)",
        )
        .bind(id.to_string())
        .bind(provision_id.to_string())
        .bind(kind)
        .bind(action)
        .bind(message)
        .bind(at)
        .execute(&self.pool)
        .await
        .unwrap();
        id
    }
}

impl Drop for GoDb {
    fn drop(&mut self) {
        drop_pg_database(&self.admin, &self.name);
    }
}

pub fn days_ago(n: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::days(n)
}

/// A `hosting_provisions` row, as the import reads one.
pub use fulfillment::domain::legacy::LegacyNode as GoNode;
/// A `vpn_provisions` row.
pub use fulfillment::domain::legacy::LegacyVpnRow as GoVpn;

/// An active node as the Go service recorded it, serving from `node_id`.
pub fn active(user: &str, subscription: &str, node_id: &str) -> GoNode {
    GoNode {
        id: Uuid::new_v4(),
        subscription_id: subscription.into(),
        user_id: user.into(),
        hosting_node_id: Some(node_id.into()),
        provider: "lightsail".into(),
        region: "ap-northeast-1".into(),
        public_ip: Some("198.51.100.7".into()),
        api_port: Some(8080),
        api_key: Some(format!("agent-key-{node_id}")),
        vless_port: Some(443),
        ss_port: Some(8388),
        public_key: Some("go-public-key".into()),
        short_id: Some("go-sid".into()),
        status: "active".into(),
        error_message: None,
        plan_tier: "premium".into(),
        traffic_limit: None,
        traffic_used: Some(0),
        needs_cleanup: false,
        created_at: days_ago(40),
        updated_at: days_ago(40),
        ready_at: Some(days_ago(40)),
        deleted_at: None,
    }
}

/// A row in `status` that got no further than the Go service's placeholders.
pub fn bare(user: &str, subscription: &str, status: &str, node_id: &str) -> GoNode {
    GoNode {
        public_ip: None,
        api_port: None,
        api_key: None,
        vless_port: None,
        ss_port: None,
        public_key: None,
        short_id: None,
        status: status.into(),
        ready_at: None,
        traffic_used: None,
        ..active(user, subscription, node_id)
    }
}

/// A paid, current VPN row.
pub fn paid(user: &str, subscription: &str, account: &str) -> GoVpn {
    GoVpn {
        id: Uuid::new_v4(),
        user_id: user.into(),
        subscription_id: Some(subscription.into()),
        channel: Some("apple".into()),
        business_type: "subscription".into(),
        service_tier: "premium".into(),
        otun_uuid: Some(account.into()),
        plan_tier: Some("premium".into()),
        status: "active".into(),
        traffic_limit: Some(500 * (1 << 30)),
        traffic_used: Some(0),
        expire_at: Some(days_ago(-5)),
        email: Some(format!("{user}@example.com")),
        device_id: None,
        note: None,
        is_current: true,
        created_at: Some(days_ago(20)),
        updated_at: Some(days_ago(20)),
    }
}

/// A trial on `device`.
pub fn trial(user: &str, device: &str, account: &str) -> GoVpn {
    GoVpn {
        subscription_id: None,
        channel: Some("trial".into()),
        business_type: "trial".into(),
        service_tier: "standard".into(),
        plan_tier: Some("basic".into()),
        device_id: Some(device.into()),
        ..paid(user, "", account)
    }
}

/// What one run of `fulfillment import-legacy` did.
#[derive(Debug)]
pub struct ImportRun {
    pub code: Option<i32>,
    /// The `--json` report, when it printed one.
    pub report: Option<Value>,
    pub stdout: String,
    pub stderr: String,
}

/// The binary's environment for an import into `db_url`: secrets as the service has them,
/// and upstream URLs that answer nothing (the import must call none).
pub fn import_env(db_url: &str) -> Vec<(&'static str, String)> {
    let mut env = test_env(db_url, "http://127.0.0.1:9");
    env.push(("RUST_LOG", "warn".into()));
    env
}

/// Runs the real binary: `fulfillment import-legacy --from <go> <args…>`.
pub async fn import(db_url: &str, go: &GoDb, args: &[&str]) -> ImportRun {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fulfillment"));
    cmd.arg("import-legacy")
        .arg("--from")
        .arg(&go.url)
        .args(args)
        .env_clear()
        .envs(import_env(db_url));
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("the binary is built by cargo test");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = serde_json::from_str(stdout.trim()).ok();
    ImportRun {
        code: out.status.code(),
        report,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An import that must succeed with `--json`; its report.
pub async fn import_ok(db_url: &str, go: &GoDb, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let run = import(db_url, go, &all).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    // Exactly one JSON object on standard output.
    assert_eq!(run.stdout.trim().lines().count(), 1, "{}", run.stdout);
    run.report.expect("a JSON report")
}

/// The kinds of the report's findings that name `id`.
pub fn findings_of(report: &Value, id: Uuid) -> Vec<String> {
    let id = id.to_string();
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["ids"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i == id.as_str())
        })
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

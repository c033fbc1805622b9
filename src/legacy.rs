//! The Go service's database (CONTRACTS.md §5.1), read for the cut-over: the adapter of
//! `ports::legacy::LegacySource`. Its connections are read-only (the session refuses
//! writes), every table is checked before it is read, and rows stream in the order the
//! import needs them, so a database of millions of rows is read in bounded memory.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Executor, PgPool};
use std::str::FromStr;
use uuid::Uuid;

use crate::domain::legacy::{LegacyLog, LegacyNode, LegacyVpnRow};
use crate::ports::legacy::{LegacyCounts, LegacyError, LegacySource, LegacyStream};
use crate::ports::store::Region;

/// Every column the import reads, by table. `needs_cleanup` (the Go service's migration
/// 007) may be missing: it then reads as false.
const TABLES: &[(&str, &[&str])] = &[
    ("regions", &["code", "name", "provider", "available"]),
    (
        "hosting_provisions",
        &[
            "id",
            "subscription_id",
            "user_id",
            "hosting_node_id",
            "provider",
            "region",
            "public_ip",
            "api_port",
            "api_key",
            "vless_port",
            "ss_port",
            "public_key",
            "short_id",
            "status",
            "error_message",
            "plan_tier",
            "traffic_limit",
            "traffic_used",
            "created_at",
            "updated_at",
            "ready_at",
            "deleted_at",
        ],
    ),
    (
        "vpn_provisions",
        &[
            "id",
            "user_id",
            "subscription_id",
            "channel",
            "business_type",
            "service_tier",
            "otun_uuid",
            "plan_tier",
            "status",
            "traffic_limit",
            "traffic_used",
            "expire_at",
            "email",
            "device_id",
            "note",
            "is_current",
            "created_at",
            "updated_at",
        ],
    ),
    (
        "provision_logs",
        &[
            "id",
            "provision_id",
            "action",
            "status",
            "message",
            "created_at",
        ],
    ),
];

/// The Go service's database, read-only.
pub struct LegacyDb {
    pool: PgPool,
    schema: String,
    /// Whether `hosting_provisions.needs_cleanup` exists (learned by `check`).
    needs_cleanup: std::sync::atomic::AtomicBool,
}

impl LegacyDb {
    /// Connects to the Go service's database; `schema` is where its tables are.
    pub async fn connect(url: &str, schema: &str) -> Result<Self, LegacyError> {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(LegacyError::Unreadable(
                format!("schema {schema:?} is not a plain identifier").into(),
            ));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| LegacyError::Unreadable(e.into()))?
            .application_name("fulfillment-import-legacy")
            // Each table is one statement read as it streams, for as long as the import
            // runs: never a "slow statement" worth a warning.
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(std::time::Duration::from_secs(10))
            // Whatever happens, this connection cannot change the Go service's data.
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("set session characteristics as transaction read only")
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(unreadable)?;
        Ok(LegacyDb {
            pool,
            schema: schema.to_owned(),
            needs_cleanup: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn table(&self, name: &str) -> String {
        format!("\"{}\".\"{name}\"", self.schema)
    }

    fn stream<'a, R, T>(
        &'a self,
        sql: String,
        table: &'static str,
        convert: fn(R) -> Result<T, String>,
    ) -> LegacyStream<'a, T>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin + 'a,
        T: Send + 'a,
    {
        sqlx::query_as::<_, R>(AssertSqlSafe(sql))
            .fetch(&self.pool)
            .map_err(unreadable)
            .and_then(move |row| async move {
                convert(row).map_err(|detail| LegacyError::BadRow { table, detail })
            })
            .boxed()
    }
}

fn unreadable(e: sqlx::Error) -> LegacyError {
    LegacyError::Unreadable(e.into())
}

fn uuid(text: &str) -> Result<Uuid, String> {
    Uuid::parse_str(text).map_err(|e| format!("id {text:?}: {e}"))
}

#[async_trait]
impl LegacySource for LegacyDb {
    async fn check(&self) -> Result<LegacyCounts, LegacyError> {
        let columns: Vec<(String, String)> = sqlx::query_as(
            "select table_name::text, column_name::text from information_schema.columns \
             where table_schema = $1",
        )
        .bind(&self.schema)
        .fetch_all(&self.pool)
        .await
        .map_err(unreadable)?;
        let has = |t: &str, c: Option<&str>| {
            columns
                .iter()
                .any(|(table, column)| table == t && c.is_none_or(|c| c == column))
        };
        for (table, needed) in TABLES {
            if !has(table, None) {
                return Err(LegacyError::MissingTable(format!(
                    "{}.{table}",
                    self.schema
                )));
            }
            if let Some(column) = needed.iter().find(|c| !has(table, Some(c))) {
                return Err(LegacyError::MissingColumn {
                    table: format!("{}.{table}", self.schema),
                    column: (*column).to_owned(),
                });
            }
        }
        let cleanup = has("hosting_provisions", Some("needs_cleanup"));
        self.needs_cleanup
            .store(cleanup, std::sync::atomic::Ordering::Relaxed);
        let count = |table: &str| {
            let sql = format!("select count(*) from {}", self.table(table));
            async move {
                sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql))
                    .fetch_one(&self.pool)
                    .await
                    .map(|n| n.max(0) as u64)
                    .map_err(unreadable)
            }
        };
        Ok(LegacyCounts {
            nodes: count("hosting_provisions").await?,
            vpn_rows: count("vpn_provisions").await?,
            logs: count("provision_logs").await?,
        })
    }

    async fn regions(&self) -> Result<Vec<Region>, LegacyError> {
        let sql = format!(
            "select code::text, name::text, provider::text, coalesce(available, true) \
             from {} order by code",
            self.table("regions")
        );
        let rows: Vec<(String, String, String, bool)> = sqlx::query_as(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(unreadable)?;
        Ok(rows
            .into_iter()
            .map(|(code, name, provider, available)| Region {
                code,
                name,
                provider,
                available,
            })
            .collect())
    }

    fn nodes(&self) -> LegacyStream<'_, LegacyNode> {
        let cleanup = if self
            .needs_cleanup
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            "coalesce(needs_cleanup, false)"
        } else {
            "false"
        };
        let sql = format!(
            "select id::text as id, subscription_id::text as subscription_id, \
             user_id::text as user_id, hosting_node_id::text as hosting_node_id, \
             provider::text as provider, region::text as region, public_ip::text as public_ip, \
             api_port::int4 as api_port, api_key::text as api_key, \
             vless_port::int4 as vless_port, ss_port::int4 as ss_port, \
             public_key::text as public_key, short_id::text as short_id, \
             status::text as status, error_message::text as error_message, \
             plan_tier::text as plan_tier, traffic_limit::int8 as traffic_limit, \
             traffic_used::int8 as traffic_used, {cleanup} as needs_cleanup, \
             created_at::timestamptz as created_at, updated_at::timestamptz as updated_at, \
             ready_at::timestamptz as ready_at, deleted_at::timestamptz as deleted_at \
             from {} order by subscription_id, created_at, id",
            self.table("hosting_provisions")
        );
        self.stream(sql, "hosting_provisions", NodeRow::into_domain)
    }

    fn vpn_rows(&self) -> LegacyStream<'_, LegacyVpnRow> {
        let sql = format!(
            "select id::text as id, user_id::text as user_id, \
             subscription_id::text as subscription_id, channel::text as channel, \
             business_type::text as business_type, service_tier::text as service_tier, \
             otun_uuid::text as otun_uuid, plan_tier::text as plan_tier, \
             status::text as status, traffic_limit::int8 as traffic_limit, \
             traffic_used::int8 as traffic_used, expire_at::timestamptz as expire_at, \
             email::text as email, device_id::text as device_id, note::text as note, \
             is_current, created_at::timestamptz as created_at, \
             updated_at::timestamptz as updated_at \
             from {} order by user_id, created_at, id",
            self.table("vpn_provisions")
        );
        self.stream(sql, "vpn_provisions", VpnRow::into_domain)
    }

    fn logs(&self) -> LegacyStream<'_, LegacyLog> {
        let sql = format!(
            "select id::text as id, provision_id::text as provision_id, action::text as action, \
             status::text as status, message::text as message, \
             created_at::timestamptz as created_at from {}",
            self.table("provision_logs")
        );
        self.stream(sql, "provision_logs", LogRow::into_domain)
    }
}

type Time = chrono::DateTime<chrono::Utc>;

#[derive(sqlx::FromRow)]
struct NodeRow {
    id: String,
    subscription_id: String,
    user_id: String,
    hosting_node_id: Option<String>,
    provider: String,
    region: String,
    public_ip: Option<String>,
    api_port: Option<i32>,
    api_key: Option<String>,
    vless_port: Option<i32>,
    ss_port: Option<i32>,
    public_key: Option<String>,
    short_id: Option<String>,
    status: String,
    error_message: Option<String>,
    plan_tier: String,
    traffic_limit: Option<i64>,
    traffic_used: Option<i64>,
    needs_cleanup: bool,
    created_at: Time,
    updated_at: Time,
    ready_at: Option<Time>,
    deleted_at: Option<Time>,
}

impl NodeRow {
    fn into_domain(self) -> Result<LegacyNode, String> {
        Ok(LegacyNode {
            id: uuid(&self.id)?,
            subscription_id: self.subscription_id,
            user_id: self.user_id,
            hosting_node_id: self.hosting_node_id,
            provider: self.provider,
            region: self.region,
            public_ip: self.public_ip,
            api_port: self.api_port,
            api_key: self.api_key,
            vless_port: self.vless_port,
            ss_port: self.ss_port,
            public_key: self.public_key,
            short_id: self.short_id,
            status: self.status,
            error_message: self.error_message,
            plan_tier: self.plan_tier,
            traffic_limit: self.traffic_limit,
            traffic_used: self.traffic_used,
            needs_cleanup: self.needs_cleanup,
            created_at: self.created_at,
            updated_at: self.updated_at,
            ready_at: self.ready_at,
            deleted_at: self.deleted_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct VpnRow {
    id: String,
    user_id: String,
    subscription_id: Option<String>,
    channel: Option<String>,
    business_type: String,
    service_tier: String,
    otun_uuid: Option<String>,
    plan_tier: Option<String>,
    status: String,
    traffic_limit: Option<i64>,
    traffic_used: Option<i64>,
    expire_at: Option<Time>,
    email: Option<String>,
    device_id: Option<String>,
    note: Option<String>,
    is_current: bool,
    created_at: Option<Time>,
    updated_at: Option<Time>,
}

impl VpnRow {
    fn into_domain(self) -> Result<LegacyVpnRow, String> {
        Ok(LegacyVpnRow {
            id: uuid(&self.id)?,
            user_id: self.user_id,
            subscription_id: self.subscription_id,
            channel: self.channel,
            business_type: self.business_type,
            service_tier: self.service_tier,
            otun_uuid: self.otun_uuid,
            plan_tier: self.plan_tier,
            status: self.status,
            traffic_limit: self.traffic_limit,
            traffic_used: self.traffic_used,
            expire_at: self.expire_at,
            email: self.email,
            device_id: self.device_id,
            note: self.note,
            is_current: self.is_current,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct LogRow {
    id: String,
    provision_id: String,
    action: Option<String>,
    status: Option<String>,
    message: Option<String>,
    created_at: Time,
}

impl LogRow {
    fn into_domain(self) -> Result<LegacyLog, String> {
        Ok(LegacyLog {
            id: uuid(&self.id)?,
            provision_id: uuid(&self.provision_id)?,
            action: self.action,
            status: self.status,
            message: self.message,
            created_at: self.created_at,
        })
    }
}

//! The sections of the configuration, each read from its own variables.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;

use super::env::{DAY, Env, HOUR, WEEK};
use super::secret::{Secret, redact};
use crate::api::limits::RateLimitConfig;
use crate::app::{AppConfig, VpnSettings};
use crate::domain::usage::{PeriodPolicy, VpnTrafficReset};
use crate::engine::{Backoff, EngineConfig, RetentionConfig, SweepConfig, TrafficConfig};

/// The HTTP server.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub bind: IpAddr,
    pub port: u16,
    /// Our URL as nodes reach it (for their callbacks); defaults to the local address.
    pub public_url: Option<String>,
    /// Longest a request may take before it is answered 503 (`REQUEST_TIMEOUT_SECS`).
    pub request_timeout: Duration,
    /// How long a client may take to send a request head, and how long a kept-alive
    /// connection may sit idle (`HEADER_READ_TIMEOUT_SECS`).
    pub header_read_timeout: Duration,
    /// Connections served at once (`MAX_CONNECTIONS`); also kept below the descriptor
    /// limit, so the database and the upstreams always have descriptors left.
    pub max_connections: usize,
    /// Where `GET /metrics` is served (`METRICS_ADDR`; empty: nowhere).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// How long the gauges derived from the database are reused between scrapes
    /// (`METRICS_CACHE_SECS`).
    pub metrics_cache: Duration,
    /// The product's name as the user's pages show it (`PRODUCT_NAME`).
    pub product_name: String,
}

impl HttpConfig {
    pub fn read(env: &mut Env, demo: bool) -> Self {
        let bind = match env.get("BIND_ADDR").map(|v| v.parse()) {
            None if demo => std::net::Ipv4Addr::LOCALHOST.into(),
            None => std::net::Ipv4Addr::UNSPECIFIED.into(),
            Some(Ok(ip)) => ip,
            Some(Err(_)) => {
                env.error("BIND_ADDR must be an IP address");
                std::net::Ipv4Addr::LOCALHOST.into()
            }
        };
        HttpConfig {
            bind,
            port: env.port("SERVER_PORT", 8014),
            public_url: env.get("PUBLIC_URL"),
            request_timeout: env.secs("REQUEST_TIMEOUT_SECS", secs(30), (0.1, HOUR)),
            header_read_timeout: env.secs("HEADER_READ_TIMEOUT_SECS", secs(10), (0.1, 300.0)),
            max_connections: env.count("MAX_CONNECTIONS", 4096, 1_000_000) as usize,
            metrics_addr: match env.get_or_empty("METRICS_ADDR").as_deref() {
                None => Some(([127, 0, 0, 1], 9464).into()),
                Some("") => None,
                Some(addr) => addr.parse().ok().or_else(|| {
                    env.error(
                        "METRICS_ADDR must be an address and port (127.0.0.1:9464), or empty",
                    );
                    None
                }),
            },
            metrics_cache: env.secs("METRICS_CACHE_SECS", secs(5), (0.0, HOUR)),
            product_name: match env.get("PRODUCT_NAME") {
                None => "Fulfillment".into(),
                Some(name) if name.chars().count() <= 60 && !name.chars().any(char::is_control) => {
                    name
                }
                Some(_) => {
                    env.error(
                        "PRODUCT_NAME must be at most 60 characters, with no control characters",
                    );
                    String::new()
                }
            },
        }
    }
}

/// The database.
#[derive(Clone)]
pub struct DbConfig {
    pub url: String,
    /// PostgreSQL pool size of this process (`DB_MAX_CONNECTIONS`).
    pub max_connections: u32,
}

impl std::fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConfig")
            .field("url", &redact(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl DbConfig {
    pub fn read(env: &mut Env) -> (Self, bool) {
        let url = env.either("DB_URL", "DATABASE_URL");
        let given = url.is_some();
        let db = DbConfig {
            url: url.unwrap_or_else(|| "sqlite://fulfillment-demo.db".into()),
            max_connections: env.count("DB_MAX_CONNECTIONS", 16, 1_000),
        };
        (db, given)
    }
}

/// The secrets the API checks callers with.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// Signs and checks users' tokens (`JWT_SECRET`).
    pub jwt: Secret,
    /// Shared with the subscription service and the VPN manager (`INTERNAL_SECRET`).
    pub internal: Secret,
    /// Signs and checks operators' tokens instead of `jwt` (`OPERATOR_JWT_SECRET`).
    pub operator_jwt: Option<Secret>,
    /// The audience users' tokens must name, when set (`JWT_AUDIENCE`); unset, any `aud`
    /// is accepted, as the deployed service did.
    pub jwt_audience: Option<String>,
}

/// The three upstream services.
#[derive(Debug, Clone)]
pub struct UpstreamsConfig {
    pub hosting_url: Option<Url>,
    pub hosting_admin_key: Secret,
    pub subscription_url: Option<Url>,
    pub otun_url: Option<Url>,
    /// Longest one upstream call may take.
    pub timeout: Duration,
    /// Calls in flight at once toward each upstream service.
    pub max_in_flight: usize,
    /// CA certificates (PEM) trusted for the upstreams' `https`, beside the system's
    /// (`UPSTREAM_CA_FILE`).
    pub ca_file: Option<std::path::PathBuf>,
}

impl UpstreamsConfig {
    pub fn read(env: &mut Env) -> Self {
        UpstreamsConfig {
            hosting_url: env.url("HOSTING_SERVICE_URL"),
            hosting_admin_key: Secret::new(env.get("HOSTING_ADMIN_KEY").unwrap_or_default()),
            subscription_url: env.url("SUBSCRIPTION_SERVICE_URL"),
            otun_url: env.url("OTUN_MANAGER_URL"),
            timeout: env.secs("UPSTREAM_TIMEOUT_SECS", secs(10), (0.05, 600.0)),
            max_in_flight: env.count("UPSTREAM_MAX_IN_FLIGHT", 64, 10_000) as usize,
            ca_file: env
                .get_or_empty("UPSTREAM_CA_FILE")
                .filter(|p| !p.is_empty())
                .map(Into::into),
        }
    }
}

/// Per-user request limits.
pub fn read_limits(env: &mut Env) -> RateLimitConfig {
    RateLimitConfig {
        per_second: env.count("USER_RATE_PER_SEC", 10, 1_000_000),
        burst: env.count("USER_RATE_BURST", 30, 1_000_000),
        node_creates_per_minute: env.count("NODE_CREATES_PER_MIN", 5, 1_000_000),
    }
}

/// What the use cases need, with the VPN section.
pub fn read_app(env: &mut Env, otun_url: Option<&Url>) -> AppConfig {
    let subscribe_base = env.url("VPN_SUBSCRIBE_BASE_URL");
    if let (Some(public), Some(internal)) = (&subscribe_base, otun_url)
        && public.host_str() == internal.host_str()
        && public.port_or_known_default() == internal.port_or_known_default()
    {
        env.error(
            "VPN_SUBSCRIBE_BASE_URL must not point at the VPN manager (OTUN_MANAGER_URL is internal)",
        );
    }
    AppConfig {
        default_region: env
            .get("HOSTING_DEFAULT_REGION")
            .unwrap_or_else(|| "us-east-1".into()),
        cloud_provider: env
            .get("HOSTING_CLOUD_PROVIDER")
            .unwrap_or_else(|| "lightsail".into()),
        subscription_ttl: env.secs("SUBSCRIPTION_CACHE_SECS", secs(30), (0.0, DAY)),
        last_known_max_age: env.secs("LAST_KNOWN_READ_SECS", secs(900), (0.0, WEEK)),
        vpn: VpnSettings {
            wait: env.secs("VPN_WAIT_SECS", secs(3), (0.0, 60.0)),
            subscribe_base: subscribe_base.map(|u| u.to_string()),
            traffic_reset: env.choice(
                "VPN_TRAFFIC_RESET",
                &VpnTrafficReset::NAMES,
                VpnTrafficReset::default(),
            ),
        },
        events_max_streams: env.count("EVENTS_MAX_STREAMS", 10_000, 1_000_000) as usize,
        max_nodes_per_subscription: env.count("MAX_NODES_PER_SUBSCRIPTION", 10, 1_000),
        migrations_per_day: env.count("MIGRATIONS_PER_DAY", 3, 10_000),
        read_model_users: env.amount("READ_MODEL_USERS", 10_000, 1_000_000),
        traffic_period: env.choice(
            "NODE_TRAFFIC_PERIOD",
            &PeriodPolicy::NAMES,
            PeriodPolicy::default(),
        ),
    }
}

/// The engine, over its own defaults (`EngineConfig::new`). Its node callback URL is
/// filled in when the server knows its address.
pub fn read_engine(env: &mut Env) -> EngineConfig {
    let d = EngineConfig::new(String::new());
    EngineConfig {
        lease: env.secs("ENGINE_LEASE_SECS", d.lease, (0.1, HOUR)),
        fallback_poll: env.secs("ENGINE_POLL_SECS", d.fallback_poll, (0.01, HOUR)),
        node_poll: env.secs("NODE_POLL_SECS", d.node_poll, (0.01, HOUR)),
        ready_timeout: env.secs("NODE_READY_TIMEOUT_SECS", d.ready_timeout, (1.0, WEEK)),
        backoff: Backoff {
            base: env.secs("RETRY_BASE_SECS", d.backoff.base, (0.0, HOUR)),
            max: env.secs("RETRY_MAX_SECS", d.backoff.max, (0.0, DAY)),
        },
        node_api_port: i32::from(env.port("NODE_API_PORT", d.node_api_port as u16)),
        traffic: TrafficConfig {
            interval: env.secs("VPN_SYNC_INTERVAL_SECS", d.traffic.interval, (1.0, WEEK)),
            rate: env.count("VPN_SYNC_RATE", d.traffic.rate, 1_000_000_000),
        },
        sweep: SweepConfig {
            interval: env.secs("ORPHAN_SWEEP_INTERVAL_SECS", d.sweep.interval, (1.0, WEEK)),
            grace: env.secs("ORPHAN_GRACE_SECS", d.sweep.grace, (0.0, 30.0 * DAY)),
            max_per_run: env.amount("ORPHAN_SWEEP_MAX", d.sweep.max_per_run, 100_000),
            dry_run: env.flag("ORPHAN_SWEEP_DRY_RUN"),
        },
        retention: RetentionConfig {
            idempotency: env.hours("IDEMPOTENCY_RETENTION_HOURS", d.retention.idempotency),
            outbox: env.hours("OUTBOX_RETENTION_HOURS", d.retention.outbox),
            usage_days: env.count("USAGE_RETENTION_DAYS", d.retention.usage_days, 36_500),
            interval: env.secs("RETENTION_INTERVAL_SECS", d.retention.interval, (1.0, DAY)),
        },
        ..d
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

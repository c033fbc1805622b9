//! Configuration from the environment (and a `.env` file), as `CONTRACTS.md` §3 names it.
//! With nothing configured the service runs as a demo; otherwise every secret and upstream
//! must be given, and a missing or weak one stops startup with a message naming it.

use std::path::Path;
use std::time::Duration;

use reqwest::Url;

/// Shortest secret accepted outside demo mode.
pub const MIN_SECRET_LEN: usize = 32;

const HOUR: f64 = 3600.0;
const DAY: f64 = 24.0 * HOUR;
const WEEK: f64 = 7.0 * DAY;

/// Variables whose presence means "this is a real deployment".
const DEPLOYMENT_VARS: [&str; 8] = [
    "DB_URL",
    "DATABASE_URL",
    "JWT_SECRET",
    "JWT_SECRET_KEY",
    "INTERNAL_SECRET",
    "HOSTING_SERVICE_URL",
    "SUBSCRIPTION_SERVICE_URL",
    "OTUN_MANAGER_URL",
];

#[derive(Debug, Clone)]
pub struct Config {
    /// Demo mode: SQLite, in-process simulators, generated secrets.
    pub demo: bool,
    pub db_url: String,
    pub jwt_secret: String,
    pub internal_secret: String,
    pub hosting_url: Option<Url>,
    pub hosting_admin_key: String,
    pub cloud_provider: String,
    pub default_region: String,
    pub subscription_url: Option<Url>,
    pub otun_url: Option<Url>,
    pub bind: std::net::IpAddr,
    pub port: u16,
    pub node_api_port: i32,
    /// Our URL as nodes reach it (for their callbacks); defaults to the local address.
    pub public_url: Option<String>,
    pub ready_timeout: Duration,
    pub upstream_timeout: Duration,
    /// Longest a request may take before it is answered 503 (`REQUEST_TIMEOUT_SECS`).
    pub request_timeout: Duration,
    pub subscription_ttl: Duration,
    /// How old a user read's last answer may be to be served while the database is
    /// unavailable (`LAST_KNOWN_READ_SECS`; 0 turns it off).
    pub last_known_max_age: Duration,
    pub node_poll: Duration,
    pub lease: Duration,
    pub fallback_poll: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long a VPN request waits for the VPN manager before answering `pending`.
    pub vpn_wait: Duration,
    /// How often VPN traffic is read from the VPN manager.
    pub vpn_sync_interval: Duration,
    /// At most this many VPN manager reads per second during a traffic sync.
    pub vpn_sync_rate: u32,
    /// Public base URL of VPN subscription links; never the VPN manager's own URL.
    pub vpn_subscribe_base: Option<String>,
    pub orphan_sweep_interval: Duration,
    pub orphan_grace: Duration,
    pub orphan_max_per_run: usize,
    pub orphan_dry_run: bool,
    pub rate_limits: crate::api::limits::RateLimitConfig,
    /// Calls in flight at once toward each upstream service.
    pub upstream_max_in_flight: usize,
    /// PostgreSQL pool size of this process (`DB_MAX_CONNECTIONS`).
    pub db_max_connections: u32,
    /// How long a client may take to send a request head, and how long a kept-alive
    /// connection may sit idle (`HEADER_READ_TIMEOUT_SECS`).
    pub header_read_timeout: Duration,
    /// Connections served at once (`MAX_CONNECTIONS`); also kept below the descriptor
    /// limit, so the database and the upstreams always have descriptors left.
    pub max_connections: usize,
    /// How long a finished `Idempotency-Key` is remembered (`IDEMPOTENCY_RETENTION_HOURS`).
    pub idempotency_retention: Duration,
    /// How long a delivered callback is kept (`OUTBOX_RETENTION_HOURS`).
    pub outbox_retention: Duration,
    /// How often the retention job runs (`RETENTION_INTERVAL_SECS`).
    pub retention_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    /// Reads the process environment, after loading `.env` if there is one.
    pub fn from_process_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `get` (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut errors = Vec::new();
        let demo = match get("DEMO").as_deref() {
            Some("1" | "true" | "yes") => true,
            Some(_) => false,
            None => DEPLOYMENT_VARS.iter().all(|k| get(k).is_none()),
        };
        let either = |a: &str, b: &str| get(a).or_else(|| get(b));
        // Every duration is range-checked here, so nothing later (time arithmetic, timers)
        // can meet an absurd one.
        let secs =
            |k: &str, default: u64, (min, max): (f64, f64), errors: &mut Vec<String>| match get(k)
                .map(|v| v.parse::<f64>())
            {
                None => Duration::from_secs(default),
                Some(Ok(v)) if v.is_finite() && (min..=max).contains(&v) => {
                    Duration::from_secs_f64(v)
                }
                Some(_) => {
                    errors.push(format!(
                        "{k} must be a number of seconds from {min} to {max}"
                    ));
                    Duration::from_secs(default)
                }
            };
        let hours = |k: &str, default: u64, errors: &mut Vec<String>| match get(k)
            .map(|v| v.parse::<f64>())
        {
            None => Duration::from_secs(default * 3600),
            Some(Ok(v)) if v.is_finite() && (0.0..=24.0 * 3650.0).contains(&v) => {
                Duration::from_secs_f64(v * HOUR)
            }
            Some(_) => {
                errors.push(format!("{k} must be a number of hours from 0 to 87600"));
                Duration::from_secs(default * 3600)
            }
        };
        let url = |k: &str, errors: &mut Vec<String>| -> Option<Url> {
            let v = get(k)?;
            match Url::parse(&v) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
                _ => {
                    errors.push(format!("{k} must be an http(s) URL, got {v:?}"));
                    None
                }
            }
        };
        let port = |k: &str, default: u16, errors: &mut Vec<String>| -> u16 {
            match get(k).map(|v| v.parse::<u16>()) {
                None => default,
                Some(Ok(p)) => p,
                Some(Err(_)) => {
                    errors.push(format!("{k} must be a port number"));
                    default
                }
            }
        };

        let db_url = either("DB_URL", "DATABASE_URL");
        let jwt_secret = either("JWT_SECRET", "JWT_SECRET_KEY");
        let internal_secret = get("INTERNAL_SECRET");
        let hosting_url = url("HOSTING_SERVICE_URL", &mut errors);
        let subscription_url = url("SUBSCRIPTION_SERVICE_URL", &mut errors);
        let otun_url = url("OTUN_MANAGER_URL", &mut errors);
        let hosting_admin_key = get("HOSTING_ADMIN_KEY");

        if !demo {
            for (name, value) in [
                ("JWT_SECRET", &jwt_secret),
                ("INTERNAL_SECRET", &internal_secret),
            ] {
                match value {
                    None => errors.push(format!("{name} is required")),
                    Some(s) if s.chars().count() < MIN_SECRET_LEN => errors.push(format!(
                        "{name} is too short ({} characters; at least {MIN_SECRET_LEN})",
                        s.chars().count()
                    )),
                    Some(_) => {}
                }
            }
            if db_url.is_none() {
                errors.push("DB_URL is required (postgres://… or sqlite://…)".into());
            }
            for (name, present) in [
                ("HOSTING_SERVICE_URL", hosting_url.is_some()),
                ("SUBSCRIPTION_SERVICE_URL", subscription_url.is_some()),
                ("OTUN_MANAGER_URL", otun_url.is_some()),
                ("HOSTING_ADMIN_KEY", hosting_admin_key.is_some()),
            ] {
                if !present && !errors.iter().any(|e| e.starts_with(name)) {
                    errors.push(format!("{name} is required"));
                }
            }
        }

        let bind = match get("BIND_ADDR").map(|v| v.parse()) {
            None if demo => std::net::Ipv4Addr::LOCALHOST.into(),
            None => std::net::Ipv4Addr::UNSPECIFIED.into(),
            Some(Ok(ip)) => ip,
            Some(Err(_)) => {
                errors.push("BIND_ADDR must be an IP address".into());
                std::net::Ipv4Addr::LOCALHOST.into()
            }
        };
        let vpn_subscribe_base = url("VPN_SUBSCRIBE_BASE_URL", &mut errors);
        if let (Some(public), Some(internal)) = (&vpn_subscribe_base, &otun_url)
            && public.host_str() == internal.host_str()
            && public.port_or_known_default() == internal.port_or_known_default()
        {
            errors.push(
                "VPN_SUBSCRIBE_BASE_URL must not point at the VPN manager (OTUN_MANAGER_URL is internal)"
                    .into(),
            );
        }
        let count = |k: &str, default: u32, max: u32, errors: &mut Vec<String>| -> u32 {
            match get(k).map(|v| v.parse::<u32>()) {
                None => default,
                Some(Ok(v)) if (1..=max).contains(&v) => v,
                Some(_) => {
                    errors.push(format!("{k} must be a whole number from 1 to {max}"));
                    default
                }
            }
        };
        let rate_limits = crate::api::limits::RateLimitConfig {
            per_second: count("USER_RATE_PER_SEC", 10, 1_000_000, &mut errors),
            burst: count("USER_RATE_BURST", 30, 1_000_000, &mut errors),
            node_creates_per_minute: count("NODE_CREATES_PER_MIN", 5, 1_000_000, &mut errors),
        };
        let upstream_max_in_flight =
            count("UPSTREAM_MAX_IN_FLIGHT", 64, 10_000, &mut errors) as usize;
        let db_max_connections = count("DB_MAX_CONNECTIONS", 16, 1_000, &mut errors);
        let request_timeout = secs("REQUEST_TIMEOUT_SECS", 30, (0.1, HOUR), &mut errors);
        let config = Config {
            demo,
            db_url: db_url.unwrap_or_else(|| "sqlite://fulfillment-demo.db".into()),
            jwt_secret: jwt_secret.unwrap_or_default(),
            internal_secret: internal_secret.unwrap_or_default(),
            hosting_url,
            hosting_admin_key: hosting_admin_key.unwrap_or_default(),
            cloud_provider: get("HOSTING_CLOUD_PROVIDER").unwrap_or_else(|| "lightsail".into()),
            default_region: get("HOSTING_DEFAULT_REGION").unwrap_or_else(|| "us-east-1".into()),
            subscription_url,
            otun_url,
            bind,
            port: port("SERVER_PORT", 8014, &mut errors),
            node_api_port: i32::from(port("NODE_API_PORT", 8080, &mut errors)),
            public_url: get("PUBLIC_URL"),
            ready_timeout: secs("NODE_READY_TIMEOUT_SECS", 600, (1.0, WEEK), &mut errors),
            upstream_timeout: secs("UPSTREAM_TIMEOUT_SECS", 10, (0.05, 600.0), &mut errors),
            request_timeout,
            subscription_ttl: secs("SUBSCRIPTION_CACHE_SECS", 30, (0.0, DAY), &mut errors),
            last_known_max_age: secs("LAST_KNOWN_READ_SECS", 900, (0.0, WEEK), &mut errors),
            node_poll: secs("NODE_POLL_SECS", 5, (0.01, HOUR), &mut errors),
            lease: secs("ENGINE_LEASE_SECS", 15, (0.1, HOUR), &mut errors),
            fallback_poll: secs("ENGINE_POLL_SECS", 5, (0.01, HOUR), &mut errors),
            backoff_base: secs("RETRY_BASE_SECS", 1, (0.0, HOUR), &mut errors),
            backoff_max: secs("RETRY_MAX_SECS", 300, (0.0, DAY), &mut errors),
            vpn_wait: secs("VPN_WAIT_SECS", 3, (0.0, 60.0), &mut errors),
            vpn_subscribe_base: vpn_subscribe_base.map(|u| u.to_string()),
            orphan_sweep_interval: secs(
                "ORPHAN_SWEEP_INTERVAL_SECS",
                600,
                (1.0, WEEK),
                &mut errors,
            ),
            orphan_grace: secs("ORPHAN_GRACE_SECS", 1800, (0.0, 30.0 * DAY), &mut errors),
            orphan_max_per_run: match get("ORPHAN_SWEEP_MAX").map(|v| v.parse::<usize>()) {
                None => 10,
                Some(Ok(v)) if v <= 100_000 => v,
                Some(_) => {
                    errors.push("ORPHAN_SWEEP_MAX must be a whole number from 0 to 100000".into());
                    10
                }
            },
            rate_limits,
            upstream_max_in_flight,
            db_max_connections,
            header_read_timeout: secs("HEADER_READ_TIMEOUT_SECS", 10, (0.1, 300.0), &mut errors),
            max_connections: count("MAX_CONNECTIONS", 4096, 1_000_000, &mut errors) as usize,
            idempotency_retention: hours("IDEMPOTENCY_RETENTION_HOURS", 24, &mut errors),
            outbox_retention: hours("OUTBOX_RETENTION_HOURS", 168, &mut errors),
            retention_interval: secs("RETENTION_INTERVAL_SECS", 3600, (1.0, DAY), &mut errors),
            orphan_dry_run: match get("ORPHAN_SWEEP_DRY_RUN").as_deref() {
                None | Some("" | "0" | "false") => false,
                Some("1" | "true") => true,
                Some(_) => {
                    errors.push("ORPHAN_SWEEP_DRY_RUN must be true or false".into());
                    false
                }
            },
            vpn_sync_interval: secs("VPN_SYNC_INTERVAL_SECS", 300, (1.0, WEEK), &mut errors),
            vpn_sync_rate: count("VPN_SYNC_RATE", 50, 1_000_000_000, &mut errors),
        };
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(errors))
        }
    }

    /// Fills in the demo's secrets: generated once and kept beside the demo database, so
    /// tokens printed by one run (or by `fulfillment token`) keep working in the next.
    pub fn with_demo_secrets(mut self, dir: &Path) -> std::io::Result<Self> {
        if !self.demo {
            return Ok(self);
        }
        let path = dir.join("fulfillment-demo.secrets");
        let (jwt, internal) = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut lines = text.lines().map(str::to_owned);
                (
                    lines.next().unwrap_or_default(),
                    lines.next().unwrap_or_default(),
                )
            }
            Err(_) => (String::new(), String::new()),
        };
        let fresh = || hex::encode(rand::random::<[u8; 24]>());
        let jwt = if jwt.len() >= MIN_SECRET_LEN {
            jwt
        } else {
            fresh()
        };
        let internal = if internal.len() >= MIN_SECRET_LEN {
            internal
        } else {
            fresh()
        };
        std::fs::write(&path, format!("{jwt}\n{internal}\n"))?;
        if self.jwt_secret.is_empty() {
            self.jwt_secret = jwt;
        }
        if self.internal_secret.is_empty() {
            self.internal_secret = internal;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests;

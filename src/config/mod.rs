//! Configuration from the environment (and a `.env` file), as `CONTRACTS.md` §3 names it,
//! in sections: the HTTP server, the database, the secrets, the upstreams, the request
//! limits, the use cases (with the VPN's settings) and the engine (with the traffic sync,
//! the sweep and retention). With nothing configured the service runs as a demo;
//! otherwise every secret and upstream must be given, and a missing or weak one stops
//! startup with a message naming it.

mod env;
mod secret;
mod sections;

use std::path::Path;

pub use secret::{Secret, redact};
pub use sections::{DbConfig, HttpConfig, Secrets, UpstreamsConfig};

use crate::api::limits::RateLimitConfig;
use crate::app::AppConfig;
use crate::engine::EngineConfig;
use env::Env;

/// Shortest secret accepted outside demo mode.
pub const MIN_SECRET_LEN: usize = 32;

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

/// The whole configuration. `Debug` prints no secret and no database password.
#[derive(Debug, Clone)]
pub struct Config {
    /// Demo mode: SQLite, in-process simulators, generated secrets.
    pub demo: bool,
    pub http: HttpConfig,
    pub db: DbConfig,
    pub secrets: Secrets,
    pub upstreams: UpstreamsConfig,
    pub limits: RateLimitConfig,
    pub app: AppConfig,
    pub engine: EngineConfig,
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
        let mut env = Env::new(&get);
        let demo = match env.get("DEMO").as_deref() {
            Some("1" | "true" | "yes") => true,
            Some(_) => false,
            None => DEPLOYMENT_VARS.iter().all(|k| env.get(k).is_none()),
        };
        let jwt = env.either("JWT_SECRET", "JWT_SECRET_KEY");
        let internal = env.get("INTERNAL_SECRET");
        let operator_jwt = env.get("OPERATOR_JWT_SECRET").filter(|s| !s.is_empty());
        let jwt_audience = env.get("JWT_AUDIENCE").filter(|s| !s.trim().is_empty());
        if let Some(s) = &operator_jwt
            && s.chars().count() < MIN_SECRET_LEN
        {
            env.error(format!(
                "OPERATOR_JWT_SECRET is too short ({} characters; at least {MIN_SECRET_LEN})",
                s.chars().count()
            ));
        }
        let upstreams = UpstreamsConfig::read(&mut env);
        let (db, db_given) = DbConfig::read(&mut env);
        if !demo {
            require_deployment(
                &mut env,
                &upstreams,
                db_given,
                [("JWT_SECRET", &jwt), ("INTERNAL_SECRET", &internal)],
            );
        }
        let config = Config {
            demo,
            http: HttpConfig::read(&mut env, demo),
            app: sections::read_app(&mut env, upstreams.otun_url.as_ref()),
            limits: sections::read_limits(&mut env),
            engine: sections::read_engine(&mut env),
            db,
            upstreams,
            secrets: Secrets {
                jwt: Secret::new(jwt.unwrap_or_default()),
                internal: Secret::new(internal.unwrap_or_default()),
                operator_jwt: operator_jwt.map(Secret::new),
                jwt_audience,
            },
        };
        if env.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(env.errors))
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
        if self.secrets.jwt.is_empty() {
            self.secrets.jwt = Secret::new(jwt);
        }
        if self.secrets.internal.is_empty() {
            self.secrets.internal = Secret::new(internal);
        }
        Ok(self)
    }
}

/// A deployment names its database, every upstream and strong secrets.
fn require_deployment(
    env: &mut Env,
    upstreams: &UpstreamsConfig,
    db_given: bool,
    secrets: [(&str, &Option<String>); 2],
) {
    for (name, value) in secrets {
        match value {
            None => env.error(format!("{name} is required")),
            Some(s) if s.chars().count() < MIN_SECRET_LEN => env.error(format!(
                "{name} is too short ({} characters; at least {MIN_SECRET_LEN})",
                s.chars().count()
            )),
            Some(_) => {}
        }
    }
    if !db_given {
        env.error("DB_URL is required (postgres://… or sqlite://…)");
    }
    for (name, present) in [
        ("HOSTING_SERVICE_URL", upstreams.hosting_url.is_some()),
        (
            "SUBSCRIPTION_SERVICE_URL",
            upstreams.subscription_url.is_some(),
        ),
        ("OTUN_MANAGER_URL", upstreams.otun_url.is_some()),
        ("HOSTING_ADMIN_KEY", !upstreams.hosting_admin_key.is_empty()),
    ] {
        if !present && !env.errors.iter().any(|e| e.starts_with(name)) {
            env.error(format!("{name} is required"));
        }
    }
}

#[cfg(test)]
mod tests;

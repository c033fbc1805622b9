//! Configuration: what is read, what is refused, and the demo.

use super::*;
use std::collections::HashMap;
use std::time::Duration;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

const GOOD: [(&str, &str); 7] = [
    ("DB_URL", "postgres://localhost/x"),
    ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
    ("INTERNAL_SECRET", "fedcba9876543210fedcba9876543210"),
    ("HOSTING_SERVICE_URL", "http://hosting:8080"),
    ("HOSTING_ADMIN_KEY", "admin"),
    ("SUBSCRIPTION_SERVICE_URL", "http://subs:8080"),
    ("OTUN_MANAGER_URL", "http://otun:8080"),
];

#[test]
fn nothing_configured_is_the_demo() {
    let c = config(&[]).unwrap();
    assert!(c.demo);
    assert_eq!(c.db.url, "sqlite://fulfillment-demo.db");
    assert_eq!(c.http.port, 8014);
    assert!(c.http.bind.is_loopback());
}

#[test]
fn a_full_configuration_is_a_deployment() {
    let c = config(&GOOD).unwrap();
    assert!(!c.demo);
    assert_eq!(c.engine.node_api_port, 8080);
    assert_eq!(c.engine.ready_timeout, Duration::from_secs(600));
}

#[test]
fn aliases_are_read() {
    let mut vars: Vec<_> = GOOD
        .iter()
        .filter(|(k, _)| *k != "DB_URL" && *k != "JWT_SECRET")
        .cloned()
        .collect();
    vars.push(("DATABASE_URL", "sqlite://x.db"));
    vars.push(("JWT_SECRET_KEY", "0123456789abcdef0123456789abcdef"));
    let c = config(&vars).unwrap();
    assert_eq!(c.db.url, "sqlite://x.db");
    assert_eq!(c.secrets.jwt.expose(), "0123456789abcdef0123456789abcdef");
}

#[test]
fn an_empty_or_short_secret_refuses_to_start() {
    for (name, value) in [
        ("INTERNAL_SECRET", ""),
        ("INTERNAL_SECRET", "short"),
        ("JWT_SECRET", "   "),
    ] {
        let vars: Vec<_> = GOOD
            .iter()
            .map(|&(k, v)| if k == name { (k, value) } else { (k, v) })
            .collect();
        let err = config(&vars).unwrap_err().to_string();
        assert!(err.contains(name), "{name}={value:?}: {err}");
    }
}

#[test]
fn a_missing_upstream_url_refuses_to_start() {
    for missing in [
        "HOSTING_SERVICE_URL",
        "SUBSCRIPTION_SERVICE_URL",
        "OTUN_MANAGER_URL",
        "HOSTING_ADMIN_KEY",
    ] {
        let vars: Vec<_> = GOOD
            .iter()
            .filter(|(k, _)| *k != missing)
            .cloned()
            .collect();
        let err = config(&vars).unwrap_err().to_string();
        assert!(err.contains(missing), "{err}");
    }
    let vars: Vec<_> = GOOD
        .iter()
        .map(|&(k, v)| {
            if k == "HOSTING_SERVICE_URL" {
                (k, "ftp://x")
            } else {
                (k, v)
            }
        })
        .collect();
    assert!(
        config(&vars)
            .unwrap_err()
            .to_string()
            .contains("http(s) URL")
    );
}

#[test]
fn tuning_is_read_and_nonsense_refused() {
    let c = config(&GOOD).unwrap();
    assert_eq!(c.http.request_timeout, Duration::from_secs(30));
    let mut vars = GOOD.to_vec();
    vars.push(("REQUEST_TIMEOUT_SECS", "2.5"));
    assert_eq!(
        config(&vars).unwrap().http.request_timeout,
        Duration::from_millis(2500)
    );
    for bad in ["0", "-1", "soon"] {
        let mut vars = GOOD.to_vec();
        vars.push(("REQUEST_TIMEOUT_SECS", bad));
        let err = config(&vars).unwrap_err().to_string();
        assert!(err.contains("REQUEST_TIMEOUT_SECS"), "{bad}: {err}");
    }
}

#[test]
fn every_duration_and_count_is_range_checked_naming_the_variable() {
    let absurd = [
        ("REQUEST_TIMEOUT_SECS", "1e300"),
        ("UPSTREAM_TIMEOUT_SECS", "1e20"),
        ("ENGINE_LEASE_SECS", "1e13"),
        ("RETRY_MAX_SECS", "1e13"),
        ("RETRY_BASE_SECS", "-1"),
        ("NODE_POLL_SECS", "0"),
        ("ENGINE_POLL_SECS", "inf"),
        ("NODE_READY_TIMEOUT_SECS", "NaN"),
        ("VPN_WAIT_SECS", "1e9"),
        ("VPN_SYNC_INTERVAL_SECS", "0"),
        ("ORPHAN_SWEEP_INTERVAL_SECS", "1e100"),
        ("ORPHAN_GRACE_SECS", "1e100"),
        ("LAST_KNOWN_READ_SECS", "1e100"),
        ("SUBSCRIPTION_CACHE_SECS", "1e100"),
        ("HEADER_READ_TIMEOUT_SECS", "0"),
        ("RETENTION_INTERVAL_SECS", "1e30"),
        ("IDEMPOTENCY_RETENTION_HOURS", "1e30"),
        ("OUTBOX_RETENTION_HOURS", "-3"),
        ("DB_MAX_CONNECTIONS", "4000000000"),
        ("UPSTREAM_MAX_IN_FLIGHT", "0"),
        ("MAX_CONNECTIONS", "99999999"),
        ("VPN_SYNC_RATE", "0"),
        ("ORPHAN_SWEEP_MAX", "18446744073709551615"),
        ("USER_RATE_PER_SEC", "4294967295"),
        ("USAGE_RETENTION_DAYS", "0"),
        ("NODE_TRAFFIC_PERIOD", "weekly"),
        ("VPN_TRAFFIC_RESET", "always"),
    ];
    for (name, value) in absurd {
        let mut vars = GOOD.to_vec();
        vars.push((name, value));
        let err = config(&vars).unwrap_err().to_string();
        assert!(err.contains(name), "{name}={value}: {err}");
    }
    let mut vars = GOOD.to_vec();
    vars.extend([
        ("ENGINE_LEASE_SECS", "3600"),
        ("IDEMPOTENCY_RETENTION_HOURS", "0.5"),
    ]);
    let c = config(&vars).unwrap();
    assert_eq!(c.engine.lease, Duration::from_secs(3600));
    assert_eq!(c.engine.retention.idempotency, Duration::from_secs(1800));
    assert_eq!(c.http.header_read_timeout, Duration::from_secs(10));
}

#[test]
fn traffic_periods_are_monthly_and_renewals_keep_vpn_usage_unless_told() {
    use crate::domain::usage::{PeriodPolicy, VpnTrafficReset};
    let c = config(&GOOD).unwrap();
    assert_eq!(c.app.traffic_period, PeriodPolicy::Month);
    assert_eq!(c.app.vpn.traffic_reset, VpnTrafficReset::Never);
    assert_eq!(c.engine.retention.usage_days, 400);
    let mut vars = GOOD.to_vec();
    vars.extend([
        ("NODE_TRAFFIC_PERIOD", "none"),
        ("VPN_TRAFFIC_RESET", "on_renewal"),
        ("USAGE_RETENTION_DAYS", "31"),
    ]);
    let c = config(&vars).unwrap();
    assert_eq!(c.app.traffic_period, PeriodPolicy::None);
    assert_eq!(c.app.vpn.traffic_reset, VpnTrafficReset::OnRenewal);
    assert_eq!(c.engine.retention.usage_days, 31);
    let mut vars = GOOD.to_vec();
    vars.push(("NODE_TRAFFIC_PERIOD", "weekly"));
    let err = config(&vars).unwrap_err().to_string();
    assert!(
        err.contains("NODE_TRAFFIC_PERIOD must be one of month, none"),
        "{err}"
    );
}

#[test]
fn partial_configuration_is_not_silently_a_demo() {
    let err = config(&[("DB_URL", "postgres://localhost/x")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("JWT_SECRET is required"), "{err}");
}

#[test]
fn debug_prints_no_secret_and_no_database_password() {
    let mut vars: Vec<_> = GOOD.to_vec();
    vars.retain(|(k, _)| *k != "DB_URL" && *k != "HOSTING_ADMIN_KEY");
    vars.push(("DB_URL", "postgres://app:db-password-1@db:5432/x"));
    vars.push(("HOSTING_ADMIN_KEY", "admin-key-that-is-secret"));
    let printed = format!("{:?}", config(&vars).unwrap());
    for secret in [
        "0123456789abcdef0123456789abcdef",
        "fedcba9876543210fedcba9876543210",
        "admin-key-that-is-secret",
        "db-password-1",
    ] {
        assert!(!printed.contains(secret), "{secret} in {printed}");
    }
    assert!(
        printed.contains("postgres://app:***@db:5432/x"),
        "{printed}"
    );
}

#[test]
fn every_engine_default_comes_from_the_engine() {
    let c = config(&[]).unwrap();
    let d = crate::engine::EngineConfig::new(String::new());
    assert_eq!(c.engine.lease, d.lease);
    assert_eq!(c.engine.sweep.grace, d.sweep.grace);
    assert_eq!(c.engine.retention.outbox, d.retention.outbox);
    assert_eq!(c.engine.traffic.rate, d.traffic.rate);
}

#[test]
fn the_product_name_is_read_and_bounded() {
    assert_eq!(config(&GOOD).unwrap().http.product_name, "Fulfillment");
    let with = |name: &str| {
        let mut vars = GOOD.to_vec();
        vars.push(("PRODUCT_NAME", name));
        config(&vars)
    };
    assert_eq!(with("Obox Cloud").unwrap().http.product_name, "Obox Cloud");
    for bad in ["x".repeat(61), "two\nlines".into()] {
        let Err(err) = with(&bad) else {
            panic!("{bad:?} is refused")
        };
        assert!(err.to_string().contains("PRODUCT_NAME"), "{err}");
    }
}

//! Byte and percentage arithmetic shared by every response that reports traffic.

use chrono::{DateTime, Utc};
use serde::Serializer;

/// Serialises a timestamp as the contracts write them: RFC 3339, UTC, whole seconds
/// (`2026-10-22T21:55:00Z`).
pub fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// `rfc3339` for optional timestamps (pair with `skip_serializing_if = "Option::is_none"`).
pub fn rfc3339_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// Bytes in one GiB; `*_gb` fields on the wire are GiB.
pub const GIB: i64 = 1024 * 1024 * 1024;

/// Bytes → GiB as the apps display them.
pub fn gib(bytes: i64) -> f64 {
    bytes as f64 / GIB as f64
}

/// `t + d`, saturating at the end of time instead of panicking (a duration from
/// configuration or from outside may be absurd).
pub fn after(t: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t + days` (negative counts as 0), saturating like `after`.
pub fn add_days(t: DateTime<Utc>, days: i64) -> DateTime<Utc> {
    chrono::Duration::try_days(days.max(0))
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `used / limit * 100`, and 0 when there is no limit (the contract's rule).
pub fn percent(used: i64, limit: i64) -> f64 {
    if limit <= 0 {
        0.0
    } else {
        used as f64 / limit as f64 * 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gib_divides_by_two_to_the_thirtieth() {
        assert_eq!(gib(3 * 1024 * GIB), 3072.0);
        assert_eq!(gib(GIB / 2), 0.5);
    }

    #[test]
    fn time_arithmetic_saturates() {
        let t = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(
            after(t, std::time::Duration::from_secs(60)).timestamp(),
            1_800_000_060
        );
        assert_eq!(
            after(t, std::time::Duration::from_secs(u64::MAX)),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            after(t, std::time::Duration::from_secs_f64(1e13)),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(add_days(t, 1).timestamp(), 1_800_086_400);
        assert_eq!(add_days(t, -5), t);
        assert_eq!(add_days(t, i64::MAX), DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn percent_is_zero_without_a_limit() {
        assert_eq!(percent(10, 0), 0.0);
        assert_eq!(percent(25, 1000), 2.5);
    }
}

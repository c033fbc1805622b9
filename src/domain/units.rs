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
    fn percent_is_zero_without_a_limit() {
        assert_eq!(percent(10, 0), 0.0);
        assert_eq!(percent(25, 1000), 2.5);
    }
}

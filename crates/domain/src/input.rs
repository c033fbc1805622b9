//! What input from outside may hold: the validated types every path shares (ids, emails,
//! plan tiers, traffic amounts, day counts, counters), and the clean-up of free text a node
//! or an operator sends. A value outside these is refused where it is parsed (the API
//! answers 422), so nothing downstream (SQL, logs, arithmetic) ever sees it.

use super::plan::PlanTier;
use super::units::GIB;

/// A refusal of one input value: a stable `code` for clients and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    pub code: &'static str,
    pub message: String,
}

impl InputError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        InputError {
            code,
            message: message.into(),
        }
    }
}

/// Longest id (user, subscription, order identity, device) accepted: they are indexed.
pub const MAX_ID: usize = 256;
/// Longest email address (RFC 5321's path limit).
pub const MAX_EMAIL: usize = 254;
/// Longest free text kept (a node's error message, an operator's reason, a gift's note).
pub const MAX_FREE_TEXT: usize = 1000;
/// Longest grant of days one order may carry (ten years).
pub const MAX_DAYS: i64 = 3650;
/// Largest traffic allowance: a million GiB (about a petabyte).
pub const MAX_TRAFFIC_BYTES: i64 = 1_000_000 * GIB;
/// Smallest allowance given in GiB (a mebibyte): less is a typo or an attack, not a plan.
pub const MIN_TRAFFIC_GIB: f64 = 1.0 / 1024.0;
/// Largest cumulative byte counter a node agent may report: an exbibyte, far beyond what
/// any interface moves between two reboots, and far below where `i64` sums overflow.
pub const MAX_COUNTER: i64 = 1 << 60;

/// No control characters (C0, DEL, C1: NUL, CR, LF, ESC, …). PostgreSQL's `text` cannot
/// hold NUL, and CR/LF/ESC split or colour log lines and screens.
pub fn is_clean(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// The region a user names for a node they create or move: required (CONTRACTS.md §4.7:
/// an empty or missing region never means the default region, nor a rebuild).
pub fn chosen_region(value: Option<&str>) -> Result<&str, InputError> {
    match value.map(str::trim) {
        Some(code) if !code.is_empty() => Ok(code),
        _ => Err(InputError::new("missing_region", "region is required")),
    }
}

/// An id: 1 to `MAX_ID` characters, not blank, no control characters. `name` names the
/// field in messages; `missing` and `too_long` are the codes clients already read.
pub fn id<'a>(
    value: &'a str,
    name: &str,
    missing: &'static str,
    too_long: &'static str,
) -> Result<&'a str, InputError> {
    if value.trim().is_empty() {
        return Err(InputError::new(missing, format!("{name} is required")));
    }
    if value.chars().count() > MAX_ID {
        return Err(InputError::new(
            too_long,
            format!("{name} is longer than {MAX_ID} characters"),
        ));
    }
    if !is_clean(value) {
        return Err(InputError::new(
            "control_characters",
            format!("{name} contains control characters"),
        ));
    }
    Ok(value)
}

/// An email address: `local@domain`, no whitespace or control characters (a CR/LF in an
/// address is header injection waiting to happen), at most `MAX_EMAIL` characters as sent
/// (surrounding spaces count: the limit is the one the document states). Blank reads as
/// absent.
pub fn email(value: Option<&str>) -> Result<Option<String>, InputError> {
    let too_long = value.is_some_and(|v| v.chars().count() > MAX_EMAIL);
    let Some(email) = value.map(str::trim).filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let shaped = !too_long
        && !email.chars().any(|c| c.is_control() || c.is_whitespace())
        && email
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('@'));
    if !shaped {
        return Err(InputError::new("invalid_email", "email is not an address"));
    }
    Ok(Some(email.to_owned()))
}

/// A plan tier named in an order or an adjustment: one of the contract's names, nothing
/// else (an unknown tier would silently buy the smallest allowances).
pub fn plan_tier(value: &str) -> Result<PlanTier, InputError> {
    match PlanTier::parse(value.trim()) {
        PlanTier::Other(_) => Err(InputError::new(
            "invalid_plan_tier",
            "plan_tier must be one of basic, standard, premium, unlimited, 1tb, 2tb, 3tb",
        )),
        plan => Ok(plan),
    }
}

/// A day count: 1 to `MAX_DAYS`.
pub fn days(value: i64, name: &str, code: &'static str) -> Result<i64, InputError> {
    if (1..=MAX_DAYS).contains(&value) {
        Ok(value)
    } else {
        Err(InputError::new(
            code,
            format!("{name} must be between 1 and {MAX_DAYS}"),
        ))
    }
}

/// A traffic allowance in bytes: 0 (no override) up to `MAX_TRAFFIC_BYTES`.
pub fn traffic_bytes(value: i64, name: &str) -> Result<i64, InputError> {
    if (0..=MAX_TRAFFIC_BYTES).contains(&value) {
        Ok(value)
    } else {
        Err(InputError::new(
            "invalid_traffic_limit",
            format!("{name} must be between 0 and {MAX_TRAFFIC_BYTES} bytes"),
        ))
    }
}

/// A traffic allowance in GiB, as bytes: at least `MIN_TRAFFIC_GIB`, at most a million.
pub fn traffic_gib(value: f64, name: &str) -> Result<i64, InputError> {
    let max = (MAX_TRAFFIC_BYTES / GIB) as f64;
    if value.is_finite() && (MIN_TRAFFIC_GIB..=max).contains(&value) {
        Ok((value * GIB as f64).round() as i64)
    } else {
        Err(InputError::new(
            "invalid_traffic_gb",
            format!("{name} must be between {MIN_TRAFFIC_GIB} and {max} GiB"),
        ))
    }
}

/// A node agent's cumulative byte counter: 0 to `MAX_COUNTER`.
pub fn counter(value: Option<i64>, name: &str) -> Result<i64, InputError> {
    match value {
        Some(v) if (0..=MAX_COUNTER).contains(&v) => Ok(v),
        Some(_) => Err(InputError::new(
            "invalid_counter",
            format!("{name} must be between 0 and {MAX_COUNTER}"),
        )),
        None => Err(InputError::new(
            "missing_counter",
            format!("{name} is required"),
        )),
    }
}

/// Free text from a node or an operator, made safe to store, log and show: control
/// characters become spaces (runs collapse), the ends are trimmed, and it is cut to
/// `MAX_FREE_TEXT` characters. `None` when nothing is left.
pub fn free_text(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len().min(MAX_FREE_TEXT * 4));
    let mut count = 0;
    let mut pending_space = false;
    for c in value.chars() {
        if c.is_control() || c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            if count + 1 >= MAX_FREE_TEXT {
                break;
            }
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        if count >= MAX_FREE_TEXT {
            break;
        }
        out.push(c);
        count += 1;
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_region_is_required_and_never_defaulted() {
        for missing in [None, Some(""), Some("   ")] {
            assert_eq!(chosen_region(missing).unwrap_err().code, "missing_region");
        }
        assert_eq!(chosen_region(Some(" eu-west-1 ")), Ok("eu-west-1"));
    }

    #[test]
    fn control_characters_are_refused_in_ids() {
        for bad in [
            "a\0b",
            "\0",
            "sub\r\n",
            "x\u{1b}[31m",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            let err = id(bad, "user_id", "missing_user_id", "user_id_too_long").unwrap_err();
            assert_eq!(err.code, "control_characters", "{bad:?}");
        }
        assert_eq!(
            id("  ", "user_id", "missing", "long").unwrap_err().code,
            "missing"
        );
        let long = "é".repeat(MAX_ID + 1);
        assert_eq!(
            id(&long, "user_id", "missing", "long").unwrap_err().code,
            "long"
        );
        assert_eq!(
            id(&"é".repeat(MAX_ID), "u", "m", "l"),
            Ok("é".repeat(MAX_ID).as_str())
        );
        assert_eq!(id("user 7 ✓", "u", "m", "l"), Ok("user 7 ✓"));
    }

    #[test]
    fn emails_are_one_address_without_whitespace() {
        assert_eq!(email(Some(" a@b.c ")), Ok(Some("a@b.c".into())));
        assert_eq!(email(Some("")), Ok(None));
        assert_eq!(email(None), Ok(None));
        for bad in [
            "a@b\r\nBcc: x@y",
            "no-at",
            "@b",
            "a@",
            "a@b@c",
            "a b@c",
            "a\0@b",
        ] {
            assert_eq!(
                email(Some(bad)).unwrap_err().code,
                "invalid_email",
                "{bad:?}"
            );
        }
        let long = format!("{}@b.c", "a".repeat(MAX_EMAIL));
        assert!(email(Some(&long)).is_err());
        // The limit counts what was sent, surrounding spaces included.
        let padded = format!(" {}@b.c", "a".repeat(MAX_EMAIL - 4));
        assert_eq!(padded.chars().count(), MAX_EMAIL + 1);
        assert!(email(Some(&padded)).is_err());
        assert!(email(Some(&padded[1..])).is_ok());
    }

    #[test]
    fn only_the_contracts_plan_tiers_are_accepted() {
        for ok in [
            "basic",
            "standard",
            "premium",
            "unlimited",
            "1tb",
            "2tb",
            "3tb",
        ] {
            assert_eq!(plan_tier(ok).unwrap().as_str(), ok);
        }
        for bad in ["gold-ultra", "", "Premium", &"p".repeat(5000)] {
            assert_eq!(plan_tier(bad).unwrap_err().code, "invalid_plan_tier");
        }
    }

    #[test]
    fn amounts_and_days_have_bounds() {
        assert_eq!(days(1, "d", "c"), Ok(1));
        assert_eq!(days(MAX_DAYS, "d", "c"), Ok(MAX_DAYS));
        assert!(days(0, "d", "c").is_err() && days(MAX_DAYS + 1, "d", "c").is_err());
        assert_eq!(traffic_bytes(0, "t"), Ok(0));
        assert!(traffic_bytes(-1, "t").is_err());
        assert!(traffic_bytes(i64::MAX, "t").is_err());
        assert_eq!(traffic_gib(1.5, "g"), Ok(GIB + GIB / 2));
        for bad in [1e-300, 0.0, -1.0, f64::NAN, f64::INFINITY, 1e7] {
            assert_eq!(
                traffic_gib(bad, "g").unwrap_err().code,
                "invalid_traffic_gb",
                "{bad}"
            );
        }
        assert_eq!(counter(Some(MAX_COUNTER), "rx"), Ok(MAX_COUNTER));
        assert_eq!(
            counter(Some(i64::MAX), "rx").unwrap_err().code,
            "invalid_counter"
        );
        assert_eq!(counter(Some(-1), "rx").unwrap_err().code, "invalid_counter");
        assert_eq!(counter(None, "rx").unwrap_err().code, "missing_counter");
    }

    #[test]
    fn free_text_loses_control_characters_and_is_capped() {
        assert_eq!(
            free_text("disk full\r\n\u{1b}[31mretry\u{1b}[0m\tlater\0").as_deref(),
            Some("disk full [31mretry [0m later")
        );
        assert_eq!(free_text(" \n\t "), None);
        let long = "x".repeat(5000);
        assert_eq!(free_text(&long).unwrap().chars().count(), MAX_FREE_TEXT);
        let spaced = "ab ".repeat(1000);
        assert!(free_text(&spaced).unwrap().chars().count() <= MAX_FREE_TEXT);
        assert_eq!(free_text("ünïcode ✓").as_deref(), Some("ünïcode ✓"));
    }
}

//! The rules the passes share, and the helpers of the rules' tests.

use super::*;
use chrono::TimeZone;

pub(in crate::legacy) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap()
}

pub(in crate::legacy) fn days_ago(n: i64) -> DateTime<Utc> {
    now() - chrono::Duration::days(n)
}

pub(in crate::legacy) fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

pub(in crate::legacy) fn kinds(findings: &[Finding]) -> Vec<FindingKind> {
    findings.iter().map(|f| f.kind).collect()
}

#[test]
fn a_log_carries_its_action_status_and_message() {
    let log = LegacyLog {
        id: id(9),
        provision_id: id(1),
        action: Some("create".into()),
        status: Some("failed".into()),
        message: Some("quota\r\nexceeded".into()),
        created_at: now(),
    };
    assert_eq!(log_message(&log), "create: failed: quota exceeded");
    let empty = LegacyLog {
        action: None,
        status: Some(" ".into()),
        message: None,
        ..log
    };
    assert_eq!(log_message(&empty), "(empty log entry)");
}

//! Time, injectable so tests can move past deadlines without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The wall clock moved by an offset that can be changed while the service runs: time
/// still flows (deadlines and retries come due), but a test can step the service and its
/// own checks to another day, or across a month's end, without waiting for it.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    /// Nanoseconds (milliseconds would read a shifted moment up to one early).
    offset_ns: AtomicI64,
}

impl ShiftedClock {
    /// From now on, the clock reads `at` (and runs on from there).
    pub fn shift_to(&self, at: DateTime<Utc>) {
        let offset = at.signed_duration_since(Utc::now());
        // Past some 292 years either way it saturates, which no test needs.
        let ns = offset
            .num_nanoseconds()
            .unwrap_or(if offset > chrono::Duration::zero() {
                i64::MAX
            } else {
                i64::MIN
            });
        self.offset_ns.store(ns, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = chrono::Duration::nanoseconds(self.offset_ns.load(Ordering::SeqCst));
        Utc::now()
            .checked_add_signed(offset)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shifted_clock_reads_where_it_was_moved_and_runs_on() {
        let clock = ShiftedClock::default();
        assert!(
            (clock.now() - Utc::now()).num_seconds().abs() < 5,
            "no shift at first"
        );
        let at = DateTime::parse_from_rfc3339("2027-01-31T23:59:59Z")
            .unwrap()
            .with_timezone(&Utc);
        clock.shift_to(at);
        let read = clock.now();
        assert!(read >= at && (read - at).num_seconds() < 5, "{read}");
    }
}

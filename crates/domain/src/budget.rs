//! Budgets of costly actions: at most `limit` of them in any `window` (a sliding window,
//! so a burst at the end of one window and another at the start of the next cannot add
//! up). Creating or replacing a VPS is billed, so its budgets count what could make one
//! (CONTRACTS.md §4.7).

use chrono::{DateTime, Duration, Utc};

/// At most `limit` actions in any `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: u32,
    pub window: Duration,
}

impl Budget {
    /// Whether one more action fits at `now`, given when the earlier ones were taken (in
    /// any order; those outside the window do not count). `Err` says how long until one
    /// more fits.
    pub fn admit(&self, taken: &[DateTime<Utc>], now: DateTime<Utc>) -> Result<(), Duration> {
        let mut recent: Vec<DateTime<Utc>> = taken
            .iter()
            .copied()
            .filter(|t| now - *t < self.window)
            .collect();
        let limit = self.limit as usize;
        if recent.len() < limit {
            return Ok(());
        }
        if limit == 0 {
            return Err(self.window);
        }
        recent.sort_unstable();
        // The action whose leaving the window makes room for one more.
        let leaves = recent[recent.len() - limit] + self.window;
        Err((leaves - now).max(Duration::zero()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::minutes(min)
    }

    #[test]
    fn at_most_the_limit_fits_in_any_window() {
        let day = Budget {
            limit: 3,
            window: Duration::hours(24),
        };
        assert_eq!(day.admit(&[], at(0)), Ok(()));
        assert_eq!(day.admit(&[at(0), at(10)], at(20)), Ok(()));
        // Three in the window: the next fits when the oldest leaves it.
        assert_eq!(
            day.admit(&[at(10), at(0), at(20)], at(30)),
            Err(Duration::hours(24) - Duration::minutes(30))
        );
        // Older ones do not count.
        assert_eq!(day.admit(&[at(0), at(10), at(20)], at(24 * 60)), Ok(()));
        // With more than the limit taken (a lowered limit), the wait covers the excess.
        assert_eq!(
            day.admit(&[at(0), at(10), at(20), at(30)], at(40)),
            Err(Duration::hours(24) - Duration::minutes(30))
        );
    }

    #[test]
    fn a_budget_of_nothing_never_admits() {
        let none = Budget {
            limit: 0,
            window: Duration::minutes(1),
        };
        assert_eq!(none.admit(&[], at(0)), Err(Duration::minutes(1)));
    }
}

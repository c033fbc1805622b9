//! Exponential backoff with jitter for retries of upstream calls.

use std::time::Duration;

/// `base * 2^attempt`, capped at `max`, then drawn uniformly from its upper half so that
/// workers retrying together spread out.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: i32) -> Duration {
        let exp = attempt.clamp(0, 30) as u32;
        let full = self.base.saturating_mul(1u32 << exp.min(20)).min(self.max);
        let half = full / 2;
        half + full.saturating_sub(half).mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_cap_and_stay_within_the_jitter_band() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for attempt in 0..40 {
            let full = Duration::from_millis(100 * (1u64 << attempt.min(20))).min(b.max);
            for _ in 0..20 {
                let d = b.delay(attempt);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d:?} vs {full:?}"
                );
            }
        }
    }
}

//! Per-user rate limits on the user API: a general one, and a stricter one on creating a
//! node (each creation is a billed server). Token buckets per user id (`governor`);
//! refusals are 429 with `Retry-After`.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;

/// Rates, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    /// Requests per second per user, sustained.
    pub per_second: u32,
    /// Requests a user may make at once.
    pub burst: u32,
    /// `POST /my/node` per user per minute (a burst of the same size).
    pub node_creates_per_minute: u32,
}

pub struct RateLimits {
    requests: DefaultKeyedRateLimiter<String>,
    node_creates: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

fn at_least_one(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl RateLimits {
    pub fn new(c: RateLimitConfig) -> Self {
        let requests =
            Quota::per_second(at_least_one(c.per_second)).allow_burst(at_least_one(c.burst));
        let creates = Quota::per_minute(at_least_one(c.node_creates_per_minute));
        RateLimits {
            requests: RateLimiter::keyed(requests),
            node_creates: RateLimiter::keyed(creates),
            clock: DefaultClock::default(),
        }
    }

    /// Any user API request.
    pub fn request(&self, user: &str) -> Result<(), ApiError> {
        self.check(&self.requests, user, "too many requests; slow down")
    }

    /// A request to create a node.
    pub fn node_create(&self, user: &str) -> Result<(), ApiError> {
        self.check(
            &self.node_creates,
            user,
            "too many node creation requests; try again later",
        )
    }

    fn check(
        &self,
        limiter: &DefaultKeyedRateLimiter<String>,
        user: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        // Forget idle users now and then, so memory follows the active ones.
        if limiter.len() > 10_000 {
            limiter.retain_recent();
        }
        limiter.check_key(&user.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
            e.retry_after = Some(wait.max(Duration::from_secs(1)).as_secs_f64().ceil() as u64);
            e
        })
    }
}

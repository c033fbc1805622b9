//! Per-user rate limits on the user API: a general one (token buckets per user id,
//! `governor`), and a stricter budget of requests that could create or replace a node
//! (each is a billed server): spent only by those that pass validation and the rules,
//! since a refused one is given back (CONTRACTS.md §4.7). Refusals are 429 with
//! `Retry-After`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use domain::budget::Budget;

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
    node_creates: Budget,
    /// When each user spent the node-creation budget, in the last window.
    creates_taken: Mutex<HashMap<String, Vec<DateTime<Utc>>>>,
    clock: DefaultClock,
}

/// One spending of the node-creation budget, given back if the request is refused.
#[must_use = "settle it with the request's outcome"]
pub struct Spent<'a> {
    limits: &'a RateLimits,
    user: String,
    at: DateTime<Utc>,
}

impl Spent<'_> {
    /// Passes `outcome` on; a refusal (4xx: invalid, unknown region, a rule's 409, …)
    /// gives the spending back, since nothing could have been created.
    pub fn settle<T>(self, outcome: Result<T, ApiError>) -> Result<T, ApiError> {
        if let Err(e) = &outcome
            && e.status.is_client_error()
        {
            let mut taken = self.limits.creates_taken.lock().unwrap();
            if let Some(times) = taken.get_mut(&self.user)
                && let Some(i) = times.iter().rposition(|t| *t == self.at)
            {
                times.swap_remove(i);
            }
        }
        outcome
    }
}

fn at_least_one(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl RateLimits {
    pub fn new(c: RateLimitConfig) -> Self {
        let requests =
            Quota::per_second(at_least_one(c.per_second)).allow_burst(at_least_one(c.burst));
        RateLimits {
            requests: RateLimiter::keyed(requests),
            node_creates: Budget {
                limit: c.node_creates_per_minute.max(1),
                window: chrono::Duration::minutes(1),
            },
            creates_taken: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// Any user API request.
    pub fn request(&self, user: &str) -> Result<(), ApiError> {
        self.check(&self.requests, user, "too many requests; slow down")
    }

    /// A request that passed validation and could create or replace a node: spends the
    /// user's budget, to be settled with the request's outcome.
    pub fn node_create(&self, user: &str) -> Result<Spent<'_>, ApiError> {
        let now = Utc::now();
        let mut taken = self.creates_taken.lock().unwrap();
        // Forget idle users now and then, so memory follows the active ones.
        if taken.len() > 10_000 {
            let window = self.node_creates.window;
            taken.retain(|_, times| times.iter().any(|t| now - *t < window));
        }
        let times = taken.entry(user.to_owned()).or_default();
        times.retain(|t| now - *t < self.node_creates.window);
        if let Err(wait) = self.node_creates.admit(times, now) {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many node creation requests; try again later",
            );
            e.retry_after = Some(((wait.num_milliseconds() + 999) / 1000).max(1) as u64);
            return Err(e);
        }
        times.push(now);
        Ok(Spent {
            limits: self,
            user: user.to_owned(),
            at: now,
        })
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

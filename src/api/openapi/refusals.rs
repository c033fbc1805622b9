//! What endpoints answer besides their own outcomes, by kind of endpoint: each refusal's
//! status and shape (see `schemas.rs`).
#![allow(dead_code)]

use utoipa::IntoResponses;

use super::schemas::{CreateNodeOrPlainRefusal, Error, SuccessOrPlainRefusal};

/// What every authenticated endpoint may answer besides its own outcomes.
#[derive(IntoResponses)]
pub enum Refusals {
    /// Malformed input: unreadable JSON, a wrong type, a bad path parameter.
    #[response(status = 400)]
    BadRequest(Error),
    /// Missing, malformed, expired or wrong credentials.
    #[response(status = 401)]
    Unauthorized(Error),
    /// The request target is longer than 8 KiB.
    #[response(status = 414)]
    UriTooLong(Error),
    /// Internal error (logged; no detail is given).
    #[response(status = 500)]
    Internal(Error),
    /// The database or an upstream is unavailable, or the request took too long.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    Unavailable(Error),
}

/// The limit of the user API: requests per user per second.
#[derive(IntoResponses)]
pub enum RateLimited {
    /// Too many requests from this user.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    TooMany(Error),
}

/// Refusals of a request body.
#[derive(IntoResponses)]
pub enum BodyRefusals {
    /// The body is larger than 64 KiB.
    #[response(status = 413)]
    TooLarge(Error),
    /// A field is missing or out of range, or names something unknown.
    #[response(status = 422)]
    Invalid(Error),
}

/// The refusals of `POST /my/node` and `POST /my/nodes`: the endpoint's own shape, except
/// where the request was refused before it reached the endpoint.
#[derive(IntoResponses)]
pub enum CreateRefusals {
    /// Malformed input: unreadable JSON, a wrong type, a bad path parameter.
    #[response(status = 400)]
    BadRequest(CreateNodeOrPlainRefusal),
    /// Missing, malformed, expired or wrong credentials.
    #[response(status = 401)]
    Unauthorized(Error),
    /// No active hosting subscription.
    #[response(status = 403)]
    NoSubscription(CreateNodeOrPlainRefusal),
    /// A live node already (or the subscription's node limit is reached).
    #[response(status = 409)]
    Conflict(CreateNodeOrPlainRefusal),
    /// The body is larger than 64 KiB.
    #[response(status = 413)]
    TooLarge(CreateNodeOrPlainRefusal),
    /// An unknown or unavailable region.
    #[response(status = 422)]
    Invalid(CreateNodeOrPlainRefusal),
    /// Too many requests.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    TooMany(CreateNodeOrPlainRefusal),
    /// Internal error (logged; no detail is given).
    #[response(status = 500)]
    Internal(CreateNodeOrPlainRefusal),
    /// The subscription service is unreachable and nothing is cached, or the database is down.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    Unavailable(CreateNodeOrPlainRefusal),
}

/// The refusals of endpoints that answer `{"success": …}`.
#[derive(IntoResponses)]
pub enum SuccessRefusals {
    /// Malformed input: unreadable JSON, a wrong type, a bad path parameter.
    #[response(status = 400)]
    BadRequest(SuccessOrPlainRefusal),
    /// Missing, malformed, expired or wrong credentials.
    #[response(status = 401)]
    Unauthorized(Error),
    /// Not allowed: a user token on an operator endpoint, an inactive subscription.
    #[response(status = 403)]
    Forbidden(SuccessOrPlainRefusal),
    /// No such resource (of this caller).
    #[response(status = 404)]
    NotFound(SuccessOrPlainRefusal),
    /// The state does not allow it (e.g. a migration already under way, or none).
    #[response(status = 409)]
    Conflict(SuccessOrPlainRefusal),
    /// The body is larger than 64 KiB.
    #[response(status = 413)]
    TooLarge(SuccessOrPlainRefusal),
    /// A field is missing or out of range, or names something unknown.
    #[response(status = 422)]
    Invalid(SuccessOrPlainRefusal),
    /// Too many requests.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    TooMany(SuccessOrPlainRefusal),
    /// Internal error (logged; no detail is given).
    #[response(status = 500)]
    Internal(SuccessOrPlainRefusal),
    /// Unavailable: the database, an upstream, or the request took too long.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    Unavailable(SuccessOrPlainRefusal),
}

/// The refusals of the event streams.
#[derive(IntoResponses)]
pub enum StreamRefusals {
    /// Missing, bad or expired token or ticket.
    #[response(status = 401)]
    Unauthorized(Error),
    /// The user has 5 streams open already.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    TooMany(Error),
    /// Internal error (logged; no detail is given).
    #[response(status = 500)]
    Internal(Error),
    /// The process holds its most streams, or is shutting down.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    Unavailable(Error),
}

/// The refusals of the node callbacks.
#[derive(IntoResponses)]
pub enum CallbackRefusals {
    /// Malformed input: unreadable JSON, a wrong type, a bad path parameter.
    #[response(status = 400)]
    BadRequest(Error),
    /// Missing, malformed, expired or wrong credentials.
    #[response(status = 401)]
    Unauthorized(Error),
    /// The credential is another node's.
    #[response(status = 403)]
    Forbidden(Error),
    /// No such resource (of this caller).
    #[response(status = 404)]
    NotFound(Error),
    /// The report contradicts the node's state.
    #[response(status = 409)]
    Conflict(Error),
    /// The body is larger than 64 KiB.
    #[response(status = 413)]
    TooLarge(Error),
    /// A field is missing or out of range, or names something unknown.
    #[response(status = 422)]
    Invalid(Error),
    /// Internal error (logged; no detail is given).
    #[response(status = 500)]
    Internal(Error),
    /// Unavailable: the database, an upstream, or the request took too long.
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    Unavailable(Error),
}

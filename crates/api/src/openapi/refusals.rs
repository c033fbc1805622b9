//! What endpoints answer besides their own outcomes, by kind of endpoint: each refusal's
//! status, meaning and body. The bodies are the types `api::error` writes; these tables
//! only say which of them each status carries.

use std::collections::BTreeMap;

use utoipa::openapi::schema::{OneOfBuilder, Schema};
use utoipa::openapi::{Content, Header, Ref, RefOr, Response};
use utoipa::{IntoResponses, PartialSchema, ToSchema};

pub use crate::error::ErrorBody;
use crate::error::{CreateNodeRefusal, SuccessRefusal};

/// Which body a refusal carries.
#[derive(Clone, Copy)]
enum Body {
    /// `{"error", "code"}`.
    Plain,
    /// The endpoint's own `{"success": false, …}` shape, or the plain one where the request
    /// was refused before it reached the endpoint: the schema of that name in `shaped()`.
    Shaped(&'static str),
}

const CREATE_OR_PLAIN: &str = "CreateNodeOrPlainRefusal";
const SUCCESS_OR_PLAIN: &str = "SuccessOrPlainRefusal";

/// The schemas the shaped refusals name: one of the endpoint's shape or the plain one.
pub fn shaped() -> [(&'static str, RefOr<Schema>); 2] {
    let either = |shape: std::borrow::Cow<'static, str>| {
        OneOfBuilder::new()
            .description(Some("A plain refusal or the endpoint's own shape (which one depends on where it was refused)."))
            .item(Ref::from_schema_name(shape))
            .item(error_ref())
            .into()
    };
    [
        (CREATE_OR_PLAIN, either(CreateNodeRefusal::name())),
        (SUCCESS_OR_PLAIN, either(SuccessRefusal::name())),
    ]
}

const MALFORMED: &str = "Malformed input: unreadable JSON, a wrong type, a bad path parameter.";
const UNAUTHORIZED: &str = "Missing, malformed, expired or wrong credentials.";
const INTERNAL: &str = "Internal error (logged; no detail is given).";
const UNAVAILABLE: &str = "Unavailable: the database, an upstream, or the request took too long.";
const TOO_LARGE: &str = "The body is larger than 64 KiB.";
const INVALID: &str = "A field is missing or out of range, or names something unknown.";
const TOO_MANY: &str = "Too many requests.";

fn error_ref() -> RefOr<Schema> {
    Ref::from_schema_name(ErrorBody::name()).into()
}

fn response(status: u16, description: &str, body: Body) -> Response {
    let schema = match body {
        Body::Plain => error_ref(),
        Body::Shaped(name) => Ref::from_schema_name(name).into(),
    };
    let mut response = Response::builder()
        .description(description)
        .content("application/json", Content::new(Some(schema)));
    if matches!(status, 429 | 503) {
        let seconds = Header::builder()
            .schema(Some(u64::schema()))
            .description(Some("Seconds to wait"))
            .build();
        response = response.header("Retry-After", seconds);
    }
    response.build()
}

fn table(rows: &[(u16, &str, Body)]) -> BTreeMap<String, RefOr<Response>> {
    rows.iter()
        .map(|&(status, description, body)| {
            (
                status.to_string(),
                response(status, description, body).into(),
            )
        })
        .collect()
}

macro_rules! refusals {
    ($($(#[$doc:meta])* $name:ident: [$(($status:literal, $description:expr, $body:expr)),+ $(,)?])+) => {$(
        $(#[$doc])*
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                table(&[$(($status, $description, $body)),+])
            }
        }
    )+};
}

const CREATE: Body = Body::Shaped(CREATE_OR_PLAIN);
const SUCCESS: Body = Body::Shaped(SUCCESS_OR_PLAIN);
use Body::Plain;

refusals! {
    /// What every authenticated endpoint may answer besides its own outcomes.
    Refusals: [
        (400, MALFORMED, Plain),
        (401, UNAUTHORIZED, Plain),
        (414, "The request target is longer than 8 KiB.", Plain),
        (500, INTERNAL, Plain),
        (503, "The database or an upstream is unavailable, or the request took too long.", Plain),
    ]
    /// The limit of the user API: requests per user per second.
    RateLimited: [(429, "Too many requests from this user.", Plain)]
    /// Refusals of a request body.
    BodyRefusals: [(413, TOO_LARGE, Plain), (422, INVALID, Plain)]
    /// The refusals of `POST /my/node` and `POST /my/nodes`.
    CreateRefusals: [
        (400, MALFORMED, CREATE),
        (401, UNAUTHORIZED, Plain),
        (403, "No active hosting subscription.", CREATE),
        (409, "A live node already (or the subscription's node limit is reached).", CREATE),
        (413, TOO_LARGE, CREATE),
        (422, "An unknown or unavailable region.", CREATE),
        (429, TOO_MANY, CREATE),
        (500, INTERNAL, CREATE),
        (503, "The subscription service is unreachable and nothing is cached, or the database is down.", CREATE),
    ]
    /// The refusals of endpoints that answer `{"success": …}`.
    SuccessRefusals: [
        (400, MALFORMED, SUCCESS),
        (401, UNAUTHORIZED, Plain),
        (403, "Not allowed: a user token on an operator endpoint, an inactive subscription.", SUCCESS),
        (404, "No such resource (of this caller).", SUCCESS),
        (409, "The state does not allow it (e.g. a migration already under way, or none).", SUCCESS),
        (413, TOO_LARGE, SUCCESS),
        (422, INVALID, SUCCESS),
        (429, TOO_MANY, SUCCESS),
        (500, INTERNAL, SUCCESS),
        (503, UNAVAILABLE, SUCCESS),
    ]
    /// The refusals of the event streams.
    StreamRefusals: [
        (401, "Missing, bad or expired token or ticket.", Plain),
        (429, "The user has 5 streams open already.", Plain),
        (500, INTERNAL, Plain),
        (503, "The process holds its most streams, or is shutting down.", Plain),
    ]
    /// The refusals of the node callbacks.
    CallbackRefusals: [
        (400, MALFORMED, Plain),
        (401, UNAUTHORIZED, Plain),
        (403, "The credential is another node's.", Plain),
        (404, "No such resource (of this caller).", Plain),
        (409, "The report contradicts the node's state.", Plain),
        (413, TOO_LARGE, Plain),
        (422, INVALID, Plain),
        (500, INTERNAL, Plain),
        (503, UNAVAILABLE, Plain),
    ]
}

//! Extractors: request bodies and queries that refuse bad input with our error body, and
//! the three kinds of caller (user JWT, internal secret, node credential).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::ApiState;
pub use super::auth::{Auth, Bearer, Session, mint_operator_token, mint_user_token};
use super::error::ApiError;
use app::{NodeCaller, UserId};

/// A JSON body. Malformed JSON is a 400, a well-formed body of the wrong shape a 422, an
/// oversized one a 413; an empty body reads as `{}`. The content type is not required
/// (the deployed clients do not all send it).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        Self::from_bytes(&bytes)
    }
}

/// The raw body, within `BODY_LIMIT` (413 with our error body past it).
pub struct RawBody(pub Bytes);

/// How much of an oversized body is read and thrown away so that the client, still
/// sending, receives our 413 instead of a reset connection. Larger bodies are cut off.
const DRAIN_LIMIT: usize = 8 * 1024 * 1024;

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        use futures::StreamExt;
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body is too large",
            )
        };
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > DRAIN_LIMIT) {
            return Err(too_large());
        }
        let mut stream = req.into_body().into_data_stream();
        let mut body = Vec::new();
        let mut seen = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "unreadable_body", e.to_string())
            })?;
            seen += chunk.len();
            if seen > DRAIN_LIMIT {
                break;
            }
            if seen <= super::BODY_LIMIT {
                body.extend_from_slice(&chunk);
            }
        }
        if seen > super::BODY_LIMIT {
            return Err(too_large());
        }
        Ok(RawBody(Bytes::from(body)))
    }
}

impl<T: DeserializeOwned> ApiJson<T> {
    /// Parses a body already read (for handlers that also need the raw bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ApiError> {
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            bytes
        };
        // Syntax first, then shape: serde would otherwise read `[…]` as a struct.
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string()))?;
        if !value.is_object() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "the body must be a JSON object",
            ));
        }
        if let Some(field) = unclean_field(&value) {
            return Err(control_characters(&field));
        }
        serde_json::from_value(value).map(ApiJson).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                e.to_string(),
            )
        })
    }
}

/// Fields whose text is free (a node's error message, an operator's reason, a gift's
/// note): control characters there are cleaned up by the use case (`input::free_text`)
/// rather than refused, so a node's multi-line failure report is still recorded.
pub(crate) const FREE_TEXT_FIELDS: [&str; 3] = ["error_message", "reason", "note"];

/// The first key or string value (outside the free-text fields) holding a control
/// character, named for the error message.
fn unclean_field(value: &serde_json::Value) -> Option<String> {
    use domain::input::is_clean;
    use serde_json::Value;
    match value {
        Value::String(s) => (!is_clean(s)).then(String::new),
        Value::Array(items) => items.iter().find_map(unclean_field),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if !is_clean(k) {
                return Some("a key".into());
            }
            if FREE_TEXT_FIELDS.contains(&k.as_str()) {
                return None;
            }
            unclean_field(v).map(|inner| {
                if inner.is_empty() {
                    k.chars().take(64).collect()
                } else {
                    inner
                }
            })
        }),
        _ => None,
    }
}

fn control_characters(field: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "control_characters",
        format!(
            "{} contains control characters",
            if field.is_empty() { "a value" } else { field }
        ),
    )
}

/// Query parameters, refused with our error body (control characters included).
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri) {
            let unclean = pairs.iter().find(|(k, v)| {
                let free = FREE_TEXT_FIELDS.contains(&k.as_str());
                !domain::input::is_clean(k) || (!free && !domain::input::is_clean(v))
            });
            if let Some((k, _)) = unclean {
                let name = if domain::input::is_clean(k) {
                    k.chars().take(64).collect()
                } else {
                    "a key".to_owned()
                };
                return Err(control_characters(&name));
            }
        }
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_query",
                    e.body_text(),
                )
            })
    }
}

/// A path id (`/resources/{id}` and the like). A segment that is not valid UTF-8 once
/// percent-decoded is a 400 with our error body (axum's own rejection is plain text), and
/// one holding control characters names nothing we have: 404.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| {
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", e.body_text())
                })?;
        if !domain::input::is_clean(&id) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such resource",
            ));
        }
        Ok(PathId(id))
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A signed-in user of the app.
pub struct User(pub UserId);

impl FromRequestParts<Arc<ApiState>> for User {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        let UserSession(user, _) = UserSession::from_request_parts(parts, state).await?;
        Ok(User(user))
    }
}

/// A signed-in user of the app, and until when their token holds.
pub struct UserSession(pub UserId, pub Session);

impl FromRequestParts<Arc<ApiState>> for UserSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        let token = bearer(parts)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("missing_token", "missing bearer token"))?;
        let session = state.auth.session_of(token)?;
        UserSession::checked(state, session)
    }
}

impl UserSession {
    /// The session's user, within its request rate.
    pub(super) fn checked(state: &ApiState, session: Session) -> Result<Self, ApiError> {
        // `Auth` and tickets only name users that are valid ids, so this parse cannot fail.
        let user = UserId::parse(&session.user)
            .map_err(|_| ApiError::unauthorized("invalid_token", "invalid token"))?;
        state.limits.request(user.as_str())?;
        Ok(UserSession(user, session))
    }
}

/// A caller of the internal API (`X-Internal-Secret`).
pub struct Internal;

impl FromRequestParts<Arc<ApiState>> for Internal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get("x-internal-secret")
            .and_then(|v| v.to_str().ok());
        match presented {
            Some(p) if state.auth.internal_ok(p) => Ok(Internal),
            Some(_) => Err(ApiError::unauthorized(
                "invalid_secret",
                "invalid internal secret",
            )),
            None => Err(ApiError::unauthorized(
                "missing_secret",
                "missing X-Internal-Secret",
            )),
        }
    }
}

/// Who may use the operators' endpoints and the internal reads (CONTRACTS.md §4.6): the
/// internal secret, or an operator token. A user token there is 403.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staff {
    /// `X-Internal-Secret`: another service, or an admin with the secret.
    Service,
    /// An operator, by the name their token carries.
    Operator(String),
}

impl Staff {
    /// The actor recorded in a resource's history for what this caller does.
    pub fn actor(&self) -> String {
        match self {
            Staff::Service => "admin".into(),
            Staff::Operator(name) => format!("operator:{name}"),
        }
    }

    /// The operator's name, when an operator token signed the request.
    pub fn operator(&self) -> Option<&str> {
        match self {
            Staff::Operator(name) => Some(name),
            Staff::Service => None,
        }
    }
}

impl FromRequestParts<Arc<ApiState>> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        if parts.headers.contains_key("x-internal-secret") {
            return Internal::from_request_parts(parts, state)
                .await
                .map(|_| Staff::Service);
        }
        let Some(token) = bearer(parts).filter(|t| !t.is_empty()) else {
            return Err(ApiError::unauthorized(
                "missing_secret",
                "missing X-Internal-Secret (or an operator token)",
            ));
        };
        match state.auth.bearer_of(token)? {
            Bearer::Operator(session) => Ok(Staff::Operator(session.user)),
            Bearer::User(_) => Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "not_an_operator",
                "this needs an operator token",
            )),
        }
    }
}

/// A node agent (with its credential: bearer token, or `token` in the query of a GET) or
/// the hosting service (with the internal secret).
pub struct Node(pub NodeCaller);

impl FromRequestParts<Arc<ApiState>> for Node {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        if let Some(p) = parts
            .headers
            .get("x-internal-secret")
            .and_then(|v| v.to_str().ok())
        {
            return if state.auth.internal_ok(p) {
                Ok(Node(NodeCaller::Service))
            } else {
                Err(ApiError::unauthorized(
                    "invalid_secret",
                    "invalid internal secret",
                ))
            };
        }
        if let Some(token) = bearer(parts).filter(|t| !t.is_empty()) {
            return Ok(Node(NodeCaller::Node(token.to_owned())));
        }
        #[derive(Deserialize)]
        struct TokenQuery {
            token: Option<String>,
        }
        let from_query = Query::<TokenQuery>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|q| q.0.token);
        match from_query.filter(|t| !t.is_empty()) {
            Some(token) if parts.method == axum::http::Method::GET => {
                Ok(Node(NodeCaller::Node(token)))
            }
            _ => Err(ApiError::unauthorized(
                "missing_credential",
                "missing node credential",
            )),
        }
    }
}

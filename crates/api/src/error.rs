//! The API's one error type: every refusal is a status plus `{"error", "code"}`, in the
//! shape the endpoint's clients already read. Internal errors are logged here, once, and
//! answered without detail.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use app::AppError;
use ports::store::StoreError;

/// Which body a refusal uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{"error", "code"}`.
    Plain,
    /// `POST /my/node`: `{"success": false, "status": "failed", "message", "error", "code"}`.
    CreateNode,
    /// `{"success": false, "message", "error", "code"}`.
    Success,
}

/// Every refusal: a human message and a stable code.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    /// For people.
    pub error: &'a str,
    /// For programs: stable snake_case.
    pub code: &'a str,
}

/// The refusals of `POST /my/node` and `POST /my/nodes`, in their success shape.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNodeRefusal<'a> {
    /// Always `false`.
    pub success: bool,
    /// Always `failed`.
    pub status: &'a str,
    pub message: &'a str,
    pub error: &'a str,
    pub code: &'a str,
}

/// The refusals of endpoints that answer `{"success": …}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuccessRefusal<'a> {
    /// Always `false`.
    pub success: bool,
    pub message: &'a str,
    pub error: &'a str,
    pub code: &'a str,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub shape: Shape,
    /// Seconds for `Retry-After` on a 429 or 503 (5 when not set).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            shape: Shape::Plain,
            retry_after: None,
        }
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    pub fn shaped(mut self, shape: Shape) -> Self {
        self.shape = shape;
        self
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let message = e.to_string();
        let (status, code) = match e {
            AppError::Invalid { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            AppError::NotFound { code, .. } => (StatusCode::NOT_FOUND, code),
            AppError::Forbidden { code, .. } => (StatusCode::FORBIDDEN, code),
            AppError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            AppError::OverBudget {
                code,
                retry_after_secs,
                ..
            } => {
                let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message);
                e.retry_after = Some(retry_after_secs.max(1));
                return e;
            }
            AppError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "dependency_unavailable"),
            AppError::Store(e) => return e.into(),
        };
        ApiError::new(status, code, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable; try again shortly",
                )
            }
            StoreError::Conflict(detail) => ApiError::new(StatusCode::CONFLICT, "conflict", detail),
            other => {
                tracing::error!(error = %other, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (message, code) = (self.message.as_str(), self.code);
        let body = match self.shape {
            Shape::Plain => Json(ErrorBody {
                error: message,
                code,
            })
            .into_response(),
            Shape::CreateNode => Json(CreateNodeRefusal {
                success: false,
                status: "failed",
                message,
                error: message,
                code,
            })
            .into_response(),
            Shape::Success => Json(SuccessRefusal {
                success: false,
                message,
                error: message,
                code,
            })
            .into_response(),
        };
        let mut resp = (self.status, body).into_response();
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(self.retry_after.unwrap_or(5)),
            );
        }
        resp
    }
}

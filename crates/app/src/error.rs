//! Errors of the use cases, by kind. The API maps each kind to an HTTP status and the
//! `code` to the error body; nothing here knows HTTP.

use domain::input::InputError;
use ports::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The input is well-formed but not acceptable.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// The caller is known but may not do this.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The caller spent a budget of theirs; another try fits after `retry_after_secs`.
    #[error("{message}")]
    OverBudget {
        code: &'static str,
        message: String,
        retry_after_secs: u64,
    },
    /// A dependency is down; the caller should retry.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<InputError> for AppError {
    fn from(e: InputError) -> Self {
        AppError::Invalid {
            code: e.code,
            message: e.message,
        }
    }
}

impl AppError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Invalid {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        AppError::NotFound {
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Forbidden {
            code,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Conflict {
            code,
            message: message.into(),
        }
    }
}

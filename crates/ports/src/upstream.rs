//! How a call to an upstream service fails, for every upstream port.

/// Why an upstream call failed, and whether trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("timed out")]
    Timeout,
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("answered with an unreadable body: {0}")]
    InvalidBody(String),
}

impl UpstreamError {
    /// Server errors, throttling, timeouts, lost connections and garbage are transient:
    /// the call may even have taken effect. Other 4xx answers will not change on retry.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout | Self::Connect(_) | Self::InvalidBody(_) => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
        }
    }
}

pub type UpstreamResult<T> = Result<T, UpstreamError>;

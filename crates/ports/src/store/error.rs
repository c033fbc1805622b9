//! How storage fails, typed so callers can map it.

/// Any error, kept as the source of a `StoreError`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Storage failures: a uniqueness conflict, the database being unreachable (which the
/// API answers with 503), a row that does not decode, or anything else. The underlying
/// error stays reachable through `source()`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database unavailable: {0}")]
    Unavailable(#[source] BoxError),
    #[error("stored data is invalid: {0}")]
    Corrupt(#[source] BoxError),
    #[error("database error: {0}")]
    Other(#[source] BoxError),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn the_underlying_error_stays_reachable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = StoreError::Unavailable(Box::new(io));
        assert_eq!(e.to_string(), "database unavailable: refused");
        let source = e.source().expect("kept");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("the io error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}

//! sqlx's errors, sorted into the port's `StoreError` with the original kept as source.

use ports::store::StoreError;

/// sqlx's error as the port's (the port's error is not this crate's, so this is a
/// function, not a `From`).
pub fn sorted(e: sqlx::Error) -> StoreError {
    let conflict =
        |db: &dyn sqlx::error::DatabaseError| StoreError::Conflict(db.message().to_owned());
    match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
            // A connection cut mid-conversation (a server going down) reads as garbage.
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(Box::new(e)),
            sqlx::Error::Database(db) if db.is_unique_violation() => conflict(db.as_ref()),
            // Deadlock or serialization failure: the transaction can simply run again.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("40P01" | "40001")) =>
            {
                conflict(db.as_ref())
            }
            sqlx::Error::Database(db) if is_transient_db_error(db.code().as_deref()) => {
                StoreError::Unavailable(Box::new(e))
            }
            _ => StoreError::Other(Box::new(e)),
        }
}

/// PostgreSQL shutting down or refusing connections, SQLite busy: worth a retry.
fn is_transient_db_error(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("57P01" | "57P02" | "57P03" | "53300" | "08000" | "08003" | "08006" | "5" | "6")
    )
}

/// A stored value that does not decode into the domain.
pub fn corrupt(e: impl Into<ports::store::BoxError>) -> StoreError {
    StoreError::Corrupt(e.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn a_lost_connection_is_unavailable_and_keeps_its_cause() {
        let e = sorted(sqlx::Error::PoolTimedOut);
        assert!(matches!(e, StoreError::Unavailable(_)));
        let source = e.source().expect("kept");
        assert!(matches!(
            source.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::PoolTimedOut)
        ));
    }

    #[test]
    fn transient_codes_are_the_retryable_ones() {
        for code in ["57P01", "53300", "08006", "5", "6"] {
            assert!(is_transient_db_error(Some(code)), "{code}");
        }
        for code in ["23505", "42601", "1"] {
            assert!(!is_transient_db_error(Some(code)), "{code}");
        }
        assert!(!is_transient_db_error(None));
    }
}

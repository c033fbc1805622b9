//! The lifecycle state machine. Every status write in the store names the status it expects
//! (compare-and-set), and every transition it makes is one this table allows.
//!
//! ```text
//! pending ──> creating ──> active
//!    │           │           │
//!    ├──> failed <┘           │
//!    │      │                 │
//!    └──────┴──> deleting <───┘ ──> deleted
//! ```

use super::Status;

/// Whether `from → to` is a legal lifecycle step.
pub fn can_transition(from: Status, to: Status) -> bool {
    use Status::*;
    matches!(
        (from, to),
        (Pending, Creating)
            | (Pending, Failed)
            | (Pending, Deleting)
            | (Creating, Active)
            | (Creating, Failed)
            | (Creating, Deleting)
            | (Active, Deleting)
            | (Failed, Deleting)
            | (Deleting, Deleted)
    )
}

/// A transition the state machine refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition {from} -> {to}")]
pub struct IllegalTransition {
    pub from: Status,
    pub to: Status,
}

/// Checks a transition, for callers that want an error rather than a boolean.
pub fn transition(from: Status, to: Status) -> Result<Status, IllegalTransition> {
    if can_transition(from, to) {
        Ok(to)
    } else {
        Err(IllegalTransition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    const ALLOWED: [(Status, Status); 9] = [
        (Pending, Creating),
        (Pending, Failed),
        (Pending, Deleting),
        (Creating, Active),
        (Creating, Failed),
        (Creating, Deleting),
        (Active, Deleting),
        (Failed, Deleting),
        (Deleting, Deleted),
    ];

    #[test]
    fn every_allowed_transition_is_accepted() {
        for (from, to) in ALLOWED {
            assert_eq!(transition(from, to), Ok(to), "{from} -> {to}");
        }
    }

    #[test]
    fn every_other_pair_is_refused() {
        for &from in Status::ALL {
            for &to in Status::ALL {
                if !ALLOWED.contains(&(from, to)) {
                    assert_eq!(
                        transition(from, to),
                        Err(IllegalTransition { from, to }),
                        "{from} -> {to} must be refused"
                    );
                }
            }
        }
    }

    #[test]
    fn deleted_is_terminal_and_nothing_resurrects() {
        for &to in Status::ALL {
            assert!(!can_transition(Deleted, to));
        }
        assert!(!can_transition(Deleting, Active));
        assert!(!can_transition(Failed, Active));
    }
}

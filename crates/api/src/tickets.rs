//! Tickets for the event streams: what a browser puts in `?ticket=`, since an `EventSource`
//! or a `WebSocket` cannot send an `Authorization` header and a JWT must never go into a
//! URL (URLs end up in logs and histories).
//!
//! A ticket is signed, so any replica can check it: `evt1.<payload>.<mac>`, the payload
//! base64url JSON `{"u": user, "exp": …, "sess": …, "n": nonce}`, the MAC an HMAC-SHA256
//! under a key derived from the JWT secret for this use only (so no JWT passes for a
//! ticket, and no ticket for a JWT). It is valid for `TICKET_TTL_SECS`, opens only the
//! event streams, and opens one stream, once: its nonce is spent in the database on first
//! use (`api::events`), so a second use is refused on every replica. The stream it opens
//! ends at the session's expiry or after `TICKET_STREAM_SECS`, whichever comes first.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::auth::Session;
use super::error::ApiError;

/// How long a ticket opens streams, in seconds.
pub const TICKET_TTL_SECS: i64 = 60;
/// Longest a stream opened with a ticket lasts, in seconds; the page then asks for a new
/// ticket (CONTRACTS.md §4.7).
pub const TICKET_STREAM_SECS: i64 = 3600;

const PREFIX: &str = "evt1.";

pub struct Tickets {
    key: Hmac<Sha256>,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    u: String,
    exp: i64,
    sess: i64,
    /// Spent on first use.
    n: String,
}

/// A ticket that checked out: the session its stream gets, and what spends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The ticket's user, until its stream must end.
    pub session: Session,
    pub nonce: String,
    /// When the ticket expires (Unix seconds): its nonce is kept spent until then.
    pub expires_at: i64,
}

impl Tickets {
    pub fn new(jwt_secret: &str) -> Self {
        let mut derive = Hmac::<Sha256>::new_from_slice(jwt_secret.as_bytes())
            .expect("HMAC takes a key of any length");
        derive.update(b"fulfillment-service event-stream tickets v1");
        let key = derive.finalize().into_bytes();
        Tickets {
            key: Hmac::new_from_slice(&key).expect("HMAC takes a key of any length"),
        }
    }

    /// A ticket for `session`'s user, valid from `now` for `TICKET_TTL_SECS`.
    pub fn mint(&self, session: &Session, now: i64) -> String {
        let claims = Claims {
            u: session.user.clone(),
            exp: now + TICKET_TTL_SECS,
            sess: session.until,
            n: hex::encode(rand::random::<[u8; 16]>()),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("plain JSON"));
        let mut mac = self.key.clone();
        mac.update(payload.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{PREFIX}{payload}.{tag}")
    }

    /// What a ticket opens, if it is ours, intact and not expired at `now` (whether it
    /// was spent is the database's to say).
    pub fn open(&self, ticket: &str, now: i64) -> Result<Opened, ApiError> {
        let invalid = || ApiError::unauthorized("invalid_ticket", "invalid ticket");
        let (payload, tag) = ticket
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('.'))
            .ok_or_else(invalid)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        let mut mac = self.key.clone();
        mac.update(payload.as_bytes());
        // Constant-time comparison.
        mac.verify_slice(&tag).map_err(|_| invalid())?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(invalid)?;
        if now >= claims.exp || now >= claims.sess {
            return Err(ApiError::unauthorized(
                "ticket_expired",
                "the ticket has expired; ask for a new one",
            ));
        }
        Ok(Opened {
            session: Session {
                user: claims.u,
                until: claims.sess.min(now + TICKET_STREAM_SECS),
            },
            nonce: claims.n,
            expires_at: claims.exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn session() -> Session {
        Session {
            user: "apple_000123.abc".into(),
            until: NOW + 3_600,
        }
    }

    #[test]
    fn a_ticket_opens_its_session_until_it_expires() {
        let tickets = Tickets::new("secret-a-0123456789abcdef0123456789");
        let t = tickets.mint(&session(), NOW);
        let opened = tickets.open(&t, NOW + 59).unwrap();
        assert_eq!(opened.session, session());
        assert_eq!(opened.expires_at, NOW + TICKET_TTL_SECS);
        assert_ne!(
            tickets
                .open(&tickets.mint(&session(), NOW), NOW)
                .unwrap()
                .nonce,
            opened.nonce,
            "every ticket has a nonce of its own"
        );
        assert_eq!(
            tickets.open(&t, NOW + TICKET_TTL_SECS).unwrap_err().code,
            "ticket_expired"
        );
    }

    #[test]
    fn a_tickets_stream_lasts_an_hour_at_most() {
        let tickets = Tickets::new("secret-a-0123456789abcdef0123456789");
        let long = Session {
            until: NOW + 30 * 24 * 3600,
            ..session()
        };
        let opened = tickets.open(&tickets.mint(&long, NOW), NOW + 10).unwrap();
        assert_eq!(opened.session.until, NOW + 10 + TICKET_STREAM_SECS);
    }

    #[test]
    fn a_ticket_never_outlives_the_session_it_came_from() {
        let tickets = Tickets::new("secret-a-0123456789abcdef0123456789");
        let short = Session {
            until: NOW + 10,
            ..session()
        };
        let t = tickets.mint(&short, NOW);
        assert!(tickets.open(&t, NOW + 9).is_ok());
        assert_eq!(
            tickets.open(&t, NOW + 10).unwrap_err().code,
            "ticket_expired"
        );
    }

    #[test]
    fn an_altered_or_foreign_ticket_is_refused() {
        let tickets = Tickets::new("secret-a-0123456789abcdef0123456789");
        let other = Tickets::new("secret-b-0123456789abcdef0123456789");
        let t = tickets.mint(&session(), NOW);
        assert_eq!(other.open(&t, NOW).unwrap_err().code, "invalid_ticket");
        // Another user's name in the payload, with the original MAC.
        let (_, tag) = t.rsplit_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"u":"someone-else","exp":{},"sess":{},"n":"00"}}"#,
            NOW + 60,
            NOW + 3_600
        ));
        let altered = format!("{PREFIX}{forged}.{tag}");
        assert_eq!(
            tickets.open(&altered, NOW).unwrap_err().code,
            "invalid_ticket"
        );
        for garbage in ["", "evt1.", "evt1..", "evt1.a.b", "not-a-ticket", &t[1..]] {
            assert_eq!(
                tickets.open(garbage, NOW).unwrap_err().code,
                "invalid_ticket"
            );
        }
    }
}

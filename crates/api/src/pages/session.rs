//! The pages' sessions (CONTRACTS.md §4.6): the token a person signed in with, kept in a
//! signed `HttpOnly; SameSite=Strict` cookie, one per kind (the app's users and the
//! console's operators never share one), and the same-origin check of every
//! state-changing request.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use axum::http::HeaderMap;
use axum::http::header;

/// Who a cookie signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A user of the app (`/`), with their app token.
    User,
    /// An operator (`/console`), with an operator token.
    Operator,
}

impl Kind {
    pub fn cookie(self) -> &'static str {
        match self {
            Kind::User => "fs_session",
            Kind::Operator => "fs_console",
        }
    }

    /// The page a session of this kind opens.
    pub fn home(self) -> &'static str {
        match self {
            Kind::User => "/",
            Kind::Operator => "/console",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Kind::User => "/",
            Kind::Operator => "/console",
        }
    }
}

/// Signs and opens session cookies with a key derived from the JWT secret for this use only.
pub struct CookieSeal {
    key: Hmac<Sha256>,
}

impl CookieSeal {
    pub fn new(jwt_secret: &str) -> Self {
        let mut derive = Hmac::<Sha256>::new_from_slice(jwt_secret.as_bytes())
            .expect("HMAC takes a key of any length");
        derive.update(b"fulfillment-service page sessions v1");
        let key = derive.finalize().into_bytes();
        CookieSeal {
            key: Hmac::new_from_slice(&key).expect("HMAC takes a key of any length"),
        }
    }

    fn tag(&self, kind: Kind, token: &str) -> String {
        let mut mac = self.key.clone();
        mac.update(kind.cookie().as_bytes());
        mac.update(&[0]);
        mac.update(token.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The `Set-Cookie` value that keeps `token` for `max_age` seconds.
    pub fn set(&self, kind: Kind, token: &str, max_age: i64, secure: bool) -> String {
        let value = format!("{token}.{}", self.tag(kind, token));
        format!(
            "{}={value}; Path={}; Max-Age={}; HttpOnly; SameSite=Strict{}",
            kind.cookie(),
            kind.path(),
            max_age.max(0),
            if secure { "; Secure" } else { "" }
        )
    }

    /// The `Set-Cookie` value that ends a session.
    pub fn clear(kind: Kind) -> String {
        format!(
            "{}=; Path={}; Max-Age=0; HttpOnly; SameSite=Strict",
            kind.cookie(),
            kind.path()
        )
    }

    /// The token of the request's `kind` cookie, when its signature holds.
    pub fn open<'a>(&self, kind: Kind, headers: &'a HeaderMap) -> Option<&'a str> {
        let value = cookie(headers, kind.cookie())?;
        let (token, tag) = value.rsplit_once('.')?;
        let expected = self.tag(kind, token);
        bool::from(expected.as_bytes().ct_eq(tag.as_bytes())).then_some(token)
    }
}

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A state-changing request must come from a page of this origin: its `Origin` names the
/// host the request was sent to. A request without `Origin` is refused too (browsers
/// send it with every POST).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (host, origin) {
        (Some(host), Some(origin)) => origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_cookie_opens_only_with_its_signature_and_for_its_kind() {
        let seal = CookieSeal::new("secret");
        let set = seal.set(Kind::User, "tok.en.x", 60, false);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        let value = set.split(';').next().unwrap();
        let h = with(&[(header::COOKIE, &format!("a=b; {value}"))]);
        assert_eq!(seal.open(Kind::User, &h), Some("tok.en.x"));
        assert_eq!(seal.open(Kind::Operator, &h), None);
        // Another secret, or an altered token, does not open it.
        assert_eq!(CookieSeal::new("other").open(Kind::User, &h), None);
        let forged = value.replace("tok.en.x", "tok.en.y");
        let h = with(&[(header::COOKIE, &forged)]);
        assert_eq!(seal.open(Kind::User, &h), None);
        // The operator cookie under the user's name does not open either.
        let op = seal.set(Kind::Operator, "t", 60, false);
        let renamed = op
            .split(';')
            .next()
            .unwrap()
            .replace("fs_console", "fs_session");
        assert_eq!(
            seal.open(Kind::User, &with(&[(header::COOKIE, &renamed)])),
            None
        );
    }

    #[test]
    fn only_a_request_from_this_origin_changes_state() {
        let host = (header::HOST, "127.0.0.1:8080");
        assert!(same_origin(&with(&[
            host.clone(),
            (header::ORIGIN, "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&with(&[
            host.clone(),
            (header::ORIGIN, "http://evil.example")
        ])));
        assert!(!same_origin(&with(&[
            host.clone(),
            (header::ORIGIN, "http://127.0.0.1:8081")
        ])));
        assert!(!same_origin(&with(&[
            host.clone(),
            (header::ORIGIN, "null")
        ])));
        assert!(!same_origin(&with(&[host])));
    }
}

//! User tokens: HS256 JWTs from the auth service, checked to the letter (RFC 7519, 7515),
//! and the internal secret, compared in constant time.
//!
//! A verified token is remembered (keyed by its full text, until its `exp`), so the hot read
//! path does not decode base64, verify the HMAC and parse two JSON documents on every
//! request of a user who already presented it. A token that is not byte-for-byte one that
//! verified is verified in full.

use std::collections::HashMap;
use std::sync::Mutex;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::tickets::Tickets;

/// Verified tokens remembered at most; when full, the expired ones go, and if that is not
/// enough, all of them (they are verified again on their next use).
const MAX_REMEMBERED: usize = 20_000;

/// Leeway on `exp` and `nbf`, in seconds (clock skew with the auth service).
const LEEWAY: i64 = 30;

/// Credentials the API checks.
pub struct Auth {
    jwt: DecodingKey,
    validation: Validation,
    /// The key operator tokens are signed with: `OPERATOR_JWT_SECRET`, else `JWT_SECRET`.
    operator_key: DecodingKey,
    /// Whether that key is the users' own (no `OPERATOR_JWT_SECRET`).
    operator_key_shared: bool,
    operator_validation: Validation,
    internal_secret: String,
    tickets: Tickets,
    /// The pages' session cookies.
    pub(super) cookies: super::pages::session::CookieSeal,
    /// token → (user, `exp`, `nbf`) of tokens that verified.
    verified: Mutex<HashMap<Box<str>, Verified>>,
}

#[derive(Clone)]
struct Verified {
    user: String,
    exp: i64,
    nbf: Option<i64>,
    /// Claim `"role": "operator"`: an operator of the console, not a user of the app.
    operator: bool,
}

impl Verified {
    fn bearer(&self) -> Bearer {
        let session = Session {
            user: self.user.clone(),
            until: self.exp.saturating_add(LEEWAY),
        };
        if self.operator {
            Bearer::Operator(session)
        } else {
            Bearer::User(session)
        }
    }
}

/// Who a verified token names: a user of the app, or an operator (CONTRACTS.md §4.6:
/// claim `"role": "operator"`, `sub` the operator's name). Neither passes for the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bearer {
    User(Session),
    Operator(Session),
}

/// Who is calling, and until when (Unix seconds) their credential holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub until: i64,
}

impl Auth {
    /// Both secrets must be non-empty: an empty secret authenticates no one. Tokens with
    /// an `aud` are accepted whatever it holds (as the deployed service did) until
    /// `with_audience` names one.
    pub fn new(jwt_secret: &str, internal_secret: &str) -> Self {
        assert!(
            !jwt_secret.is_empty() && !internal_secret.is_empty(),
            "secrets are validated at startup"
        );
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        // RFC 7519 §4.1.5: not before `nbf` (with the same leeway as `exp`).
        validation.validate_nbf = true;
        validation.leeway = LEEWAY as u64;
        validation.validate_aud = false;
        let mut operator_validation = validation.clone();
        operator_validation.validate_aud = true;
        operator_validation.set_audience(&[OPERATOR_AUDIENCE]);
        operator_validation.set_required_spec_claims(&["exp", "aud"]);
        Auth {
            jwt: DecodingKey::from_secret(jwt_secret.as_bytes()),
            validation,
            operator_key: DecodingKey::from_secret(jwt_secret.as_bytes()),
            operator_key_shared: true,
            operator_validation,
            internal_secret: internal_secret.to_owned(),
            tickets: Tickets::new(jwt_secret),
            cookies: super::pages::session::CookieSeal::new(jwt_secret),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Users' tokens must name `audience` in their `aud` (`JWT_AUDIENCE`).
    pub fn with_audience(mut self, audience: Option<&str>) -> Self {
        if let Some(aud) = audience.filter(|a| !a.is_empty()) {
            self.validation.validate_aud = true;
            self.validation.set_audience(&[aud]);
            self.validation.set_required_spec_claims(&["exp", "aud"]);
        }
        self
    }

    /// Operator tokens are signed with `secret` (`OPERATOR_JWT_SECRET`), not the users'.
    pub fn with_operator_secret(mut self, secret: Option<&str>) -> Self {
        if let Some(secret) = secret.filter(|s| !s.is_empty()) {
            self.operator_key = DecodingKey::from_secret(secret.as_bytes());
            self.operator_key_shared = false;
        }
        self
    }

    pub(super) fn internal_ok(&self, presented: &str) -> bool {
        !presented.is_empty()
            && bool::from(presented.as_bytes().ct_eq(self.internal_secret.as_bytes()))
    }

    /// The user a JWT names: claim `uid` if present (it must then be a string), else
    /// `sub`. A token with a `crit` header is refused (RFC 7515 §4.1.11: we understand no
    /// extension), and so is one whose user is blank, too long or holds control characters.
    pub fn user_of(&self, token: &str) -> Result<String, ApiError> {
        self.session_of(token).map(|s| s.user)
    }

    /// The user a JWT names, and until when the token holds (its `exp` and our leeway).
    /// An operator token is no user token (401).
    pub fn session_of(&self, token: &str) -> Result<Session, ApiError> {
        match self.bearer_of(token)? {
            Bearer::User(s) => Ok(s),
            Bearer::Operator(_) => Err(ApiError::unauthorized(
                "operator_token",
                "an operator token does not sign in to the user API",
            )),
        }
    }

    /// Whom a JWT names: a user or an operator.
    pub fn bearer_of(&self, token: &str) -> Result<Bearer, ApiError> {
        let now = chrono::Utc::now().timestamp();
        if let Some(v) = self.verified.lock().unwrap().get(token) {
            if now - LEEWAY >= v.exp {
                return Err(ApiError::unauthorized("token_expired", "token has expired"));
            }
            if v.nbf.is_none_or(|nbf| nbf <= now + LEEWAY) {
                return Ok(v.bearer());
            }
        }
        let verified = self.verify(token)?;
        let bearer = verified.bearer();
        let mut remembered = self.verified.lock().unwrap();
        if remembered.len() >= MAX_REMEMBERED {
            remembered.retain(|_, v| now - LEEWAY < v.exp);
            if remembered.len() >= MAX_REMEMBERED {
                remembered.clear();
            }
        }
        remembered.insert(token.into(), verified);
        Ok(bearer)
    }

    /// A ticket for the event streams of `session`'s user (`POST /my/events/ticket`).
    pub fn ticket_for(&self, session: &Session) -> String {
        self.tickets.mint(session, chrono::Utc::now().timestamp())
    }

    /// What a ticket opens (not yet spent: see `api::events`).
    pub fn ticket_session(&self, ticket: &str) -> Result<super::tickets::Opened, ApiError> {
        self.tickets.open(ticket, chrono::Utc::now().timestamp())
    }

    /// Verifies a token in full: an operator token if it claims to be one and its key
    /// and audience bear it out (CONTRACTS.md §4.6), else a user token.
    fn verify(&self, token: &str) -> Result<Verified, ApiError> {
        if claims_to_be_operator(token) {
            match decode(token, &self.operator_key, &self.operator_validation) {
                Ok(claims) => return verified(claims.sub, claims.exp, claims.nbf, true),
                // Operators have a key of their own and this is not it: a user's token
                // that happens to carry these claims, if the users' key signed it.
                Err(Undecoded::WrongKey) if !self.operator_key_shared => {}
                Err(e) => return Err(e.into()),
            }
        }
        let claims = decode(token, &self.jwt, &self.validation)?;
        let user = match claims.uid {
            None | Some(serde_json::Value::Null) => claims.sub,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(_) => return Err(invalid()),
        };
        verified(user, claims.exp, claims.nbf, false)
    }
}

/// The audience an operator token names (CONTRACTS.md §4.6).
pub const OPERATOR_AUDIENCE: &str = "fulfillment-operator";

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    uid: Option<serde_json::Value>,
    sub: Option<String>,
    // Numbers, as RFC 7519 has them (an issuer may write `1.7e9`); the library has
    // already checked them against the clock.
    exp: f64,
    nbf: Option<f64>,
}

fn invalid() -> ApiError {
    ApiError::unauthorized("invalid_token", "invalid token")
}

/// Why a token did not decode under one key.
enum Undecoded {
    /// Its signature is not this key's.
    WrongKey,
    Refused(ApiError),
}

impl From<Undecoded> for ApiError {
    fn from(e: Undecoded) -> Self {
        match e {
            Undecoded::WrongKey => invalid(),
            Undecoded::Refused(e) => e,
        }
    }
}

/// The claims of a token signed with `key` that passes `validation`.
fn decode(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Claims, Undecoded> {
    use jsonwebtoken::errors::ErrorKind;
    let data =
        jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => Undecoded::WrongKey,
            ErrorKind::ExpiredSignature => {
                Undecoded::Refused(ApiError::unauthorized("token_expired", "token has expired"))
            }
            ErrorKind::ImmatureSignature => Undecoded::Refused(ApiError::unauthorized(
                "token_not_yet_valid",
                "token is not valid yet",
            )),
            _ => Undecoded::Refused(invalid()),
        })?;
    // RFC 7515 §4.1.11: we understand no extension.
    if data.header.crit.is_some() {
        return Err(Undecoded::Refused(invalid()));
    }
    Ok(data.claims)
}

/// Whether a token's claims, unverified, say `"role": "operator"` and name the operators'
/// audience: only which verification the token then gets depends on this.
fn claims_to_be_operator(token: &str) -> bool {
    use serde_json::Value;
    #[derive(Deserialize)]
    struct Peek {
        #[serde(default)]
        role: Option<Value>,
        #[serde(default)]
        aud: Option<Value>,
    }
    let Ok(peek) = jsonwebtoken::dangerous::insecure_decode_claims::<Peek>(token) else {
        return false;
    };
    let names_operators = match &peek.aud {
        Some(Value::String(a)) => a == OPERATOR_AUDIENCE,
        Some(Value::Array(all)) => all.iter().any(|a| a == OPERATOR_AUDIENCE),
        _ => false,
    };
    matches!(&peek.role, Some(Value::String(r)) if r == "operator") && names_operators
}

/// A verified token's caller, if it names one that is a valid id.
fn verified(
    user: Option<String>,
    exp: f64,
    nbf: Option<f64>,
    operator: bool,
) -> Result<Verified, ApiError> {
    let user = user
        .filter(|u| domain::input::id(u, "uid", "", "").is_ok())
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "token names no user"))?;
    Ok(Verified {
        user,
        exp: exp as i64,
        nbf: nbf.map(|n| n as i64),
        operator,
    })
}

/// Mints a user token as the auth service would (HS256, `uid` and `sub`, `exp`).
pub fn mint_user_token(secret: &str, user_id: &str, ttl: std::time::Duration) -> String {
    mint(
        secret,
        ttl,
        serde_json::json!({"uid": user_id, "sub": user_id}),
    )
}

/// Mints an operator token (CONTRACTS.md §4.6): HS256, `"role": "operator"`, `"aud":
/// "fulfillment-operator"`, `sub` the operator's name, `exp`. `secret` is
/// `OPERATOR_JWT_SECRET` when that is set, else `JWT_SECRET`.
pub fn mint_operator_token(secret: &str, name: &str, ttl: std::time::Duration) -> String {
    mint(
        secret,
        ttl,
        serde_json::json!({"sub": name, "role": "operator", "aud": OPERATOR_AUDIENCE}),
    )
}

/// An HS256 token with `claims`, `iat` now and `exp` after `ttl`.
fn mint(secret: &str, ttl: std::time::Duration, mut claims: serde_json::Value) -> String {
    let now = chrono::Utc::now().timestamp();
    claims["iat"] = now.into();
    claims["exp"] = (now + ttl.as_secs() as i64).into();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "unit-test-jwt-secret-0123456789abcdef";

    #[test]
    fn a_remembered_token_answers_only_for_its_exact_text() {
        let auth = Auth::new(SECRET, "internal-secret-0123456789abcdef0123");
        let token = mint_user_token(SECRET, "u-1", std::time::Duration::from_secs(600));
        assert_eq!(auth.user_of(&token).unwrap(), "u-1");
        assert_eq!(auth.user_of(&token).unwrap(), "u-1", "from memory");
        // The same claims signed with another key: never served from memory.
        let forged = mint_user_token(
            "another-secret-0123456789abcdef0123",
            "u-1",
            std::time::Duration::from_secs(600),
        );
        let (head_body, _) = token.rsplit_once('.').unwrap();
        let (_, forged_sig) = forged.rsplit_once('.').unwrap();
        let spliced = format!("{head_body}.{forged_sig}");
        assert_eq!(auth.user_of(&spliced).unwrap_err().code, "invalid_token");
        assert_eq!(auth.user_of(&forged).unwrap_err().code, "invalid_token");
    }

    #[test]
    fn an_operator_token_is_no_user_token_and_a_user_token_no_operators() {
        let auth = Auth::new(SECRET, "internal-secret-0123456789abcdef0123");
        let ttl = std::time::Duration::from_secs(600);
        let op = mint_operator_token(SECRET, "alice", ttl);
        for _ in 0..2 {
            // Verified, then from memory: the role is remembered with the token.
            match auth.bearer_of(&op).unwrap() {
                Bearer::Operator(s) => assert_eq!(s.user, "alice"),
                other => panic!("{other:?}"),
            }
            assert_eq!(auth.session_of(&op).unwrap_err().code, "operator_token");
        }
        let user = mint_user_token(SECRET, "u-1", ttl);
        assert!(matches!(auth.bearer_of(&user).unwrap(), Bearer::User(_)));
        let other = mint_operator_token("another-secret-0123456789abcdef0123", "alice", ttl);
        assert_eq!(auth.bearer_of(&other).unwrap_err().code, "invalid_token");
    }

    fn signed(secret: &str, claims: serde_json::Value) -> String {
        mint(secret, std::time::Duration::from_secs(600), claims)
    }

    #[test]
    fn any_audience_is_accepted_until_one_is_configured() {
        let open = Auth::new(SECRET, "internal-secret-0123456789abcdef0123");
        let strict = Auth::new(SECRET, "internal-secret-0123456789abcdef0123")
            .with_audience(Some("otun-app"));
        for aud in [
            serde_json::json!("otun-app"),
            serde_json::json!("something-else"),
            serde_json::json!(["a", "otun-app"]),
            serde_json::json!([]),
        ] {
            let token = signed(SECRET, serde_json::json!({"uid": "u-aud", "aud": aud}));
            assert_eq!(open.user_of(&token).unwrap(), "u-aud", "{aud}");
            let named = aud == "otun-app"
                || aud
                    .as_array()
                    .is_some_and(|a| a.contains(&"otun-app".into()));
            assert_eq!(strict.user_of(&token).is_ok(), named, "{aud}");
        }
        let without = signed(SECRET, serde_json::json!({"uid": "u-aud"}));
        assert!(open.user_of(&without).is_ok());
        assert_eq!(strict.user_of(&without).unwrap_err().code, "invalid_token");
    }

    #[test]
    fn an_operator_token_needs_the_operators_audience_and_key() {
        let auth = Auth::new(SECRET, "internal-secret-0123456789abcdef0123");
        let ttl = std::time::Duration::from_secs(600);
        // `role: operator` alone, as an auth service may emit it: a user's token.
        let role_only = signed(
            SECRET,
            serde_json::json!({"sub": "mallory", "role": "operator"}),
        );
        assert!(matches!(
            auth.bearer_of(&role_only).unwrap(),
            Bearer::User(_)
        ));
        let wrong_aud = signed(
            SECRET,
            serde_json::json!({"sub": "mallory", "role": "operator", "aud": "otun-app"}),
        );
        assert!(matches!(
            auth.bearer_of(&wrong_aud).unwrap(),
            Bearer::User(_)
        ));
        let in_array = signed(
            SECRET,
            serde_json::json!({"sub": "alice", "role": "operator", "aud": ["x", OPERATOR_AUDIENCE]}),
        );
        assert!(matches!(
            auth.bearer_of(&in_array).unwrap(),
            Bearer::Operator(_)
        ));
        // With OPERATOR_JWT_SECRET, only that key makes an operator.
        const OPS: &str = "operator-secret-0123456789abcdef0123";
        let split = Auth::new(SECRET, "internal-secret-0123456789abcdef0123")
            .with_operator_secret(Some(OPS));
        let by_users_key = mint_operator_token(SECRET, "mallory", ttl);
        assert!(matches!(
            split.bearer_of(&by_users_key).unwrap(),
            Bearer::User(_)
        ));
        match split
            .bearer_of(&mint_operator_token(OPS, "alice", ttl))
            .unwrap()
        {
            Bearer::Operator(s) => assert_eq!(s.user, "alice"),
            other => panic!("{other:?}"),
        }
        // An operator's expired token says so.
        let expired = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "alice", "role": "operator", "aud": OPERATOR_AUDIENCE,
                "exp": chrono::Utc::now().timestamp() - 3600}),
            &jsonwebtoken::EncodingKey::from_secret(OPS.as_bytes()),
        )
        .unwrap();
        assert_eq!(split.bearer_of(&expired).unwrap_err().code, "token_expired");
        // A user token signed with the operators' key is nobody's.
        let stray = signed(OPS, serde_json::json!({"uid": "u-1"}));
        assert_eq!(split.bearer_of(&stray).unwrap_err().code, "invalid_token");
    }

    #[test]
    fn a_token_past_its_exp_is_refused_even_when_remembered() {
        let auth = Auth::new(SECRET, "internal-secret-0123456789abcdef0123");
        let token = mint_user_token(SECRET, "u-2", std::time::Duration::from_secs(600));
        assert!(auth.user_of(&token).is_ok());
        // Age the remembered entry past its exp and the leeway.
        auth.verified
            .lock()
            .unwrap()
            .get_mut(token.as_str())
            .unwrap()
            .exp = chrono::Utc::now().timestamp() - LEEWAY - 1;
        assert_eq!(auth.user_of(&token).unwrap_err().code, "token_expired");
    }
}

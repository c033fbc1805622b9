//! The web pages (CONTRACTS.md §4.6): `/` for users, `/console` for operators, and
//! `/api/docs`. Server-rendered HTML (askama) with one small script of our own; every asset
//! is served from the binary under a versioned path, with `Content-Security-Policy:
//! default-src 'self'` on every page. Sessions are signed cookies (`session`); every
//! state-changing request must come from this origin.

pub mod assets;
mod chart;
pub mod console;
pub mod console_search;
pub mod docs;
mod fragments;
pub mod session;
pub mod user;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::ApiState;
use super::error::ApiError;
pub use assets::{ASSETS, Assets};
use session::{CookieSeal, Kind};

/// The pages' security headers: nothing loads from elsewhere, nothing frames them.
pub fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A rendered template, with the pages' headers.
pub fn page(t: &impl Template) -> Response {
    page_with(StatusCode::OK, t)
}

pub fn page_with(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => secure((status, Html(html)).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "a template did not render");
            secure(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Html("<p>Something went wrong.</p>"),
                )
                    .into_response(),
            )
        }
    }
}

#[derive(Template)]
#[template(path = "notice.html")]
struct NoticeHtml<'a> {
    class: &'a str,
    message: &'a str,
}

/// A refusal or failure, as people read it: a sentence in the page, with the status.
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PageError {
            status,
            message: message.into(),
        }
    }
}

/// An API refusal in words: its message, as a sentence.
pub fn sentence(message: &str) -> String {
    let mut s = message.trim().to_owned();
    if let Some(first) = s.get(..1) {
        s.replace_range(..1, &first.to_uppercase());
    }
    if !s.ends_with(['.', '!', '?']) {
        s.push('.');
    }
    s
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        let message = match e.status {
            StatusCode::SERVICE_UNAVAILABLE => {
                "The service cannot reach what it needs right now. Try again in a moment.".into()
            }
            StatusCode::INTERNAL_SERVER_ERROR => "Something went wrong on our side.".into(),
            StatusCode::UNAUTHORIZED => "Your session has ended. Sign in again.".into(),
            _ => sentence(&e.message),
        };
        PageError::new(e.status, message)
    }
}

impl From<app::AppError> for PageError {
    fn from(e: app::AppError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        page_with(
            self.status,
            &NoticeHtml {
                class: "error",
                message: &self.message,
            },
        )
    }
}

/// What a sign-in form says of a token that does not verify.
const TOKEN_REFUSED: &str = "This token does not sign in: it is invalid or has expired.";

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage<'a> {
    assets: &'a Assets,
    heading: &'a str,
    home: &'a str,
    hint: &'a str,
    action: &'a str,
    error: Option<&'a str>,
    /// Whether a sign-in link (`#token=…`) signs in at once: in demo mode only
    /// (CONTRACTS.md §4.7); otherwise the visitor confirms the account it names.
    link_signs_in: bool,
}

/// The sign-in form of `kind`'s page, with `error` above it.
fn signin_page(st: &ApiState, kind: Kind, error: Option<&str>, status: StatusCode) -> Response {
    let (heading, hint, action) = match kind {
        Kind::User => (
            st.product_name.as_str(),
            "Paste the token of the app (or open the link the demo prints).",
            "/signin",
        ),
        Kind::Operator => (
            "Operator console",
            "Paste an operator token (fulfillment token --operator NAME).",
            "/console/signin",
        ),
    };
    page_with(
        status,
        &SignInPage {
            assets: &ASSETS,
            heading,
            home: kind.home(),
            hint,
            action,
            error,
            link_signs_in: st.demo,
        },
    )
}

/// Signs in as `kind` with a sign-in form's token: the session starts and the browser goes
/// to the page, or the form comes back saying why not (changing nothing).
fn sign_in(
    st: &ApiState,
    headers: &HeaderMap,
    kind: Kind,
    form: Result<axum::Form<SignIn>, axum::extract::rejection::FormRejection>,
) -> Response {
    use super::auth::Bearer;
    let refuse = |message, status| signin_page(st, kind, Some(message), status);
    let Ok(axum::Form(form)) = form else {
        return refuse("Paste a token to sign in.", StatusCode::BAD_REQUEST);
    };
    let token = form.token.trim();
    match (kind, st.auth.bearer_of(token)) {
        (Kind::User, Ok(Bearer::User(s))) | (Kind::Operator, Ok(Bearer::Operator(s))) => {
            start_session(st, headers, kind, token, s.until, kind.home())
        }
        (Kind::User, Ok(Bearer::Operator(_))) => refuse(
            "This is an operator token: it opens the console (/console), not this page.",
            StatusCode::UNAUTHORIZED,
        ),
        (Kind::Operator, Ok(Bearer::User(_))) => refuse(
            "This is an app user's token. The console takes an operator token.",
            StatusCode::FORBIDDEN,
        ),
        (_, Err(_)) => refuse(TOKEN_REFUSED, StatusCode::UNAUTHORIZED),
    }
}

/// A state-changing request from a page of this origin (CONTRACTS.md §4.6).
pub struct SameOrigin;

impl<S: Send + Sync> FromRequestParts<S> for SameOrigin {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, PageError> {
        if session::same_origin(&parts.headers) {
            Ok(SameOrigin)
        } else {
            Err(PageError::new(
                StatusCode::FORBIDDEN,
                "This request came from another site and was refused.",
            ))
        }
    }
}

/// The signed-in person of a page, by their cookie of `kind`: whom its token names.
fn signed_in(
    st: &ApiState,
    headers: &HeaderMap,
    kind: Kind,
) -> Result<super::auth::Session, PageError> {
    let token = st
        .auth
        .cookies
        .open(kind, headers)
        .ok_or_else(|| PageError::new(StatusCode::UNAUTHORIZED, "Sign in first."))?;
    let bearer = st.auth.bearer_of(token).map_err(PageError::from)?;
    match (kind, bearer) {
        (Kind::User, super::auth::Bearer::User(s)) => Ok(s),
        (Kind::Operator, super::auth::Bearer::Operator(s)) => Ok(s),
        _ => Err(PageError::new(
            StatusCode::FORBIDDEN,
            "This token does not open this page.",
        )),
    }
}

/// Starts a session of `kind` with `token` (already verified), and leaves for `to`: the
/// token is in no URL from here on.
fn start_session(
    st: &ApiState,
    headers: &HeaderMap,
    kind: Kind,
    token: &str,
    until: i64,
    to: &str,
) -> Response {
    let max_age = until - chrono::Utc::now().timestamp();
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes() == b"https");
    let cookie = st.auth.cookies.set(kind, token, max_age, https);
    let mut resp = Redirect::to(to).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    secure(resp)
}

fn end_session(kind: Kind, to: &str) -> Response {
    let mut resp = Redirect::to(to).into_response();
    if let Ok(v) = HeaderValue::from_str(&CookieSeal::clear(kind)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    secure(resp)
}

/// A form's body; one that cannot be read is refused in words, with the status axum gives
/// (400, 413 for more than the body limit, 415, 422).
pub struct PageForm<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for PageForm<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = PageError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, PageError> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(form)) => Ok(PageForm(form)),
            Err(e) => Err(PageError::new(
                e.status(),
                match e.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => "The form is too large.",
                    _ => "The form could not be read.",
                },
            )),
        }
    }
}

/// The state of every page handler.
pub type St = State<Arc<ApiState>>;

/// A sign-in form's body.
#[derive(serde::Deserialize)]
pub struct SignIn {
    token: String,
}

/// A date as the pages show it.
pub fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A moment in a history, to the second.
pub fn when_exact(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// GiB, to one decimal place (none when whole).
pub fn gb(bytes: i64) -> String {
    let g = domain::units::gib(bytes);
    if (g - g.round()).abs() < 0.05 {
        format!("{}", g.round() as i64)
    } else {
        format!("{g:.1}")
    }
}

/// A notice as a fragment of HTML (escaped).
pub fn notice_html(message: &str) -> String {
    NoticeHtml {
        class: "error",
        message,
    }
    .render()
    .unwrap_or_default()
}

/// The pages' routes: HTML for people, not part of the API the document describes.
pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/assets/{version}/{file}", get(assets::asset))
        .route("/console", get(console::console))
        .route("/console/signin", post(console::console_signin))
        .route("/console/signout", post(console::console_signout))
        .route(
            "/console/queue",
            get(console::console_queue).post(console::console_action),
        )
        .route("/console/load", get(console::console_load))
        .route("/console/search", get(console_search::console_search))
        .route(
            "/console/resources/{id}",
            get(console_search::console_resource),
        )
        .route("/api/docs", get(docs::docs))
        .route("/", get(user::home))
        .route("/signin", post(user::signin))
        .route("/signout", post(user::signout))
        .route("/app/nodes", get(user::app_nodes).post(user::app_create))
        .route("/app/nodes/{id}/delete", post(user::app_delete))
        .route("/app/nodes/{id}/migrate", post(user::app_migrate))
        .route("/app/vpn", get(user::app_vpn))
        .route("/app/ticket", post(user::app_ticket))
}

//! Live updates (`/api/v1/my/events`, `/ws`, `/ticket`): the user's `node` and `vpn`
//! documents pushed as they change, over Server-Sent Events or a WebSocket, authenticated
//! by a Bearer JWT or, for browsers, a short-lived ticket in `?ticket=`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::ws::{CloseFrame, Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::ApiState;
use super::auth::Auth;
use super::error::ApiError;
use super::extract::{Session, UserSession};
use super::feed::{Feed, Message};
use super::openapi::refusals as doc;
use super::tickets::TICKET_TTL_SECS;
use app::UserId;
use app::live::{Refused, Transport};

/// Longest a stream stays silent: a keep-alive comment (SSE) or a ping (WebSocket).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Largest frame read from a WebSocket client (CONTRACTS.md §4.7): a larger one closes
/// the socket with 1009 before its payload is read.
pub const MAX_CLIENT_FRAME: usize = 4 * 1024;

/// A caller of the event streams: a Bearer JWT, or a ticket in `?ticket=`.
pub struct StreamCaller(pub UserId, pub Session);

impl FromRequestParts<Arc<ApiState>> for StreamCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        #[derive(Deserialize)]
        struct Query {
            ticket: Option<String>,
        }
        let ticket = axum::extract::Query::<Query>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|q| q.0.ticket);
        // A Bearer header wins; without one, the ticket.
        let has_bearer = parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION);
        let UserSession(user, session) = match ticket {
            Some(ticket) if !has_bearer => {
                let opened = state.auth.ticket_session(&ticket)?;
                let caller = UserSession::checked(state, opened.session)?;
                // One stream, once, on any replica.
                if !state
                    .app
                    .spend_ticket(&opened.nonce, opened.expires_at)
                    .await?
                {
                    return Err(ApiError::unauthorized(
                        "ticket_used",
                        "this ticket has been used; ask for a new one",
                    ));
                }
                caller
            }
            _ => UserSession::from_request_parts(parts, state)
                .await
                .map_err(|e| match e.code {
                    "missing_token" => {
                        ApiError::unauthorized("missing_token", "missing bearer token or ticket")
                    }
                    _ => e,
                })?,
        };
        Ok(StreamCaller(user, session))
    }
}

/// `POST /api/v1/my/events/ticket`.
#[utoipa::path(
    post,
    path = "/api/v1/my/events/ticket",
    summary = "A ticket for the event streams",
    tag = "events",
    security(("user_jwt" = [])),
    responses((status = 200, description = "A ticket for the event streams", body = Ticket), doc::Refusals, doc::RateLimited)
)]
pub async fn ticket(
    State(st): State<Arc<ApiState>>,
    UserSession(_, session): UserSession,
) -> Json<Ticket> {
    Json(Ticket::new(&st.auth, &session))
}

/// `POST /api/v1/my/events/ticket`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    ticket: String,
    /// Seconds.
    expires_in: u64,
}

impl Ticket {
    /// A ticket for a session's event streams (the pages ask for one too).
    pub(crate) fn new(auth: &Auth, session: &Session) -> Self {
        Ticket {
            ticket: auth.ticket_for(session),
            expires_in: TICKET_TTL_SECS.unsigned_abs(),
        }
    }
}

/// `GET /api/v1/my/events`: Server-Sent Events.
#[utoipa::path(
    get,
    path = "/api/v1/my/events",
    summary = "Live updates (Server-Sent Events)",
    tag = "events",
    security(("user_jwt" = []), ("event_ticket" = [])),
    responses((status = 200, description = "Server-Sent Events: `event: node` (the body of `GET /my/node`) and `event: vpn` (the body of `GET /my/vpn`), each with an `id:`; `: keep-alive` comments. The schema is that of one event", content_type = "text/event-stream", body = Message), doc::StreamRefusals)
)]
pub async fn sse(
    State(st): State<Arc<ApiState>>,
    StreamCaller(user, session): StreamCaller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let feed = open(&st, user, &session, Transport::Sse, last_event_id(&headers))?;
    let events = futures::stream::unfold(feed, |mut feed| async move {
        let m = feed.next().await?;
        let event = Event::default().event(m.event).id(m.id).data(m.data);
        Some((Ok::<_, Infallible>(event), feed))
    });
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// `GET /api/v1/my/events/ws`: the same over a WebSocket, one text frame per message.
#[utoipa::path(
    get,
    path = "/api/v1/my/events/ws",
    summary = "Live updates (WebSocket)",
    tag = "events",
    security(("user_jwt" = []), ("event_ticket" = [])),
    responses((status = 101, description = "WebSocket: one text frame per message, `{\"event\": \"node\"|\"vpn\", \"id\", \"data\"}`"), (status = 400, description = "Not a WebSocket upgrade", body = doc::ErrorBody), doc::StreamRefusals)
)]
pub async fn ws(
    State(st): State<Arc<ApiState>>,
    StreamCaller(user, session): StreamCaller,
    headers: HeaderMap,
    hold: Option<axum::Extension<crate::http::Hold>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "not_a_websocket", e.body_text()))?
        // Nothing but control frames is expected: a data frame of any length is refused
        // before its payload is kept (1008), and no frame over 4 KiB is read (1009).
        .max_frame_size(MAX_CLIENT_FRAME)
        .max_message_size(0)
        .read_buffer_size(MAX_CLIENT_FRAME);
    let feed = open(&st, user, &session, Transport::Ws, last_event_id(&headers))?;
    Ok(upgrade.on_upgrade(move |socket| async move {
        // The upgraded connection still counts against the connection cap, busy.
        let _counted = hold.map(|axum::Extension(h)| h.busy());
        pump(socket, feed).await
    }))
}

fn open(
    st: &Arc<ApiState>,
    user: UserId,
    session: &Session,
    transport: Transport,
    resume_from: Option<String>,
) -> Result<Feed, ApiError> {
    let follower = st.app.live.follow(&user, transport).map_err(refused)?;
    // A token may claim to hold for ages; a year is as long as any stream is kept.
    let left = session
        .until
        .saturating_sub(chrono::Utc::now().timestamp())
        .clamp(0, 365 * 24 * 3600) as u64;
    let until = tokio::time::Instant::now() + Duration::from_secs(left);
    Ok(Feed::new(st.clone(), user, until, follower, resume_from))
}

fn refused(why: Refused) -> ApiError {
    let mut e = match why {
        Refused::UserFull => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            "you already have 5 event streams open; close one first",
        ),
        Refused::ProcessFull => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "streams_full",
            "this server holds as many event streams as it can; try again shortly",
        ),
        Refused::ShuttingDown => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "this server is shutting down; reconnect",
        ),
    };
    e.retry_after = Some(if why == Refused::UserFull { 30 } else { 5 });
    e
}

fn last_event_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Drives one WebSocket: documents out, pings every `KEEP_ALIVE`, until the client goes,
/// the credential expires or the process shuts down (a close frame then says why).
async fn pump(mut socket: WebSocket, mut feed: Feed) {
    let mut ping = tokio::time::interval(KEEP_ALIVE);
    ping.tick().await;
    loop {
        tokio::select! {
            message = feed.next() => {
                let Some(m) = message else {
                    let close = CloseFrame { code: 1001, reason: "stream ended".into() };
                    let _ = socket.send(Frame::Close(Some(close))).await;
                    return;
                };
                if socket.send(Frame::Text(m.frame().into())).await.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                if socket.send(Frame::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Ok(Frame::Close(_))) => return,
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
                Some(Ok(Frame::Text(_) | Frame::Binary(_))) => {
                    return refuse(socket, POLICY).await;
                }
                Some(Err(e)) => {
                    if let Some(code) = refusal_of(e) {
                        refuse(socket, code).await;
                    }
                    return;
                }
            },
        }
    }
}

/// The close code for a data frame from the client.
const POLICY: u16 = 1008;
/// The close code for a frame over `MAX_CLIENT_FRAME`.
const TOO_BIG: u16 = 1009;

/// The close code for a client frame the socket refused to read, if that is why it failed.
fn refusal_of(e: axum::Error) -> Option<u16> {
    use tungstenite::error::{CapacityError, Error};
    match e.into_inner().downcast_ref::<Error>()? {
        Error::Capacity(CapacityError::MessageTooLong { max_size, .. }) => {
            // The frame limit, or the message limit of nothing at all: data.
            Some(if *max_size == MAX_CLIENT_FRAME {
                TOO_BIG
            } else {
                POLICY
            })
        }
        _ => None,
    }
}

/// Closes the socket saying why.
async fn refuse(mut socket: WebSocket, code: u16) {
    let reason = if code == TOO_BIG {
        "frame too large"
    } else {
        "this stream takes no data"
    };
    let close = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Frame::Close(Some(close))).await;
}

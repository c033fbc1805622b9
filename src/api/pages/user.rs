//! `/`: a user's nodes (with creation advancing live from the event stream) and VPN.
//! The page's script swaps in the fragments these handlers render.

use askama::Template;
use axum::Form;
use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::session::Kind;
use super::{
    ASSETS, Assets, PageError, PageForm, SameOrigin, SignIn, St, gb, page, page_with, when,
};
use crate::api::ApiState;
use crate::api::extract::ApiJson;
use crate::api::user::CreateNode;
use crate::api::views::MigrationView;
use crate::app::{MyNodeRef, NodeCreate, NodeEntry, UserId};
use crate::domain::progress::{self, StepStatus};
use crate::domain::{Resource, Status};
use crate::ports::store::Region;

#[derive(Template)]
#[template(path = "signin.html")]
pub(super) struct SignInPage<'a> {
    pub assets: &'a Assets,
    pub heading: &'a str,
    pub home: &'a str,
    pub hint: &'a str,
    pub action: &'a str,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage<'a> {
    assets: &'a Assets,
    user: &'a str,
    nodes: String,
    vpn: String,
}

pub(super) struct StepRow {
    number: i32,
    name: &'static str,
    status: &'static str,
    when: String,
}

pub(super) struct MigrationLine {
    status: &'static str,
    class: &'static str,
    text: String,
}

pub(super) struct NodeCard {
    id: String,
    region: String,
    region_name: String,
    status: &'static str,
    status_label: &'static str,
    public_ip: Option<String>,
    plan: String,
    created: String,
    used_gb: String,
    limit_gb: String,
    percent: String,
    steps: Vec<StepRow>,
    migration: Option<MigrationLine>,
    can_migrate: bool,
}

#[derive(Template)]
#[template(path = "nodes.html")]
struct NodesHtml {
    message: String,
    notice: Option<String>,
    nodes: Vec<NodeCard>,
    regions: Vec<Region>,
    can_create: bool,
}

struct Link {
    name: String,
    url: String,
    qr: String,
}

#[derive(Template)]
#[template(path = "vpn.html")]
struct VpnHtml {
    status: &'static str,
    status_label: &'static str,
    notice: Option<String>,
    message: String,
    has_account: bool,
    used_gb: String,
    limit_gb: String,
    percent: String,
    expires: String,
    links: Vec<Link>,
}

/// A signed-in user of the pages (their `fs_session` cookie), within their request rate.
pub struct PageUser(UserId, crate::api::auth::Session);

impl axum::extract::FromRequestParts<std::sync::Arc<ApiState>> for PageUser {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &std::sync::Arc<ApiState>,
    ) -> Result<Self, PageError> {
        let (_, session) = super::signed_in(st, &parts.headers, Kind::User)?;
        let crate::api::extract::UserSession(user, session) =
            crate::api::extract::UserSession::checked(st, session)?;
        Ok(PageUser(user, session))
    }
}

fn card(e: &NodeEntry) -> NodeCard {
    let r: &Resource = &e.node;
    let (status, status_label) = match r.status {
        Status::Pending | Status::Creating => ("creating", "Being created"),
        Status::Active => ("active", "Active"),
        Status::Failed => ("failed", "Failed"),
        Status::Deleting | Status::Deleted => ("deleted", "Being deleted"),
    };
    let steps = if status == "creating" {
        progress::creation_progress(r, &e.events)
            .steps
            .into_iter()
            .map(|s| StepRow {
                number: s.step,
                name: s.name,
                status: match s.status {
                    StepStatus::Pending => "pending",
                    StepStatus::InProgress => "in_progress",
                    StepStatus::Completed => "completed",
                    StepStatus::Failed => "failed",
                },
                when: s.started_at.map(when).unwrap_or_default(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let migration = MigrationView::of(r).map(|m| {
        let to = m.to_region.to_string();
        let (class, text) = match m.status {
            "failed" => (
                "error",
                format!(
                    "Moving to {to} failed: {}. The node keeps serving where it is.",
                    m.error_message.as_deref().unwrap_or("no reason given")
                ),
            ),
            "switching" => ("info", format!("Switching to the new VPS in {to}…")),
            "installing" => ("info", format!("Installing the new VPS in {to}…")),
            _ => (
                "info",
                format!("Preparing a new VPS in {to}; the node keeps serving until it is ready."),
            ),
        };
        MigrationLine {
            status: m.status,
            class,
            text,
        }
    });
    NodeCard {
        id: r.id.to_string(),
        region: r.region.clone(),
        region_name: e
            .region
            .as_ref()
            .map_or_else(|| r.region.clone(), |g| g.name.clone()),
        status,
        status_label,
        public_ip: r.connection.public_ip.clone(),
        plan: r.plan_tier.clone(),
        created: when(r.created_at),
        used_gb: gb(r.traffic_used),
        limit_gb: gb(r.traffic_limit),
        percent: format!(
            "{:.0}",
            crate::domain::units::percent(r.traffic_used, r.traffic_limit)
        ),
        can_migrate: r.status == Status::Active && r.migration.is_none(),
        steps,
        migration,
    }
}

/// The nodes fragment, with `notice` (a refusal) above it.
async fn nodes_fragment(
    st: &ApiState,
    user: &UserId,
    notice: Option<String>,
) -> Result<String, PageError> {
    let (mine, regions) = tokio::join!(st.app.my_nodes(user), st.app.regions.all());
    let mine = mine?;
    let regions = regions.map_err(crate::api::error::ApiError::from)?;
    let live = mine.nodes.len() as u32;
    let html = NodesHtml {
        message: progress::hosting_message(mine.status, mine.nodes.first().map(|e| &e.node)),
        notice,
        can_create: matches!(
            mine.subscription,
            crate::domain::progress::SubscriptionState::Active(_)
        ) && live < mine.node_limit.max(1),
        nodes: mine.nodes.iter().map(card).collect(),
        regions: regions.to_vec(),
    };
    html.render()
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn vpn_fragment(st: &ApiState, user: &UserId) -> Result<String, PageError> {
    let mine = st.app.my_vpn(user).await?;
    let now = st.app.ports.clock.now();
    let view = crate::api::vpn_views::VpnStatusView::new(&mine, now);
    let (status, status_label) = match mine.status {
        crate::domain::entitlement::VpnStatus::Active => ("active", "Active"),
        crate::domain::entitlement::VpnStatus::Expired => ("failed", "Expired"),
        crate::domain::entitlement::VpnStatus::Disabled => ("deleted", "Disabled"),
        crate::domain::entitlement::VpnStatus::NoSubscription => ("deleted", "No subscription"),
    };
    let account = mine
        .record
        .resource
        .as_ref()
        .filter(|r| r.status != Status::Deleted);
    let mut links = Vec::new();
    if mine.status == crate::domain::entitlement::VpnStatus::Active {
        // The links exist once the VPN manager holds the account; until then, none.
        if let Ok(config) = st.app.vpn_config(user).await {
            let sub = crate::api::vpn_views::VpnSubscribeView::new(
                &config,
                st.app.config.vpn.subscribe_base.as_deref(),
            );
            let named = std::iter::once(("Subscription".to_owned(), sub.subscribe_url.clone()))
                .chain(
                    sub.protocols
                        .iter()
                        .map(|p| (p.protocol.clone(), p.url.clone())),
                );
            for (name, url) in named.filter(|(_, u)| !u.is_empty()) {
                links.push(Link {
                    qr: qr_svg(&url),
                    name,
                    url,
                });
            }
        }
    }
    let html = VpnHtml {
        status,
        status_label,
        notice: None,
        message: view.message.clone(),
        has_account: account.is_some(),
        used_gb: account.map_or_else(String::new, |r| gb(r.traffic_used)),
        limit_gb: account.map_or_else(String::new, |r| gb(r.traffic_limit)),
        percent: account.map_or_else(String::new, |r| {
            format!(
                "{:.0}",
                crate::domain::units::percent(r.traffic_used, r.traffic_limit)
            )
        }),
        expires: account
            .and_then(|r| r.vpn.expire_at)
            .map(when)
            .unwrap_or_else(|| "—".into()),
        links,
    };
    html.render()
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A QR code of `text`, as inline SVG (no script, no style: allowed by the CSP).
pub fn qr_svg(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(180, 180)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

fn fragment(html: String) -> Response {
    super::secure(axum::response::Html(html).into_response())
}

const USER_HINT: &str = "Paste the token of the app (or open the link the demo prints).";

fn signin_page(error: Option<String>, status: StatusCode) -> Response {
    page_with(
        status,
        &SignInPage {
            assets: &ASSETS,
            heading: "My service",
            home: "/",
            hint: USER_HINT,
            action: "/signin",
            error,
        },
    )
}

/// `GET /`.
#[utoipa::path(get, path = "/", tag = "pages", security((), ("page_session" = [])),
    responses((status = 200, description = "The user's page, or the sign-in form", content_type = "text/html", body = String)))]
pub async fn home(State(st): St, headers: HeaderMap) -> Response {
    let Ok((_, session)) = super::signed_in(&st, &headers, Kind::User) else {
        return signin_page(None, StatusCode::OK);
    };
    let Ok(user) = UserId::parse(&session.user) else {
        return signin_page(None, StatusCode::OK);
    };
    let (nodes, vpn) = tokio::join!(nodes_fragment(&st, &user, None), vpn_fragment(&st, &user));
    let failed = |e: PageError| super::notice_html(&e.message);
    page(&UserPage {
        assets: &ASSETS,
        user: user.as_str(),
        nodes: nodes.unwrap_or_else(failed),
        vpn: vpn.unwrap_or_else(failed),
    })
}

/// `POST /signin`: a form with the app's token; the session starts and the browser goes
/// to `/`.
#[utoipa::path(post, path = "/signin", tag = "pages",
    request_body(content = inline(super::docs::TokenForm), content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Signed in; to `/`"),
        (status = 401, description = "The token does not sign in", content_type = "text/html", body = String),
        (status = 403, description = "From another origin", content_type = "text/html", body = String)))]
pub async fn signin(
    State(st): St,
    _: SameOrigin,
    headers: HeaderMap,
    form: Result<Form<SignIn>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return signin_page(
            Some("Paste a token to sign in.".into()),
            StatusCode::BAD_REQUEST,
        );
    };
    let token = form.token.trim();
    match st.auth.session_of(token) {
        Ok(session) => super::start_session(&st, &headers, Kind::User, token, session.until, "/"),
        Err(e) => signin_page(
            Some(PageError::from(e).message.replace(
                "Your session has ended. Sign in again.",
                "This token does not sign in: it is invalid or has expired.",
            )),
            StatusCode::UNAUTHORIZED,
        ),
    }
}

/// `POST /signout`.
#[utoipa::path(post, path = "/signout", tag = "pages",
    responses((status = 303, description = "Signed out; to `/`"),
        (status = 403, description = "From another origin", content_type = "text/html", body = String)))]
pub async fn signout(_: SameOrigin) -> Response {
    super::end_session(Kind::User, "/")
}

/// `GET /app/nodes`: the nodes fragment.
#[utoipa::path(get, path = "/app/nodes", tag = "pages", security(("page_session" = [])),
    responses((status = 200, description = "The nodes fragment", content_type = "text/html", body = String),
        (status = 401, description = "Not signed in", content_type = "text/html", body = String),
        (status = 503, description = "Unavailable for a moment", content_type = "text/html", body = String)))]
pub async fn app_nodes(State(st): St, PageUser(user, _): PageUser) -> Result<Response, PageError> {
    Ok(fragment(nodes_fragment(&st, &user, None).await?))
}

/// The nodes fragment after an action: with the refusal as a sentence, and its status.
async fn after(
    st: &ApiState,
    user: &UserId,
    outcome: Result<(), PageError>,
) -> Result<Response, PageError> {
    match outcome {
        Ok(()) => Ok(fragment(nodes_fragment(st, user, None).await?)),
        Err(e) => {
            let html = nodes_fragment(st, user, Some(e.message.clone()))
                .await
                .unwrap_or_else(|_| super::notice_html(&e.message));
            Ok((e.status, fragment(html)).into_response())
        }
    }
}

#[derive(serde::Deserialize, Default)]
pub struct RegionForm {
    region: Option<String>,
}

/// `POST /app/nodes`: create a node.
#[utoipa::path(post, path = "/app/nodes", tag = "pages", security(("page_session" = [])),
    request_body(content = inline(super::docs::RegionForm), content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The nodes fragment, the new node in it", content_type = "text/html", body = String),
        (status = 401, description = "Not signed in", content_type = "text/html", body = String),
        (status = 403, description = "From another origin, or no subscription", content_type = "text/html", body = String),
        (status = 409, description = "Refused (the fragment says why)", content_type = "text/html", body = String),
        (status = 422, description = "Refused (the fragment says why)", content_type = "text/html", body = String)))]
pub async fn app_create(
    State(st): St,
    PageUser(user, _): PageUser,
    _: SameOrigin,
    PageForm(form): PageForm<RegionForm>,
) -> Result<Response, PageError> {
    let body = Ok(ApiJson(CreateNode {
        region: form.region,
    }));
    let outcome = crate::api::user::create(&st, &user, body, NodeCreate::More)
        .await
        .map(|_| ())
        .map_err(PageError::from);
    after(&st, &user, outcome).await
}

/// `POST /app/nodes/{id}/delete`.
#[utoipa::path(post, path = "/app/nodes/{id}/delete", tag = "pages", security(("page_session" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "The nodes fragment", content_type = "text/html", body = String),
        (status = 401, description = "Not signed in", content_type = "text/html", body = String),
        (status = 403, description = "From another origin", content_type = "text/html", body = String),
        (status = 404, description = "No such node of this user", content_type = "text/html", body = String)))]
pub async fn app_delete(
    State(st): St,
    PageUser(user, _): PageUser,
    _: SameOrigin,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let outcome = st
        .app
        .delete_my_node_by_id(&user, &id)
        .await
        .map(|_| ())
        .map_err(PageError::from);
    after(&st, &user, outcome).await
}

/// `POST /app/nodes/{id}/migrate`.
#[utoipa::path(post, path = "/app/nodes/{id}/migrate", tag = "pages", security(("page_session" = [])),
    params(("id" = String, Path)),
    request_body(content = inline(super::docs::RegionForm), content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The nodes fragment, the migration in it", content_type = "text/html", body = String),
        (status = 401, description = "Not signed in", content_type = "text/html", body = String),
        (status = 403, description = "From another origin", content_type = "text/html", body = String),
        (status = 404, description = "No such node of this user", content_type = "text/html", body = String),
        (status = 409, description = "Refused (the fragment says why)", content_type = "text/html", body = String),
        (status = 422, description = "Refused (the fragment says why)", content_type = "text/html", body = String),
        (status = 429, description = "Too many nodes made lately", content_type = "text/html", body = String)))]
pub async fn app_migrate(
    State(st): St,
    PageUser(user, _): PageUser,
    _: SameOrigin,
    Path(id): Path<String>,
    PageForm(form): PageForm<RegionForm>,
) -> Result<Response, PageError> {
    let outcome = async {
        st.limits.node_create(user.as_str())?;
        st.app
            .migrate_my_node(&user, MyNodeRef::Id(&id), form.region.as_deref())
            .await?;
        Ok::<(), crate::api::error::ApiError>(())
    }
    .await
    .map_err(PageError::from);
    after(&st, &user, outcome).await
}

/// `GET /app/vpn`: the VPN fragment.
#[utoipa::path(get, path = "/app/vpn", tag = "pages", security(("page_session" = [])),
    responses((status = 200, description = "The VPN fragment", content_type = "text/html", body = String),
        (status = 401, description = "Not signed in", content_type = "text/html", body = String),
        (status = 503, description = "Unavailable for a moment", content_type = "text/html", body = String)))]
pub async fn app_vpn(State(st): St, PageUser(user, _): PageUser) -> Result<Response, PageError> {
    Ok(fragment(vpn_fragment(&st, &user).await?))
}

/// `POST /app/ticket`: a ticket for the event stream the page listens to.
#[utoipa::path(post, path = "/app/ticket", tag = "pages", security(("page_session" = [])),
    responses((status = 200, description = "A ticket", body = crate::api::openapi::schemas::Ticket),
        (status = 401, description = "Not signed in", content_type = "text/html", body = String),
        (status = 403, description = "From another origin", content_type = "text/html", body = String)))]
pub async fn app_ticket(State(st): St, PageUser(_, session): PageUser, _: SameOrigin) -> Response {
    super::secure(
        Json(serde_json::json!({
            "ticket": st.auth.ticket_for(&session),
            "expires_in": crate::api::tickets::TICKET_TTL_SECS,
        }))
        .into_response(),
    )
}

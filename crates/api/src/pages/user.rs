//! `/`: a user's nodes (with creation advancing live from the event stream) and VPN.
//! The page's script swaps in the fragments these handlers render.

use askama::Template;
use axum::Form;
use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::fragments::{nodes_fragment, vpn_fragment};
use super::session::Kind;
use super::{ASSETS, Assets, PageError, PageForm, SameOrigin, SignIn, St, page};
use crate::ApiState;
use crate::extract::ApiJson;
use crate::user::node::RegionChoice;
use app::{MyNodeRef, NodeCreate, UserId};

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage<'a> {
    assets: &'a Assets,
    product: &'a str,
    user: &'a str,
    nodes: String,
    vpn: String,
}

/// A signed-in user of the pages (their `fs_session` cookie), within their request rate.
pub struct PageUser(UserId, crate::auth::Session);

impl axum::extract::FromRequestParts<std::sync::Arc<ApiState>> for PageUser {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &std::sync::Arc<ApiState>,
    ) -> Result<Self, PageError> {
        let session = super::signed_in(st, &parts.headers, Kind::User)?;
        let crate::extract::UserSession(user, session) =
            crate::extract::UserSession::checked(st, session)?;
        Ok(PageUser(user, session))
    }
}

fn fragment(html: String) -> Response {
    super::secure(axum::response::Html(html).into_response())
}

/// `GET /`.
pub async fn home(State(st): St, headers: HeaderMap) -> Response {
    let Ok(session) = super::signed_in(&st, &headers, Kind::User) else {
        return super::signin_page(&st, Kind::User, None, StatusCode::OK);
    };
    let Ok(user) = UserId::parse(&session.user) else {
        return super::signin_page(&st, Kind::User, None, StatusCode::OK);
    };
    let (nodes, vpn) = tokio::join!(nodes_fragment(&st, &user, None), vpn_fragment(&st, &user));
    let failed = |e: PageError| super::notice_html(&e.message);
    page(&UserPage {
        assets: &ASSETS,
        product: &st.product_name,
        user: user.as_str(),
        nodes: nodes.unwrap_or_else(failed),
        vpn: vpn.unwrap_or_else(failed),
    })
}

/// `POST /signin`: a form with the app's token; the session starts and the browser goes
/// to `/`.
pub async fn signin(
    State(st): St,
    _: SameOrigin,
    headers: HeaderMap,
    form: Result<Form<SignIn>, FormRejection>,
) -> Response {
    super::sign_in(&st, &headers, Kind::User, form)
}

/// `POST /signout`.
pub async fn signout(_: SameOrigin) -> Response {
    super::end_session(Kind::User, "/")
}

/// `GET /app/nodes`: the nodes fragment.
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
pub async fn app_create(
    State(st): St,
    PageUser(user, _): PageUser,
    _: SameOrigin,
    PageForm(form): PageForm<RegionForm>,
) -> Result<Response, PageError> {
    let body = Ok(ApiJson(RegionChoice {
        region: form.region,
    }));
    let outcome = crate::user::node::create(&st, &user, body, NodeCreate::More)
        .await
        .map(|_| ())
        .map_err(PageError::from);
    after(&st, &user, outcome).await
}

/// `POST /app/nodes/{id}/delete`.
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
pub async fn app_migrate(
    State(st): St,
    PageUser(user, _): PageUser,
    _: SameOrigin,
    Path(id): Path<String>,
    PageForm(form): PageForm<RegionForm>,
) -> Result<Response, PageError> {
    let outcome = async {
        let spent = st.limits.node_create(user.as_str())?;
        let started = st
            .app
            .migrate_my_node(&user, MyNodeRef::Id(&id), form.region.as_deref())
            .await;
        spent.settle(started.map_err(Into::into))?;
        Ok::<(), crate::error::ApiError>(())
    }
    .await
    .map_err(PageError::from);
    after(&st, &user, outcome).await
}

/// `GET /app/vpn`: the VPN fragment.
pub async fn app_vpn(State(st): St, PageUser(user, _): PageUser) -> Result<Response, PageError> {
    Ok(fragment(vpn_fragment(&st, &user).await?))
}

/// `POST /app/ticket`: a ticket for the event stream the page listens to.
pub async fn app_ticket(State(st): St, PageUser(_, session): PageUser, _: SameOrigin) -> Response {
    super::secure(Json(crate::events::Ticket::new(&st.auth, &session)).into_response())
}

//! `/console`: the operators' page. The failed-work queue (live; bulk actions act on the
//! ticked rows only), a search by user, subscription or resource id, a resource's history
//! and callbacks, and node load. Every action is recorded under the operator's name.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::session::Kind;
use super::{ASSETS, Assets, PageError, PageForm, SameOrigin, SignIn, St, gb, page, when};
use crate::ApiState;
use app::{OperatorAction, ResourceId};
use domain::Resource;
use ports::store::LoadSort;

#[derive(Template)]
#[template(path = "console.html")]
struct ConsolePage<'a> {
    assets: &'a Assets,
    operator: &'a str,
    queue: String,
    load: String,
}

pub(super) struct Row {
    pub(super) id: String,
    pub(super) short_id: String,
    pub(super) kind: &'static str,
    pub(super) user: String,
    pub(super) subscription: String,
    pub(super) region: String,
    pub(super) status: &'static str,
    pub(super) why: &'static str,
    pub(super) attempts: i32,
    pub(super) last_error: String,
    pub(super) updated: String,
}

struct StuckRow {
    id: i64,
    subscription: String,
    attempts: i32,
    last_error: String,
    next: String,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueueHtml {
    notice: Option<String>,
    notice_class: &'static str,
    resources: Vec<Row>,
    callbacks: Vec<StuckRow>,
    over_limit: Vec<String>,
}

struct LoadRow {
    id: String,
    short_id: String,
    user: String,
    region: String,
    cpu: String,
    mem: String,
    load: String,
    traffic: String,
    reported: String,
}

#[derive(Template)]
#[template(path = "load.html")]
struct LoadHtml {
    nodes: Vec<LoadRow>,
    /// What the traffic column counts (CONTRACTS.md §4.8).
    period: String,
}

/// A signed-in operator of the console (their `fs_console` cookie): their name.
pub struct PageOperator(pub String);

impl axum::extract::FromRequestParts<std::sync::Arc<ApiState>> for PageOperator {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &std::sync::Arc<ApiState>,
    ) -> Result<Self, PageError> {
        let session = super::signed_in(st, &parts.headers, Kind::Operator)?;
        Ok(PageOperator(session.user))
    }
}

/// The end of an id: the start of a v7 id is its timestamp, the same for ids made together.
fn short(id: &str) -> String {
    id.get(id.len().saturating_sub(8)..)
        .unwrap_or(id)
        .to_owned()
}

pub(super) fn row(r: &Resource, now: chrono::DateTime<chrono::Utc>) -> Row {
    Row {
        id: r.id.to_string(),
        short_id: short(&r.id.to_string()),
        kind: match r.kind {
            domain::ResourceKind::HostingNode => "node",
            domain::ResourceKind::VpnUser => "vpn",
        },
        user: r.user_id.clone(),
        subscription: r.subscription_id.clone(),
        region: r.region.clone(),
        status: r.status.as_str(),
        why: if r.status == domain::Status::Failed {
            "failed"
        } else if r.deadline_at.is_some_and(|d| d < now) {
            "past deadline"
        } else {
            "retrying"
        },
        attempts: r.attempts,
        last_error: r
            .last_error
            .clone()
            .or_else(|| r.error_message.clone())
            .unwrap_or_default(),
        updated: when(r.updated_at),
    }
}

pub(super) fn render(t: &impl Template) -> Result<Response, PageError> {
    let html = t
        .render()
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(super::secure(axum::response::Html(html).into_response()))
}

async fn queue_html(st: &ApiState, notice: Option<(String, bool)>) -> Result<QueueHtml, PageError> {
    let q = st.app.operator_queue().await?;
    let now = st.app.ports.clock.now();
    Ok(QueueHtml {
        notice_class: if notice.as_ref().is_some_and(|(_, ok)| !ok) {
            "error"
        } else {
            "info"
        },
        notice: notice.map(|(n, _)| n),
        resources: q.resources.iter().map(|r| row(r, now)).collect(),
        callbacks: q
            .callbacks
            .iter()
            .map(|c| StuckRow {
                id: c.message.id,
                subscription: c.message.subscription_id.clone(),
                attempts: c.message.attempts,
                last_error: c.last_error.clone().unwrap_or_default(),
                next: when(c.next_attempt_at),
            })
            .collect(),
        over_limit: q
            .over_limit
            .iter()
            .map(|o| {
                format!(
                    "{} ({}): {} live nodes, pays for {}",
                    o.subscription_id, o.user_id, o.live_nodes, o.node_limit
                )
            })
            .collect(),
    })
}

async fn load_html(st: &ApiState) -> Result<LoadHtml, PageError> {
    let meter = st.app.meter();
    let rows = st
        .app
        .ports
        .store
        .node_load(LoadSort::Cpu, 50, meter.period_start())
        .await
        .map_err(crate::error::ApiError::from)?;
    let pct = |v: Option<f64>| v.map_or_else(|| "—".into(), |v| format!("{v:.0}"));
    Ok(LoadHtml {
        period: super::fragments::period_label(meter.period()),
        nodes: rows
            .into_iter()
            .map(|n| LoadRow {
                short_id: short(&n.resource_id),
                traffic: format!("{} / {} GB", gb(n.traffic_used), gb(n.traffic_limit)),
                reported: n.reported_at.map(when).unwrap_or_else(|| "never".into()),
                cpu: pct(n.cpu_percent),
                mem: pct(n.mem_percent),
                load: n.load1.map_or_else(|| "—".into(), |v| format!("{v:.2}")),
                id: n.resource_id,
                user: n.user_id,
                region: n.region,
            })
            .collect(),
    })
}

/// `GET /console`.
pub async fn console(State(st): St, headers: HeaderMap) -> Response {
    let Ok(session) = super::signed_in(&st, &headers, Kind::Operator) else {
        return super::signin_page(&st, Kind::Operator, None, StatusCode::OK);
    };
    let (queue, load) = tokio::join!(queue_html(&st, None), load_html(&st));
    let failed = |e: PageError| super::notice_html(&e.message);
    page(&ConsolePage {
        assets: &ASSETS,
        operator: &session.user,
        queue: queue
            .and_then(|q| {
                q.render()
                    .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
            })
            .unwrap_or_else(failed),
        load: load
            .and_then(|l| {
                l.render()
                    .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
            })
            .unwrap_or_else(failed),
    })
}

/// `POST /console/signin`: an operator token only; an app token is refused.
pub async fn console_signin(
    State(st): St,
    _: SameOrigin,
    headers: HeaderMap,
    form: Result<Form<SignIn>, axum::extract::rejection::FormRejection>,
) -> Response {
    super::sign_in(&st, &headers, Kind::Operator, form)
}

/// `POST /console/signout`.
pub async fn console_signout(_: SameOrigin) -> Response {
    super::end_session(Kind::Operator, "/console")
}

/// `GET /console/queue`: the queue fragment.
pub async fn console_queue(State(st): St, _: PageOperator) -> Result<Response, PageError> {
    render(&queue_html(&st, None).await?)
}

/// `POST /console/queue`: retry or fail (`op`) the ticked resources (`id`, repeated), with
/// a reason. Only the ids sent are touched.
pub async fn console_action(
    State(st): St,
    PageOperator(name): PageOperator,
    _: SameOrigin,
    PageForm(fields): PageForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let field = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_owned())
    };
    let ids: Vec<&str> = fields
        .iter()
        .filter(|(n, _)| n == "id")
        .map(|(_, v)| v.as_str())
        .collect();
    let action = field("op").unwrap_or_default();
    let reason = field("reason").filter(|r| !r.is_empty());
    let refuse = |m: &str| Err(PageError::new(StatusCode::UNPROCESSABLE_ENTITY, m));
    if ids.is_empty() {
        return refuse("Tick at least one row.");
    }
    if action != "retry" && action != "fail" {
        return refuse("Choose retry or fail.");
    }
    let (mut done, mut refused) = (0, Vec::new());
    for id in ids {
        let act = OperatorAction {
            operator: Some(name.clone()),
            reason: reason.clone(),
        };
        let outcome = match ResourceId::parse(id) {
            Ok(rid) if action == "retry" => st.app.operator_retry(rid, act).await.map(|_| ()),
            Ok(rid) => st.app.operator_fail(rid, act).await.map(|_| ()),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => done += 1,
            Err(e) => refused.push(format!(
                "{}: {}",
                short(id),
                super::sentence(&e.to_string())
            )),
        }
    }
    let verb = if action == "retry" {
        "Retried"
    } else {
        "Failed"
    };
    let mut notice = format!("{verb} {done} as {name}.");
    if !refused.is_empty() {
        notice.push_str(&format!(" Refused: {}", refused.join(" ")));
    }
    render(&queue_html(&st, Some((notice, refused.is_empty()))).await?)
}

/// `GET /console/load`: node load, highest CPU first.
pub async fn console_load(State(st): St, _: PageOperator) -> Result<Response, PageError> {
    render(&load_html(&st).await?)
}

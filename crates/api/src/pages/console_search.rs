//! The console's search (by user, subscription or resource id) and a resource's page: its
//! history as a timeline, and its callbacks to the subscription service.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;

use super::console::{PageOperator, Row, render, row};
use super::{PageError, St, when};
use app::{ResourceId, SubscriptionId, UserId};
use domain::Resource;

#[derive(Template)]
#[template(path = "results.html")]
struct ResultsHtml {
    query: String,
    notice: Option<String>,
    rows: Vec<Row>,
}

struct EventRow {
    at: String,
    kind: &'static str,
    actor: String,
    message: String,
}

struct CallbackRow {
    id: i64,
    status: String,
    queued: String,
    attempts: i32,
    delivered: String,
    last_error: String,
}

struct Detail {
    id: String,
    kind: &'static str,
    status: &'static str,
    user: String,
    subscription: String,
    region: String,
    address: String,
    error: String,
}

#[derive(Template)]
#[template(path = "detail.html")]
struct DetailHtml {
    r: Detail,
    events: Vec<EventRow>,
    callbacks: Vec<CallbackRow>,
}

#[derive(serde::Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

/// `GET /console/search?q=`: resources by resource, subscription or user id.
pub async fn console_search(
    State(st): St,
    _: PageOperator,
    Query(q): Query<SearchQuery>,
) -> Result<Response, PageError> {
    let query = q.q.unwrap_or_default().trim().to_owned();
    let now = st.app.ports.clock.now();
    let mut found: Vec<Resource> = Vec::new();
    if let Ok(id) = ResourceId::parse(&query)
        && let Ok(r) = st.app.resource(id).await
    {
        found.push(r);
    }
    if let Ok(sub) = SubscriptionId::parse(&query) {
        found.extend(st.app.subscription_resources(&sub).await?);
    }
    if let Ok(user) = UserId::parse(&query) {
        found.extend(st.app.user_resources(&user).await?);
    }
    found.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    found.dedup_by_key(|r| r.id);
    render(&ResultsHtml {
        notice: query.is_empty().then(|| "Type an id to search.".to_owned()),
        rows: found.iter().map(|r| row(r, now)).collect(),
        query,
    })
}

/// `GET /console/resources/{id}`: a resource, its history and its callbacks.
pub async fn console_resource(
    State(st): St,
    _: PageOperator,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let rid = ResourceId::parse(&id)?;
    let r = st.app.resource(rid).await?;
    let (events, callbacks) = tokio::join!(
        st.app.history(ResourceId(r.id)),
        st.app.callbacks_of(ResourceId(r.id))
    );
    let c = &r.connection;
    render(&DetailHtml {
        r: Detail {
            id: r.id.to_string(),
            kind: r.kind.as_str(),
            status: r.status.as_str(),
            user: r.user_id.clone(),
            subscription: r.subscription_id.clone(),
            region: r.region.clone(),
            address: c.public_ip.clone().unwrap_or_else(|| "—".into()),
            error: r.error_message.clone().unwrap_or_default(),
        },
        events: events?
            .into_iter()
            .map(|e| EventRow {
                at: super::when_exact(e.at),
                kind: e.kind.as_str(),
                actor: e.actor,
                message: e.message.unwrap_or_default(),
            })
            .collect(),
        callbacks: callbacks?
            .into_iter()
            .map(|c| CallbackRow {
                id: c.message.id,
                status: c.message.callback.status.clone(),
                queued: when(c.message.created_at),
                attempts: c.message.attempts,
                delivered: c.delivered_at.map(when).unwrap_or_else(|| "not yet".into()),
                last_error: c.last_error.unwrap_or_default(),
            })
            .collect(),
    })
}

//! The user's page's fragments: their nodes (with creation steps and migrations) and their
//! VPN (with a QR code per link), rendered from the same use cases as `/my/nodes` and
//! `/my/vpn`.

use askama::Template;
use axum::http::StatusCode;

use super::chart::{self, Chart};
use super::{PageError, gb, when};
use crate::ApiState;
use crate::views::MigrationView;
use app::{NodeEntry, UserId};
use domain::migration::ShownMigration;
use domain::progress::{self, StepStatus};
use domain::usage::{DayUsage, Meter, Period};
use domain::{Connection, Resource, Status};
use ports::store::Region;

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

/// One detail a client needs to connect to a node, shown with a copy button.
pub(super) struct ConnectFact {
    label: &'static str,
    value: String,
}

/// The node agent's management key and the port its API listens on.
pub(super) struct AgentKey {
    key: String,
    port: Option<i32>,
}

/// What a client needs to connect to a node, as far as it is known: the address, the
/// ports, the public key and the short id; the agent's key apart (shown on request).
fn connect_facts(c: &Connection) -> (Vec<ConnectFact>, Option<AgentKey>) {
    let text =
        |label, value: &Option<String>| value.clone().map(|value| ConnectFact { label, value });
    let port = |label, value: Option<i32>| {
        value.map(|p| ConnectFact {
            label,
            value: p.to_string(),
        })
    };
    let facts = [
        text("Address", &c.public_ip),
        port("VLESS port", c.vless_port),
        port("Shadowsocks port", c.ss_port),
        text("Public key", &c.public_key),
        text("Short ID", &c.short_id),
    ];
    let agent = c.api_key.clone().map(|key| AgentKey {
        key,
        port: c.api_port,
    });
    (facts.into_iter().flatten().collect(), agent)
}

pub(super) struct NodeCard {
    id: String,
    region: String,
    region_name: String,
    status: &'static str,
    status_label: &'static str,
    connect: Vec<ConnectFact>,
    agent_key: Option<AgentKey>,
    plan: String,
    created: String,
    used_gb: String,
    limit_gb: String,
    percent: String,
    /// "this month (since …)", or "all time".
    period: String,
    chart: Chart,
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

fn card(e: &NodeEntry, regions: &[Region], meter: &Meter, days: &[DayUsage]) -> NodeCard {
    let r: &Resource = &e.node;
    let shown = meter.shown(r);
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
        let to = regions
            .iter()
            .find(|g| g.code == m.to_region)
            .map_or_else(|| m.to_region.to_string(), |g| g.name.clone());
        let (class, text) = match m.status {
            ShownMigration::Failed => (
                "error",
                format!(
                    "Moving to {to} failed: {}. The node keeps serving where it is.",
                    m.error_message.as_deref().unwrap_or("no reason given")
                ),
            ),
            ShownMigration::Switching => ("info", format!("Switching to the new VPS in {to}…")),
            ShownMigration::Installing => ("info", format!("Installing the new VPS in {to}…")),
            ShownMigration::Creating => (
                "info",
                format!("Preparing a new VPS in {to}; the node keeps serving until it is ready."),
            ),
        };
        MigrationLine {
            status: m.status.as_str(),
            class,
            text,
        }
    });
    let (connect, agent_key) = connect_facts(&r.connection);
    NodeCard {
        id: r.id.to_string(),
        region: r.region.clone(),
        region_name: e
            .region
            .as_ref()
            .map_or_else(|| r.region.clone(), |g| g.name.clone()),
        status,
        status_label,
        connect,
        agent_key,
        plan: r.plan_tier.clone(),
        created: when(r.created_at),
        used_gb: gb(shown.used),
        limit_gb: gb(r.traffic_limit),
        percent: format!("{:.0}", domain::units::percent(shown.used, r.traffic_limit)),
        period: period_label(shown.period),
        chart: chart::bars(days),
        can_migrate: r.status == Status::Active && r.migration.is_none(),
        steps,
        migration,
    }
}

/// What a node's traffic figure counts, in words.
pub(super) fn period_label(period: Option<Period>) -> String {
    match period {
        Some(p) => format!("this month (since {})", p.first_day.format("%b %-d")),
        None => "all time".into(),
    }
}

/// The nodes fragment, with `notice` (a refusal) above it.
pub(super) async fn nodes_fragment(
    st: &ApiState,
    user: &UserId,
    notice: Option<String>,
) -> Result<String, PageError> {
    let (mine, regions) = tokio::join!(st.app.my_nodes(user), st.app.regions.all());
    let mine = mine?;
    let regions = regions.map_err(crate::error::ApiError::from)?;
    let live = mine.nodes.len() as u32;
    let meter = st.app.meter();
    let mut days = Vec::with_capacity(mine.nodes.len());
    for e in &mine.nodes {
        days.push(st.app.recent_usage(e.node.id).await?);
    }
    let html = NodesHtml {
        message: progress::hosting_message(mine.status, mine.nodes.first().map(|e| &e.node)),
        notice,
        can_create: matches!(
            mine.subscription,
            domain::progress::SubscriptionState::Active(_)
        ) && live < mine.node_limit.max(1),
        nodes: mine
            .nodes
            .iter()
            .zip(&days)
            .map(|(e, days)| card(e, &regions, &meter, days))
            .collect(),
        regions: regions.to_vec(),
    };
    html.render()
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

pub(super) async fn vpn_fragment(st: &ApiState, user: &UserId) -> Result<String, PageError> {
    let mine = st.app.my_vpn(user).await?;
    let now = st.app.ports.clock.now();
    let view = crate::vpn_views::VpnStatusView::new(&mine, now);
    let (status, status_label) = match mine.status {
        domain::entitlement::VpnStatus::Active => ("active", "Active"),
        domain::entitlement::VpnStatus::Expired => ("failed", "Expired"),
        domain::entitlement::VpnStatus::Disabled => ("deleted", "Disabled"),
        domain::entitlement::VpnStatus::NoSubscription => ("deleted", "No subscription"),
    };
    let account = mine
        .record
        .resource
        .as_ref()
        .filter(|r| r.status != Status::Deleted);
    let mut links = Vec::new();
    if mine.status == domain::entitlement::VpnStatus::Active {
        // The links exist once the VPN manager holds the account; until then, none.
        if let Ok(config) = st.app.vpn_config(user).await {
            let sub = crate::vpn_views::VpnSubscribeView::new(
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
                domain::units::percent(r.traffic_used, r.traffic_limit)
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

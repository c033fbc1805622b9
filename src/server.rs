//! Wiring: builds the ports from the configuration (real clients, or the in-process
//! simulators in demo mode), starts the engine and serves the API. `start` binds before it
//! returns and reports the address, so tests can ask for port 0.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::{self, ApiState, extract::Auth};
use crate::app::App;
use crate::config::{Config, redact};
use crate::engine::{self, Engine, EngineConfig};
use crate::metrics::Metrics;
use crate::ports::{Clock, Hosting, Ports, Subscriptions, SystemClock, Telemetry, VpnManager};
use crate::sim::{Knobs, NodeTiming, Sim};
use crate::upstream::{
    HostingClient, Metered, SubscriptionsClient, VpnClient, ca_bundle, http_client_trusting,
};

/// A running service.
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when it is.
    pub metrics_addr: Option<SocketAddr>,
    pub state: Arc<ApiState>,
    /// The in-process simulators, in demo mode.
    pub sim: Option<Sim>,
    engine_loops: engine::Shutdown,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_http: tokio::sync::watch::Sender<bool>,
}

impl Running {
    /// Stops at once, as a crash would: in-flight steps are dropped wherever they are and
    /// their leases are left to expire.
    pub fn kill(self) {
        self.http.abort();
        self.state.app.live.stop_all();
        self.engine_loops.abort();
    }

    /// Stops taking requests, ends the event streams (a graceful close would otherwise
    /// wait on them), lets the engine finish the steps in flight, and returns.
    pub async fn stop(self) {
        self.state.app.live.stop_all();
        let _ = self.stop_http.send(true);
        let _ = self.http.await;
        self.engine_loops.stop().await;
        // The other replicas hear of the last commits now, not from their nets.
        if let Err(e) = self.state.app.ports.store.flush().await {
            tracing::warn!(error = %e, "could not tell the other replicas of the last changes");
        }
    }
}

/// The demo's simulated world: nodes take a few seconds per step so progress is visible.
pub fn demo_sim() -> Sim {
    let sim = Sim::new(
        Knobs::default(),
        NodeTiming {
            creating_ms: 4_000,
            installing_ms: 4_000,
            ..NodeTiming::default()
        },
    );
    sim.subscriptions.set_default_plan(Some("premium".into()));
    sim
}

/// Gives the demo user an active VPN, as the subscription service would have ordered it:
/// one order per calendar month, so restarting the demo changes nothing and a new month
/// renews it.
pub async fn seed_demo(app: &crate::app::App) -> anyhow::Result<()> {
    let month = app.ports.clock.now().format("%Y-%m");
    let order = crate::app::Provision {
        user_id: "demo-user".into(),
        // The id the simulated subscription service gives the demo user's VPN subscription.
        subscription_id: Some("sub_otun_demo-user".into()),
        user_email: Some("demo-user@example.com".into()),
        app_source: Some("otun".into()),
        business_type: Some("subscription".into()),
        channel: Some("stripe".into()),
        plan_tier: Some("premium".into()),
        expire_days: Some(31),
        channel_tx_id: Some(format!("demo-{month}")),
        ..Default::default()
    };
    app.provision_vpn(order)
        .await
        .map_err(|e| anyhow::anyhow!("seeding the demo VPN: {e}"))?;
    Ok(())
}

type Upstreams = (
    Arc<dyn Hosting>,
    Arc<dyn Subscriptions>,
    Arc<dyn VpnManager>,
);

fn upstreams(config: &Config, sim: Option<&Sim>) -> anyhow::Result<Upstreams> {
    if let Some(sim) = sim {
        return Ok((
            sim.hosting.clone(),
            sim.subscriptions.clone(),
            sim.vpn.clone(),
        ));
    }
    let extra_roots = match &config.upstreams.ca_file {
        Some(path) => ca_bundle(path)?,
        None => Vec::new(),
    };
    let http = http_client_trusting(config.upstreams.timeout, extra_roots);
    let url = |u: &Option<reqwest::Url>, name: &str| {
        u.clone().with_context(|| format!("{name} is required"))
    };
    let hosting = url(&config.upstreams.hosting_url, "HOSTING_SERVICE_URL")?;
    let subs = url(
        &config.upstreams.subscription_url,
        "SUBSCRIPTION_SERVICE_URL",
    )?;
    let vpn = url(&config.upstreams.otun_url, "OTUN_MANAGER_URL")?;
    let secret = config.secrets.internal.expose().to_owned();
    let n = config.upstreams.max_in_flight;
    Ok((
        Arc::new(
            HostingClient::new(
                http.clone(),
                hosting,
                config.upstreams.hosting_admin_key.expose().to_owned(),
            )
            .with_max_in_flight(n),
        ),
        Arc::new(
            SubscriptionsClient::new(http.clone(), subs, secret.clone()).with_max_in_flight(n),
        ),
        Arc::new(VpnClient::new(http, vpn, secret).with_max_in_flight(n)),
    ))
}

/// Connects to the database, starts the engine and serves the API on `listener`.
pub async fn start(
    config: &Config,
    listener: TcpListener,
    sim: Option<Sim>,
) -> anyhow::Result<Running> {
    start_with_clock(config, listener, sim, Arc::new(SystemClock)).await
}

/// `start`, with the time the engine and the API read from `clock` (tests step it).
pub async fn start_with_clock(
    config: &Config,
    listener: TcpListener,
    sim: Option<Sim>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let store = crate::store::connect(&config.db.url, config.db.max_connections)
        .await
        .with_context(|| format!("opening the database at {}", redact(&config.db.url)))?;
    let (hosting, subscriptions, vpn) = upstreams(config, sim.as_ref())?;
    let metrics = Arc::new(Metrics::new());
    let telemetry: Arc<dyn Telemetry> = metrics.clone();
    let ports = Ports {
        store,
        hosting: Arc::new(Metered::new(hosting, telemetry.clone())),
        subscriptions: Arc::new(Metered::new(subscriptions, telemetry.clone())),
        vpn: Arc::new(Metered::new(vpn, telemetry.clone())),
        clock,
        telemetry,
    };
    // Bound before anything starts, so a taken port fails the start cleanly.
    let metrics_listener = match config.http.metrics_addr {
        Some(at) => Some(
            TcpListener::bind(at)
                .await
                .with_context(|| format!("binding METRICS_ADDR {at}"))?,
        ),
        None => None,
    };
    let public = config
        .http
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", local_url_host(addr)));
    // A fresh lease owner for every start: a restarted process must not pass for the one
    // that held the leases before it.
    let engine_config = EngineConfig {
        owner: EngineConfig::fresh_owner(),
        node_callback_url: format!("{}/api/callback/node", public.trim_end_matches('/')),
        ..config.engine.clone()
    };
    let limits = crate::http::ServeLimits {
        header_read_timeout: config.http.header_read_timeout,
        max_connections: config.http.max_connections,
        // The database pool, each upstream client's calls in flight, the metrics
        // listener's connections, and some slack for the listener, logs, SQLite's files
        // and the runtime.
        reserved_descriptors: config.db.max_connections as usize
            + 3 * config.upstreams.max_in_flight
            + METRICS_CONNECTIONS
            + 64,
    };
    let mut app_config = config.app.clone();
    // Streams hold connections: never more than half of them, so that health checks, the
    // internal API and node callbacks are answered with every stream slot taken.
    let stream_cap = crate::http::connection_cap(&limits) / 2;
    if app_config.events_max_streams > stream_cap {
        tracing::info!(
            events_max_streams = stream_cap,
            configured = app_config.events_max_streams,
            "EVENTS_MAX_STREAMS lowered to half of the connection cap"
        );
        app_config.events_max_streams = stream_cap;
    }
    let engine = Engine::new(ports.clone(), engine_config);
    let app = App::new(ports, engine.clone(), app_config);
    let state = Arc::new(ApiState {
        app,
        auth: Auth::new(
            config.secrets.jwt.expose(),
            config.secrets.internal.expose(),
        )
        .with_audience(config.secrets.jwt_audience.as_deref())
        .with_operator_secret(config.secrets.operator_jwt.as_ref().map(|s| s.expose())),
        limits: api::limits::RateLimits::new(config.limits),
        request_timeout: config.http.request_timeout,
        scrape: api::metrics::Scrape::new(metrics, config.http.metrics_cache),
        demo: config.demo,
        product_name: config.http.product_name.clone(),
    });
    let engine_loops = engine::spawn(engine.clone());
    let (stop_http, stopped) = tokio::sync::watch::channel(false);
    let router = api::router(state.clone());
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let metrics_addr = match metrics_listener {
        Some(l) => {
            let at = l.local_addr()?;
            let router = api::metrics::router(state.clone());
            let stop = until_stopped(stopped.clone());
            let metrics_limits = crate::http::ServeLimits {
                max_connections: METRICS_CONNECTIONS,
                ..limits
            };
            tokio::spawn(crate::http::serve(l, router, metrics_limits, stop));
            Some(at)
        }
        None => None,
    };
    let http = tokio::spawn(crate::http::serve(
        listener,
        router,
        limits,
        until_stopped(stopped),
    ));
    Ok(Running {
        addr,
        metrics_addr,
        state,
        sim,
        engine_loops,
        http,
        stop_http,
    })
}

/// Connections the metrics listener serves at once, within the same descriptor budget
/// (CONTRACTS.md §4.7).
const METRICS_CONNECTIONS: usize = 16;

/// `0.0.0.0:8014` is not an address to call back to; use loopback for the default.
fn local_url_host(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}

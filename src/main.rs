//! The `fulfillment` binary: parses the command line and calls into the library.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fulfillment::api::extract::{mint_operator_token, mint_user_token};
use fulfillment::config::Config;
use fulfillment::server;
use fulfillment::sim::{Knobs, NodeTiming, Sim, SimAuth};

#[derive(Parser)]
#[command(
    name = "fulfillment",
    version,
    about = "Turns paid orders into running infrastructure."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default). With nothing configured, runs the demo.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print a user token (`--user ID`) or an operator token (`--operator NAME`), signed
    /// with the configured JWT secret.
    #[command(group(clap::ArgGroup::new("who").required(true).args(["user", "operator"])))]
    Token {
        #[arg(long)]
        user: Option<String>,
        /// An operator of the console (claims `"role": "operator"` and `"aud":
        /// "fulfillment-operator"`, `sub` NAME; signed with `OPERATOR_JWT_SECRET` when set).
        #[arg(long)]
        operator: Option<String>,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 24)]
        ttl_hours: u64,
    },
    /// Ask a running service whether it is ready (`GET /ready`): exit 0 if it is, 1 if
    /// not. A container's health check, with no shell or HTTP tool in the image.
    Health {
        /// The readiness URL; by default the local service on `SERVER_PORT` (8014).
        #[arg(long)]
        url: Option<String>,
        /// How long to wait for the answer, in seconds.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// Serve the simulated hosting and subscription services over HTTP.
    Sim(SimArgs),
    /// Import the Go service's database into ours (DB_URL), for the cut-over: reads it,
    /// never writes it, calls no upstream. Run it again to finish an interrupted import.
    ImportLegacy(ImportArgs),
}

#[derive(clap::Args)]
struct ImportArgs {
    /// The Go service's PostgreSQL database (read-only).
    #[arg(long)]
    from: String,
    /// The schema its tables are in.
    #[arg(long, default_value = "fulfillment", value_parser = plain_identifier)]
    schema: String,
    /// Change nothing; report what a real run would do.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as one JSON object on standard output.
    #[arg(long)]
    json: bool,
    /// Rows per batch, each written in one transaction (a batch takes a subscription's or
    /// a user's rows whole; log batches are four times larger).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_rows: u32,
}

#[derive(clap::Args)]
struct SimArgs {
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Added to every call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction of calls answered 503.
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// Fraction of calls that hang.
    #[arg(long, default_value_t = 0.0)]
    timeout_rate: f64,
    /// How long a hanging call hangs, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    hang_ms: u64,
    /// Fraction of calls that take effect but answer after the hang time (a lost answer).
    #[arg(long, default_value_t = 0.0)]
    lost_response_rate: f64,
    /// Time a node spends creating, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    creating_ms: u64,
    /// Time a node spends installing, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    installing_ms: u64,
    /// Fraction of nodes that fail to come up.
    #[arg(long, default_value_t = 0.0)]
    node_fail_rate: f64,
    /// Give every user an active subscription of this plan.
    #[arg(long)]
    default_plan: Option<String>,
    /// Require this `X-Admin-Key` on hosting calls.
    #[arg(long, env = "HOSTING_ADMIN_KEY")]
    admin_key: Option<String>,
    /// Require this `X-Internal-Secret` on subscription calls.
    #[arg(long, env = "INTERNAL_SECRET")]
    internal_secret: Option<String>,
}

/// See `Cargo.toml`: the read path's allocations, measured.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A command whose standard output is its answer logs to standard error.
    fulfillment::logging::init_to(matches!(cli.command, Some(Command::ImportLegacy(_))));
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Migrate => {
            let config = Config::from_process_env()?;
            fulfillment::store::connect(&config.db.url, config.db.max_connections).await?;
            tracing::info!(db = %fulfillment::config::redact(&config.db.url), "migrations applied");
            Ok(())
        }
        Command::Token {
            user,
            operator,
            ttl_hours,
        } => {
            let config = Config::from_process_env()?.with_demo_secrets(Path::new("."))?;
            let ttl = Duration::from_secs(ttl_hours * 3600);
            let secret = config.secrets.jwt.expose();
            let operator_secret = config
                .secrets
                .operator_jwt
                .as_ref()
                .map_or(secret, |s| s.expose());
            let token = match (user, operator) {
                (_, Some(name)) => mint_operator_token(operator_secret, &name, ttl),
                (Some(user), None) => mint_user_token(secret, &user, ttl),
                (None, None) => unreachable!("clap requires --user or --operator"),
            };
            println!("{token}");
            Ok(())
        }
        Command::Health { url, timeout_secs } => {
            let url = url.unwrap_or_else(|| {
                let port = std::env::var("SERVER_PORT").unwrap_or_else(|_| "8014".into());
                format!("http://127.0.0.1:{port}/ready")
            });
            let http = fulfillment::upstream::http_client(Duration::from_secs(timeout_secs));
            match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => {
                    eprintln!("{url}: {}", r.status());
                    std::process::exit(1)
                }
                Err(e) => {
                    eprintln!("{url}: {e}");
                    std::process::exit(1)
                }
            }
        }
        Command::Sim(args) => run_sim(args).await,
        Command::ImportLegacy(args) => import_legacy(args).await,
    }
}

/// A schema name put into SQL as it is: letters, digits and `_` only.
fn plain_identifier(s: &str) -> Result<String, String> {
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    plain
        .then(|| s.to_owned())
        .ok_or_else(|| "a schema name of letters, digits and _".to_owned())
}

async fn import_legacy(args: ImportArgs) -> anyhow::Result<()> {
    use fulfillment::app::import_legacy::{ImportOptions, import_legacy};
    use fulfillment::ports::legacy::LegacySource;
    let config = Config::from_process_env()?;
    if config.demo {
        // Nothing configured would import into the demo's SQLite file: never what is meant.
        eprintln!(
            "error: DB_URL (and the service's secrets) must be set: the import writes the \
             database this service will run on"
        );
        std::process::exit(2);
    }
    let source = fulfillment::legacy::LegacyDb::connect(&args.from, &args.schema).await?;
    // A missing table or column ends it here, before our database is touched at all.
    source.check().await?;
    let store = fulfillment::store::connect(&config.db.url, config.db.max_connections).await?;
    let options = ImportOptions {
        batch_rows: args.batch_rows as usize,
        ..ImportOptions::new(args.dry_run, config.engine.ready_timeout)
    };
    let progress = fulfillment::progress::Bar::stderr();
    let clock = fulfillment::ports::SystemClock;
    let report = import_legacy(&source, store.as_ref(), &clock, &options, &progress).await?;
    eprint!("{}", report.summary());
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::from_process_env()?.with_demo_secrets(Path::new("."))?;
    let sim = config.demo.then(server::demo_sim);
    let listener = tokio::net::TcpListener::bind((config.http.bind, config.http.port))
        .await
        .with_context(|| format!("binding {}:{}", config.http.bind, config.http.port))?;
    let running = server::start(&config, listener, sim).await?;
    if config.demo {
        server::seed_demo(&running.state.app).await?;
        print_demo_banner(&config, running.addr, running.metrics_addr);
    }
    tracing::info!(addr = %running.addr, db = running.state.app.ports.store.backend(), "fulfillment-service listening");
    let engine = running.state.app.engine.clone();
    tokio::select! {
        _ = shutdown_signal() => {}
        name = engine.died() => {
            // Exit so a supervisor restarts the process: serving requests whose work is
            // never carried out is worse than being down.
            running.kill();
            anyhow::bail!("the engine's {name} loop died; exiting so a supervisor restarts the service");
        }
    }
    tracing::info!("shutting down: finishing work in flight");
    running.stop().await;
    Ok(())
}

fn print_demo_banner(config: &Config, addr: SocketAddr, metrics: Option<SocketAddr>) {
    let token = mint_user_token(
        config.secrets.jwt.expose(),
        "demo-user",
        Duration::from_secs(7 * 24 * 3600),
    );
    let operator = mint_operator_token(
        config
            .secrets
            .operator_jwt
            .as_ref()
            .map_or(config.secrets.jwt.expose(), |s| s.expose()),
        "demo-operator",
        Duration::from_secs(7 * 24 * 3600),
    );
    let base = format!("http://{addr}");
    let metrics = metrics.map_or_else(
        || "(off: METRICS_ADDR is empty)".to_owned(),
        |at| format!("curl -s http://{at}/metrics"),
    );
    tracing::warn!(
        "DEMO MODE: embedded SQLite, simulated upstreams, generated secrets. Not for production."
    );
    println!(
        "\n================================ DEMO MODE ================================\n\
         Nothing is configured, so this is a demo: SQLite at {db},\n\
         simulated hosting, VPN and subscription services in process, generated secrets\n\
         (kept in ./fulfillment-demo.secrets). Configure DB_URL, secrets and upstream\n\
         URLs (see .env.example) to run for real.\n\n\
         Open the product (signs in as demo-user; the token after # never reaches a server):\n  \
         {base}/#token={token}\n\
         The operator console (as demo-operator):\n  {base}/console#token={operator}\n\
         The API described: {base}/api/docs ({base}/api/openapi.json)\n\n\
         User token for demo-user (premium hosting and VPN subscriptions):\n  TOKEN={token}\n\n\
         curl -s -H \"Authorization: Bearer $TOKEN\" {base}/api/v1/my/node\n\
         curl -s -X POST -H \"Authorization: Bearer $TOKEN\" -d '{{\"region\":\"ap-northeast-1\"}}' {base}/api/v1/my/node\n\
         curl -s -H \"Authorization: Bearer $TOKEN\" {base}/api/v1/my/nodes\n\
         curl -s -X POST -H \"Authorization: Bearer $TOKEN\" -d '{{\"region\":\"eu-west-1\"}}' {base}/api/v1/my/node/migrate\n\
         curl -s -X DELETE -H \"Authorization: Bearer $TOKEN\" {base}/api/v1/my/node\n\
         curl -s -H \"Authorization: Bearer $TOKEN\" {base}/api/v1/my/vpn\n\
         curl -s -H \"Authorization: Bearer $TOKEN\" {base}/api/v1/my/vpn/subscribe\n\
         curl -s {base}/api/v1/public/regions\n\
         curl -s -H \"X-Internal-Secret: {secret}\" {base}/api/internal/users/demo-user/resources\n\n\
         Live updates (the node and VPN documents as they change; create a node meanwhile):\n\
         curl -sN -H \"Authorization: Bearer $TOKEN\" {base}/api/v1/my/events\n\
         Metrics (Prometheus):\n\
         {metrics}\n\
         ===========================================================================\n",
        db = config.db.url,
        secret = config.secrets.internal.expose(),
    );
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    let sim = Sim::new(
        Knobs {
            latency_ms: args.latency_ms,
            failure_rate: args.failure_rate,
            timeout_rate: args.timeout_rate,
            hang_ms: args.hang_ms,
            lost_response_rate: args.lost_response_rate,
        },
        NodeTiming {
            creating_ms: args.creating_ms,
            installing_ms: args.installing_ms,
            fail_rate: args.node_fail_rate,
            ..NodeTiming::default()
        },
    );
    sim.subscriptions.set_default_plan(args.default_plan);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "simulated hosting and subscription services listening");
    let auth = SimAuth {
        admin_key: args.admin_key,
        internal_secret: args.internal_secret,
    };
    tokio::select! {
        r = fulfillment::sim::serve(sim, auth, listener) => r?,
        _ = shutdown_signal() => {}
    }
    Ok(())
}

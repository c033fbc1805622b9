//! Prometheus metrics (CONTRACTS.md §4.2): a registry per service instance (many run in
//! one test process, so nothing is global), the families the core reports through the
//! `Telemetry` port, the HTTP families, and the gauges a scrape derives from the database
//! and the live-stream hub. Label values come from fixed sets (route templates, statuses,
//! upstream operations), never from ids, addresses or secrets.

mod families;

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use domain::{ResourceKind, Status};
pub use families::{
    FigureLabels, FreshnessLabels, HttpLabels, KindLabels, KindStatusLabels, RouteLabels,
    TransportLabels, UpstreamLabels, UpstreamOpLabels, VersionLabels, WorkerLabels,
};
use ports::store::Readings;
use ports::{CallOutcome, NodeLoad, Telemetry};

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request and upstream latencies, 5 ms to 30 s.
fn latency() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

/// Provisioning, from the order to active: seconds to an hour.
fn provisioning() -> Histogram {
    Histogram::new([
        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ])
}

fn percent() -> Histogram {
    Histogram::new((1..=10).map(|i| f64::from(i) * 10.0))
}

fn load() -> Histogram {
    Histogram::new([0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
}

/// Every family of one service instance.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: HistogramFamily<RouteLabels>,
    upstream_requests: Family<UpstreamLabels, Counter>,
    upstream_duration: HistogramFamily<UpstreamOpLabels>,
    provisioning: HistogramFamily<KindLabels>,
    provisioning_failures: Family<KindLabels, Counter>,
    node_cpu: Histogram,
    node_mem: Histogram,
    node_load1: Histogram,
    resources: Family<KindStatusLabels, Gauge>,
    engine_due: Family<WorkerLabels, Gauge>,
    outbox_pending: Gauge,
    outbox_oldest_age: Gauge<f64, AtomicU64>,
    nodes_reporting: Family<FreshnessLabels, Gauge>,
    nodes_over: Family<FigureLabels, Gauge>,
    event_streams: Family<TransportLabels, Gauge>,
    /// Database reads made for the derived gauges (one per cache period at most).
    pub gauge_refreshes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fulfillment");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<RouteLabels> = Family::new_with_constructor(latency);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (event streams are not timed)",
            http_duration.clone(),
        );
        let upstream_requests = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_requests",
            "Calls to upstream services, by outcome",
            upstream_requests.clone(),
        );
        let upstream_duration: HistogramFamily<UpstreamOpLabels> =
            Family::new_with_constructor(latency);
        registry.register(
            "upstream_request_duration_seconds",
            "Time a call to an upstream service took",
            upstream_duration.clone(),
        );
        let provisioning: HistogramFamily<KindLabels> = Family::new_with_constructor(provisioning);
        registry.register(
            "provisioning_duration_seconds",
            "From the order recorded to the resource active",
            provisioning.clone(),
        );
        let provisioning_failures = Family::<KindLabels, Counter>::default();
        registry.register(
            "provisioning_failures",
            "Resources that failed to come up",
            provisioning_failures.clone(),
        );
        let node_cpu = percent();
        registry.register(
            "node_cpu_percent",
            "CPU use in node reports, one observation per report",
            node_cpu.clone(),
        );
        let node_mem = percent();
        registry.register(
            "node_mem_percent",
            "Memory use in node reports, one observation per report",
            node_mem.clone(),
        );
        let node_load1 = load();
        registry.register(
            "node_load1",
            "One-minute load average in node reports, one observation per report",
            node_load1.clone(),
        );
        let resources = Family::<KindStatusLabels, Gauge>::default();
        registry.register(
            "resources",
            "Resources by type and status (deleted ones are history and not counted)",
            resources.clone(),
        );
        let engine_due = Family::<WorkerLabels, Gauge>::default();
        registry.register(
            "engine_due",
            "Rows due for a worker now: resources for the reconciler, callbacks for the outbox",
            engine_due.clone(),
        );
        let outbox_pending = Gauge::default();
        registry.register(
            "outbox_pending",
            "Callbacks to the subscription service not yet acknowledged",
            outbox_pending.clone(),
        );
        let outbox_oldest_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest callback not yet acknowledged (0 when none)",
            outbox_oldest_age.clone(),
        );
        let nodes_reporting = Family::<FreshnessLabels, Gauge>::default();
        registry.register(
            "nodes_reporting",
            "Active nodes by whether they reported in the last 5 minutes",
            nodes_reporting.clone(),
        );
        let nodes_over = Family::<FigureLabels, Gauge>::default();
        registry.register(
            "nodes_over_threshold",
            "Active nodes whose last report is over 90% (cpu, mem) or that used over 90% of their traffic limit (traffic)",
            nodes_over.clone(),
        );
        let event_streams = Family::<TransportLabels, Gauge>::default();
        registry.register(
            "event_streams",
            "Live event streams open in this process",
            event_streams.clone(),
        );
        let gauge_refreshes = Counter::default();
        registry.register(
            "metrics_derived_reads",
            "Database reads made to compute the derived gauges of a scrape",
            gauge_refreshes.clone(),
        );
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The running build", build_info);
        let m = Metrics {
            registry,
            http_requests,
            http_duration,
            upstream_requests,
            upstream_duration,
            provisioning,
            provisioning_failures,
            node_cpu,
            node_mem,
            node_load1,
            resources,
            engine_due,
            outbox_pending,
            outbox_oldest_age,
            nodes_reporting,
            nodes_over,
            event_streams,
            gauge_refreshes,
        };
        m.prefill();
        m
    }

    /// Creates every series of a fixed label set at zero, so dashboards and alerts see a
    /// series from the first scrape instead of none.
    fn prefill(&self) {
        for &kind in ResourceKind::ALL {
            let labels = KindLabels {
                r#type: kind.as_str(),
            };
            let _ = self.provisioning.get_or_create(&labels);
            let _ = self.provisioning_failures.get_or_create(&labels);
        }
        for (upstream, operation) in families::OPERATIONS {
            for outcome in CallOutcome::ALL {
                let _ = self.upstream_requests.get_or_create(&UpstreamLabels {
                    upstream,
                    operation,
                    outcome: outcome.as_str(),
                });
            }
            let _ = self.upstream_duration.get_or_create(&UpstreamOpLabels {
                upstream,
                operation,
            });
        }
        self.set_readings(&Readings::default(), chrono::Utc::now());
        self.set_streams(&[("sse", 0), ("ws", 0)]);
    }

    /// Sets the gauges derived from the database.
    pub fn set_readings(&self, r: &Readings, now: chrono::DateTime<chrono::Utc>) {
        for &kind in ResourceKind::ALL {
            // `deleted` is history: counting it would mean counting every row ever made.
            for &status in Status::ALL.iter().filter(|s| **s != Status::Deleted) {
                let n = r
                    .resources
                    .iter()
                    .find(|(k, s, _)| *k == kind && *s == status)
                    .map_or(0, |(_, _, n)| *n);
                self.resources
                    .get_or_create(&KindStatusLabels {
                        r#type: kind.as_str(),
                        status: status.as_str(),
                    })
                    .set(n);
            }
        }
        let worker = |w| WorkerLabels { worker: w };
        self.engine_due
            .get_or_create(&worker("reconciler"))
            .set(r.due_resources);
        self.engine_due
            .get_or_create(&worker("outbox"))
            .set(r.due_callbacks);
        self.outbox_pending.set(r.pending_callbacks);
        let age = r.oldest_pending.map_or(0.0, |at| {
            (now - at).num_milliseconds().max(0) as f64 / 1000.0
        });
        self.outbox_oldest_age.set(age);
        let fresh = |f| FreshnessLabels { freshness: f };
        self.nodes_reporting
            .get_or_create(&fresh("fresh"))
            .set(r.nodes_fresh);
        self.nodes_reporting
            .get_or_create(&fresh("stale"))
            .set(r.nodes_stale);
        for (figure, n) in [
            ("cpu", r.nodes_over.cpu),
            ("mem", r.nodes_over.mem),
            ("traffic", r.nodes_over.traffic),
        ] {
            self.nodes_over
                .get_or_create(&FigureLabels { figure })
                .set(n);
        }
    }

    /// Sets the open streams per transport.
    pub fn set_streams(&self, open: &[(&'static str, usize)]) {
        for (transport, n) in open {
            self.event_streams
                .get_or_create(&TransportLabels { transport })
                .set(*n as i64);
        }
    }

    /// The exposition, in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(32 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Telemetry for Metrics {
    fn upstream_call(
        &self,
        upstream: &'static str,
        operation: &'static str,
        outcome: CallOutcome,
        seconds: f64,
    ) {
        self.upstream_requests
            .get_or_create(&UpstreamLabels {
                upstream,
                operation,
                outcome: outcome.as_str(),
            })
            .inc();
        self.upstream_duration
            .get_or_create(&UpstreamOpLabels {
                upstream,
                operation,
            })
            .observe(seconds);
    }

    fn provisioned(&self, kind: ResourceKind, seconds: f64) {
        self.provisioning
            .get_or_create(&KindLabels {
                r#type: kind.as_str(),
            })
            .observe(seconds.max(0.0));
    }

    fn provisioning_failed(&self, kind: ResourceKind) {
        self.provisioning_failures
            .get_or_create(&KindLabels {
                r#type: kind.as_str(),
            })
            .inc();
    }

    fn node_load(&self, load: NodeLoad) {
        if let Some(v) = load.cpu_percent {
            self.node_cpu.observe(v);
        }
        if let Some(v) = load.mem_percent {
            self.node_mem.observe(v);
        }
        if let Some(v) = load.load1 {
            self.node_load1.observe(v);
        }
    }
}

//! Node agents' reports: ready, failed, and usage. Each is checked against the node's own
//! credential (or the internal secret of the hosting service) and is harmless when
//! repeated; a report on a node that is gone or going changes nothing.

use serde::Deserialize;

use super::ids::ResourceId;
use super::{App, AppError};
use domain::input;
use domain::{Connection, Resource, credential};
use engine::Applied;
use ports::NodeLoad;
use ports::store::NodeStats;

/// A node agent's ready report.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct NodeReport {
    #[schema(required = true, min_length = 1)]
    #[param(required = true, min_length = 1)]
    pub resource_id: String,
    pub public_ip: Option<String>,
    #[schema(minimum = 0, maximum = 65535)]
    #[param(minimum = 0, maximum = 65535)]
    pub api_port: Option<i32>,
    pub api_key: Option<String>,
    #[schema(minimum = 0, maximum = 65535)]
    #[param(minimum = 0, maximum = 65535)]
    pub vless_port: Option<i32>,
    #[schema(minimum = 0, maximum = 65535)]
    #[param(minimum = 0, maximum = 65535)]
    pub ss_port: Option<i32>,
    pub public_key: Option<String>,
    pub short_id: Option<String>,
    pub error_message: Option<String>,
}

/// A node agent's usage report: counters are cumulative since the node booted.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct NodeStatsReport {
    #[schema(required = true, min_length = 1)]
    pub resource_id: String,
    /// Bytes received since the node booted (required).
    #[schema(
        required = true,
        nullable = false,
        minimum = 0,
        maximum = 1_152_921_504_606_846_976_i64
    )]
    pub rx_bytes: Option<i64>,
    #[schema(
        required = true,
        nullable = false,
        minimum = 0,
        maximum = 1_152_921_504_606_846_976_i64
    )]
    pub tx_bytes: Option<i64>,
    #[schema(minimum = 0)]
    pub load1: Option<f64>,
    #[schema(minimum = 0, maximum = 100)]
    pub cpu_percent: Option<f64>,
    #[schema(minimum = 0, maximum = 100)]
    pub mem_percent: Option<f64>,
    /// When the agent took the sample (optional; arrival time otherwise). With it, a late
    /// delivery of an older sample is recognised and ignored.
    pub reported_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Who is reporting on a node.
#[derive(Debug, Clone)]
pub enum NodeCaller {
    /// The hosting service, with the internal secret: may report on any node.
    Service,
    /// A node agent with the credential minted for its resource.
    Node(String),
}

/// Which VPS of a resource a report comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reporter {
    /// The VPS that serves the node (or the hosting service, for any node).
    Serving,
    /// The VPS a migration is preparing: its news goes to the engine's migration step,
    /// which asks the hosting service (the report itself changes nothing).
    Replacement,
}

impl App {
    /// Checks that `caller` may report on resource `id` and returns the resource.
    async fn reported_resource(
        &self,
        caller: &NodeCaller,
        id: &str,
    ) -> Result<(Resource, Reporter), AppError> {
        let id = ResourceId::parse(id)?.0;
        let mut reporter = Reporter::Serving;
        if let NodeCaller::Node(token) = caller {
            let digests = self.ports.store.node_credential(id).await?;
            let matches =
                |d: &Option<String>| d.as_deref().is_some_and(|d| credential::matches(token, d));
            reporter = if matches(&digests.current) {
                Reporter::Serving
            } else if matches(&digests.migration) {
                Reporter::Replacement
            } else {
                return Err(AppError::forbidden(
                    "wrong_node_credential",
                    "this credential does not belong to that resource",
                ));
            };
        }
        let r = self
            .ports
            .store
            .resource(id)
            .await?
            .ok_or_else(|| AppError::not_found("resource_not_found", "resource not found"))?;
        Ok((r, reporter))
    }

    /// A report from a migration's new VPS: the migration step looks at it now.
    async fn replacement_reported(&self, r: &Resource) -> Result<bool, AppError> {
        let now = self.ports.clock.now();
        self.ports.store.wake_resource(r.id, now).await?;
        Ok(false)
    }

    /// A node reports it is ready. Harmless when repeated, and ignored for a resource that
    /// is not coming up (deleted, being deleted, failed).
    pub async fn node_ready(
        &self,
        caller: NodeCaller,
        report: NodeReport,
    ) -> Result<bool, AppError> {
        let ip = report
            .public_ip
            .as_deref()
            .map(str::trim)
            .unwrap_or_default();
        if ip.is_empty() {
            return Err(AppError::invalid(
                "missing_public_ip",
                "public_ip is required",
            ));
        }
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(AppError::invalid(
                "invalid_public_ip",
                "public_ip is not an IP address",
            ));
        }
        let (r, reporter) = self.reported_resource(&caller, &report.resource_id).await?;
        if reporter == Reporter::Replacement {
            return self.replacement_reported(&r).await;
        }
        for (value, name) in [
            (&report.api_key, "api_key"),
            (&report.public_key, "public_key"),
            (&report.short_id, "short_id"),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
                input::id(v, name, "invalid_field", "field_too_long")?;
            }
        }
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let port = |p: Option<i32>| p.filter(|p| (1..=65535).contains(p));
        let conn = Connection {
            public_ip: Some(ip.to_owned()),
            api_port: port(report.api_port),
            api_key: nonempty(report.api_key),
            vless_port: port(report.vless_port),
            ss_port: port(report.ss_port),
            public_key: nonempty(report.public_key),
            short_id: nonempty(report.short_id),
        };
        Ok(self.engine.node_ready(&r, conn).await? == Applied::Done)
    }

    /// A node reports that it could not come up.
    pub async fn node_failed(
        &self,
        caller: NodeCaller,
        report: NodeReport,
    ) -> Result<bool, AppError> {
        let (r, reporter) = self.reported_resource(&caller, &report.resource_id).await?;
        if reporter == Reporter::Replacement {
            return self.replacement_reported(&r).await;
        }
        // Shown to the user and logged: no control characters, at most 1,000 characters.
        let msg = report
            .error_message
            .as_deref()
            .and_then(input::free_text)
            .unwrap_or_else(|| "the node reported a failure".into());
        Ok(self.engine.node_failed(&r, msg).await? == Applied::Done)
    }

    /// A node agent reports usage. Counted once whatever the delivery order (see
    /// `Store::record_node_stats`); ignored for a node that is gone.
    pub async fn node_stats(
        &self,
        caller: NodeCaller,
        report: NodeStatsReport,
    ) -> Result<bool, AppError> {
        let rx_bytes = input::counter(report.rx_bytes, "rx_bytes")?;
        let tx_bytes = input::counter(report.tx_bytes, "tx_bytes")?;
        let gauge = |v: Option<f64>, name: &str, max: f64| match v {
            Some(v) if !v.is_finite() || v < 0.0 || v > max => Err(AppError::invalid(
                "invalid_gauge",
                if max.is_finite() {
                    format!("{name} must be a number from 0 to {max}")
                } else {
                    format!("{name} must be a non-negative number")
                },
            )),
            other => Ok(other),
        };
        let now = self.ports.clock.now();
        let stats = NodeStats {
            rx_bytes,
            tx_bytes,
            load1: gauge(report.load1, "load1", f64::INFINITY)?,
            cpu_percent: gauge(report.cpu_percent, "cpu_percent", 100.0)?,
            mem_percent: gauge(report.mem_percent, "mem_percent", 100.0)?,
            // A clock ahead of ours must not freeze metering until it is caught up with.
            at: report.reported_at.map_or(now, |at| at.min(now)),
        };
        let (r, reporter) = self.reported_resource(&caller, &report.resource_id).await?;
        if reporter == Reporter::Replacement {
            // The new VPS serves nobody yet: its usage is not the node's.
            return Ok(false);
        }
        let recorded = self.ports.store.record_node_stats(r.id, &stats).await?;
        if recorded {
            self.ports.telemetry.node_load(NodeLoad {
                cpu_percent: stats.cpu_percent,
                mem_percent: stats.mem_percent,
                load1: stats.load1,
            });
        }
        Ok(recorded)
    }
}

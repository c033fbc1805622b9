//! What the core reports for monitoring: calls to upstreams, resources coming up, node
//! load. The metrics adapter (the `prometheus` crate) turns these into Prometheus families; the
//! core never sees a registry. Nothing passed here is an id, an address or a secret.

use domain::ResourceKind;

/// How an upstream call ended, as `fulfillment_upstream_requests_total{outcome}` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    Http4xx,
    Http5xx,
    Timeout,
    Transport,
    Decode,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 6] = [
        CallOutcome::Ok,
        CallOutcome::Http4xx,
        CallOutcome::Http5xx,
        CallOutcome::Timeout,
        CallOutcome::Transport,
        CallOutcome::Decode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Http4xx => "http_4xx",
            CallOutcome::Http5xx => "http_5xx",
            CallOutcome::Timeout => "timeout",
            CallOutcome::Transport => "transport",
            CallOutcome::Decode => "decode",
        }
    }

    /// The outcome of a call that answered `result`.
    pub fn of<T>(result: &super::UpstreamResult<T>) -> Self {
        use super::UpstreamError as E;
        match result {
            Ok(_) => CallOutcome::Ok,
            Err(E::Timeout) => CallOutcome::Timeout,
            Err(E::Connect(_)) => CallOutcome::Transport,
            Err(E::InvalidBody(_)) => CallOutcome::Decode,
            Err(E::Status { status, .. }) if *status >= 500 => CallOutcome::Http5xx,
            Err(E::Status { .. }) => CallOutcome::Http4xx,
        }
    }
}

/// One node agent's load report (each figure when sent).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeLoad {
    pub cpu_percent: Option<f64>,
    pub mem_percent: Option<f64>,
    pub load1: Option<f64>,
}

/// The sink for what the core observes.
pub trait Telemetry: Send + Sync {
    /// A call to `upstream` (`hosting`, `vpn_manager`, `subscriptions`) ended.
    fn upstream_call(
        &self,
        upstream: &'static str,
        operation: &'static str,
        outcome: CallOutcome,
        seconds: f64,
    );
    /// A resource became active, `seconds` after its order was recorded.
    fn provisioned(&self, kind: ResourceKind, seconds: f64);
    /// A resource failed to come up.
    fn provisioning_failed(&self, kind: ResourceKind);
    /// A node agent reported its load.
    fn node_load(&self, load: NodeLoad);
}

/// Observes nothing (tools and tests that need no metrics).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTelemetry;

impl Telemetry for NoTelemetry {
    fn upstream_call(&self, _: &'static str, _: &'static str, _: CallOutcome, _: f64) {}
    fn provisioned(&self, _: ResourceKind, _: f64) {}
    fn provisioning_failed(&self, _: ResourceKind) {}
    fn node_load(&self, _: NodeLoad) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UpstreamError;

    #[test]
    fn every_failure_has_its_outcome() {
        let of = |e: UpstreamError| CallOutcome::of::<()>(&Err(e));
        assert_eq!(CallOutcome::of(&Ok(())), CallOutcome::Ok);
        assert_eq!(of(UpstreamError::Timeout), CallOutcome::Timeout);
        assert_eq!(
            of(UpstreamError::Connect("reset".into())),
            CallOutcome::Transport
        );
        assert_eq!(
            of(UpstreamError::InvalidBody("<html>".into())),
            CallOutcome::Decode
        );
        let status = |status| UpstreamError::Status {
            status,
            body: String::new(),
        };
        assert_eq!(of(status(404)), CallOutcome::Http4xx);
        assert_eq!(of(status(429)), CallOutcome::Http4xx);
        assert_eq!(of(status(500)), CallOutcome::Http5xx);
        assert_eq!(of(status(503)), CallOutcome::Http5xx);
    }
}

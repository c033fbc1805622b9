//! HTTP clients for the services we call (hosting, subscriptions, VPN manager), one per
//! upstream, each implementing its port over an `Endpoint` (base URL, credential header,
//! gate). One shared `reqwest::Client` carries the timeouts and user agent; every failure
//! is a typed `UpstreamError` that says whether a retry can help.

mod hosting;
mod metered;
mod subscriptions;
mod vpn;

use std::time::Duration;

use reqwest::{Method, Response, StatusCode, Url};
use serde::de::DeserializeOwned;

pub use hosting::{HostingClient, node_from_json};
pub use metered::Metered;
pub use subscriptions::SubscriptionsClient;
pub use vpn::VpnClient;

use ports::UpstreamError;

/// At most so many calls in flight toward one upstream; more wait their turn (bounded
/// by the caller's own deadline), so a burst never floods a service that is struggling.
#[derive(Debug, Clone)]
pub struct Gate(std::sync::Arc<tokio::sync::Semaphore>);

impl Gate {
    pub fn new(max_in_flight: usize) -> Self {
        Gate(std::sync::Arc::new(tokio::sync::Semaphore::new(
            max_in_flight.max(1),
        )))
    }

    /// Waits for a slot; the slot is held until the returned permit is dropped.
    async fn enter(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        // The semaphore is never closed, so this cannot fail.
        self.0.acquire().await.ok()
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new(64)
    }
}

/// One upstream service as its client calls it: the shared HTTP client, the service's base
/// URL, the header that carries our credential, and the gate on calls in flight.
#[derive(Clone)]
struct Endpoint {
    http: reqwest::Client,
    gate: Gate,
    base: Url,
    header: &'static str,
    credential: String,
}

impl Endpoint {
    fn new(http: reqwest::Client, base: Url, header: &'static str, credential: String) -> Self {
        Endpoint {
            http,
            gate: Gate::default(),
            base,
            header,
            credential,
        }
    }

    fn max_in_flight(mut self, n: usize) -> Self {
        self.gate = Gate::new(n);
        self
    }

    /// A request to the path `segments` under the base URL, carrying the credential.
    fn request(&self, method: Method, segments: &[&str]) -> reqwest::RequestBuilder {
        self.http
            .request(method, url_with_segments(&self.base, segments))
            .header(self.header, &self.credential)
    }

    /// `req`'s 2xx answer, read as JSON, with a slot of the gate held until it is read.
    async fn fetch<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, UpstreamError> {
        let _in_flight = self.gate.enter().await;
        json(expect_success(req.send().await.map_err(failed)?).await?).await
    }

    /// `fetch`, with `None` for a 404 (the service does not know it).
    async fn fetch_optional<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<Option<T>, UpstreamError> {
        let _in_flight = self.gate.enter().await;
        let resp = req.send().await.map_err(failed)?;
        if is_not_found(&resp) {
            return Ok(None);
        }
        Ok(Some(json(expect_success(resp).await?).await?))
    }

    /// Sends `req`, expecting any 2xx (its body unread).
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(), UpstreamError> {
        let _in_flight = self.gate.enter().await;
        expect_success(req.send().await.map_err(failed)?).await?;
        Ok(())
    }

    /// Deletes what is at the path `segments`; a 404 counts as done (it is gone already).
    async fn delete(&self, segments: &[&str]) -> Result<(), UpstreamError> {
        let _in_flight = self.gate.enter().await;
        let resp = self
            .request(Method::DELETE, segments)
            .send()
            .await
            .map_err(failed)?;
        if is_not_found(&resp) {
            return Ok(());
        }
        expect_success(resp).await?;
        Ok(())
    }
}

/// Builds the shared client. `timeout` bounds every call end to end.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    http_client_trusting(timeout, Vec::new())
}

/// The shared client, trusting the CAs in `extra_roots` beside the system's (a private CA
/// of the upstream services: `UPSTREAM_CA_FILE`). An `https` URL is never called in plain
/// text: a certificate no trusted CA signed fails the call.
pub fn http_client_trusting(
    timeout: Duration,
    extra_roots: Vec<reqwest::Certificate>,
) -> reqwest::Client {
    // reqwest is built without a bundled crypto provider; use ring's (ignored if a
    // provider is already installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("fulfillment-service/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(3).min(timeout))
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .tls_certs_merge(extra_roots)
        .build()
        .expect("the HTTP client configuration is valid")
}

/// The CA certificates of a PEM file (`UPSTREAM_CA_FILE`): an unreadable file, or one
/// holding no certificate, is an error naming it.
pub fn ca_bundle(path: &std::path::Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    use anyhow::Context;
    let pem = std::fs::read(path)
        .with_context(|| format!("reading UPSTREAM_CA_FILE {}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
        format!(
            "UPSTREAM_CA_FILE {} is not PEM certificates",
            path.display()
        )
    })?;
    anyhow::ensure!(
        !certs.is_empty(),
        "UPSTREAM_CA_FILE {} holds no certificate",
        path.display()
    );
    Ok(certs)
}

/// What a failed exchange means to the engine (the port's error is not this crate's, so
/// this is a function, not a `From`).
fn failed(e: reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout
    } else if e.is_decode() {
        UpstreamError::InvalidBody(e.to_string())
    } else {
        // Connection refused or reset, a body cut short: all worth retrying.
        UpstreamError::Connect(without_url(e))
    }
}

/// reqwest's messages repeat the URL, which may carry ids; keep the cause only.
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// Turns a non-success status into an error carrying (the start of) the body.
async fn expect_success(resp: Response) -> Result<Response, UpstreamError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    Err(UpstreamError::Status {
        status: status.as_u16(),
        body: body.chars().take(300).collect(),
    })
}

/// Reads a JSON body, reporting garbage as `InvalidBody` (retryable: the call may have
/// worked, and the caller's next step checks before repeating anything).
async fn json<T: DeserializeOwned>(resp: Response) -> Result<T, UpstreamError> {
    let bytes = resp.bytes().await.map_err(failed)?;
    serde_json::from_slice(&bytes).map_err(|e| UpstreamError::InvalidBody(e.to_string()))
}

fn is_not_found(resp: &Response) -> bool {
    resp.status() == StatusCode::NOT_FOUND
}

/// Appends path segments to a base URL, percent-encoding each (user ids are opaque).
fn url_with_segments(base: &reqwest::Url, segments: &[&str]) -> reqwest::Url {
    let mut url = base.clone();
    {
        let mut path = url
            .path_segments_mut()
            .expect("upstream base URLs are http(s) URLs");
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_appended_and_escaped() {
        let base = reqwest::Url::parse("http://h:1/prefix/").unwrap();
        let url = url_with_segments(&base, &["api", "users", "a/b c", "x"]);
        assert_eq!(url.as_str(), "http://h:1/prefix/api/users/a%2Fb%20c/x");
    }
}

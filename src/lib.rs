//! fulfillment-service: turns paid orders into running infrastructure.
//!
//! The top crate of the workspace. Layers, one crate each, each depending only on those to
//! its left (docs/ARCHITECTURE.md, "Layers and crates"): `domain` (pure rules) ← `ports`
//! (traits) ← the adapters `store`, `upstream`, `sim` and `prometheus`, and the cores
//! `engine` (reconciler, outbox, periodic jobs) and `app` (use cases) ← `api` (HTTP,
//! pages) ← this crate: `server` and `config`, which wire everything for the binary
//! (`main.rs`, whose subcommands are the CLI), and `legacy`, the reader of the Go
//! service's database that only `import-legacy` wires. Every layer is re-exported here
//! under its name, so tests and the benchmark reach all of it through `fulfillment::`.

pub use api::http;
/// The Prometheus adapter of the telemetry port (the crate `fulfillment-prometheus`).
pub use prometheus as metrics;
pub use {api, app, domain, engine, ports, sim, store, upstream};

pub mod config;
pub mod legacy;
pub mod logging;
pub mod progress;
pub mod server;

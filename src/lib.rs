//! fulfillment-service: turns paid orders into running infrastructure.
//!
//! Layers, with dependencies pointing down only:
//! `api` (HTTP) → `app` (use cases) → `engine` (reconciler, outbox) → `ports` (traits) →
//! `domain` (pure rules). `store`, `upstream` and `sim` are adapters behind the ports;
//! `config` and `cli` wire everything together for the binary.

pub mod api;
pub mod app;
pub mod config;
pub mod domain;
pub mod engine;
pub mod http;
pub mod legacy;
pub mod logging;
pub mod metrics;
pub mod ports;
pub mod progress;
pub mod server;
pub mod sim;
pub mod store;
pub mod upstream;

//! fulfillment-service: turns paid orders into running infrastructure.
//!
//! Layers, each depending only on those to its left (docs/ARCHITECTURE.md, "Layers and
//! folders"): `domain` (pure rules) ← `ports` (traits) ← the adapters `store`, `upstream`,
//! `sim`, `legacy` and `metrics`, and the cores `engine` (reconciler, outbox, periodic
//! jobs) and `app` (use cases) ← `api` (HTTP, pages) ← `server` and `config`, which wire
//! everything for the binary (`main.rs`, whose subcommands are the CLI).

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

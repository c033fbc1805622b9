//! Integration tests, in one binary so the suite links once. Every test gets its own
//! database (a fresh PostgreSQL database or SQLite file); storage-dependent tests run on
//! both backends.

mod helpers;

mod abuse;
mod api_auth;
mod api_bad_input;
mod browser;
mod browser_console;
mod browser_user;
mod chaos;
mod chaos_orders;
mod connections;
mod crash;
mod db_outage;
mod deploy;
mod events;
mod fault_matrix;
mod generate;
mod generated_input;
mod golden;
mod golden_nodes;
mod hardening;
mod hostile;
mod hosting_flow;
mod jobs;
mod legacy_fixture;
mod legacy_import;
mod limits;
mod metrics;
mod migration;
mod migration_crash;
mod nodes;
mod openapi;
mod operator;
mod operator_auth;
mod pages;
mod pgbouncer;
mod prometheus;
mod read_model;
mod restore;
mod sse_client;
mod store_conformance;
mod store_history;
mod store_lifelines;
mod store_nodes;
mod sweep;
mod tls;
mod traffic;
mod upstream_clients;
mod usage;
mod vpn_contract;
mod vpn_flow;

//! `hms-kit`: what every HMS service shares, written once.
//!
//! A service crate supplies its domain rules, its SQL and its routes; everything around them
//! (configuration, errors and the error body, correlation ids, JSON logs with PII masked,
//! JWT auth and the per-route role table, pagination, health/ready/metrics/OpenAPI routes,
//! the database and its migrations, the outbox relay and the inbox, the client for calling
//! other services, graceful serving) lives here.

pub mod auth;
pub mod clock;
pub mod coalesce;
pub mod config;
pub mod correlation;
pub mod db;
pub mod downstream;
pub mod dry_run;
pub mod error;
pub mod extract;
pub mod group_commit;
pub mod idempotency;
pub mod import;
pub mod inbox;
pub mod log_line;
pub mod logging;
pub mod metrics;
pub mod money;
pub mod ops;
pub mod outbox;
pub mod pagination;
pub mod pii;
pub mod server;
pub mod time;
pub mod tx;

pub use error::{Error, Result};
pub use hms_client::Service;

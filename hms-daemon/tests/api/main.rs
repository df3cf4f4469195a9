//! Black-box tests: the real services, spawned on random ports with throw-away databases,
//! driven over HTTP. Every test runs on SQLite and, with `HMS_TEST_POSTGRES_URL`, on PostgreSQL.

pub use hms_testkit as support;
pub use hms_testkit::both_backends;

pub use hms_testkit::EVERY_SERVICE;

mod appointment;
mod auth;
mod billing;
mod contract;
mod daemon;
mod doctor;
mod errors;
mod faults;
mod legacy;
mod notification;
mod ops;
mod outbox;
mod patient;
mod pii;
mod prescription;

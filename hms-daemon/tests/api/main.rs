//! Black-box tests: the real services, spawned on random ports with throw-away databases,
//! driven over HTTP. Every test runs on SQLite and, with `HMS_TEST_POSTGRES_URL`, on PostgreSQL.

pub use hms_testkit as support;
pub use hms_testkit::both_backends;

/// Every service, as the embedded default runs them.
pub const EVERY_SERVICE: [&hms_kit::server::ServiceDef; 7] = [
    &hms_patient::SERVICE,
    &hms_doctor::SERVICE,
    &hms_billing::SERVICE,
    &hms_appointment::SERVICE,
    &hms_prescription::SERVICE,
    &hms_payment::SERVICE,
    &hms_notification::SERVICE,
];

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

//! Payment service (port 8006): charges and refunds with required idempotency keys, never a
//! double charge and never more than a bill is owed.
//!
//! `store` holds the SQL (the ledger rule is a CHECK on `bill_balance`), `http` the routes.

pub mod domain;
pub mod http;
pub mod store;

use hms_kit::db::Backend;
use hms_kit::server::ServiceDef;
use hms_kit::Service;

/// The payment service, as the daemon runs it.
pub const SERVICE: ServiceDef = ServiceDef {
    service: Service::Payment,
    description: "Payments (CASH, CARD, UPI) and refunds, with Idempotency-Key; never a double charge or an over-payment.",
    // Billing keeps paid and refunded; notification tells the patient.
    subscribers: &[Service::Billing, Service::Notification],
    narrowed: &[(
        Service::Notification,
        &["payment.captured", "payment.refunded"],
    )],
    migrations,
    routes: http::routes,
    background: None,
};

fn migrations(backend: Backend) -> sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => sqlx::migrate!("../../migrations/payment/sqlite"),
        Backend::Postgres => sqlx::migrate!("../../migrations/payment/postgres"),
    }
}

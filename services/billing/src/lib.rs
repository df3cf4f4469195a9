//! Billing service (port 8003): bills on completion (consultation + medicines + 5% tax),
//! cancellation and no-show fees, VOID, credit notes, and the paid/refunded state reported by
//! the payment service.
//!
//! `domain` holds the money rules (pure), `store` the SQL, `events` what other services tell
//! it, `http` the routes.

pub mod domain;
pub mod events;
pub mod http;
pub mod store;

use hms_kit::db::Backend;
use hms_kit::server::ServiceDef;
use hms_kit::Service;

/// The billing service, as the daemon runs it.
pub const SERVICE: ServiceDef = ServiceDef {
    service: Service::Billing,
    description: "Bills: consultation, medicines and 5% tax on completion; cancellation and no-show fees; VOID; credit notes.",
    // Payment keeps the bills it may charge; notification tells the patient.
    subscribers: &[Service::Payment, Service::Notification],
    narrowed: &[(
        // The patient hears of a new bill; its later states follow from what they did.
        Service::Notification,
        &["bill.created"],
    )],
    migrations,
    routes: http::routes,
    background: None,
};

fn migrations(backend: Backend) -> sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => sqlx::migrate!("../../migrations/billing/sqlite"),
        Backend::Postgres => sqlx::migrate!("../../migrations/billing/postgres"),
    }
}

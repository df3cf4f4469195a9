//! Prescription service (port 8005): prescriptions written at an appointment, priced from the
//! formulary. No prescription without a matching appointment.
//!
//! `domain` holds the rules (pure), `store` the SQL, `http` the routes and access table.

pub mod domain;
pub mod http;
pub mod store;

use hms_kit::db::Backend;
use hms_kit::server::ServiceDef;
use hms_kit::Service;

/// The prescription service, as the daemon runs it.
pub const SERVICE: ServiceDef = ServiceDef {
    service: Service::Prescription,
    description: "Prescriptions (dosage morning-noon-night, quantity derived) and the formulary with unit prices.",
    // Billing prices prescriptions once it is part of the build.
    subscribers: &[Service::Billing],
    narrowed: &[],
    migrations,
    routes: http::routes,
    background: None,
};

fn migrations(backend: Backend) -> sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => sqlx::migrate!("../../migrations/prescription/sqlite"),
        Backend::Postgres => sqlx::migrate!("../../migrations/prescription/postgres"),
    }
}

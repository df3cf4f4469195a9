//! Patient service (port 8001): registration, search, deactivation and the audit trail of
//! who read or changed each record.
//!
//! `domain` holds the rules (pure), `store` the SQL, `http` the routes and access table.

pub mod domain;
pub mod http;
pub mod store;

use hms_kit::db::Backend;
use hms_kit::server::ServiceDef;
use hms_kit::Service;

/// The patient service, as the daemon runs it.
pub const SERVICE: ServiceDef = ServiceDef {
    service: Service::Patient,
    description: "Patients: registration, search, deactivation, and the audit trail of every read and change.",
    // The appointment service keeps what booking needs to know of them.
    subscribers: &[Service::Appointment],
    narrowed: &[],
    migrations,
    routes: http::routes,
    background: None,
};

fn migrations(backend: Backend) -> sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => sqlx::migrate!("../../migrations/patient/sqlite"),
        Backend::Postgres => sqlx::migrate!("../../migrations/patient/postgres"),
    }
}

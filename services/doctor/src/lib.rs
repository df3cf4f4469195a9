//! Doctor and scheduling service (port 8002): doctors, their departments and fees, weekly
//! working hours, leave, and availability (free standard slots) per doctor or department.
//!
//! `domain` holds the rules (pure), `store` the SQL, `http` the routes and access table.

pub mod domain;
pub mod http;
pub mod store;

use hms_kit::db::Backend;
use hms_kit::server::ServiceDef;
use hms_kit::Service;

/// The doctor service, as the daemon runs it.
pub const SERVICE: ServiceDef = ServiceDef {
    service: Service::Doctor,
    description: "Doctors, departments, fees, working hours, leave, and free slots.",
    // The appointment service keeps what booking needs to know of them.
    subscribers: &[Service::Appointment, Service::Notification],
    narrowed: &[],
    migrations,
    routes: http::routes,
    background: None,
};

fn migrations(backend: Backend) -> sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => sqlx::migrate!("../../migrations/doctor/sqlite"),
        Backend::Postgres => sqlx::migrate!("../../migrations/doctor/postgres"),
    }
}

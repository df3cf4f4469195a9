//! Appointment service (port 8004): book, reschedule, cancel, no-show, complete — every rule
//! of SPEC §2, with the ones concurrency could break held by the database.
//!
//! `domain` holds the rules (pure), `store` the SQL, `known` what it keeps of patients and
//! doctors (fed by their events), `checks` the calls to the patient and doctor services when
//! nothing is kept yet, `http` the routes and access table.

pub mod checks;
pub mod domain;
pub mod http;
pub mod known;
pub mod store;

use hms_kit::db::Backend;
use hms_kit::server::ServiceDef;
use hms_kit::Service;

/// The appointment service, as the daemon runs it.
pub const SERVICE: ServiceDef = ServiceDef {
    service: Service::Appointment,
    description:
        "Appointments: book, reschedule, cancel, no-show, complete; no double booking, daily caps.",
    // The doctor service keeps booked slots for availability; notification tells patients.
    // Billing subscribes when it is part of the build.
    subscribers: &[Service::Doctor, Service::Billing, Service::Notification],
    narrowed: &[(
        Service::Billing,
        // A bill is made on completion, a fee on a late cancellation or a no-show.
        &[
            "appointment.completed",
            "appointment.cancelled",
            "appointment.no_show",
        ],
    )],
    migrations,
    routes: http::routes,
    background: None,
};

fn migrations(backend: Backend) -> sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => sqlx::migrate!("../../migrations/appointment/sqlite"),
        Backend::Postgres => sqlx::migrate!("../../migrations/appointment/postgres"),
    }
}

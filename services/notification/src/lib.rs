//! Notification service (port 8007): turns appointment, billing and payment events into
//! messages to patients (e-mail and SMS), schedules and sends appointment reminders, and shows
//! staff what went out.
//!
//! `messages` writes the texts (pure), `store` the SQL, `doctors` what the messages say of
//! doctors (kept from the doctor service), `contacts` the patients' contact details (read
//! from the patient service, many at once), `providers` the ways out (record,
//! SMTP, webhook), `worker` the reminder scheduler and the delivery loop, `http` the routes.

pub mod contacts;
pub mod doctors;
pub mod http;
pub mod messages;
pub mod providers;
pub mod store;
pub mod worker;

use hms_kit::db::Backend;
use hms_kit::server::ServiceDef;
use hms_kit::Service;

/// The notification service, as the daemon runs it.
pub const SERVICE: ServiceDef = ServiceDef {
    service: Service::Notification,
    description: "Notifications (e-mail, SMS) for appointments, bills and payments; reminders; alerts for staff.",
    subscribers: &[],
    narrowed: &[],
    migrations,
    routes: http::routes,
    background: Some(worker::run),
};

fn migrations(backend: Backend) -> sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => sqlx::migrate!("../../migrations/notification/sqlite"),
        Backend::Postgres => sqlx::migrate!("../../migrations/notification/postgres"),
    }
}

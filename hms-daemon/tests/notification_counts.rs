//! The notification service's message counts (`notifications_sent_total`), exactly. A process
//! has one metrics recorder, which every service in it counts into: this file is a test
//! process of its own with one test, so no other test's messages land in its counts. The test
//! runs on SQLite, then on PostgreSQL when `HMS_TEST_POSTGRES_URL` is set.

use chrono::{DateTime, Duration, Utc};
use hms_client::models::{Event, NewAppointment, Notification, NotificationQuery, Reschedule};
use hms_kit::auth::Role;
use hms_kit::clock::Clock;
use hms_kit::Service;
use hms_testkit::*;

/// The notification service's `notifications_sent_total` for `channel`.
async fn sent_total(app: &TestApp, channel: &str) -> u64 {
    let url = format!("{}/metrics", app.url(Service::Notification));
    let text = app
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let label = format!("channel=\"{channel}\"");
    text.lines()
        .filter(|l| l.starts_with("notifications_sent_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn batch(app: &TestApp, events: &[Event]) -> serde_json::Value {
    let token = app.keys.issue(
        Role::Service,
        "service:appointment",
        None,
        Duration::minutes(5),
    );
    app.http
        .post(format!(
            "{}/v1/events/batch",
            app.url(Service::Notification)
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "events": events }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Whether every event of a batch's answer was processed (200), each a duplicate or not as
/// `duplicate` says.
fn all_processed(ack: &serde_json::Value, duplicate: bool) -> bool {
    ack["results"].as_array().is_some_and(|r| {
        r.iter()
            .all(|r| r["status"] == 200 && r["duplicate"] == duplicate)
    })
}

/// Messages of the default `record` provider are recorded as sent, in the transaction that
/// makes them, and counted once each when it commits: a late event that records nothing counts
/// nothing, and a batch delivered again counts nothing more.
async fn recorded_messages_are_sent_and_counted_once(b: Backend) {
    let app = TestApp::spawn_with(
        &b,
        &[
            &hms_patient::SERVICE,
            &hms_doctor::SERVICE,
            &hms_appointment::SERVICE,
            &hms_notification::SERVICE,
        ],
        Clock::manual("2026-11-30T00:00:00Z".parse().unwrap()),
        // The test delivers the appointment service's events to notification itself.
        |c| c.service_mut("appointment").subscribers = Some(vec!["doctor".into()]),
    )
    .await;
    let (desk, admin) = (app.client(Role::Reception), app.client(Role::Admin));
    let mut p = new_patient("Counted Person", 77);
    p.email = Some("counted.person@example.org".into());
    p.phone = "9800000077".into();
    let patient = desk.create_patient(&p).await.unwrap().patient_id;
    let doctor = admin
        .create_doctor(&new_doctor("Dr. Count", "Cardiology", "Cardiologist"))
        .await
        .unwrap()
        .doctor_id;
    let at = |h: i64| -> DateTime<Utc> {
        "2026-12-01T03:30:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::hours(h)
    };
    let book = |h| NewAppointment {
        patient_id: patient,
        doctor_id: doctor,
        department: "Cardiology".into(),
        slot_start: at(h),
        slot_end: None,
    };
    let first = desk.book_appointment(&book(0), None).await.unwrap();
    desk.reschedule_appointment(
        first.appointment_id,
        &Reschedule {
            new_slot_start: at(1),
            new_slot_end: None,
        },
        None,
    )
    .await
    .unwrap();
    desk.book_appointment(&book(2), None).await.unwrap();
    let appt = app.db(Service::Appointment);
    let booked = outbox_events(appt, "appointment", "appointment.booked").await;
    let moved = outbox_events(appt, "appointment", "appointment.rescheduled").await;
    assert_eq!((booked.len(), moved.len()), (2, 1));
    let of = |id: i64| booked.iter().find(|e| e.aggregate_id == id.to_string());
    let second = booked
        .iter()
        .find(|e| e.aggregate_id != first.appointment_id.to_string())
        .unwrap();
    // The first appointment's move arrives before its booking: the booking is late and
    // records nothing. Two messages (e-mail and SMS) each for the move and the second booking.
    let events = vec![
        moved[0].clone(),
        of(first.appointment_id).unwrap().clone(),
        second.clone(),
    ];
    let before = (
        sent_total(&app, "EMAIL").await,
        sent_total(&app, "SMS").await,
    );
    let ack = batch(&app, &events).await;
    assert!(all_processed(&ack, false), "{ack}");
    let after = (
        sent_total(&app, "EMAIL").await,
        sent_total(&app, "SMS").await,
    );
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (2, 2),
        "each message recorded counted once, by channel"
    );
    let all: Vec<Notification> = desk
        .list_notifications(&NotificationQuery::default())
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 4);
    for n in &all {
        assert_eq!(
            (n.status.as_str(), n.attempts, n.sent_at.is_some()),
            ("sent", 1, true),
            "{n:?}"
        );
    }
    // Delivered again: duplicates, nothing recorded, nothing counted.
    let again = batch(&app, &events).await;
    assert!(all_processed(&again, true), "{again}");
    assert_eq!(
        (
            sent_total(&app, "EMAIL").await,
            sent_total(&app, "SMS").await
        ),
        after
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
// One test for both backends (two would count into the same recorder at once), named so that
// CI's PostgreSQL step (`cargo test -- postgres`) runs it too.
async fn recorded_messages_are_sent_and_counted_once_sqlite_then_postgres() {
    recorded_messages_are_sent_and_counted_once(Backend::Sqlite).await;
    match Backend::postgres() {
        Some(pg) => recorded_messages_are_sent_and_counted_once(pg).await,
        None => eprintln!(
            "SKIPPED recorded_messages_are_sent_and_counted_once (postgres): HMS_TEST_POSTGRES_URL is not set"
        ),
    }
}

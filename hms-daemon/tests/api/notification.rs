//! Notification service end to end: confirmations, reschedule and cancellation notices,
//! reminders (scheduled, moved, cancelled, sent exactly once across restarts and replicas),
//! duplicate deliveries, a failing provider.

use crate::both_backends;
use crate::support::subscriber::closed_port;
use crate::support::*;
use chrono::{DateTime, Duration, Utc};
use hms_client::models::{
    DoctorUpdate, NewAppointment, Notification, NotificationQuery, ReminderQuery, Reschedule,
};
use hms_client::HmsClient;
use hms_kit::auth::Role;
use hms_kit::clock::Clock;
use hms_kit::config::Config;
use hms_kit::Service;

const ALL: [&hms_kit::server::ServiceDef; 4] = [
    &hms_patient::SERVICE,
    &hms_doctor::SERVICE,
    &hms_appointment::SERVICE,
    &hms_notification::SERVICE,
];

fn tuesday_0900() -> DateTime<Utc> {
    "2026-12-01T03:30:00Z".parse().unwrap()
}

async fn clinic(b: &Backend, tweak: impl FnOnce(&mut Config)) -> (TestApp, i64, i64) {
    let app = TestApp::spawn_with(
        b,
        &ALL,
        Clock::manual("2026-11-30T00:00:00Z".parse().unwrap()),
        tweak,
    )
    .await;
    let mut p = new_patient("Notified Person", 42);
    p.email = Some("notified.person@example.org".into());
    p.phone = "9800000042".into();
    let patient = app
        .client(Role::Reception)
        .create_patient(&p)
        .await
        .unwrap()
        .patient_id;
    let doctor = app
        .client(Role::Admin)
        .create_doctor(&new_doctor("Dr. Aditya Iyer", "Cardiology", "Cardiologist"))
        .await
        .unwrap()
        .doctor_id;
    (app, patient, doctor)
}

fn booking(p: i64, d: i64, at: DateTime<Utc>) -> NewAppointment {
    NewAppointment {
        patient_id: p,
        doctor_id: d,
        department: "Cardiology".into(),
        slot_start: at,
        slot_end: None,
    }
}

async fn notes(c: &HmsClient, event_type: &str) -> Vec<Notification> {
    c.list_notifications(&NotificationQuery {
        event_type: Some(event_type.into()),
        ..Default::default()
    })
    .await
    .unwrap()
    .items
}

/// Waits until `event_type` has `n` messages, all sent.
async fn sent(c: &HmsClient, event_type: &str, n: usize) -> Vec<Notification> {
    eventually(15, event_type, || async {
        let v = notes(c, event_type).await;
        (v.len() == n && v.iter().all(|x| x.status == "sent")).then_some(v)
    })
    .await
}

async fn reminders(c: &HmsClient, status: &str) -> Vec<hms_client::models::Reminder> {
    c.list_reminders(&ReminderQuery {
        status: Some(status.into()),
        ..Default::default()
    })
    .await
    .unwrap()
    .items
}

both_backends! {
    async fn confirmations_notices_and_reminders_follow_the_appointment(b: Backend) {
        let (mut app, patient, doctor) = clinic(&b, |_| {}).await;
        let desk = app.client(Role::Reception);
        // Booking while the notification service is down still succeeds…
        app.stop_service(Service::Notification).await;
        let a = desk.book_appointment(&booking(patient, doctor, tuesday_0900()), None).await.unwrap();
        // …and the confirmation follows once it is back.
        app.start_service(&hms_notification::SERVICE).await;
        let booked = sent(&desk, "appointment.booked", 2).await;
        let mut channels: Vec<(&str, &str)> = booked.iter().map(|n| (n.channel.as_str(), n.recipient.as_str())).collect();
        channels.sort();
        assert_eq!(channels, vec![("EMAIL", "notified.person@example.org"), ("SMS", "9800000042")]);
        assert_eq!(booked[0].message, format!(
            "Your appointment with Dr. Aditya Iyer (Cardiology) is confirmed for Tue 01 Dec 2026, 09:00 IST. Reference #{}.", a.appointment_id));
        assert_eq!(booked[0].patient_id, Some(patient));
        let scheduled = eventually(10, "two reminders", || async { let r = reminders(&desk, "scheduled").await; (r.len() == 2).then_some(r) }).await;
        let mut due: Vec<DateTime<Utc>> = scheduled.iter().map(|r| r.due_at).collect();
        due.sort();
        assert_eq!(due, vec![tuesday_0900() - Duration::hours(24), tuesday_0900() - Duration::hours(2)]);

        let wed = tuesday_0900() + Duration::days(1) + Duration::hours(1);
        desk.reschedule_appointment(a.appointment_id, &Reschedule { new_slot_start: wed, new_slot_end: None }, None).await.unwrap();
        let moved = sent(&desk, "appointment.rescheduled", 2).await;
        assert!(moved[0].message.contains("Wed 02 Dec 2026, 10:00 IST") && moved[0].message.contains("was Tue 01 Dec 2026, 09:00 IST"), "{}", moved[0].message);
        let now_scheduled = eventually(10, "reminders moved", || async {
            let r = reminders(&desk, "scheduled").await;
            (r.len() == 2 && r.iter().all(|x| x.slot_start == wed)).then_some(r)
        }).await;
        assert_eq!(now_scheduled.len(), 2);
        assert_eq!(reminders(&desk, "cancelled").await.len(), 2, "the old slot's reminders are cancelled");

        desk.transition_appointment(a.appointment_id, "cancel", None).await.unwrap();
        let cancelled = sent(&desk, "appointment.cancelled", 2).await;
        assert!(cancelled[0].message.contains("No fee applies"), "{}", cancelled[0].message);
        eventually(10, "all reminders cancelled", || async { reminders(&desk, "scheduled").await.is_empty().then_some(()) }).await;
        assert_eq!(reminders(&desk, "cancelled").await.len(), 4);
        app.stop().await;
    }

    async fn a_known_doctor_is_named_without_the_doctor_service_and_a_rename_follows(b: Backend) {
        let (mut app, patient, doctor) = clinic(&b, |_| {}).await;
        let desk = app.client(Role::Reception);
        let a = desk.book_appointment(&booking(patient, doctor, tuesday_0900()), None).await.unwrap();
        sent(&desk, "appointment.booked", 2).await;
        // The doctor is known now: a notice needs no call to the doctor service (nor does the
        // move, to a slot of a day the appointment service has kept).
        app.stop_service(Service::Doctor).await;
        let later = tuesday_0900() + Duration::hours(1);
        desk.reschedule_appointment(a.appointment_id, &Reschedule { new_slot_start: later, new_slot_end: None }, None).await.unwrap();
        let moved = sent(&desk, "appointment.rescheduled", 2).await;
        assert!(moved[0].message.contains("with Dr. Aditya Iyer (Cardiology)"), "{}", moved[0].message);
        app.start_service(&hms_doctor::SERVICE).await;
        // A rename reaches the messages through the doctor service's event.
        app.client(Role::Admin).update_doctor(doctor, &DoctorUpdate { name: Some("Dr. Aditya Rao".into()), ..Default::default() }).await.unwrap();
        eventually(15, "the rename announced to notification", || async {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox WHERE source = 'doctor' AND event_type = 'doctor.updated'")
                .fetch_one(app.db(Service::Notification).pool()).await.unwrap();
            (n == 1).then_some(())
        }).await;
        desk.transition_appointment(a.appointment_id, "cancel", None).await.unwrap();
        let cancelled = sent(&desk, "appointment.cancelled", 2).await;
        assert!(cancelled[0].message.contains("with Dr. Aditya Rao on"), "{}", cancelled[0].message);
        app.stop().await;
    }

    async fn a_backlog_of_messages_goes_out_round_after_round(b: Backend) {
        // A poll of a minute: the backlog goes out in time only if a full round is followed
        // by the next at once (one round a poll sent 32 messages a second before).
        let (mut app, _, _) = clinic(&b, |c| c.outbox_poll_ms = 60_000).await;
        let mut tx = app.db(Service::Notification).begin().await.unwrap();
        let mut script = hms_kit::db::Script::new();
        for i in 0..300 {
            let new = hms_notification::store::NewNotification {
                source_id: &format!("backlog:{i}"),
                event_type: "appointment.booked",
                channel: "SMS",
                patient_id: None,
                recipient: "9800000042",
                message: "Your appointment is confirmed.",
                metadata: serde_json::json!({}),
            };
            hms_notification::store::insert_notification(&mut script, &new, hms_notification::store::When::Always, false, app.clock.now());
        }
        script.run(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        // A restart's first round finds them (the running one's next is a minute away).
        app.stop_service(Service::Notification).await;
        app.start_service(&hms_notification::SERVICE).await;
        eventually(15, "all 300 messages sent", || async {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE status = 'sent'")
                .fetch_one(app.db(Service::Notification).pool()).await.unwrap();
            (n == 300).then_some(())
        }).await;
        let unsent: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE status <> 'sent' OR sent_at IS NULL OR attempts <> 1")
            .fetch_one(app.db(Service::Notification).pool()).await.unwrap();
        assert_eq!(unsent, 0, "each message sent once, and marked so");
        app.stop().await;
    }

    async fn a_batch_of_confirmations_reads_its_patients_in_a_few_calls(b: Backend) {
        // Appointment's relay does not deliver to notification here: the test delivers the
        // confirmations itself, as one batch.
        let (app, first, doctor) = clinic(&b, |c| {
            c.service_mut("appointment").subscribers = Some(vec!["doctor".into()]);
        }).await;
        let (desk, admin) = (app.client(Role::Reception), app.client(Role::Admin));
        let mut doctors = vec![doctor];
        for name in ["Dr. Batch Two", "Dr. Batch Three"] {
            doctors.push(admin.create_doctor(&new_doctor(name, "Cardiology", "Cardiologist")).await.unwrap().doctor_id);
        }
        let mut patients = vec![first];
        for n in 0..23u8 {
            let name = format!("Batch Patient {}", char::from(b'A' + n));
            patients.push(desk.create_patient(&new_patient(&name, 700 + u32::from(n))).await.unwrap().patient_id);
        }
        for (i, p) in patients.iter().enumerate() {
            let at = tuesday_0900() + Duration::minutes(30 * (i % 8) as i64);
            desk.book_appointment(&booking(*p, doctors[i / 8], at), None).await.unwrap();
        }
        let events = outbox_events(app.db(Service::Appointment), "appointment", "appointment.booked").await;
        assert_eq!(events.len(), 24);
        let token = app.keys.issue(Role::Service, "service:appointment", None, chrono::Duration::minutes(5));
        let ack: serde_json::Value = app.http.post(format!("{}/v1/events/batch", app.url(Service::Notification)))
            .bearer_auth(&token).json(&serde_json::json!({ "events": events })).send().await.unwrap()
            .json().await.unwrap();
        let statuses: Vec<&serde_json::Value> = ack["results"].as_array().unwrap().iter().map(|r| &r["status"]).collect();
        assert_eq!(statuses, vec![&serde_json::json!(200); 24], "{ack}");
        let got = sent(&desk, "appointment.booked", 48).await;
        let mut recipients: Vec<i64> = got.iter().filter(|n| n.channel == "SMS").filter_map(|n| n.patient_id).collect();
        recipients.sort();
        let mut expected = patients.clone();
        expected.sort();
        assert_eq!(recipients, expected, "every patient's confirmation, once");
        // Each patient's contact details were read once, and recorded, in far fewer calls
        // than events (a call's reads share its correlation id; a call per event made 24).
        let reads: Vec<(i64, String)> = sqlx::query_as(
            "SELECT patient_id, correlation_id FROM patient_audit WHERE subject = 'service:notification' AND action = 'read'")
            .fetch_all(app.db(Service::Patient).pool()).await.unwrap();
        let mut read: Vec<i64> = reads.iter().map(|r| r.0).collect();
        read.sort();
        assert_eq!(read, expected, "each patient read once, and recorded");
        let calls: std::collections::BTreeSet<&str> = reads.iter().map(|r| r.1.as_str()).collect();
        let sizes: Vec<usize> = calls.iter().map(|c| reads.iter().filter(|r| r.1 == *c).count()).collect();
        assert!(calls.len() <= 4, "24 patients in {} calls: {sizes:?}", calls.len());
        // Delivered again, the batch is known processed (one inbox query for all of it) and
        // reads nothing more.
        let again: serde_json::Value = app.http.post(format!("{}/v1/events/batch", app.url(Service::Notification)))
            .bearer_auth(&token).json(&serde_json::json!({ "events": events })).send().await.unwrap()
            .json().await.unwrap();
        assert!(again["results"].as_array().unwrap().iter().all(|r| r["status"] == 200 && r["duplicate"] == true), "{again}");
        let reads_after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patient_audit WHERE subject = 'service:notification'")
            .fetch_one(app.db(Service::Patient).pool()).await.unwrap();
        assert_eq!(reads_after, 24, "a repeat reads no patient");
        assert_eq!(notes(&desk, "appointment.booked").await.len(), 48);
        app.stop().await;
    }

    async fn a_late_event_in_a_batch_changes_nothing_and_an_ordered_pair_applies_in_turn(b: Backend) {
        let (app, patient, doctor) = clinic(&b, |c| {
            c.service_mut("appointment").subscribers = Some(vec!["doctor".into()]);
        }).await;
        let desk = app.client(Role::Reception);
        let at = |h: i64| tuesday_0900() + Duration::hours(h);
        let mut ids = Vec::new();
        for (from, to) in [(0, 1), (2, 3)] {
            let a = desk.book_appointment(&booking(patient, doctor, at(from)), None).await.unwrap();
            desk.reschedule_appointment(a.appointment_id, &Reschedule { new_slot_start: at(to), new_slot_end: None }, None).await.unwrap();
            ids.push(a.appointment_id);
        }
        let appt = app.db(Service::Appointment);
        let (booked, moved) = (outbox_events(appt, "appointment", "appointment.booked").await, outbox_events(appt, "appointment", "appointment.rescheduled").await);
        let of = |evs: &[hms_client::models::Event], id: i64| evs.iter().find(|e| e.aggregate_id == id.to_string()).unwrap().clone();
        // The first appointment's events arrive out of order; the second's in order.
        let batch = vec![of(&moved, ids[0]), of(&booked, ids[0]), of(&booked, ids[1]), of(&moved, ids[1])];
        let token = app.keys.issue(Role::Service, "service:appointment", None, chrono::Duration::minutes(5));
        let ack: serde_json::Value = app.http.post(format!("{}/v1/events/batch", app.url(Service::Notification)))
            .bearer_auth(&token).json(&serde_json::json!({ "events": batch })).send().await.unwrap()
            .json().await.unwrap();
        assert!(ack["results"].as_array().unwrap().iter().all(|r| r["status"] == 200 && r["duplicate"] == false), "{ack}");
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT metadata, event_type FROM notifications WHERE channel = 'SMS' ORDER BY notification_id")
            .fetch_all(app.db(Service::Notification).pool()).await.unwrap();
        let messages: Vec<(String, String)> = rows.into_iter()
            .map(|(m, t)| (serde_json::from_str::<serde_json::Value>(&m).unwrap()["appointment_id"].to_string(), t))
            .collect();
        let (a, c) = (ids[0].to_string(), ids[1].to_string());
        assert_eq!(messages, vec![
            (a.clone(), "appointment.rescheduled".to_string()),
            (c.clone(), "appointment.booked".to_string()),
            (c.clone(), "appointment.rescheduled".to_string()),
        ], "the late booking of the first makes no message");
        let mut scheduled: Vec<(i64, DateTime<Utc>)> = reminders(&desk, "scheduled").await.iter().map(|r| (r.appointment_id, r.slot_start)).collect();
        scheduled.sort();
        assert_eq!(scheduled, vec![(ids[0], at(1)), (ids[0], at(1)), (ids[1], at(3)), (ids[1], at(3))], "reminders at the newest slots only");
        let cancelled: Vec<(i64, DateTime<Utc>)> = reminders(&desk, "cancelled").await.iter().map(|r| (r.appointment_id, r.slot_start)).collect();
        assert_eq!(cancelled, vec![(ids[1], at(2)), (ids[1], at(2))], "the in-order move cancels its old slot's; the late booking schedules none");
        app.stop().await;
    }

    async fn a_redelivered_event_makes_no_second_message(b: Backend) {
        let (app, patient, doctor) = clinic(&b, |_| {}).await;
        let desk = app.client(Role::Reception);
        desk.book_appointment(&booking(patient, doctor, tuesday_0900()), None).await.unwrap();
        sent(&desk, "appointment.booked", 2).await;
        let ev = outbox_event(app.db(Service::Appointment), "appointment", "appointment.booked").await;
        let token = app.keys.issue(Role::Service, "service:appointment", None, chrono::Duration::minutes(5));
        let url = format!("{}/v1/events", app.url(Service::Notification));
        let acks = futures::future::join_all((0..5).map(|_| app.http.post(&url).bearer_auth(&token).json(&ev).send())).await;
        for a in acks {
            let v: serde_json::Value = a.unwrap().json().await.unwrap();
            assert_eq!(v["duplicate"], true);
        }
        assert_eq!(notes(&desk, "appointment.booked").await.len(), 2);
        assert_eq!(reminders(&desk, "scheduled").await.len(), 2);
        app.stop().await;
    }

    async fn a_due_reminder_goes_out_once_across_restarts_and_replicas(b: Backend) {
        let (mut app, patient, doctor) = clinic(&b, |_| {}).await;
        let desk = app.client(Role::Reception);
        desk.book_appointment(&booking(patient, doctor, tuesday_0900()), None).await.unwrap();
        eventually(10, "reminders scheduled", || async { (reminders(&desk, "scheduled").await.len() == 2).then_some(()) }).await;
        if b.is_postgres() {
            // A second scheduler on the same database races the first for every due reminder.
            app.spawn_replica(&hms_notification::SERVICE).await;
        }
        // 24 hours before: the first reminder is due.
        app.clock.set(tuesday_0900() - Duration::hours(24) + Duration::minutes(1));
        let first = sent(&desk, "appointment.reminder", 2).await;
        assert!(first[0].message.contains("in 24 hours"), "{}", first[0].message);
        assert_eq!(reminders(&desk, "sent").await.len(), 1);
        // Restart: nothing goes out again.
        app.stop_service(Service::Notification).await;
        app.start_service(&hms_notification::SERVICE).await;
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        assert_eq!(notes(&desk, "appointment.reminder").await.len(), 2);
        // The 2-hour one, then no more.
        app.clock.set(tuesday_0900() - Duration::minutes(119));
        sent(&desk, "appointment.reminder", 4).await;
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        assert_eq!(notes(&desk, "appointment.reminder").await.len(), 4);
        assert!(reminders(&desk, "scheduled").await.is_empty());
        app.stop().await;
    }

    async fn e_mail_goes_out_over_smtp(b: Backend) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let sink = tokio::spawn(smtp_sink(listener, tx));
        let (app, patient, doctor) = clinic(&b, |c| {
            c.email_provider = "smtp".into();
            c.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        }).await;
        let desk = app.client(Role::Reception);
        let a = desk.book_appointment(&booking(patient, doctor, tuesday_0900()), None).await.unwrap();
        let mail = tokio::time::timeout(std::time::Duration::from_secs(15), rx.recv()).await.expect("an e-mail arrived").unwrap();
        assert!(mail.contains("RCPT TO:<notified.person@example.org>"), "{mail}");
        assert!(mail.contains("Subject: Appointment confirmed"), "{mail}");
        assert!(mail.contains(&format!("Reference #{}", a.appointment_id)), "{mail}");
        eventually(10, "the e-mail marked sent", || async {
            notes(&desk, "appointment.booked").await.iter().find(|n| n.channel == "EMAIL" && n.status == "sent").map(|_| ())
        }).await;
        sink.abort();
        app.stop().await;
    }

    async fn a_failing_provider_is_retried_and_its_failure_visible(b: Backend) {
        let port = closed_port();
        let (app, patient, doctor) = clinic(&b, |c| {
            c.sms_provider = "webhook".into();
            c.notification_webhook_url = Some(format!("http://127.0.0.1:{port}/sms"));
        }).await;
        let desk = app.client(Role::Reception);
        desk.book_appointment(&booking(patient, doctor, tuesday_0900()), None).await.unwrap();
        // E-mail goes out (record provider); the SMS gateway is down: retried, error visible.
        let sms = eventually(15, "a failed SMS attempt", || async {
            let v = notes(&desk, "appointment.booked").await;
            let sms = v.iter().find(|n| n.channel == "SMS")?.clone();
            (sms.status == "pending" && sms.attempts >= 2 && sms.last_error.is_some()).then_some(sms)
        }).await;
        assert_eq!(sms.last_error.as_deref(), Some("webhook unreachable"));
        assert!(notes(&desk, "appointment.booked").await.iter().any(|n| n.channel == "EMAIL" && n.status == "sent"));
        // The gateway comes back: the SMS is delivered to it.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
        let gateway = axum::Router::new().route("/sms", axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let tx = tx.clone();
            async move { let _ = tx.send(v); "ok" }
        }));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, gateway).await.unwrap() });
        let got = tokio::time::timeout(std::time::Duration::from_secs(15), rx.recv()).await.expect("the gateway got the SMS").unwrap();
        assert_eq!((got["channel"].as_str(), got["recipient"].as_str()), (Some("SMS"), Some("9800000042")));
        eventually(10, "the SMS marked sent", || async {
            notes(&desk, "appointment.booked").await.iter().find(|n| n.channel == "SMS" && n.status == "sent").map(|_| ())
        }).await;
        server.abort();
        app.stop().await;
    }
}

/// A minimal SMTP server: accepts every message and hands over the whole session transcript.
async fn smtp_sink(
    listener: tokio::net::TcpListener,
    out: tokio::sync::mpsc::UnboundedSender<String>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let out = out.clone();
        tokio::spawn(async move {
            let (r, mut w) = sock.into_split();
            let mut lines = BufReader::new(r).lines();
            let mut transcript = String::new();
            let _ = w.write_all(b"220 sink ESMTP\r\n").await;
            let mut in_data = false;
            while let Ok(Some(line)) = lines.next_line().await {
                transcript.push_str(&line);
                transcript.push('\n');
                let reply: &[u8] = if in_data {
                    if line == "." {
                        in_data = false;
                        let _ = out.send(transcript.clone());
                        b"250 OK queued\r\n"
                    } else {
                        continue;
                    }
                } else {
                    let upper = line.to_ascii_uppercase();
                    if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 sink\r\n"
                    } else if upper.starts_with("DATA") {
                        in_data = true;
                        b"354 go ahead\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 OK\r\n"
                    }
                };
                let _ = w.write_all(reply).await;
            }
        });
    }
}

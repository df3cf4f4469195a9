//! Appointment service: every booking rule with its code, transitions, fees, idempotency, and
//! the invariants concurrency could break, hammered with parallel requests.

use crate::both_backends;
use crate::support::subscriber::{closed_port, Subscriber};
use crate::support::*;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use hms_client::models::{AppointmentQuery, DoctorUpdate, NewAppointment, NewLeave, Reschedule};
use hms_client::{ClientError, HmsClient};
use hms_kit::auth::Role;
use hms_kit::clock::Clock;
use hms_kit::config::Config;
use hms_kit::Service;
use reqwest::Method;
use serde_json::Value;
use sqlx::Row;
use std::collections::BTreeMap;

const ALL: [&hms_kit::server::ServiceDef; 3] = [
    &hms_patient::SERVICE,
    &hms_doctor::SERVICE,
    &hms_appointment::SERVICE,
];

/// Monday 2026-11-30, 05:30 in the clinic (Asia/Kolkata).
fn monday() -> DateTime<Utc> {
    "2026-11-30T00:00:00Z".parse().unwrap()
}

/// A clinic-local time as UTC: `ist("2026-12-01", "09:00")` is 03:30Z.
fn ist(date: &str, hm: &str) -> DateTime<Utc> {
    let d: NaiveDate = date.parse().unwrap();
    let (h, m) = hm.split_once(':').unwrap();
    let local = d
        .and_hms_opt(h.parse().unwrap(), m.parse().unwrap(), 0)
        .unwrap();
    chrono_tz::Asia::Kolkata
        .from_local_datetime(&local)
        .unwrap()
        .with_timezone(&Utc)
}

/// The 18 slot starts of a clinic day.
fn day_slots(date: &str) -> Vec<DateTime<Utc>> {
    (0..18)
        .map(|i| ist(date, "09:00") + Duration::minutes(30 * i))
        .collect()
}

async fn clinic(b: &Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(b, &ALL, Clock::manual(monday()), tweak).await
}

async fn patients(app: &TestApp, n: u32, tag: u32) -> Vec<i64> {
    let desk = app.client(Role::Reception);
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            desk.create_patient(&new_patient("Appointment Patient", tag * 1000 + i))
                .await
                .unwrap()
                .patient_id,
        );
    }
    ids
}

async fn doctors(app: &TestApp, n: u32, department: &str) -> Vec<i64> {
    let admin = app.client(Role::Admin);
    let mut ids = Vec::new();
    for i in 0..n {
        let d = new_doctor(
            &format!("Dr. Test Doctor {}", (b'A' + (i % 26) as u8) as char),
            department,
            "General",
        );
        ids.push(admin.create_doctor(&d).await.unwrap().doctor_id);
    }
    ids
}

fn booking(patient: i64, doctor: i64, department: &str, start: DateTime<Utc>) -> NewAppointment {
    NewAppointment {
        patient_id: patient,
        doctor_id: doctor,
        department: department.into(),
        slot_start: start,
        slot_end: Some(start + Duration::minutes(30)),
    }
}

fn code(r: &Result<hms_client::models::Appointment, ClientError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e
            .code()
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string()),
    }
}

fn tally<T>(results: &[Result<T, ClientError>]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in results {
        let k = match r {
            Ok(_) => "ok".to_string(),
            Err(e) => e
                .code()
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string()),
        };
        *m.entry(k).or_default() += 1;
    }
    m
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Clients for `role`, one per instance of the appointment service (two on PostgreSQL).
/// Patient i booked with doctor i / 10 at Tuesday 2026-12-01's slot i % 10; their ids in order.
async fn tuesday_booked(
    app: &TestApp,
    patients: &[i64],
    doctors: &[i64],
    department: &str,
) -> Vec<i64> {
    let desk = app.client(Role::Reception);
    let mut ids = Vec::new();
    for (i, &pid) in patients.iter().enumerate() {
        let s = day_slots("2026-12-01")[i % 10];
        ids.push(
            desk.book_appointment(&booking(pid, doctors[i / 10], department, s), None)
                .await
                .unwrap()
                .appointment_id,
        );
    }
    ids
}

async fn desks(app: &mut TestApp, b: &Backend, role: Role) -> Vec<HmsClient> {
    let mut clients = vec![app.client(role)];
    if b.is_postgres() {
        let url = app.spawn_replica(&hms_appointment::SERVICE).await;
        let mut urls = app.client(role).urls().clone();
        urls.set(Service::Appointment, url);
        clients.push(
            HmsClient::new(urls, std::time::Duration::from_secs(30)).with_token(app.token(role)),
        );
    }
    clients
}

/// Waits until the appointment service has learned patient `id`'s status as `active`.
async fn knows_patient(app: &TestApp, id: i64, active: bool) {
    let db = app.db(Service::Appointment).clone();
    eventually(
        15,
        "the appointment service to learn the patient's status",
        || {
            let db = db.clone();
            async move {
                let kept: i64 =
                    sqlx::query_scalar("SELECT active FROM known_patients WHERE patient_id = $1")
                        .bind(id)
                        .fetch_one(db.pool())
                        .await
                        .ok()?;
                (kept == i64::from(active)).then_some(())
            }
        },
    )
    .await;
}

async fn scheduled_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM appointments WHERE status = 'SCHEDULED'")
        .fetch_one(app.db(Service::Appointment).pool())
        .await
        .unwrap()
}

both_backends! {
    async fn every_booking_rule_has_its_code(b: Backend) {
        let app = clinic(&b, |c| c.daily_cap = 3).await;
        let desk = app.client(Role::Reception);
        let admin = app.client(Role::Admin);
        let p = patients(&app, 6, 1).await;
        let d = doctors(&app, 4, "Cardiology").await;
        let ortho = doctors(&app, 1, "Orthopedics").await[0];
        admin.update_doctor(d[1], &DoctorUpdate { active: Some(false), ..Default::default() }).await.unwrap();
        admin.add_leave(d[2], &NewLeave { start_date: "2026-12-01".parse().unwrap(), end_date: "2026-12-01".parse().unwrap(), reason: None }).await.unwrap();
        desk.deactivate_patient(p[1]).await.unwrap();
        // Booking judges a patient's status by what the appointment service has learned from
        // the patient service's events: the rule applies once the deactivation has arrived.
        knows_patient(&app, p[1], false).await;
        let tue = |hm| ist("2026-12-01", hm);
        let c = "Cardiology";
        let mut odd_end = booking(p[0], d[0], c, tue("10:00"));
        odd_end.slot_end = Some(tue("11:00"));
        let cases: Vec<(&str, NewAppointment, &str)> = vec![
            ("valid", booking(p[0], d[0], c, tue("09:00")), "ok"),
            ("quarter past", booking(p[0], d[0], c, tue("09:15")), "slot_not_standard"),
            ("an hour long", odd_end, "slot_not_standard"),
            ("before opening", booking(p[0], d[0], c, tue("08:30")), "outside_clinic_hours"),
            ("at closing", booking(p[0], d[0], c, tue("18:00")), "outside_clinic_hours"),
            ("inactive patient", booking(p[1], d[0], c, tue("10:00")), "patient_inactive"),
            ("unknown patient", booking(999_999, d[0], c, tue("10:00")), "not_found"),
            ("unknown doctor", booking(p[0], 999_999, c, tue("10:00")), "not_found"),
            ("inactive doctor", booking(p[0], d[1], c, tue("10:00")), "doctor_inactive"),
            ("wrong department", booking(p[0], ortho, c, tue("10:00")), "department_mismatch"),
            ("department any case", booking(p[2], d[3], "  cardiology ", tue("10:00")), "ok"),
            ("doctor on leave", booking(p[0], d[2], c, tue("10:00")), "doctor_unavailable"),
            ("doctor not working (Saturday)", booking(p[0], d[0], c, ist("2026-12-05", "10:00")), "doctor_unavailable"),
            ("slot taken", booking(p[3], d[0], c, tue("09:00")), "slot_taken"),
            ("patient busy", booking(p[0], d[3], c, tue("09:00")), "patient_busy"),
            ("second of the day", booking(p[3], d[0], c, tue("11:00")), "ok"),
            ("third of the day", booking(p[4], d[0], c, tue("11:30")), "ok"),
            ("fourth of the day", booking(p[5], d[0], c, tue("12:00")), "daily_cap_reached"),
            ("beyond the horizon", booking(p[0], d[0], c, ist("2027-12-07", "10:00")), "too_far_ahead"),
            ("the end of time", booking(p[0], d[0], c, ist("9999-12-31", "10:00")), "too_far_ahead"),
        ];
        for (what, body, expected) in cases {
            let r = desk.book_appointment(&body, None).await;
            assert_eq!(code(&r), expected, "{what}: {r:?}");
            if let Ok(a) = r {
                assert_eq!((a.status.as_str(), a.version, a.reschedule_count), ("SCHEDULED", 1, 0));
                assert_eq!(a.consultation_fee.to_string(), "500.00");
            }
        }
        // Lead time: at 07:30 on Tuesday, 09:00 is too soon.
        app.clock.set(tue("07:30"));
        assert_eq!(code(&desk.book_appointment(&booking(p[2], d[3], c, tue("09:00")), None).await), "lead_time");
        assert_eq!(code(&desk.book_appointment(&booking(p[2], d[3], c, tue("09:30")), None).await), "ok");
        // Status codes: 409 for conflicts, 422 for rules.
        let taken = desk.book_appointment(&booking(p[5], d[0], c, tue("11:00")), None).await.unwrap_err();
        assert_eq!(taken.status(), Some(409));
        let rule = desk.book_appointment(&booking(p[0], ortho, c, tue("14:00")), None).await.unwrap_err();
        assert_eq!(rule.status(), Some(422));
        assert_eq!(scheduled_rows(&app).await, 5);
        app.stop().await;
    }

    async fn a_dependency_that_is_down_is_named(b: Backend) {
        // Booking asks the patient or doctor service only about a record the appointment
        // service has not learned yet: here the patient service announces nothing to it, and
        // the doctor's day has never been asked for.
        for down in ["patient", "doctor"] {
            let port = closed_port();
            let app = TestApp::spawn_with(&b, &ALL, Clock::manual(monday()), |c| {
                c.service_mut(down).url = Some(format!("http://127.0.0.1:{port}"));
                c.service_mut("patient").subscribers = Some(vec![]);
            }).await;
            let p = patients(&app, 1, 2).await[0];
            let d = doctors(&app, 1, "Neurology").await[0];
            let err = app.client(Role::Reception)
                .book_appointment(&booking(p, d, "Neurology", ist("2026-12-01", "09:00")), None).await.unwrap_err();
            match err {
                ClientError::Api { status, body, .. } => {
                    assert_eq!((status, body.code.as_str()), (503, "dependency_unavailable"));
                    assert_eq!(body.details.unwrap()["dependency"], down);
                    assert!(body.message.contains(down));
                }
                other => panic!("expected 503, got {other:?}"),
            }
            assert_eq!(scheduled_rows(&app).await, 0);
            app.stop().await;
        }
    }

    async fn booking_needs_no_call_to_services_that_are_down_once_it_knows_the_records(b: Backend) {
        let mut app = clinic(&b, |_| {}).await;
        let desk = app.client(Role::Reception);
        let admin = app.client(Role::Admin);
        let p = patients(&app, 3, 40).await;
        let d = doctors(&app, 1, "Cardiology").await[0];
        let tue = |hm| ist("2026-12-01", hm);
        // The doctor's Tuesday is learned with its first booking, and the thirteen days after it
        // with it; the patients from the patient service's events.
        assert_eq!(code(&desk.book_appointment(&booking(p[0], d, "Cardiology", tue("09:00")), None).await), "ok");
        for id in &p {
            knows_patient(&app, *id, true).await;
        }
        app.stop_service(Service::Patient).await;
        app.stop_service(Service::Doctor).await;
        let r = desk.book_appointment(&booking(p[1], d, "Cardiology", tue("10:00")), None).await;
        assert_eq!(code(&r), "ok", "booked while the patient and doctor services are down: {r:?}");
        let r = desk.book_appointment(&booking(p[1], d, "Cardiology", ist("2026-12-02", "10:00")), None).await;
        assert_eq!(code(&r), "ok", "Wednesday came with Tuesday: {r:?}");
        // A day past the fortnight learned needs the doctor service.
        let r = desk.book_appointment(&booking(p[1], d, "Cardiology", ist("2026-12-15", "10:00")), None).await;
        assert_eq!(code(&r), "dependency_unavailable");
        app.start_service(&hms_patient::SERVICE).await;
        app.start_service(&hms_doctor::SERVICE).await;

        // Changes reach booking through their events: leave on Tuesday, a deactivation.
        admin.add_leave(d, &NewLeave { start_date: "2026-12-01".parse().unwrap(), end_date: "2026-12-01".parse().unwrap(), reason: None }).await.unwrap();
        let version = admin.get_doctor(d).await.unwrap().version;
        let db = app.db(Service::Appointment).clone();
        eventually(15, "the doctor's change to arrive", || { let db = db.clone(); async move {
            let v: i64 = sqlx::query_scalar("SELECT version FROM known_doctors WHERE doctor_id = $1").bind(d).fetch_one(db.pool()).await.ok()?;
            (v >= version).then_some(())
        }}).await;
        assert_eq!(code(&desk.book_appointment(&booking(p[2], d, "Cardiology", tue("11:00")), None).await), "doctor_unavailable");
        desk.deactivate_patient(p[2]).await.unwrap();
        knows_patient(&app, p[2], false).await;
        assert_eq!(code(&desk.book_appointment(&booking(p[2], d, "Cardiology", ist("2026-12-02", "11:00")), None).await), "patient_inactive");
        assert_eq!(scheduled_rows(&app).await, 3);

        // Days gone by are not kept: the days learned next drop the doctor's earlier ones.
        app.clock.set(ist("2026-12-02", "08:00"));
        assert_eq!(code(&desk.book_appointment(&booking(p[0], d, "Cardiology", ist("2026-12-16", "10:00")), None).await), "ok");
        let kept: Vec<String> = sqlx::query_scalar("SELECT day FROM doctor_days WHERE doctor_id = $1 ORDER BY day")
            .bind(d).fetch_all(db.pool()).await.unwrap();
        assert!(kept.iter().all(|day| day.as_str() >= "2026-12-02"), "{kept:?}");
        assert_eq!((kept.first().map(String::as_str), kept.last().map(String::as_str)), (Some("2026-12-02"), Some("2026-12-29")), "{kept:?}");
        assert_eq!(kept.len(), 13 + 14, "the rest of one fortnight and the next, each from one call: {kept:?}");
        app.stop().await;
    }

    async fn sixty_four_patients_race_for_one_slot(b: Backend) {
        let mut app = clinic(&b, |_| {}).await;
        let p = patients(&app, 64, 3).await;
        let d = doctors(&app, 1, "Cardiology").await[0];
        let desks = desks(&mut app, &b, Role::Reception).await;
        let slot = ist("2026-12-01", "10:00");
        let results = futures::future::join_all(p.iter().enumerate().map(|(i, &pid)| {
            let desk = desks[i % desks.len()].clone();
            async move { desk.book_appointment(&booking(pid, d, "Cardiology", slot), None).await }
        })).await;
        let errors: Vec<String> = logs().lines().filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains("\"level\":\"WARN\"")).rev().take(5).map(str::to_string).collect();
        assert_eq!(tally(&results), counts(&[("ok", 1), ("slot_taken", 63)]), "{}", errors.join("\n"));
        assert_eq!(scheduled_rows(&app).await, 1);
        app.stop().await;
    }

    async fn one_patient_with_thirty_two_doctors_at_once(b: Backend) {
        let mut app = clinic(&b, |_| {}).await;
        let p = patients(&app, 1, 4).await[0];
        let d = doctors(&app, 32, "Pediatrics").await;
        let desks = desks(&mut app, &b, Role::Reception).await;
        let slot = ist("2026-12-01", "11:00");
        let results = futures::future::join_all(d.iter().enumerate().map(|(i, &did)| {
            let desk = desks[i % desks.len()].clone();
            async move { desk.book_appointment(&booking(p, did, "Pediatrics", slot), None).await }
        })).await;
        assert_eq!(tally(&results), counts(&[("ok", 1), ("patient_busy", 31)]));
        assert_eq!(scheduled_rows(&app).await, 1);
        app.stop().await;
    }

    async fn bookings_committed_together_keep_their_own_answers_events_and_keys(b: Backend) {
        // Bookings arriving together are committed in groups: each must still get its own
        // answer, event (with its request's correlation id) and stored answer, and a group
        // holding a refused one must not lose the others.
        let app = clinic(&b, |_| {}).await;
        let p = patients(&app, 48, 22).await;
        let d = doctors(&app, 5, "Cardiology").await;
        let slots = day_slots("2026-12-01");
        // 40 distinct bookings (doctor i % 5 at its (i / 5)-th slot: 8 a doctor, the daily
        // cap), then 8 by other patients for the slots of the first 8.
        let bodies: Vec<NewAppointment> = (0..48).map(|i| {
            let j = if i < 40 { i } else { i - 40 };
            booking(p[i], d[j % 5], "Cardiology", slots[j / 5])
        }).collect();
        let send = |i: usize| app.req(Role::Reception, Method::POST, Service::Appointment, "/v1/appointments")
            .header("idempotency-key", format!("group-{i}"))
            .header("x-correlation-id", format!("desk-{i}"))
            .json(&bodies[i]);
        let answers = futures::future::join_all((0..48).map(|i| {
            let req = send(i);
            async move {
                let r = req.send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        })).await;
        let mut statuses = BTreeMap::new();
        for (status, body) in &answers {
            *statuses.entry((*status, body["code"].as_str().unwrap_or("").to_string())).or_insert(0) += 1;
        }
        assert_eq!(statuses, BTreeMap::from([((201, String::new()), 40), ((409, "slot_taken".to_string()), 8)]), "{answers:?}");
        for j in 0..8 {
            assert_eq!((answers[j].0 == 201) as u8 + (answers[40 + j].0 == 201) as u8, 1, "one of each colliding pair");
        }
        let db = app.db(Service::Appointment).pool().clone();
        for (i, (status, body)) in answers.iter().enumerate().filter(|(_, (s, _))| *s == 201) {
            let id = body["appointment_id"].as_i64().unwrap();
            assert_eq!(body["patient_id"], p[i], "each request answered with its own booking");
            let events: Vec<(String, String)> = sqlx::query(
                "SELECT event_type, correlation_id FROM outbox WHERE aggregate_type = 'appointment' AND aggregate_id = $1",
            ).bind(id.to_string()).fetch_all(&db).await.unwrap().iter()
                .map(|r| (r.get("event_type"), r.get("correlation_id"))).collect();
            assert_eq!(events, vec![("appointment.booked".to_string(), format!("desk-{i}"))]);
            // Its key replays it.
            let again = send(i).send().await.unwrap();
            assert_eq!((again.status().as_u16(), again.headers()["idempotent-replayed"].to_str().unwrap()), (201, "true"));
            assert_eq!(&again.json::<Value>().await.unwrap(), body);
            assert_eq!(*status, 201);
        }
        assert_eq!(scheduled_rows(&app).await, 40);
        for &doctor in &d {
            let load = hms_appointment::store::day_load(&db, doctor, "2026-12-01".parse().unwrap()).await.unwrap();
            assert_eq!(load, 8, "each day counted once per booking");
        }
        // And the events go out: the doctor service learns of every booked slot.
        let desk = app.client(Role::Reception);
        eventually(15, "the doctor service to learn of the grouped bookings", || async {
            let v = desk.doctor_availability(d[0], "2026-12-01".parse().unwrap()).await.ok()?;
            (v.slots.len() == 10).then_some(())
        }).await;
        app.stop().await;
    }

    async fn the_daily_cap_holds_under_parallel_bookings(b: Backend) {
        let mut app = clinic(&b, |_| {}).await;
        let p = patients(&app, 20, 5).await;
        let d = doctors(&app, 1, "Dermatology").await[0];
        let desks = desks(&mut app, &b, Role::Reception).await;
        let mut slots = day_slots("2026-12-01");
        slots.push(ist("2026-12-01", "18:00"));
        slots.push(ist("2026-12-01", "18:30"));
        let results = futures::future::join_all(slots.iter().zip(&p).enumerate().map(|(i, (&s, &pid))| {
            let desk = desks[i % desks.len()].clone();
            async move { desk.book_appointment(&booking(pid, d, "Dermatology", s), None).await }
        })).await;
        assert_eq!(tally(&results), counts(&[("ok", 8), ("daily_cap_reached", 10), ("outside_clinic_hours", 2)]));
        assert_eq!(scheduled_rows(&app).await, 8);
        let load = hms_appointment::store::day_load(app.db(Service::Appointment).pool(), d, "2026-12-01".parse().unwrap()).await.unwrap();
        assert_eq!(load, 8, "the counter equals the booked appointments");
        app.stop().await;
    }

    async fn the_daily_cap_holds_through_random_churn(b: Backend) {
        let mut app = clinic(&b, |_| {}).await;
        let p = patients(&app, 30, 15).await;
        let d = doctors(&app, 1, "Dermatology").await[0];
        let desks = desks(&mut app, &b, Role::Reception).await;
        let mut slots = day_slots("2026-12-01");
        slots.extend(day_slots("2026-12-02"));
        let pool = app.db(Service::Appointment).pool().clone();
        // One statement, so one snapshot: the counter against the rows it counts.
        let sample = || async {
            sqlx::query(
                "SELECT l.day, l.booked, (SELECT COUNT(*) FROM appointments a WHERE a.doctor_id = l.doctor_id \
                 AND a.clinic_day = l.day AND a.status = 'SCHEDULED') AS n FROM doctor_day_load l",
            ).fetch_all(&pool).await.unwrap().iter()
             .map(|r| (r.get::<String, _>("day"), r.get::<i64, _>("booked"), r.get::<i64, _>("n"))).collect::<Vec<_>>()
        };
        let mut seed: u64 = 0x5eed;
        let mut next = move |m: usize| { seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((seed >> 33) as usize) % m };
        let mut seen_codes = BTreeMap::new();
        let mut samples = 0;
        for round in 0..13 {
            let ids: Vec<i64> = sqlx::query_scalar("SELECT appointment_id FROM appointments WHERE status = 'SCHEDULED'")
                .fetch_all(&pool).await.unwrap();
            let ops: Vec<_> = (0..16).map(|i| {
                let desk = desks[(round + i) % desks.len()].clone();
                let kind = if ids.is_empty() { 0 } else { next(3) };
                let (pid, slot) = (p[next(p.len())], slots[next(slots.len())]);
                let id = if ids.is_empty() { 0 } else { ids[next(ids.len())] };
                async move {
                    match kind {
                        0 => desk.book_appointment(&booking(pid, d, "Dermatology", slot), None).await.map(|_| ()),
                        1 => desk.transition_appointment(id, "cancel", None).await.map(|_| ()),
                        _ => desk.reschedule_appointment(id, &Reschedule { new_slot_start: slot, new_slot_end: None }, None).await.map(|_| ()),
                    }
                }
            }).collect();
            let results = futures::future::join_all(ops).await;
            for (k, v) in tally(&results) { *seen_codes.entry(k).or_insert(0) += v; }
            for (day, booked, n) in sample().await {
                samples += 1;
                assert_eq!(booked, n, "counter and rows agree on {day}");
                assert!(booked <= 8, "{day} holds {booked}");
            }
        }
        assert!(samples >= 20, "{samples} samples");
        let allowed = ["ok", "slot_taken", "patient_busy", "daily_cap_reached", "reschedule_limit", "invalid_transition"];
        assert!(seen_codes.keys().all(|k| allowed.contains(&k.as_str())), "{seen_codes:?}");
        assert!(seen_codes.get("ok").copied().unwrap_or(0) > 20, "{seen_codes:?}");
        app.stop().await;
    }

    async fn parallel_reschedules_apply_at_most_twice(b: Backend) {
        let mut app = clinic(&b, |c| c.daily_cap = 18).await;
        let p = patients(&app, 1, 6).await[0];
        let d = doctors(&app, 1, "Neurology").await[0];
        let a = app.client(Role::Reception).book_appointment(&booking(p, d, "Neurology", ist("2026-12-01", "09:00")), None).await.unwrap();
        let desks = desks(&mut app, &b, Role::Reception).await;
        let targets = &day_slots("2026-12-02")[..16];
        let results = futures::future::join_all(targets.iter().enumerate().map(|(i, &s)| {
            let desk = desks[i % desks.len()].clone();
            async move { desk.reschedule_appointment(a.appointment_id, &Reschedule { new_slot_start: s, new_slot_end: None }, None).await }
        })).await;
        assert_eq!(tally(&results), counts(&[("ok", 2), ("reschedule_limit", 14)]));
        let now = app.client(Role::Reception).get_appointment(a.appointment_id).await.unwrap();
        assert_eq!((now.reschedule_count, now.version), (2, 3));
        let pool = app.db(Service::Appointment).pool();
        let claims: Vec<String> = sqlx::query("SELECT slot_start FROM doctor_slot_claims WHERE appointment_id = $1")
            .bind(a.appointment_id).fetch_all(pool).await.unwrap().iter().map(|r| r.get("slot_start")).collect();
        assert_eq!(claims, vec![hms_kit::time::to_db(now.slot_start)], "one claim, at the final slot");
        let tue = hms_appointment::store::day_load(pool, d, "2026-12-01".parse().unwrap()).await.unwrap();
        let wed = hms_appointment::store::day_load(pool, d, "2026-12-02".parse().unwrap()).await.unwrap();
        assert_eq!((tue, wed), (0, 1), "the day counts followed the move");
        app.stop().await;
    }

    async fn cancel_racing_complete_has_one_winner(b: Backend) {
        let mut app = clinic(&b, |c| c.daily_cap = 18).await;
        let p = patients(&app, 20, 7).await;
        let d = doctors(&app, 2, "Orthopedics").await;
        let ids = tuesday_booked(&app, &p, &d, "Orthopedics").await;
        // After the day's last start: completing is allowed, and so is cancelling.
        app.clock.set(ist("2026-12-01", "17:45"));
        let desks = desks(&mut app, &b, Role::Reception).await;
        let admins: Vec<HmsClient> = desks.iter().map(|c| c.clone().with_token(app.token(Role::Admin))).collect();
        let races = ids.iter().enumerate().map(|(i, &id)| {
            let (desk, admin) = (desks[i % desks.len()].clone(), admins[(i + 1) % admins.len()].clone());
            async move {
                let (c, k) = tokio::join!(desk.transition_appointment(id, "cancel", None), admin.transition_appointment(id, "complete", None));
                (c, k)
            }
        });
        for (c, k) in futures::future::join_all(races).await {
            let outcome = [code(&c), code(&k)];
            assert!(outcome == ["ok".to_string(), "invalid_transition".into()] || outcome == ["invalid_transition".to_string(), "ok".into()], "{outcome:?}");
        }
        let rows = sqlx::query(
            "SELECT aggregate_id, COUNT(*) AS n FROM outbox WHERE event_type IN ('appointment.cancelled', 'appointment.completed') GROUP BY aggregate_id",
        ).fetch_all(app.db(Service::Appointment).pool()).await.unwrap();
        assert_eq!(rows.len(), 20);
        assert!(rows.iter().all(|r| r.get::<i64, _>("n") == 1), "exactly one terminal event per appointment");
        app.stop().await;
    }

    // Cancels, no-shows and completions at once (committed together on SQLite); each is its own:
    // its own status, fee and event, the slots and day counts of the cancelled and missed
    // released, and a stale If-Match in the crowd refused alone.
    async fn transitions_at_once_each_keep_their_own_outcome(b: Backend) {
        let mut app = clinic(&b, |c| c.daily_cap = 18).await;
        let p = patients(&app, 30, 8).await;
        let d = doctors(&app, 3, "Orthopedics").await;
        let ids = tuesday_booked(&app, &p, &d, "Orthopedics").await;
        app.clock.set(ist("2026-12-01", "17:45"));
        let desks = desks(&mut app, &b, Role::Reception).await;
        let action = |i: usize| ["cancel", "no-show", "complete"][i % 3];
        let results = futures::future::join_all(ids.iter().enumerate().map(|(i, &id)| {
            let desk = desks[i % desks.len()].clone();
            // The first of each kind sends a version the row does not have.
            let stale = (i < 3).then_some(7);
            async move { desk.transition_appointment(id, action(i), stale).await }
        })).await;
        for (i, r) in results.iter().enumerate() {
            let want = if i < 3 { "version_conflict" } else { "ok" };
            assert_eq!(code(r), want, "appointment {i} ({})", action(i));
        }
        let pool = app.db(Service::Appointment).pool().clone();
        for (i, &id) in ids.iter().enumerate() {
            let (status, fee): (String, Option<String>) = sqlx::query_as("SELECT status, fee_decision FROM appointments WHERE appointment_id = $1")
                .bind(id).fetch_one(&pool).await.unwrap();
            let want = match (i < 3, action(i)) {
                (true, _) => ("SCHEDULED", None),
                (_, "cancel") => ("CANCELLED", Some("half")),
                (_, "no-show") => ("NO_SHOW", Some("full")),
                _ => ("COMPLETED", None),
            };
            assert_eq!((status.as_str(), fee.as_deref()), want, "appointment {i}");
        }
        let events: Vec<(i64, String)> = sqlx::query_as("SELECT CAST(aggregate_id AS BIGINT) AS id, event_type FROM outbox WHERE event_type <> 'appointment.booked' ORDER BY id")
            .fetch_all(&pool).await.unwrap();
        let want: Vec<(i64, String)> = ids.iter().enumerate().skip(3).map(|(i, &id)| {
            (id, ["appointment.cancelled", "appointment.no_show", "appointment.completed"][i % 3].to_string())
        }).collect();
        assert_eq!(events, want, "one event per transition, of its kind");
        // Each doctor's day: its 10 bookings, less those cancelled or missed.
        for (k, &doctor) in d.iter().enumerate() {
            let booked: i64 = sqlx::query_scalar("SELECT booked FROM doctor_day_load WHERE doctor_id = $1")
                .bind(doctor).fetch_one(&pool).await.unwrap();
            let kept = (0..10).map(|j| k * 10 + j).filter(|&i| i < 3 || action(i) == "complete").count();
            assert_eq!(booked, kept as i64, "doctor {doctor}");
        }
        app.stop().await;
    }

    async fn reschedule_moves_the_slot_and_keeps_every_rule(b: Backend) {
        let app = clinic(&b, |_| {}).await;
        let desk = app.client(Role::Reception);
        let p = patients(&app, 2, 8).await;
        let d = doctors(&app, 1, "Cardiology").await[0];
        let x = ist("2026-12-01", "09:00");
        let a = desk.book_appointment(&booking(p[0], d, "Cardiology", x), None).await.unwrap();
        // Stale If-Match: refused, nothing changes.
        let stale = desk.reschedule_appointment(a.appointment_id, &Reschedule { new_slot_start: ist("2026-12-01", "10:00"), new_slot_end: None }, Some(7)).await.unwrap_err();
        assert_eq!((stale.status(), stale.code()), (Some(412), Some("version_conflict")));
        assert_eq!(desk.get_appointment(a.appointment_id).await.unwrap(), a);
        // A bad new slot is refused by the booking rules.
        let bad = desk.reschedule_appointment(a.appointment_id, &Reschedule { new_slot_start: ist("2026-12-01", "10:10"), new_slot_end: None }, Some(1)).await.unwrap_err();
        assert_eq!(bad.code(), Some("slot_not_standard"));
        // The original system's form: query parameters.
        let y = ist("2026-12-01", "10:00");
        let url = format!("/v1/appointments/{}/reschedule?new_slot_start={}&new_slot_end={}", a.appointment_id,
            y.format("%Y-%m-%dT%H:%M:%SZ"), (y + Duration::minutes(30)).format("%Y-%m-%dT%H:%M:%SZ"));
        let resp = app.req(Role::Reception, Method::POST, Service::Appointment, &url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let moved: Value = resp.json().await.unwrap();
        assert_eq!((moved["version"].as_i64(), moved["reschedule_count"].as_i64()), (Some(2), Some(1)));
        // The old slot is free again.
        desk.book_appointment(&booking(p[1], d, "Cardiology", x), None).await.unwrap();
        // Within an hour of the start: too late to move.
        app.clock.set(y - Duration::minutes(59));
        let late = desk.reschedule_appointment(a.appointment_id, &Reschedule { new_slot_start: ist("2026-12-02", "10:00"), new_slot_end: None }, None).await.unwrap_err();
        assert_eq!(late.code(), Some("reschedule_cutoff"));
        app.clock.set(monday());
        desk.reschedule_appointment(a.appointment_id, &Reschedule { new_slot_start: ist("2026-12-02", "10:00"), new_slot_end: None }, None).await.unwrap();
        let third = desk.reschedule_appointment(a.appointment_id, &Reschedule { new_slot_start: ist("2026-12-02", "11:00"), new_slot_end: None }, None).await.unwrap_err();
        assert_eq!(third.code(), Some("reschedule_limit"));
        desk.transition_appointment(a.appointment_id, "cancel", None).await.unwrap();
        let gone = desk.reschedule_appointment(a.appointment_id, &Reschedule { new_slot_start: ist("2026-12-03", "11:00"), new_slot_end: None }, None).await.unwrap_err();
        assert_eq!((gone.status(), gone.code()), (Some(409), Some("invalid_transition")));
        app.stop().await;
    }

    async fn cancellation_fee_turns_at_two_hours(b: Backend) {
        let app = clinic(&b, |_| {}).await;
        let desk = app.client(Role::Reception);
        let p = patients(&app, 2, 9).await;
        let d = doctors(&app, 1, "Cardiology").await[0];
        let start = ist("2026-12-01", "12:00");
        let early = desk.book_appointment(&booking(p[0], d, "Cardiology", start), None).await.unwrap();
        let late = desk.book_appointment(&booking(p[1], d, "Cardiology", start + Duration::minutes(30)), None).await.unwrap();
        app.clock.set(start - Duration::hours(2) - Duration::seconds(1));
        let stale = desk.transition_appointment(early.appointment_id, "cancel", Some(3)).await.unwrap_err();
        assert_eq!((stale.status(), stale.code()), (Some(412), Some("version_conflict")));
        assert_eq!(desk.get_appointment(early.appointment_id).await.unwrap(), early, "a stale If-Match changes nothing");
        let a = desk.transition_appointment(early.appointment_id, "cancel", Some(1)).await.unwrap();
        assert_eq!((a.status.as_str(), a.fee_decision.as_deref(), a.version), ("CANCELLED", Some("none"), 2));
        app.clock.set(late.slot_start - Duration::hours(2));
        let a = desk.transition_appointment(late.appointment_id, "cancel", None).await.unwrap();
        assert_eq!(a.fee_decision.as_deref(), Some("half"));
        let again = desk.transition_appointment(late.appointment_id, "cancel", None).await.unwrap_err();
        assert_eq!((again.status(), again.code()), (Some(409), Some("invalid_transition")));
        let payloads: Vec<Value> = sqlx::query("SELECT payload FROM outbox WHERE event_type = 'appointment.cancelled' ORDER BY aggregate_id")
            .fetch_all(app.db(Service::Appointment).pool()).await.unwrap()
            .iter().map(|r| serde_json::from_str(&r.get::<String, _>("payload")).unwrap()).collect();
        assert_eq!(payloads.len(), 2);
        assert_eq!((payloads[0]["fee_decision"].as_str(), payloads[1]["fee_decision"].as_str()), (Some("none"), Some("half")));
        assert_eq!(payloads[1]["consultation_fee"], "500.00");
        app.stop().await;
    }

    async fn no_show_waits_for_the_grace_period_and_complete_for_the_start(b: Backend) {
        let app = clinic(&b, |_| {}).await;
        let desk = app.client(Role::Reception);
        let p = patients(&app, 2, 10).await;
        let d = doctors(&app, 1, "Cardiology").await[0];
        let start = ist("2026-12-01", "10:00");
        let a = desk.book_appointment(&booking(p[0], d, "Cardiology", start), None).await.unwrap();
        let c = desk.book_appointment(&booking(p[1], d, "Cardiology", start + Duration::hours(1)), None).await.unwrap();
        assert_eq!(code(&desk.transition_appointment(c.appointment_id, "complete", None).await), "complete_too_early");
        app.clock.set(start + Duration::minutes(14));
        assert_eq!(code(&desk.transition_appointment(a.appointment_id, "no-show", None).await), "no_show_too_early");
        app.clock.set(start + Duration::minutes(15));
        let ns = desk.transition_appointment(a.appointment_id, "no-show", None).await.unwrap();
        assert_eq!((ns.status.as_str(), ns.fee_decision.as_deref()), ("NO_SHOW", Some("full")));
        assert_eq!(code(&desk.transition_appointment(a.appointment_id, "complete", None).await), "invalid_transition");
        app.clock.set(c.slot_start);
        let done = app.doctor_client(d).transition_appointment(c.appointment_id, "complete", None).await.unwrap();
        assert_eq!(done.status, "COMPLETED");
        assert_eq!(code(&desk.transition_appointment(c.appointment_id, "cancel", None).await), "invalid_transition");
        // The no-show released its slot and its place in the day; the completed one did not.
        let load = hms_appointment::store::day_load(app.db(Service::Appointment).pool(), d, "2026-12-01".parse().unwrap()).await.unwrap();
        assert_eq!(load, 1);
        app.stop().await;
    }

    async fn an_idempotency_key_books_once(b: Backend) {
        let mut app = clinic(&b, |_| {}).await;
        let p = patients(&app, 2, 11).await;
        let d = doctors(&app, 1, "Cardiology").await[0];
        let body = booking(p[0], d, "Cardiology", ist("2026-12-01", "15:00"));
        let desks = desks(&mut app, &b, Role::Reception).await;
        let results = futures::future::join_all((0..10).map(|i| {
            let desk = desks[i % desks.len()].clone();
            let body = body.clone();
            async move { desk.book_appointment(&body, Some("book-7f0c2a")).await }
        })).await;
        let ids: std::collections::BTreeSet<i64> = results.iter().map(|r| r.as_ref().unwrap().appointment_id).collect();
        assert_eq!(ids.len(), 1, "ten tries, one appointment: {results:?}");
        assert_eq!(scheduled_rows(&app).await, 1);
        // A replay says so.
        let resp = app.req(Role::Reception, Method::POST, Service::Appointment, "/v1/appointments")
            .header("idempotency-key", "book-7f0c2a").json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["idempotent-replayed"], "true");
        // The same key for another booking, or by another caller, is refused.
        let other = booking(p[1], d, "Cardiology", ist("2026-12-01", "15:00"));
        let reused = app.client(Role::Reception).book_appointment(&other, Some("book-7f0c2a")).await.unwrap_err();
        assert_eq!((reused.status(), reused.code()), (Some(422), Some("idempotency_key_reused")));
        let by_admin = app.client(Role::Admin).book_appointment(&body, Some("book-7f0c2a")).await.unwrap_err();
        assert_eq!(by_admin.code(), Some("idempotency_key_reused"));
        let bad = app.req(Role::Reception, Method::POST, Service::Appointment, "/v1/appointments")
            .header("idempotency-key", "k".repeat(256)).json(&other).send().await.unwrap();
        assert_eq!(bad.status(), 400);
        assert_eq!(scheduled_rows(&app).await, 1);
        app.stop().await;
    }

    async fn listing_filters_pages_and_doctor_scoping(b: Backend) {
        let app = clinic(&b, |c| c.daily_cap = 18).await;
        let desk = app.client(Role::Reception);
        let p = patients(&app, 12, 12).await;
        let d = doctors(&app, 2, "Cardiology").await;
        let mut ids = Vec::new();
        for (i, &pid) in p.iter().enumerate() {
            ids.push(desk.book_appointment(&booking(pid, d[i % 2], "Cardiology", day_slots("2026-12-01")[i]), None).await.unwrap().appointment_id);
        }
        desk.transition_appointment(ids[0], "cancel", None).await.unwrap();
        let q = |f: AppointmentQuery| { let desk = desk.clone(); async move { desk.list_appointments(&f).await.unwrap().items.iter().map(|a| a.appointment_id).collect::<Vec<_>>() } };
        assert_eq!(q(AppointmentQuery { doctor_id: Some(d[0]), status: Some("scheduled".into()), ..Default::default() }).await,
                   ids.iter().enumerate().filter(|(i, _)| i % 2 == 0 && *i > 0).map(|(_, id)| *id).collect::<Vec<_>>());
        assert_eq!(q(AppointmentQuery { patient_id: Some(p[3]), ..Default::default() }).await, vec![ids[3]]);
        assert_eq!(q(AppointmentQuery { from: Some(ist("2026-12-01", "10:00")), to: Some(ist("2026-12-01", "11:00")), ..Default::default() }).await, ids[2..4].to_vec());
        let mut walked = Vec::new();
        let mut cursor = None;
        loop {
            let page = desk.list_appointments(&AppointmentQuery { limit: Some(5), cursor, ..Default::default() }).await.unwrap();
            walked.extend(page.items.iter().map(|a| a.appointment_id));
            match page.next_cursor { Some(c) => cursor = Some(c), None => break }
        }
        assert_eq!(walked, ids);
        let bad = desk.list_appointments(&AppointmentQuery { status: Some("DONE".into()), ..Default::default() }).await.unwrap_err();
        assert_eq!(bad.code(), Some("validation_failed"));

        // A doctor sees, and completes, only their own.
        let own = app.doctor_client(d[0]);
        let mine = own.list_appointments(&AppointmentQuery::default()).await.unwrap().items;
        assert!(mine.iter().all(|a| a.doctor_id == d[0]) && mine.len() == 6);
        assert_eq!(own.list_appointments(&AppointmentQuery { doctor_id: Some(d[1]), ..Default::default() }).await.unwrap_err().status(), Some(403));
        assert_eq!(own.get_appointment(ids[1]).await.unwrap_err().status(), Some(404));
        app.clock.set(ist("2026-12-01", "17:00"));
        assert_eq!(own.transition_appointment(ids[1], "complete", None).await.unwrap_err().status(), Some(404));
        assert_eq!(desk.get_appointment(ids[1]).await.unwrap().status, "SCHEDULED", "nothing changed");
        app.stop().await;
    }

    async fn availability_leaves_out_booked_slots(b: Backend) {
        let app = clinic(&b, |_| {}).await;
        let desk = app.client(Role::Reception);
        let p = patients(&app, 1, 13).await[0];
        let d = doctors(&app, 1, "Dermatology").await[0];
        let tue: NaiveDate = "2026-12-01".parse().unwrap();
        let slot = ist("2026-12-01", "11:00");
        let a = desk.book_appointment(&booking(p, d, "Dermatology", slot), None).await.unwrap();
        let free = eventually(10, "the booked slot to leave availability", || async {
            let v = desk.doctor_availability(d, tue).await.ok()?;
            (v.slots.len() == 17).then_some(v)
        }).await;
        assert!(free.slots.iter().all(|s| s.slot_start != slot));
        desk.transition_appointment(a.appointment_id, "cancel", None).await.unwrap();
        eventually(10, "the cancelled slot to come back", || async {
            let v = desk.doctor_availability(d, tue).await.ok()?;
            v.slots.iter().any(|s| s.slot_start == slot).then_some(())
        }).await;
        let metrics = app.http.get(format!("{}/metrics", app.url(Service::Appointment))).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("appointments_created_total"), "{metrics}");
        app.stop().await;
    }

    async fn a_batch_of_booking_events_keeps_the_newest_of_each_appointment(b: Backend) {
        // The doctor service hears of appointments only from the batch this test delivers.
        let app = clinic(&b, |c| {
            c.service_mut("appointment").subscribers = Some(vec!["notification".into()]);
        }).await;
        let desk = app.client(Role::Reception);
        let ps = patients(&app, 3, 15).await;
        let d = doctors(&app, 1, "Dermatology").await[0];
        let at = |hm| ist("2026-12-01", hm);
        let a = desk.book_appointment(&booking(ps[0], d, "Dermatology", at("11:00")), None).await.unwrap();
        desk.transition_appointment(a.appointment_id, "cancel", None).await.unwrap();
        let c = desk.book_appointment(&booking(ps[1], d, "Dermatology", at("12:00")), None).await.unwrap();
        let e = desk.book_appointment(&booking(ps[2], d, "Dermatology", at("13:00")), None).await.unwrap();
        desk.reschedule_appointment(e.appointment_id, &Reschedule { new_slot_start: at("14:00"), new_slot_end: None }, None).await.unwrap();
        let db = app.db(Service::Appointment);
        let mut all = Vec::new();
        for t in ["appointment.booked", "appointment.cancelled", "appointment.rescheduled"] {
            all.extend(outbox_events(db, "appointment", t).await);
        }
        let of = |id: i64, t: &str| all.iter().find(|ev| ev.aggregate_id == id.to_string() && ev.event_type == t).unwrap().clone();
        // The first appointment's cancellation arrives before its booking; the others in order.
        let batch = vec![
            of(a.appointment_id, "appointment.cancelled"), of(a.appointment_id, "appointment.booked"),
            of(c.appointment_id, "appointment.booked"),
            of(e.appointment_id, "appointment.booked"), of(e.appointment_id, "appointment.rescheduled"),
        ];
        let token = app.keys.issue(Role::Service, "service:appointment", None, chrono::Duration::minutes(5));
        let ack: serde_json::Value = app.http.post(format!("{}/v1/events/batch", app.url(Service::Doctor)))
            .bearer_auth(&token).json(&serde_json::json!({ "events": batch })).send().await.unwrap()
            .json().await.unwrap();
        assert!(ack["results"].as_array().unwrap().iter().all(|r| r["status"] == 200 && r["duplicate"] == false), "{ack}");
        let kept: Vec<(i64, String, i64)> = sqlx::query_as("SELECT appointment_id, slot_start, active FROM booked_slots ORDER BY appointment_id")
            .fetch_all(app.db(Service::Doctor).pool()).await.unwrap();
        let db_time = |hm| hms_kit::time::to_db(at(hm));
        assert_eq!(kept, vec![
            (a.appointment_id, db_time("11:00"), 0),
            (c.appointment_id, db_time("12:00"), 1),
            (e.appointment_id, db_time("14:00"), 1),
        ], "each appointment as its newest event has it");
        let free: Vec<DateTime<Utc>> = desk.doctor_availability(d, "2026-12-01".parse().unwrap()).await.unwrap().slots.iter().map(|s| s.slot_start).collect();
        assert!(free.contains(&at("11:00")) && free.contains(&at("13:00")), "{free:?}");
        assert!(!free.contains(&at("12:00")) && !free.contains(&at("14:00")), "{free:?}");
        app.stop().await;
    }

    async fn booking_succeeds_while_notification_is_down(b: Backend) {
        let port = closed_port();
        let app = clinic(&b, |c| {
            c.service_mut("appointment").subscribers = Some(vec!["doctor".into(), "notification".into()]);
            c.service_mut("notification").url = Some(format!("http://127.0.0.1:{port}"));
        }).await;
        let p = patients(&app, 1, 14).await[0];
        let d = doctors(&app, 1, "Neurology").await[0];
        let a = app.client(Role::Reception).book_appointment(&booking(p, d, "Neurology", ist("2026-12-01", "09:30")), None).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        let db = fresh_database(&b, app.dir.path(), "notification_stand_in").await;
        let sub = Subscriber::start(&app, &db, port, &[Service::Appointment]).await;
        let got = eventually(15, "the confirmation event to arrive", || async {
            let r = sub.received().await;
            (!r.is_empty()).then_some(r)
        }).await;
        assert_eq!(got, vec![("appointment.booked".to_string(), a.appointment_id.to_string())]);
        let payload = &sub.payloads("appointment.booked").await[0];
        assert_eq!(payload["doctor_id"], d);
        assert!(payload.get("email").is_none() && payload.get("phone").is_none(), "ids, not contact details");
        sub.stop().await;
        if let Backend::Postgres(server) = &b { drop_database(server, &db).await; }
        app.stop().await;
    }
}

/// A doctor service of an earlier release, as a rolling upgrade meets it, serving on
/// `listener`: every request passed through to the real one at `target`, but
/// `GET /v1/doctors/{id}/schedules` (new in this release) answered 404 as a server without the
/// route answers. The paths asked are kept, with the status each was answered.
async fn doctor_service_without_schedules(
    listener: std::net::TcpListener,
    target: String,
) -> std::sync::Arc<std::sync::Mutex<Vec<(String, u16)>>> {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::IntoResponse;
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (kept, http) = (asked.clone(), reqwest::Client::new());
    let older = axum::Router::new().fallback(
        move |method: axum::http::Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (kept, http, target) = (kept.clone(), http.clone(), target.clone());
            async move {
                let path = uri.path().to_string();
                if path.ends_with("/schedules") {
                    kept.lock().unwrap().push((path, 404));
                    let body = serde_json::json!({ "code": "not_found", "message": "no route", "correlationId": "older" });
                    return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
                }
                let mut out = http.request(method, format!("{target}{uri}")).body(body);
                for (name, value) in &headers {
                    if name != "host" {
                        out = out.header(name, value);
                    }
                }
                let resp = out.send().await.unwrap();
                let status = resp.status().as_u16();
                kept.lock().unwrap().push((path, status));
                let kind = resp.headers().get("content-type").cloned();
                let bytes = resp.bytes().await.unwrap();
                let mut answer = (StatusCode::from_u16(status).unwrap(), bytes).into_response();
                if let Some(kind) = kind {
                    answer.headers_mut().insert("content-type", kind);
                }
                answer
            }
        },
    );
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move { axum::serve(listener, older).await.unwrap() });
    asked
}

both_backends! {
    async fn booking_asks_a_doctor_service_without_runs_of_days_for_the_one_day(b: Backend) {
        // The appointment service is upgraded before the doctor service: the run of days is
        // not there, and booking asks for the day the old way.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let older = format!("http://{}", listener.local_addr().unwrap());
        let mut real = None;
        // Every service finds the doctor service at the older one's address.
        let app = clinic(&b, |c| real = c.service_mut("doctor").url.replace(older)).await;
        let asked = doctor_service_without_schedules(listener, real.unwrap()).await;
        let desk = app.client(Role::Reception);
        let p = patients(&app, 2, 61).await;
        let d = doctors(&app, 1, "Cardiology").await[0];
        let r = desk.book_appointment(&booking(p[0], d, "Cardiology", ist("2026-12-01", "09:00")), None).await;
        assert_eq!(code(&r), "ok", "{r:?}");
        let paths = asked.lock().unwrap().clone();
        let runs = paths.iter().position(|(p, s)| p == &format!("/v1/doctors/{d}/schedules") && *s == 404);
        let day = paths.iter().position(|(p, s)| p == &format!("/v1/doctors/{d}/schedule") && *s == 200);
        assert!(matches!((runs, day), (Some(a), Some(b)) if a < b), "the run of days refused, then the one day asked: {paths:?}");
        // A doctor the older service does not know is still not found.
        let r = desk.book_appointment(&booking(p[1], d + 1000, "Cardiology", ist("2026-12-01", "09:00")), None).await;
        assert_eq!(code(&r), "not_found", "{r:?}");
        app.stop().await;
    }
}

//! Doctor service: registration, filters, working hours, leave, availability.

use crate::both_backends;
use crate::support::*;
use hms_client::models::{DoctorQuery, DoctorUpdate, NewLeave, WeeklyHours, WorkingHours};
use hms_kit::auth::Role;
use hms_kit::clock::Clock;

both_backends! {
    async fn doctors_are_registered_filtered_and_changed(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_doctor::SERVICE]).await;
        let admin = app.client(Role::Admin);
        let a = admin.create_doctor(&new_doctor("Dr. Aditya Iyer", "Cardiology", "Cardiologist")).await.unwrap();
        let c = admin.create_doctor(&new_doctor("Dr. Pari Das", "Orthopedics", "Surgeon")).await.unwrap();
        let d = admin.create_doctor(&new_doctor("Dr. Karan Iyer", "Cardiology", "Electrophysiologist")).await.unwrap();
        assert_eq!(a.consultation_fee.to_string(), "500.00");
        let ids = |q: DoctorQuery| { let admin = admin.clone(); async move { admin.list_doctors(&q).await.unwrap().items.iter().map(|d| d.doctor_id).collect::<Vec<_>>() } };
        assert_eq!(ids(DoctorQuery { department: Some("cardiology".into()), ..Default::default() }).await, vec![a.doctor_id, d.doctor_id]);
        assert_eq!(ids(DoctorQuery { specialization: Some("SURGEON".into()), ..Default::default() }).await, vec![c.doctor_id]);
        assert_eq!(ids(DoctorQuery { name: Some("iyer".into()), ..Default::default() }).await, vec![a.doctor_id, d.doctor_id]);

        let hours = admin.working_hours(a.doctor_id).await.unwrap().hours;
        assert_eq!(hours.len(), 5, "Monday to Friday by default");
        assert_eq!((hours[0].start.as_str(), hours[0].end.as_str()), ("09:00", "18:00"));

        let changed = admin.update_doctor(d.doctor_id, &DoctorUpdate { consultation_fee: Some("750.50".parse().unwrap()), active: Some(false), ..Default::default() }).await.unwrap();
        assert_eq!((changed.consultation_fee.to_string().as_str(), changed.active, changed.version), ("750.50", false, 2));
        assert_eq!(ids(DoctorQuery { department: Some("Cardiology".into()), active: Some(true), ..Default::default() }).await, vec![a.doctor_id]);

        let bad = admin.create_doctor(&hms_client::models::NewDoctor { department: " ".into(), ..new_doctor("Dr. X Y", "", "S") }).await.unwrap_err();
        assert_eq!(bad.code(), Some("validation_failed"));

        // The seed's clients create doctors without a fee: the clinic's default applies.
        let r = app.req(Role::Admin, reqwest::Method::POST, hms_kit::Service::Doctor, "/v1/doctors")
            .json(&serde_json::json!({"name": "Dr. Old Shape", "department": "Cardiology", "specialization": "Cardiologist", "email": "old@example.org", "phone": "9000000001"}))
            .send().await.unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::CREATED);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["consultation_fee"], "500.00", "{v}");
        app.stop().await;
    }

    async fn the_default_fee_is_configurable(b: Backend) {
        let app = TestApp::spawn_with(&b, &[&hms_doctor::SERVICE], Clock::system(), |c| c.default_consultation_fee = "650.00".parse().unwrap()).await;
        let d = app.client(Role::Admin).create_doctor(&hms_client::models::NewDoctor { consultation_fee: None, ..new_doctor("Dr. Default Fee", "Neurology", "Neurologist") }).await.unwrap();
        assert_eq!(d.consultation_fee.to_string(), "650.00");
        app.stop().await;
    }

    async fn availability_follows_hours_leave_and_clinic_time(b: Backend) {
        // Monday 2026-11-30, 00:00 UTC; the dates below are in the clinic's zone (Asia/Kolkata).
        let clock = Clock::manual("2026-11-30T00:00:00Z".parse().unwrap());
        let app = TestApp::spawn_with(&b, &[&hms_doctor::SERVICE], clock.clone(), |_| {}).await;
        let admin = app.client(Role::Admin);
        let a = admin.create_doctor(&new_doctor("Dr. Slot Maker", "Dermatology", "Dermatologist")).await.unwrap();
        let short = admin.create_doctor(&new_doctor("Dr. Half Day", "Dermatology", "Dermatologist")).await.unwrap();
        admin.set_working_hours(short.doctor_id, &WeeklyHours { hours: vec![
            WorkingHours { weekday: 2, start: "08:00".into(), end: "10:15".into() },
            WorkingHours { weekday: 2, start: "16:00".into(), end: "20:00".into() },
        ]}).await.unwrap();

        let tuesday = "2026-12-01".parse().unwrap();
        let full = admin.doctor_availability(a.doctor_id, tuesday).await.unwrap();
        assert_eq!(full.slots.len(), 18, "09:00–18:00 in 30-minute slots");
        assert_eq!(full.slots[0].slot_start.to_rfc3339(), "2026-12-01T03:30:00+00:00", "09:00 IST is 03:30 UTC");
        let half = admin.doctor_availability(short.doctor_id, tuesday).await.unwrap();
        let local: Vec<String> = half.slots.iter()
            .map(|s| s.slot_start.with_timezone(&chrono_tz::Asia::Kolkata).format("%H:%M").to_string()).collect();
        assert_eq!(local, ["09:00", "09:30", "16:00", "16:30", "17:00", "17:30"], "clipped to clinic hours");

        let saturday = admin.doctor_availability(a.doctor_id, "2026-12-05".parse().unwrap()).await.unwrap();
        assert_eq!((saturday.slots.len(), saturday.unavailable_reason.as_deref()), (0, Some("not_working")));

        admin.add_leave(a.doctor_id, &NewLeave { start_date: tuesday, end_date: tuesday, reason: Some("conference".into()) }).await.unwrap();
        let away = admin.doctor_availability(a.doctor_id, tuesday).await.unwrap();
        assert_eq!((away.slots.len(), away.unavailable_reason.as_deref()), (0, Some("on_leave")));

        let dept = admin.department_availability("dermatology", tuesday).await.unwrap();
        let counts: Vec<(i64, usize)> = dept.doctors.iter().map(|d| (d.doctor_id, d.slots.len())).collect();
        assert_eq!(counts, vec![(a.doctor_id, 0), (short.doctor_id, 6)]);

        // The lead time hides slots that start too soon: at 10:00 IST on Tuesday, 12:00 is the first.
        clock.set("2026-12-01T04:30:00Z".parse().unwrap());
        let soon = admin.doctor_availability(short.doctor_id, tuesday).await.unwrap();
        assert_eq!(soon.slots.len(), 4, "the morning slots are past the lead time");
        app.stop().await;
    }

    async fn a_run_of_days_is_each_day_as_the_schedule_of_one_date_answers_it(b: Backend) {
        let clock = Clock::manual("2026-11-30T00:00:00Z".parse().unwrap());
        let app = TestApp::spawn_with(&b, &[&hms_doctor::SERVICE], clock, |_| {}).await;
        let admin = app.client(Role::Admin);
        let d = admin.create_doctor(&new_doctor("Dr. Fortnight", "Dermatology", "Dermatologist")).await.unwrap().doctor_id;
        admin.set_working_hours(d, &WeeklyHours { hours: vec![
            WorkingHours { weekday: 2, start: "08:00".into(), end: "10:15".into() },
            WorkingHours { weekday: 2, start: "16:00".into(), end: "20:00".into() },
            WorkingHours { weekday: 4, start: "09:00".into(), end: "13:00".into() },
        ]}).await.unwrap();
        // Leave over Thursday 3rd and Friday 4th, and a day that ends before the run starts.
        admin.add_leave(d, &NewLeave { start_date: "2026-12-03".parse().unwrap(), end_date: "2026-12-04".parse().unwrap(), reason: None }).await.unwrap();
        admin.add_leave(d, &NewLeave { start_date: "2026-11-20".parse().unwrap(), end_date: "2026-11-29".parse().unwrap(), reason: None }).await.unwrap();

        let from: chrono::NaiveDate = "2026-11-30".parse().unwrap();
        let days = app.client(Role::Service).doctor_schedules(d, from, 14).await.unwrap();
        assert_eq!(days.len(), 14);
        for (i, day) in days.iter().enumerate() {
            let date = from + chrono::Duration::days(i as i64);
            let one = admin.doctor_schedule(d, date).await.unwrap();
            assert_eq!(day.date, date);
            assert_eq!((day.on_leave, &day.working, day.doctor.version), (one.on_leave, &one.working, one.doctor.version), "{date}");
        }
        let on_leave: Vec<String> = days.iter().filter(|d| d.on_leave).map(|d| d.date.to_string()).collect();
        assert_eq!(on_leave, ["2026-12-03", "2026-12-04"]);
        assert_eq!(days[1].working.len(), 2, "Tuesday's two shifts");
        assert!(days[0].working.is_empty() && days[5].working.is_empty(), "Monday and Saturday: not working");

        let status = |q: &'static str| { let app = &app; async move {
            app.req(Role::Admin, reqwest::Method::GET, hms_kit::Service::Doctor, &format!("/v1/doctors/{d}/schedules?{q}")).send().await.unwrap().status().as_u16()
        }};
        assert_eq!(status("from=2026-12-01&days=0").await, 400);
        assert_eq!(status("from=2026-12-01&days=32").await, 400);
        assert_eq!(status("from=2026-12-01").await, 400, "days is required");
        assert_eq!(status("from=+262142-12-30&days=5").await, 400, "past the last date there is");
        assert_eq!(status("from=2026-12-01&days=31").await, 200);
        let missing = app.client(Role::Admin).doctor_schedules(d + 1000, from, 3).await.unwrap_err();
        assert_eq!(missing.code(), Some("not_found"));
        app.stop().await;
    }
}

//! Prescription service: no prescription without a matching appointment; formulary; dosage.

use crate::both_backends;
use crate::support::subscriber::closed_port;
use crate::support::*;
use chrono::{DateTime, Duration, Utc};
use hms_client::models::{
    MedicationUpdate, NewAppointment, NewMedication, NewPrescription, PrescriptionQuery,
};
use hms_kit::auth::Role;
use hms_kit::clock::Clock;
use hms_kit::Service;
use sqlx::Row;

const ALL: [&hms_kit::server::ServiceDef; 4] = [
    &hms_patient::SERVICE,
    &hms_doctor::SERVICE,
    &hms_appointment::SERVICE,
    &hms_prescription::SERVICE,
];

fn tuesday_at(h: i64) -> DateTime<Utc> {
    // 09:00 IST on Tuesday 2026-12-01 is 03:30Z.
    "2026-12-01T03:30:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::hours(h)
}

fn rx(
    appointment: i64,
    patient: i64,
    medication: &str,
    dosage: &str,
    days: i64,
) -> NewPrescription {
    NewPrescription {
        prescription_id: None,
        appointment_id: appointment,
        patient_id: patient,
        doctor_id: None,
        medication: medication.into(),
        dosage: dosage.into(),
        days,
        issued_at: None,
    }
}

both_backends! {
    async fn prescriptions_need_a_matching_appointment(b: Backend) {
        let app = TestApp::spawn_with(&b, &ALL, Clock::manual("2026-11-30T00:00:00Z".parse().unwrap()), |_| {}).await;
        let desk = app.client(Role::Reception);
        let admin = app.client(Role::Admin);
        let p1 = desk.create_patient(&new_patient("Rx Patient One", 1)).await.unwrap().patient_id;
        let p2 = desk.create_patient(&new_patient("Rx Patient Two", 2)).await.unwrap().patient_id;
        let d1 = admin.create_doctor(&new_doctor("Dr. Rx One", "Cardiology", "General")).await.unwrap().doctor_id;
        let d2 = admin.create_doctor(&new_doctor("Dr. Rx Two", "Cardiology", "General")).await.unwrap().doctor_id;
        let book = |p, d, h| NewAppointment { patient_id: p, doctor_id: d, department: "Cardiology".into(), slot_start: tuesday_at(h), slot_end: None };
        let a1 = desk.book_appointment(&book(p1, d1, 0), None).await.unwrap().appointment_id;
        let a2 = desk.book_appointment(&book(p2, d1, 1), None).await.unwrap().appointment_id;
        desk.transition_appointment(a2, "cancel", None).await.unwrap();

        let dr1 = app.doctor_client(d1);
        let dr2 = app.doctor_client(d2);
        let ok = dr1.create_prescription(&rx(a1, p1, "paracetamol", "1-0-1", 5)).await.unwrap();
        assert_eq!((ok.doctor_id, ok.medication.as_str(), ok.quantity, ok.unit_price.to_string().as_str()), (d1, "Paracetamol", 10, "2.00"));
        let three = dr1.create_prescription(&rx(a1, p1, "Amoxicillin", "1-1-1", 7)).await.unwrap();
        assert_eq!(three.quantity, 21);

        let code = |r: Result<hms_client::models::Prescription, hms_client::ClientError>| r.map(|_| "ok".to_string()).unwrap_or_else(|e| e.code().unwrap_or("?").to_string());
        assert_eq!(code(dr1.create_prescription(&rx(a1, p2, "Paracetamol", "1-0-1", 5)).await), "appointment_required", "another patient's appointment");
        assert_eq!(code(dr2.create_prescription(&rx(a1, p1, "Paracetamol", "1-0-1", 5)).await), "appointment_required", "another doctor's appointment");
        assert_eq!(code(dr1.create_prescription(&rx(a2, p2, "Paracetamol", "1-0-1", 5)).await), "appointment_required", "a cancelled appointment");
        assert_eq!(code(dr1.create_prescription(&rx(999_999, p1, "Paracetamol", "1-0-1", 5)).await), "appointment_required", "no appointment");
        assert_eq!(code(dr1.create_prescription(&rx(a1, p1, "Unobtainium", "1-0-1", 5)).await), "unknown_medication");
        let ibu = admin.formulary().await.unwrap().items.into_iter().find(|m| m.name == "Ibuprofen").unwrap();
        admin.update_medication(ibu.medication_id, &MedicationUpdate { active: Some(false), ..Default::default() }).await.unwrap();
        assert_eq!(code(dr1.create_prescription(&rx(a1, p1, "Ibuprofen", "1-0-1", 5)).await), "medication_inactive");
        for (dosage, days, field) in [("1-0", 5, "dosage"), ("0-0-0", 5, "dosage"), ("x-1-1", 5, "dosage"), ("1-0-1", 0, "days")] {
            let e = dr1.create_prescription(&rx(a1, p1, "Paracetamol", dosage, days)).await.unwrap_err();
            assert_eq!((e.status(), e.code()), (Some(400), Some("validation_failed")), "{dosage} {days}");
            assert_eq!(body_field(&e), field);
        }
        let mut theirs = rx(a1, p1, "Paracetamol", "1-0-1", 5);
        theirs.doctor_id = Some(d2);
        assert_eq!(dr1.create_prescription(&theirs).await.unwrap_err().status(), Some(403));
        assert_eq!(desk.create_prescription(&rx(a1, p1, "Paracetamol", "1-0-1", 5)).await.unwrap_err().status(), Some(403));

        // Reads: by appointment; a doctor sees only their own.
        let listed = desk.list_prescriptions(&PrescriptionQuery { appointment_id: Some(a1), ..Default::default() }).await.unwrap().items;
        assert_eq!(listed.iter().map(|p| p.prescription_id).collect::<Vec<_>>(), vec![ok.prescription_id, three.prescription_id]);
        assert_eq!(dr2.get_prescription(ok.prescription_id).await.unwrap_err().status(), Some(404));
        assert!(dr2.list_prescriptions(&PrescriptionQuery::default()).await.unwrap().items.is_empty());

        // Formulary: seeded with prices; names are unique in any case.
        let names: Vec<String> = admin.formulary().await.unwrap().items.into_iter().map(|m| m.name).collect();
        assert!(names.contains(&"Amoxicillin".to_string()) && names.contains(&"Paracetamol".to_string()));
        admin.add_medication(&NewMedication { name: "Pantoprazole".into(), form: "tablet 40 mg".into(), unit_price: "6.25".parse().unwrap() }).await.unwrap();
        let dup = admin.add_medication(&NewMedication { name: "pantoprazole".into(), form: "tablet".into(), unit_price: "1.00".parse().unwrap() }).await.unwrap_err();
        assert_eq!(dup.status(), Some(409));

        let events: Vec<String> = sqlx::query("SELECT event_type FROM outbox").fetch_all(app.db(Service::Prescription).pool()).await.unwrap()
            .iter().map(|r| r.get("event_type")).collect();
        assert_eq!(events, vec!["prescription.created", "prescription.created"]);
        app.stop().await;
    }

    // Prescriptions written at once are committed together; each is still its own row, its
    // own answer and its own event.
    async fn prescriptions_written_at_once_are_each_kept_with_their_event(b: Backend) {
        let app = TestApp::spawn_with(&b, &ALL, Clock::manual("2026-11-30T00:00:00Z".parse().unwrap()), |_| {}).await;
        let desk = app.client(Role::Reception);
        let p = desk.create_patient(&new_patient("Rx Crowd", 3)).await.unwrap().patient_id;
        let d = app.client(Role::Admin).create_doctor(&new_doctor("Dr. Rx Crowd", "Cardiology", "General")).await.unwrap().doctor_id;
        let a = desk.book_appointment(&NewAppointment { patient_id: p, doctor_id: d, department: "Cardiology".into(), slot_start: tuesday_at(2), slot_end: None }, None).await.unwrap().appointment_id;
        let dr = app.doctor_client(d);
        let results = futures::future::join_all((1..=30).map(|days| {
            let dr = dr.clone();
            async move { (days, dr.create_prescription(&rx(a, p, "Paracetamol", "1-0-1", days)).await) }
        })).await;
        let mut ids = std::collections::BTreeSet::new();
        for (days, r) in results {
            let made = r.unwrap();
            assert_eq!((made.days, made.quantity), (days, 2 * days), "each request answered with its own prescription");
            ids.insert(made.prescription_id);
        }
        assert_eq!(ids.len(), 30);
        let pool = app.db(Service::Prescription).pool();
        let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT prescription_id, quantity FROM prescriptions ORDER BY prescription_id").fetch_all(pool).await.unwrap();
        assert_eq!(rows.len(), 30);
        let payloads: Vec<String> = sqlx::query_scalar("SELECT payload FROM outbox WHERE event_type = 'prescription.created'").fetch_all(pool).await.unwrap();
        let mut evented: Vec<(i64, i64)> = payloads.iter().map(|s| {
            let v: serde_json::Value = serde_json::from_str(s).unwrap();
            (v["prescription_id"].as_i64().unwrap(), v["quantity"].as_i64().unwrap())
        }).collect();
        evented.sort();
        assert_eq!(evented, rows, "one event per prescription, of that prescription");
        app.stop().await;
    }

    async fn an_appointment_service_that_is_down_is_named(b: Backend) {
        let port = closed_port();
        let app = TestApp::spawn_with(&b, &[&hms_prescription::SERVICE], Clock::system(), |c| {
            c.service_mut("appointment").url = Some(format!("http://127.0.0.1:{port}"));
        }).await;
        let e = app.doctor_client(3).create_prescription(&rx(1, 1, "Paracetamol", "1-0-1", 3)).await.unwrap_err();
        match e {
            hms_client::ClientError::Api { status, body, .. } => {
                assert_eq!((status, body.code.as_str()), (503, "dependency_unavailable"));
                assert_eq!(body.details.unwrap()["dependency"], "appointment");
            }
            other => panic!("{other:?}"),
        }
        app.stop().await;
    }
}

fn body_field(e: &hms_client::ClientError) -> String {
    match e {
        hms_client::ClientError::Api { body, .. } => body
            .details
            .as_ref()
            .map(|d| d["field"].as_str().unwrap_or("").to_string())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

//! PII never reaches a log line: a whole patient and doctor workflow, then a grep of every
//! line the services logged for the raw names, e-mails and phone numbers used.

use crate::both_backends;
use crate::support::*;
use hms_client::models::{NewPatient, PatientQuery, PatientUpdate};
use hms_kit::auth::Role;

both_backends! {
    async fn logs_never_carry_raw_personal_data(b: Backend) {
        let app = TestApp::spawn_with(&b, &[&hms_patient::SERVICE, &hms_doctor::SERVICE, &hms_appointment::SERVICE, &hms_notification::SERVICE],
            hms_kit::clock::Clock::manual("2026-11-30T00:00:00Z".parse().unwrap()), |_| {}).await;
        let tag = if b.is_postgres() { "pg" } else { "lite" };
        let name = format!("Zephyrine Quillfeather{tag}");
        let email = format!("zq.unique{tag}7731@example.org");
        let phone = if b.is_postgres() { "9000077731" } else { "9000077732" };
        let new_phone = if b.is_postgres() { "9000077741" } else { "9000077742" };
        let desk = app.client(Role::Reception);
        let p = desk.create_patient(&NewPatient {
            patient_id: None, name: name.clone(), email: Some(email.clone()), phone: phone.into(),
            dob: "1979-03-04".parse().unwrap(), created_at: None,
        }).await.unwrap();
        desk.get_patient(p.patient_id).await.unwrap();
        desk.list_patients(&PatientQuery { name: Some(name.clone()), ..Default::default() }).await.unwrap();
        desk.list_patients(&PatientQuery { phone: Some(phone.into()), ..Default::default() }).await.unwrap();
        desk.list_patients(&PatientQuery { email: Some(email.clone()), ..Default::default() }).await.unwrap();
        desk.update_patient(p.patient_id, &PatientUpdate { phone: Some(new_phone.into()), ..Default::default() }, None).await.unwrap();
        // A rejected update with a bad e-mail must not echo it into the logs either.
        let _ = desk.update_patient(p.patient_id, &PatientUpdate { email: Some(format!("{email} bad")), ..Default::default() }, None).await;
        app.client(Role::Admin).patient_audit(p.patient_id, None, None).await.unwrap();
        desk.deactivate_patient(p.patient_id).await.unwrap();
        let mut doctor = new_doctor(&format!("Dr. Ottoline Brackenridge{tag}"), "Neurology", "Neurologist");
        doctor.email = Some(format!("ob.unique{tag}@example.org"));
        doctor.phone = Some(if b.is_postgres() { "9111177731" } else { "9111177732" }.into());
        let d = app.client(Role::Admin).create_doctor(&doctor).await.unwrap();
        app.client(Role::Reception).get_doctor(d.doctor_id).await.unwrap();
        // Book, and let the notification service look up the contact details and send.
        let patient = app.client(Role::Reception).create_patient(&NewPatient {
            patient_id: None, name: format!("{name} Junior"), email: Some(format!("junior.{email}")), phone: phone.into(),
            dob: "2001-03-04".parse().unwrap(), created_at: None,
        }).await.unwrap();
        app.client(Role::Reception).book_appointment(&hms_client::models::NewAppointment {
            patient_id: patient.patient_id, doctor_id: d.doctor_id, department: "Neurology".into(),
            slot_start: "2026-12-01T03:30:00Z".parse().unwrap(), slot_end: None,
        }, None).await.unwrap();
        let desk = app.client(Role::Reception);
        eventually(15, "the confirmation sent", || async {
            let n = desk.list_notifications(&hms_client::models::NotificationQuery { patient_id: Some(patient.patient_id), ..Default::default() }).await.ok()?;
            (n.items.len() == 2 && n.items.iter().all(|x| x.status == "sent")).then_some(())
        }).await;

        let logs = logs();
        let masked_name = hms_kit::pii::mask_name(&name);
        assert!(logs.contains(&masked_name), "the workflow was logged, masked ({masked_name})");
        for raw in [name.as_str(), "Zephyrine", &format!("Quillfeather{tag}"), email.as_str(), phone, new_phone,
                    doctor.name.as_str(), "Ottoline", doctor.email.as_deref().unwrap(), doctor.phone.as_deref().unwrap()] {
            assert!(!logs.contains(raw), "raw PII {raw:?} found in the logs");
        }
        assert!(!logs.contains("Bearer "), "tokens are never logged");
        app.stop().await;
    }
}

//! `hmsctl import` on a legacy set this test writes itself, dated relative to today, holding
//! each kind of dirt the old system's exports have: every row is accounted for, history is
//! kept with warnings, the books hold the live invariants, and a dry run says what the real
//! run does.

use super::{code, hmsctl, json};
use crate::EVERY_SERVICE;
use chrono::{Datelike, Duration, NaiveDate, TimeZone, Utc};
use hms_client::models::{BillQuery, NewAppointment, NewPayment};
use hms_client::{Money, Service};
use hms_kit::auth::Role;
use hms_testkit::{both_backends, eventually, new_patient, TestApp};
use std::collections::HashMap;
use std::path::Path;

fn m(s: &str) -> Money {
    s.parse().unwrap()
}

/// The report as (file, line) → (id, outcome, reason), totals left out.
fn outcomes(path: &Path) -> HashMap<(String, String), (String, String, String)> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.records()
        .map(|x| x.unwrap())
        .filter(|x| &x[3] != "total")
        .map(|x| {
            (
                (x[0].to_string(), x[1].to_string()),
                (x[2].to_string(), x[3].to_string(), x[4].to_string()),
            )
        })
        .collect()
}

/// Writes the legacy set: `past` and `future` are clinic dates.
fn write_set(dir: &Path, past: NaiveDate, future: NaiveDate) {
    let files = [
        ("hms_doctors.csv", "doctor_id,name,email,phone,department,specialization,created_at\n\
            1,Dr. Asha Rao,asha@example.com,9000000001,Cardiology,Cardiologist,2024-01-01 09:00:00\n\
            2,Dr. Vikram Sen,vikram@example.com,9000000002,pediatrics,Pediatrician,2024-01-01T09:00:00Z\n".to_string()),
        ("hms_patients.csv", "patient_id,name,email,phone,dob,created_at\n\
            1,Meera Iyer,meera@example.com,9100000001,1980-05-01,2024-02-01 10:00:00\n\
            2,Arjun Das,arjun@example.com,9100000002,1975-03-10,2024-02-01 10:00:00\n\
            \n\
            8,Broken Date,broken@example.com,9100000008,2023-02-30,2024-02-01 10:00:00\n\
            9,\"Unclosed Quote,q@example.com,9100000009,1990-01-01,2024-02-01 10:00:00\n\
            10,Too,Many,Fields,9100000010,1990-01-01,2024-02-01 10:00:00\n\
            3,Kiran Rao,kiran@example.com,9100000003,1992-07-07,2024-02-01 10:00:00\n".to_string()),
        ("hms_appointments.csv", format!("appointment_id,patient_id,doctor_id,department,slot_start,slot_end,status,created_at\n\
            1,1,1,Cardiology,{past} 09:30:00,{past} 10:00:00,COMPLETED,2024-03-01 09:00:00\n\
            2,2,1,cardiology,{future}T10:00:00+05:30,{future}T10:30:00+05:30,scheduled,2024-03-01 09:00:00\n\
            3,3,1,Cardiology,{future} 10:00,{future} 10:30,SCHEDULED,2024-03-01 09:00:00\n\
            4,8,2,Pediatrics,{past} 11:00:00,{past} 11:30:00,COMPLETED,2024-03-01 09:00:00\n\
            5,1,2,Pediatrics,{past}T05:30:00Z,{past}T06:00:00Z,SCHEDULED,2024-03-01 09:00:00\n\
            6,2,1,Cardiology,{past} 12:00:00,{past} 12:30:00,CANCELLED,2024-03-01 09:00:00\n\
            7,3,1,Cardiology,{past} 14:00:00,{past} 14:30:00,COMPLETED,2024-03-01 09:00:00\n")),
        ("hms_prescriptions.csv", format!("prescription_id,appointment_id,patient_id,doctor_id,medication,dosage,days,issued_at\n\
            1,1,1,1,Paracetamol,1-0-1,5,{past} 10:00:00\n\
            2,6,3,1,Amoxicillin,as needed,3,{past} 12:30:00\n\
            3,4,8,2,Paracetamol,1-0-1,2,{past} 11:30:00\n")),
        ("hms_bills.csv", format!("bill_id,patient_id,appointment_id,amount,status,created_at\n\
            1,1,1,750.50,PAID,{past} 10:05:00\n\
            2,2,6,\"1,200\",paid,{past} 12:35:00\n\
            3,3,7,1000.00,OPEN,{past} 14:35:00\n")),
        ("hms_payments.csv", format!("payment_id,bill_id,amount,method,reference,paid_at\n\
            1,1,750.50,CASH,R-1,{past} 10:10:00\n\
            2,3,400.00,Cheque,R-2,{past} 14:40:00\n\
            3,3,2000.00,UPI,R-3,{past} 14:45:00\n")),
    ];
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        let text: String = text
            .lines()
            .map(|l| format!("{}\n", l.trim_start()))
            .collect();
        std::fs::write(dir.join(name), text).unwrap();
    }
}

both_backends! {
    async fn a_dirty_legacy_set_imports_under_the_live_rules(b: Backend) {
        let app = TestApp::spawn(&b, &EVERY_SERVICE).await;
        let ist = chrono_tz::Asia::Kolkata;
        let today = Utc::now().with_timezone(&ist).date_naive();
        let past = today - Duration::days(30);
        let mut future = today + Duration::days(7);
        while future.weekday().number_from_monday() > 5 {
            future = future.succ_opt().unwrap();
        }
        let dir = app.dir.path().join("legacy");
        write_set(&dir, past, future);
        let dir_s = dir.to_str().unwrap();
        let (dry_report, report) = (app.dir.path().join("dry.csv"), app.dir.path().join("real.csv"));

        let dry = hmsctl(&app, Some(Role::Admin), &["import", dir_s, "--dry-run", "--report", dry_report.to_str().unwrap(), "-o", "json"]);
        assert_eq!(code(&dry), 8, "{}", String::from_utf8_lossy(&dry.stderr));
        let real = hmsctl(&app, Some(Role::Admin), &["import", dir_s, "--report", report.to_str().unwrap(), "-o", "json"]);
        assert_eq!(code(&real), 8, "{}", String::from_utf8_lossy(&real.stderr));
        let got = outcomes(&report);
        assert_eq!(outcomes(&dry_report), got, "a dry run's outcomes are the real run's");
        let row = |file: &str, line: usize| got.get(&(file.to_string(), line.to_string())).cloned().unwrap_or_else(|| panic!("{file}:{line} in {got:#?}"));
        let is = |file: &str, line: usize, outcome: &str, says: &[&str]| {
            let (_, o, reason) = row(file, line);
            assert_eq!(o, outcome, "{file}:{line}: {reason}");
            for s in says {
                assert!(reason.contains(s), "{file}:{line}: {reason:?} should say {s:?}");
            }
        };
        // Each kind of dirt, on its physical line (a blank line shifts nothing).
        is("hms_doctors.csv", 3, "warning", &["department 'pediatrics' read as Pediatrics"]);
        is("hms_patients.csv", 5, "rejected", &["dob '2023-02-30' is not a date"]);
        is("hms_patients.csv", 6, "rejected", &["quote"]);
        is("hms_patients.csv", 7, "rejected", &["7 fields, the header 6"]);
        is("hms_patients.csv", 8, "imported", &[]);
        assert_eq!(row("hms_patients.csv", 7).0, "10", "a malformed row keeps its id in the report");
        // A future SCHEDULED appointment holds its slot; a second one on it names the first.
        is("hms_appointments.csv", 3, "warning", &["status 'scheduled' read as SCHEDULED", "consultation fee"]);
        is("hms_appointments.csv", 4, "rejected", &["appointment 2"]);
        // A reference to a rejected row says which and why.
        is("hms_appointments.csv", 5, "rejected", &["patient 8 was rejected", "line 5", "dob '2023-02-30' is not a date"]);
        is("hms_prescriptions.csv", 3, "warning", &["CANCELLED", "patient 3 differs", "dosage 'as needed'"]);
        is("hms_prescriptions.csv", 4, "rejected", &["appointment 4 was rejected"]);
        is("hms_bills.csv", 3, "warning", &["amount '1,200' read as 1200.00", "status 'paid' read as PAID"]);
        is("hms_payments.csv", 3, "warning", &["'Cheque'"]);
        is("hms_payments.csv", 4, "rejected", &["2000.00"]);

        // Legacy local times are clinic time; offsets are read as written.
        let admin = app.client(Role::Admin);
        let local = |d: NaiveDate, h: u32, mi: u32| ist.from_local_datetime(&d.and_hms_opt(h, mi, 0).unwrap()).unwrap().with_timezone(&Utc);
        assert_eq!(admin.get_appointment(1).await.unwrap().slot_start, local(past, 9, 30));
        let slot = local(future, 10, 0);
        assert_eq!(admin.get_appointment(2).await.unwrap().slot_start, slot);
        // The held slot: a live booking of it is 409, availability leaves it out, the day counts it.
        let desk = app.client(Role::Reception);
        let taken = desk.book_appointment(&NewAppointment { patient_id: 3, doctor_id: 1, department: "Cardiology".into(), slot_start: slot, slot_end: None }, None).await.unwrap_err();
        assert!(taken.to_string().contains("slot_taken") || matches!(&taken, hms_client::ClientError::Api { status: 409, .. }), "{taken}");
        eventually(10, "availability leaves the held slot out", || async {
            let a = desk.doctor_availability(1, future).await.unwrap();
            (!a.slots.is_empty() && !a.slots.iter().any(|s| s.slot_start == slot)).then_some(())
        }).await;
        let counted: i64 = sqlx::query_scalar("SELECT CAST(booked AS BIGINT) FROM doctor_day_load WHERE doctor_id = 1")
            .fetch_one(app.db(Service::Appointment).pool()).await.unwrap();
        assert_eq!(counted, 1);
        // A past SCHEDULED one is history; completed now, it bills the doctor's fee + 5%.
        desk.transition_appointment(5, "complete", None).await.unwrap();
        let bill = eventually(10, "the completed legacy appointment's bill", || async {
            app.client(Role::Billing).list_bills(&BillQuery { appointment_id: Some(5), ..Default::default() }).await.unwrap().items.into_iter().next()
        }).await;
        assert_eq!(bill.total, m("525.00"));

        // The books: legacy figures kept, PAID stays PAID, an OPEN bill paid off live exactly.
        let billing = app.client(Role::Billing);
        let b1 = billing.get_bill(1).await.unwrap();
        assert_eq!((b1.status.as_str(), b1.total, b1.tax, b1.paid, b1.balance), ("PAID", m("750.50"), Money::ZERO, m("750.50"), Money::ZERO));
        let b2 = billing.get_bill(2).await.unwrap();
        assert_eq!((b2.status.as_str(), b2.total, b2.balance), ("PAID", m("1200.00"), Money::ZERO), "PAID without its payments");
        let pay = |bill_id: i64, amount: &str| NewPayment { bill_id, amount: m(amount), method: "CASH".into() };
        assert!(desk.pay(&pay(2, "1.00"), "live-2").await.is_err(), "nothing is owed on a PAID bill");
        assert!(desk.pay(&pay(3, "600.01"), "live-3a").await.is_err(), "never more than the balance");
        desk.pay(&pay(3, "600.00"), "live-3b").await.unwrap();
        let b3 = eventually(10, "bill 3 paid off", || async {
            let b = billing.get_bill(3).await.unwrap();
            (b.status == "PAID").then_some(b)
        }).await;
        assert_eq!((b3.total, b3.tax, b3.paid, b3.balance), (m("1000.00"), Money::ZERO, m("1000.00"), Money::ZERO));
        for id in [1, 3] {
            let paid: i64 = billing.payments_of_bill(id).await.unwrap().items.iter().map(|p| p.amount.0).sum();
            assert_eq!(Money(paid), billing.get_bill(id).await.unwrap().paid, "billing and payment agree on bill {id}");
        }
        // A live record never takes a legacy id, imported or rejected (patient 10's line was malformed).
        let live = desk.create_patient(&new_patient("Live After Import", 4)).await.unwrap();
        assert!(live.patient_id > 10, "{}", live.patient_id);

        // A delta import (ids above what HMS has made live since): its rows refer to records
        // already in HMS; missing files are said, the rest imported.
        let delta = app.dir.path().join("delta");
        std::fs::create_dir_all(&delta).unwrap();
        std::fs::write(delta.join("hms_bills.csv"), "bill_id,patient_id,appointment_id,amount,status,created_at\n40,1,1,80.00,OPEN,\n").unwrap();
        std::fs::write(delta.join("hms_payments.csv"), format!("payment_id,bill_id,amount,method,reference,paid_at\n40,40,80.00,CARD,R-40,{past} 10:25:00\n")).unwrap();
        let delta_report = app.dir.path().join("delta.csv");
        let out = hmsctl(&app, Some(Role::Admin), &["import", delta.to_str().unwrap(), "--report", delta_report.to_str().unwrap(), "-o", "json"]);
        let said = std::fs::read_to_string(&delta_report).unwrap();
        assert!(said.contains("created_at is empty; the time of import is recorded"), "nothing filled in silently: {said}");
        assert_eq!(code(&out), 8, "missing files make the import partial");
        assert!(String::from_utf8_lossy(&out.stderr).contains("hms_patients.csv") , "{}", String::from_utf8_lossy(&out.stderr));
        let totals = json(&out);
        let of = |f: &str| totals.as_array().unwrap().iter().find(|t| t["file"] == f).unwrap().clone();
        assert_eq!(of("hms_bills.csv")["warning"].as_u64().unwrap() + of("hms_bills.csv")["imported"].as_u64().unwrap(), 1);
        assert_eq!(of("hms_payments.csv")["imported"].as_u64().unwrap(), 1);
        // The same id with other content is a conflict, not "already present".
        std::fs::write(delta.join("hms_bills.csv"), "bill_id,patient_id,appointment_id,amount,status,created_at\n40,1,1,90.00,OPEN,\n").unwrap();
        let again = json(&hmsctl(&app, Some(Role::Admin), &["import", delta.to_str().unwrap(), "-o", "json"]));
        let bills = again.as_array().unwrap().iter().find(|t| t["file"] == "hms_bills.csv").unwrap().clone();
        assert_eq!(bills["conflict"].as_u64().unwrap(), 1, "{again}");
        app.stop().await;
    }
}

//! A day at the desk with the real binary, no terminal: clinic time read and shown (labelled),
//! the day sheet with names, lists that say when there is more, payments that cannot be taken
//! twice by accident, a bill's payments and refunds by bill, output that pipes cleanly.

use super::{code, hmsctl, json};
use crate::EVERY_SERVICE;
use chrono::{Datelike, Duration, Utc};
use hms_client::models::{LegacyAppointment, LegacyBill};
use hms_kit::auth::Role;
use hms_testkit::{both_backends, new_doctor, new_patient, TestApp};
use std::io::Read;
use std::process::{Command, Stdio};

fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

both_backends! {
    async fn a_day_at_the_desk_without_curl(b: Backend) {
        let app = TestApp::spawn(&b, &EVERY_SERVICE).await;
        let admin = app.client(Role::Admin);
        let meera = admin.create_patient(&new_patient("Meera Iyer", 11)).await.unwrap().patient_id;
        admin.create_patient(&new_patient("Arjun Das", 12)).await.unwrap();
        admin.create_patient(&new_patient("Kiran Rao", 13)).await.unwrap();
        let doctor = admin.create_doctor(&new_doctor("Dr. Asha Rao", "Cardiology", "Cardiologist")).await.unwrap().doctor_id;
        let desk = Some(Role::Reception);

        // Booking reads --at in the clinic's zone (IST here), whatever the machine's zone.
        let ist = chrono_tz::Asia::Kolkata;
        let mut day = Utc::now().with_timezone(&ist).date_naive() + Duration::days(3);
        while day.weekday().number_from_monday() > 5 {
            day = day.succ_opt().unwrap();
        }
        let (p, d) = (meera.to_string(), doctor.to_string());
        let at = format!("{day} 10:00");
        let out = hmsctl(&app, desk, &["appointment", "book", "--patient", &p, "--doctor", &d, "--department", "Cardiology", "--at", &at, "-o", "json"]);
        assert_eq!(code(&out), 0, "{}", text(&out).1);
        let booked = json(&out);
        assert_eq!(booked["slot_start"], format!("{day}T04:30:00Z"), "10:00 IST");

        // The day sheet: names, the clinic's time labelled, into a pipe without box drawing.
        let out = hmsctl(&app, desk, &["appointment", "list", "--date", &day.to_string()]);
        let (sheet, err) = text(&out);
        assert_eq!(code(&out), 0, "{err}");
        assert!(sheet.contains("Meera Iyer") && sheet.contains("Dr. Asha Rao"), "{sheet}");
        assert!(sheet.contains("10:00") && sheet.contains("IST"), "{sheet}");
        assert!(sheet.contains("₹500.00"), "the fee, not a decision: {sheet}");
        assert!(!sheet.contains('│') && !sheet.contains('─'), "plain columns into a pipe: {sheet}");
        let json_sheet = json(&hmsctl(&app, desk, &["appointment", "list", "--date", &day.to_string(), "-o", "json"]));
        assert_eq!(json_sheet[0]["patient_id"], meera, "ids stay in JSON");
        let out = hmsctl(&app, desk, &["appointment", "list", "--date", "31/12/2026"]);
        assert_eq!(code(&out), 2);
        assert!(text(&out).1.contains("YYYY-MM-DD"), "{}", text(&out).1);

        // Lists say when there is more, and --all shows it.
        let out = hmsctl(&app, desk, &["patient", "list", "--limit", "2", "-o", "json"]);
        assert_eq!(json(&out).as_array().unwrap().len(), 2);
        assert!(text(&out).1.contains("more exist"), "{}", text(&out).1);
        let out = hmsctl(&app, desk, &["patient", "list", "--limit", "2", "--all", "-o", "json"]);
        assert_eq!(json(&out).as_array().unwrap().len(), 3);
        assert!(!text(&out).1.contains("more exist"));
        assert_eq!(code(&hmsctl(&app, desk, &["patient", "list", "--limit", "1000"])), 2);

        // Payments: --method needed without a terminal; a retried key is not charged again.
        admin.import_appointment(&LegacyAppointment {
            appointment_id: 500, patient_id: meera, doctor_id: doctor, department: "Cardiology".into(),
            slot_start: Utc::now() - Duration::days(2), slot_end: Utc::now() - Duration::days(2) + Duration::minutes(30),
            status: "COMPLETED".into(), created_at: Utc::now() - Duration::days(3), consultation_fee: None,
        }).await.unwrap();
        admin.import_bill(&LegacyBill {
            bill_id: 500, patient_id: meera, appointment_id: 500, amount: "683.03".parse().unwrap(),
            status: "OPEN".into(), created_at: Utc::now() - Duration::days(2),
        }).await.unwrap();
        let out = hmsctl(&app, desk, &["pay", "--bill", "500", "--amount", "300"]);
        assert_eq!(code(&out), 2);
        assert!(text(&out).1.contains("--method is required"), "{}", text(&out).1);
        let pay = ["pay", "--bill", "500", "--amount", "300", "--method", "upi", "--key", "desk-key-1", "-o", "json"];
        let first = hmsctl(&app, desk, &pay);
        assert_eq!(code(&first), 0, "{}", text(&first).1);
        assert!(json(&first).get("replayed").is_none());
        let again = hmsctl(&app, desk, &pay);
        assert_eq!(code(&again), 0);
        assert!(text(&again).1.contains("not charged again"), "{}", text(&again).1);
        assert_eq!(json(&again)["replayed"], true);
        assert_eq!(json(&again)["payment_id"], json(&first)["payment_id"]);
        let listed = json(&hmsctl(&app, desk, &["payment", "list", "--bill", "500", "-o", "json"]));
        assert_eq!(listed.as_array().unwrap().len(), 1, "charged once: {listed}");

        // A refund by bill (no payment id needed), and the bill shows what was refunded.
        let out = hmsctl(&app, Some(Role::Billing), &["refund", "--bill", "500", "--amount", "46.00", "--reason", "overcharged", "-o", "json"]);
        assert_eq!(code(&out), 0, "{}", text(&out).1);
        assert_eq!(json(&out)["amount"], "46.00");
        let bill = hmsctl(&app, Some(Role::Billing), &["bill", "show", "500"]);
        let shown = text(&bill).0;
        assert!(shown.contains("Refunded") && shown.contains("Balance"), "{shown}");

        // Lists people read show names (ids stay in JSON).
        let bills = text(&hmsctl(&app, desk, &["bill", "list", "--patient", &p])).0;
        assert!(bills.contains("Meera Iyer (") && bills.contains("₹683.03"), "{bills}");

        // A medication by its formulary id; an empty availability says why.
        let formulary = json(&hmsctl(&app, desk, &["formulary", "list", "-o", "json"]));
        let para = formulary.as_array().unwrap().iter().find(|m| m["name"] == "Paracetamol").unwrap()["medication_id"].to_string();
        let appt = booked["appointment_id"].to_string();
        let out = hmsctl(&app, Some(Role::Admin), &["rx", "add", "--appointment", &appt, "--patient", &p, "--doctor", &d,
                                                   "--medication", &para, "--dosage", "1-0-1", "--days", "2", "-o", "json"]);
        assert_eq!(code(&out), 0, "{}", text(&out).1);
        assert_eq!(json(&out)["medication"], "Paracetamol");
        let rx = text(&hmsctl(&app, desk, &["rx", "list", "--patient", &p])).0;
        assert!(rx.contains("Meera Iyer (") && rx.contains("Dr. Asha Rao ("), "{rx}");
        let mut sunday = day;
        while sunday.weekday().number_from_monday() != 7 {
            sunday = sunday.succ_opt().unwrap();
        }
        let out = hmsctl(&app, desk, &["doctor", "availability", &d, "--date", &sunday.to_string()]);
        assert!(text(&out).0.contains("not working"), "{}", text(&out).0);

        // Completions into a reader that stops after one line: no panic.
        let mut child = Command::new(env!("CARGO_BIN_EXE_hmsctl")).args(["completions", "zsh"])
            .stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut first_byte = [0u8; 1];
        child.stdout.as_mut().unwrap().read_exact(&mut first_byte).unwrap();
        drop(child.stdout.take());
        let status = child.wait().unwrap();
        assert!(status.code() != Some(101), "panicked on a closed pipe");
        app.stop().await;
    }
}

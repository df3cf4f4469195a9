//! Legacy data enters through the same rules as live requests: imported bills keep their
//! figures and status, imported payments neither re-tax nor reopen them, a future SCHEDULED
//! appointment holds its slot like a booking, history is kept with warnings, a re-run compares
//! content, and the legacy ids are never handed to live records.

use crate::both_backends;
use crate::support::*;
use crate::EVERY_SERVICE;
use chrono::{DateTime, Duration, Utc};
use hms_client::models::{
    LegacyAppointment, LegacyBill, LegacyPayment, LegacyPrescription, NewAppointment, NewPayment,
};
use hms_client::{ClientError, HmsClient, Money, Service};
use hms_kit::auth::Role;
use hms_kit::clock::Clock;

/// 09:00 IST on Tuesday 2026-12-01, plus `h` hours (the clock stands at 2026-11-30 00:00Z).
fn tue(h: i64) -> DateTime<Utc> {
    "2026-12-01T03:30:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::hours(h)
}

fn m(s: &str) -> Money {
    s.parse().unwrap()
}

fn code(e: ClientError) -> String {
    match e {
        ClientError::Api { body, .. } => format!("{}: {}", body.code, body.message),
        other => panic!("{other}"),
    }
}

fn appointment(
    id: i64,
    patient: i64,
    doctor: i64,
    at: DateTime<Utc>,
    status: &str,
) -> LegacyAppointment {
    LegacyAppointment {
        appointment_id: id,
        patient_id: patient,
        doctor_id: doctor,
        department: "Cardiology".into(),
        slot_start: at,
        slot_end: at + Duration::minutes(30),
        status: status.into(),
        created_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        consultation_fee: None,
    }
}

fn bill(id: i64, patient: i64, appointment: i64, amount: &str, status: &str) -> LegacyBill {
    LegacyBill {
        bill_id: id,
        patient_id: patient,
        appointment_id: appointment,
        amount: m(amount),
        status: status.into(),
        created_at: "2026-01-02T00:00:00Z".parse().unwrap(),
    }
}

fn payment(id: i64, bill: i64, amount: &str, method: &str) -> LegacyPayment {
    LegacyPayment {
        payment_id: id,
        bill_id: bill,
        amount: m(amount),
        method: method.into(),
        reference: format!("LEGACY-{id}"),
        paid_at: "2026-01-03T00:00:00Z".parse().unwrap(),
    }
}

async fn setup(b: &Backend) -> (TestApp, HmsClient, i64, i64, i64) {
    let app = TestApp::spawn_with(
        b,
        &EVERY_SERVICE,
        Clock::manual("2026-11-30T00:00:00Z".parse().unwrap()),
        |_| {},
    )
    .await;
    let admin = app.client(Role::Admin);
    let p1 = admin
        .create_patient(&new_patient("Legacy One", 1))
        .await
        .unwrap()
        .patient_id;
    let p2 = admin
        .create_patient(&new_patient("Legacy Two", 2))
        .await
        .unwrap()
        .patient_id;
    let d = admin
        .create_doctor(&new_doctor("Dr. Legacy", "Cardiology", "General"))
        .await
        .unwrap()
        .doctor_id;
    (app, admin, p1, p2, d)
}

both_backends! {
    async fn legacy_bills_keep_their_figures_and_payments_settle_them_exactly(b: Backend) {
        let (app, admin, p, _, d) = setup(&b).await;
        for (id, status) in [(101, "COMPLETED"), (102, "COMPLETED"), (103, "COMPLETED"), (104, "COMPLETED")] {
            admin.import_appointment(&appointment(id, p, d, tue(-24 * 30 + id - 100), status)).await.unwrap();
        }
        // PAID with its payment, PAID without, OPEN part-paid by a legacy cheque, OPEN unpaid.
        for l in [bill(201, p, 101, "750.50", "PAID"), bill(202, p, 102, "300.00", "paid"),
                  bill(203, p, 103, "1000.00", "OPEN"), bill(204, p, 104, "200.00", "OPEN")] {
            assert_eq!(admin.import_bill(&l).await.unwrap().outcome, "imported");
        }
        assert_eq!(admin.import_payment(&payment(301, 201, "750.50", "CASH")).await.unwrap().outcome, "imported");
        let cheque = admin.import_payment(&payment(302, 203, "400.00", "Cheque")).await.unwrap();
        assert!(cheque.warnings.iter().any(|w| w.contains("'Cheque'")), "{cheque:?}");
        // More than the bill, or against a VOID one, contradicts it: refused with the reason.
        let over = admin.import_payment(&payment(303, 204, "200.01", "UPI")).await.unwrap_err();
        assert!(code(over).starts_with("overpayment"));

        let settled = |id: i64, status: &'static str, paid: &'static str| {
            let c = app.client(Role::Billing);
            async move {
                eventually(10, "the bill settles", || async {
                    let b = c.get_bill(id).await.unwrap();
                    (b.status == status && b.paid == m(paid)).then_some(b)
                }).await
            }
        };
        // The legacy amount is the total: never re-taxed; the legacy status stands.
        let b201 = settled(201, "PAID", "750.50").await;
        assert_eq!((b201.tax, b201.total, b201.balance), (Money::ZERO, m("750.50"), Money::ZERO));
        let b202 = settled(202, "PAID", "300.00").await;
        assert_eq!(b202.balance, Money::ZERO);
        let b203 = settled(203, "OPEN", "400.00").await;
        assert_eq!((b203.total, b203.balance), (m("1000.00"), m("600.00")));

        // Live payments: nothing on a PAID bill; exactly the balance on an OPEN one.
        let desk = app.client(Role::Reception);
        let pay = |bill_id: i64, amount: &str| NewPayment { bill_id, amount: m(amount), method: "CARD".into() };
        assert!(code(desk.pay(&pay(202, "1.00"), "k-202").await.unwrap_err()).starts_with("bill_not_payable"));
        assert!(code(desk.pay(&pay(203, "600.01"), "k-203a").await.unwrap_err()).starts_with("overpayment"));
        desk.pay(&pay(203, "600.00"), "k-203b").await.unwrap();
        desk.pay(&pay(204, "200.00"), "k-204").await.unwrap();
        let b203 = settled(203, "PAID", "1000.00").await;
        assert_eq!((b203.tax, b203.total, b203.balance), (Money::ZERO, m("1000.00"), Money::ZERO));
        let b204 = settled(204, "PAID", "200.00").await;
        assert_eq!((b204.tax, b204.total), (Money::ZERO, m("200.00")), "200.00 paid off an imported 200.00");

        // Billing and payment agree, bill by bill, where payments were recorded.
        for id in [201, 203, 204] {
            let bill = app.client(Role::Billing).get_bill(id).await.unwrap();
            let paid: i64 = app.client(Role::Billing).payments_of_bill(id).await.unwrap().items.iter().map(|p| p.amount.0).sum();
            assert_eq!(Money(paid), bill.paid, "bill {id}");
        }
        // A re-run is already present; a different bill under a taken id is a conflict.
        assert_eq!(admin.import_bill(&bill(201, p, 101, "750.50", "PAID")).await.unwrap().outcome, "already_present");
        assert!(code(admin.import_bill(&bill(201, p, 101, "750.00", "PAID")).await.unwrap_err()).starts_with("import_conflict"));
        assert_eq!(admin.import_payment(&payment(301, 201, "750.50", "CASH")).await.unwrap().outcome, "already_present");
        assert!(code(admin.import_payment(&payment(301, 201, "75.05", "CASH")).await.unwrap_err()).starts_with("import_conflict"));
        app.stop().await;
    }
}

both_backends! {
    async fn a_future_legacy_appointment_holds_its_slot_like_a_booking(b: Backend) {
        let (app, admin, p1, p2, d) = setup(&b).await;
        let slot = tue(2);
        let first = admin.import_appointment(&appointment(401, p1, d, slot, "scheduled")).await.unwrap();
        assert_eq!(first.outcome, "imported");
        assert!(first.warnings.iter().any(|w| w.contains("500.00")), "the doctor's fee, said: {first:?}");
        // A second legacy row for the same doctor and slot is refused, naming the first.
        let clash = code(admin.import_appointment(&appointment(402, p2, d, slot, "SCHEDULED")).await.unwrap_err());
        assert!(clash.starts_with("slot_taken") && clash.contains("appointment 401"), "{clash}");
        // A live booking of it is 409; the patient is busy at that time elsewhere too.
        let other = admin.create_doctor(&new_doctor("Dr. Other", "Cardiology", "General")).await.unwrap().doctor_id;
        let book = |patient_id: i64, doctor_id: i64| NewAppointment {
            patient_id, doctor_id, department: "Cardiology".into(), slot_start: slot, slot_end: None,
        };
        let desk = app.client(Role::Reception);
        assert!(code(desk.book_appointment(&book(p2, d), None).await.unwrap_err()).starts_with("slot_taken"));
        assert!(code(desk.book_appointment(&book(p1, other), None).await.unwrap_err()).starts_with("patient_busy"));
        // Availability leaves it out; the doctor's day counts it.
        let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        eventually(10, "availability leaves the slot out", || async {
            let a = desk.doctor_availability(d, day).await.unwrap();
            (!a.slots.iter().any(|s| s.slot_start == slot)).then_some(())
        }).await;
        let counted: i64 = sqlx::query_scalar("SELECT CAST(booked AS BIGINT) FROM doctor_day_load WHERE doctor_id = $1")
            .bind(d).fetch_one(app.db(Service::Appointment).pool()).await.unwrap();
        assert_eq!(counted, 1);
        // A past SCHEDULED one is history: no claim, and completing it bills the fee + 5%.
        admin.import_appointment(&appointment(403, p2, d, tue(-48), "SCHEDULED")).await.unwrap();
        desk.transition_appointment(403, "complete", None).await.unwrap();
        let bill = eventually(10, "the bill of the completed legacy appointment", || async {
            let bills = app.client(Role::Billing).list_bills(&hms_client::models::BillQuery { appointment_id: Some(403), ..Default::default() }).await.unwrap();
            bills.items.into_iter().next()
        }).await;
        assert_eq!((bill.total, bill.status.as_str()), (m("525.00"), "OPEN"));
        // A fee the old system recorded is the appointment's fee, said without a warning.
        let recorded = admin.import_appointment(&LegacyAppointment { consultation_fee: Some(m("650.00")), ..appointment(404, p1, d, tue(-50), "SCHEDULED") }).await.unwrap();
        assert!(recorded.warnings.is_empty(), "{recorded:?}");
        desk.transition_appointment(404, "complete", None).await.unwrap();
        let bill = eventually(10, "the bill at the recorded fee", || async {
            let bills = app.client(Role::Billing).list_bills(&hms_client::models::BillQuery { appointment_id: Some(404), ..Default::default() }).await.unwrap();
            bills.items.into_iter().next()
        }).await;
        assert_eq!(bill.total, m("682.50"), "650.00 + 5%");
        // A re-run of the same rows is already present; another record under an id conflicts.
        assert_eq!(admin.import_appointment(&appointment(401, p1, d, slot, "SCHEDULED")).await.unwrap().outcome, "already_present");
        assert!(code(admin.import_appointment(&appointment(401, p2, d, slot, "SCHEDULED")).await.unwrap_err()).starts_with("import_conflict"));
        app.stop().await;
    }
}

both_backends! {
    async fn history_is_kept_with_warnings_and_legacy_ids_are_never_reused(b: Backend) {
        let (app, admin, p1, p2, d) = setup(&b).await;
        admin.import_appointment(&appointment(501, p1, d, tue(-72), "CANCELLED")).await.unwrap();
        let rx = |id: i64, patient: i64, dosage: &str| LegacyPrescription {
            prescription_id: id, appointment_id: 501, patient_id: patient, doctor_id: d,
            medication: "paracetamol".into(), dosage: dosage.into(), days: 3,
            issued_at: "2026-01-05T00:00:00Z".parse().unwrap(),
        };
        let kept = admin.import_prescription(&rx(601, p2, "as needed")).await.unwrap();
        assert_eq!(kept.outcome, "imported");
        let said = kept.warnings.join(" | ");
        assert!(said.contains("CANCELLED") && said.contains("differs") && said.contains("'as needed'"), "{said}");
        assert_eq!(admin.get_prescription(601).await.unwrap().dosage, "as needed");
        assert_eq!(admin.import_prescription(&rx(601, p2, "as needed")).await.unwrap().outcome, "already_present");
        assert!(code(admin.import_prescription(&rx(601, p2, "1-0-1")).await.unwrap_err()).starts_with("import_conflict"));

        // Reserved ids (the highest of each legacy file, imported or not) are never handed out.
        for (svc, records) in [(Service::Patient, "patients"), (Service::Doctor, "doctors"), (Service::Appointment, "appointments"),
                               (Service::Prescription, "prescriptions"), (Service::Billing, "bills"), (Service::Payment, "payments")] {
            admin.reserve_legacy_ids(svc, records, 900).await.unwrap();
            admin.reserve_legacy_ids(svc, records, 800).await.unwrap();
        }
        let live = app.client(Role::Reception).create_patient(&new_patient("Live After Import", 3)).await.unwrap();
        assert_eq!(live.patient_id, 901, "past the reservation, and a lower one never moves it back");
        let doctor = admin.create_doctor(&new_doctor("Dr. Live", "Cardiology", "General")).await.unwrap();
        assert_eq!(doctor.doctor_id, 901);
        let booked = app.client(Role::Reception).book_appointment(&NewAppointment {
            patient_id: live.patient_id, doctor_id: d, department: "Cardiology".into(), slot_start: tue(3), slot_end: None,
        }, None).await.unwrap();
        assert_eq!(booked.appointment_id, 901);
        app.stop().await;
    }
}

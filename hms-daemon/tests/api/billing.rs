//! Billing and payment: exact bills, fees at the boundary, idempotent charges and refunds,
//! never a double charge, never more than owed — on both backends, with two payment instances
//! on PostgreSQL.

use crate::both_backends;
use crate::support::*;
use crate::EVERY_SERVICE;
use chrono::{DateTime, Duration, Utc};
use hms_client::models::{
    Bill, BillQuery, NewAdjustment, NewAppointment, NewPayment, NewPrescription, NewRefund,
};
use hms_client::{ClientError, HmsClient, Money};
use hms_kit::auth::Role;
use hms_kit::clock::Clock;
use hms_kit::Service;
use reqwest::Method;
use std::collections::BTreeMap;

/// 09:00 IST on Tuesday 2026-12-01, plus `h` hours.
fn tue(h: i64) -> DateTime<Utc> {
    "2026-12-01T03:30:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::hours(h)
}

struct Clinic {
    app: TestApp,
    patient: i64,
    doctor: i64,
}

async fn clinic(b: &Backend) -> Clinic {
    let app = TestApp::spawn_with(
        b,
        &EVERY_SERVICE,
        Clock::manual("2026-11-30T00:00:00Z".parse().unwrap()),
        |c| c.daily_cap = 18,
    )
    .await;
    let patient = app
        .client(Role::Reception)
        .create_patient(&new_patient("Billed Patient", 7))
        .await
        .unwrap()
        .patient_id;
    let doctor = app
        .client(Role::Admin)
        .create_doctor(&new_doctor("Dr. Fee Five Hundred", "Cardiology", "General"))
        .await
        .unwrap()
        .doctor_id;
    Clinic {
        app,
        patient,
        doctor,
    }
}

impl Clinic {
    async fn book(&self, at: DateTime<Utc>) -> i64 {
        self.app
            .client(Role::Reception)
            .book_appointment(
                &NewAppointment {
                    patient_id: self.patient,
                    doctor_id: self.doctor,
                    department: "Cardiology".into(),
                    slot_start: at,
                    slot_end: None,
                },
                None,
            )
            .await
            .unwrap()
            .appointment_id
    }

    async fn bills_of(&self, appointment: i64) -> Vec<Bill> {
        self.app
            .client(Role::Billing)
            .list_bills(&BillQuery {
                appointment_id: Some(appointment),
                ..Default::default()
            })
            .await
            .unwrap()
            .items
    }

    /// Waits for the one bill of an appointment, in a state `ready` accepts.
    async fn bill(&self, appointment: i64, ready: impl Fn(&Bill) -> bool) -> Bill {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let b = self.bills_of(appointment).await;
            if b.len() == 1 && ready(&b[0]) {
                return b[0].clone();
            }
            // Say what was there, and what is still on its way.
            if std::time::Instant::now() > deadline {
                let mut pending = Vec::new();
                for svc in [Service::Payment, Service::Appointment] {
                    let rows = sqlx::query("SELECT d.subscriber, o.event_type, d.attempts, d.state, d.last_error FROM outbox_delivery d JOIN outbox o ON o.event_id = d.event_id WHERE d.state <> 'delivered'")
                        .fetch_all(self.app.db(svc).pool()).await.unwrap_or_default();
                    for r in rows {
                        use sqlx::Row;
                        pending.push(format!(
                            "{}→{} {} attempts {} {} {:?}",
                            svc.name(),
                            r.get::<String, _>("subscriber"),
                            r.get::<String, _>("event_type"),
                            r.get::<i64, _>("attempts"),
                            r.get::<String, _>("state"),
                            r.get::<Option<String>, _>("last_error")
                        ));
                    }
                }
                panic!("timed out waiting for the bill: {b:?}\nundelivered: {pending:#?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// A no-show bill of 525.00 (500.00 + 5% tax), known to the payment service.
    async fn no_show_bill(&self, at: DateTime<Utc>) -> Bill {
        let a = self.book(at).await;
        self.app.clock.set(at + Duration::minutes(16));
        self.app
            .client(Role::Reception)
            .transition_appointment(a, "no-show", None)
            .await
            .unwrap();
        let bill = self.bill(a, |_| true).await;
        self.payment_knows(bill.bill_id).await;
        bill
    }

    /// Waits until the payment service has learnt of a bill (its read model has the row).
    async fn payment_knows(&self, bill_id: i64) {
        let pool = self.app.db(Service::Payment).pool().clone();
        eventually(15, "payment to know the bill", || {
            let pool = pool.clone();
            async move {
                let n: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM bill_balance WHERE bill_id = $1")
                        .bind(bill_id)
                        .fetch_one(&pool)
                        .await
                        .ok()?;
                (n == 1).then_some(())
            }
        })
        .await;
    }

    /// Clients for `role`, one per payment instance (two on PostgreSQL).
    async fn cashiers(&mut self, b: &Backend, role: Role) -> Vec<HmsClient> {
        let mut out = vec![self.app.client(role)];
        if b.is_postgres() {
            let url = self.app.spawn_replica(&hms_payment::SERVICE).await;
            let mut urls = self.app.client(role).urls().clone();
            urls.set(Service::Payment, url);
            out.push(
                HmsClient::new(urls, std::time::Duration::from_secs(30))
                    .with_token(self.app.token(role)),
            );
        }
        out
    }
}

fn m(s: &str) -> Money {
    s.parse().unwrap()
}

fn pay(bill: i64, amount: &str) -> NewPayment {
    NewPayment {
        bill_id: bill,
        amount: m(amount),
        method: "UPI".into(),
    }
}

fn tally<T>(results: &[Result<T, ClientError>]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in results {
        let k = match r {
            Ok(_) => "ok".to_string(),
            Err(e) => e
                .code()
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string()),
        };
        *out.entry(k).or_default() += 1;
    }
    out
}

/// Which event types `producer` wrote deliveries of to `subscriber`, sorted, once each.
async fn delivered_types(app: &TestApp, producer: Service, subscriber: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT DISTINCT o.event_type FROM outbox_delivery d JOIN outbox o ON o.event_id = d.event_id WHERE d.subscriber = $1 ORDER BY o.event_type")
        .bind(subscriber)
        .fetch_all(app.db(producer).pool())
        .await
        .unwrap()
}

both_backends! {
    async fn each_subscriber_is_sent_only_the_events_it_acts_on(b: Backend) {
        let c = clinic(&b).await;
        let moved = c.book(tue(0)).await;
        let desk = c.app.client(Role::Reception);
        desk.reschedule_appointment(moved, &hms_client::models::Reschedule { new_slot_start: tue(1), new_slot_end: None }, None).await.unwrap();
        let a = c.book(tue(2)).await;
        c.app.clock.set(tue(2) + Duration::minutes(20));
        c.app.doctor_client(c.doctor).transition_appointment(a, "complete", None).await.unwrap();
        let bill = c.bill(a, |_| true).await;
        c.payment_knows(bill.bill_id).await;
        c.app.client(Role::Billing).pay(&pay(bill.bill_id, &bill.balance.to_string()), "narrowed-1").await.unwrap();
        c.bill(a, |b| b.status == "PAID").await;
        let notified = |kind: &'static str| {
            let desk = desk.clone();
            move || { let desk = desk.clone(); async move {
                let n = desk.list_notifications(&hms_client::models::NotificationQuery { event_type: Some(kind.into()), ..Default::default() }).await.ok()?;
                (!n.items.is_empty()).then_some(())
            }}
        };
        eventually(15, "the payment's message", notified("payment.captured")).await;
        eventually(15, "the bill's message", notified("bill.created")).await;

        // Billing acts on completions, late cancellations and no-shows: it is sent no booking
        // and no move. The doctor's availability and the patient's messages follow every one.
        assert_eq!(delivered_types(&c.app, Service::Appointment, "billing").await, ["appointment.completed"]);
        for sub in ["doctor", "notification"] {
            assert_eq!(delivered_types(&c.app, Service::Appointment, sub).await,
                ["appointment.booked", "appointment.completed", "appointment.rescheduled"], "{sub}");
        }
        // The patient hears of a new bill, not of its later states; payment follows them all.
        assert_eq!(delivered_types(&c.app, Service::Billing, "notification").await, ["bill.created"]);
        assert_eq!(delivered_types(&c.app, Service::Billing, "payment").await, ["bill.created", "bill.paid"]);
        assert_eq!(delivered_types(&c.app, Service::Payment, "notification").await, ["payment.captured"]);
        c.app.stop().await;
    }
}

both_backends! {
    async fn a_completed_appointment_is_billed_to_the_paisa(b: Backend) {
        let c = clinic(&b).await;
        let a = c.book(tue(0)).await;
        let dr = c.app.doctor_client(c.doctor);
        let rx = |med: &str, dosage: &str, days| NewPrescription {
            prescription_id: None, appointment_id: a, patient_id: c.patient, doctor_id: None,
            medication: med.into(), dosage: dosage.into(), days, issued_at: None,
        };
        dr.create_prescription(&rx("Paracetamol", "1-0-1", 5)).await.unwrap();
        dr.create_prescription(&rx("Amoxicillin", "1-1-1", 7)).await.unwrap();
        c.app.clock.set(tue(0) + Duration::minutes(20));
        // Billing must have seen both prescriptions before the completion (the relay keeps each
        // producer's events in order, not across producers).
        let pool = c.app.db(Service::Billing).pool().clone();
        eventually(15, "billing to know the prescriptions", || { let pool = pool.clone(); async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM prescribed").fetch_one(&pool).await.ok()?;
            (n == 2).then_some(())
        }}).await;
        dr.transition_appointment(a, "complete", None).await.unwrap();
        let bill = c.bill(a, |_| true).await;
        let lines: Vec<(String, i64, String, String)> = bill.lines.iter()
            .map(|l| (l.description.clone(), l.quantity, l.unit_price.to_string(), l.amount.to_string())).collect();
        assert_eq!(lines, vec![
            ("Consultation".to_string(), 1, "500.00".to_string(), "500.00".to_string()),
            ("Paracetamol".to_string(), 10, "2.00".to_string(), "20.00".to_string()),
            ("Amoxicillin".to_string(), 21, "8.50".to_string(), "178.50".to_string()),
        ]);
        assert_eq!((bill.subtotal, bill.tax, bill.total, bill.status.as_str()), (m("698.50"), m("34.93"), m("733.43"), "OPEN"));

        // A prescription added while the bill is OPEN adds its line and recomputes.
        dr.create_prescription(&rx("Ibuprofen", "1-0-1", 3)).await.unwrap();
        let bill = c.bill(a, |b| b.lines.len() == 4).await;
        assert_eq!((bill.subtotal, bill.tax, bill.total), (m("716.50"), m("35.83"), m("752.33")));

        // Pay it in two parts; PAID once the balance reaches zero. Then refunds.
        let pay_pool = c.app.db(Service::Payment).pool().clone();
        eventually(15, "payment to know the new total", || { let pool = pay_pool.clone(); async move {
            let t: i64 = sqlx::query_scalar("SELECT total FROM bill_balance WHERE bill_id = $1").bind(bill.bill_id).fetch_one(&pool).await.ok()?;
            (t == 75_233).then_some(())
        }}).await;
        let cashier = c.app.client(Role::Billing);
        let first = cashier.pay(&pay(bill.bill_id, "500.00"), "pay-part-1").await.unwrap();
        assert!(first.reference.starts_with("HMS") && first.reference.len() == 18, "{}", first.reference);
        let part = c.bill(a, |b| b.paid == m("500.00")).await;
        assert_eq!((part.status.as_str(), part.balance), ("OPEN", m("252.33")));
        cashier.pay(&pay(bill.bill_id, "252.33"), "pay-part-2").await.unwrap();
        let paid = c.bill(a, |b| b.status == "PAID").await;
        assert_eq!(paid.balance, m("0.00"));
        cashier.refund(first.payment_id, &NewRefund { amount: m("100.00"), reason: "goodwill".into() }, "refund-1").await.unwrap();
        let partly = c.bill(a, |b| b.status == "PARTIALLY_REFUNDED").await;
        // The refund is credited: the amount due falls by it and nothing is owed again.
        assert_eq!((partly.refunded, partly.credits, partly.amount_due, partly.balance), (m("100.00"), m("100.00"), m("652.33"), m("0.00")));
        // A PAID bill's lines never change: a correction is a credit note of its own.
        let credit = cashier.adjust_bill(bill.bill_id, &NewAdjustment { amount: m("10.00"), reason: "rounding goodwill".into() }).await.unwrap();
        assert_eq!(credit.amount, m("10.00"));
        let after = c.bill(a, |b| b.credits == m("110.00")).await;
        assert_eq!((after.lines.len(), after.total, after.balance), (4, m("752.33"), m("-10.00")));
        // The patient was told about the bill and the payments.
        let desk = c.app.client(Role::Reception);
        eventually(15, "bill and payment notices", || async {
            let n = desk.list_notifications(&hms_client::models::NotificationQuery { patient_id: Some(c.patient), ..Default::default() }).await.ok()?;
            let kinds: Vec<&str> = n.items.iter().map(|x| x.event_type.as_str()).collect();
            (kinds.contains(&"bill.created") && kinds.iter().filter(|k| **k == "payment.captured").count() >= 2).then_some(())
        }).await;
        c.app.stop().await;
    }

    async fn fees_turn_at_the_two_hour_boundary(b: Backend) {
        let c = clinic(&b).await;
        let early = c.book(tue(2)).await;
        let late = c.book(tue(3)).await;
        let absent = c.book(tue(4)).await;
        let desk = c.app.client(Role::Reception);
        c.app.clock.set(tue(2) - Duration::hours(2) - Duration::seconds(1));
        desk.transition_appointment(early, "cancel", None).await.unwrap();
        c.app.clock.set(tue(3) - Duration::hours(2));
        desk.transition_appointment(late, "cancel", None).await.unwrap();
        c.app.clock.set(tue(4) + Duration::minutes(15));
        desk.transition_appointment(absent, "no-show", None).await.unwrap();
        let fee = c.bill(late, |_| true).await;
        assert_eq!((fee.purpose.as_str(), fee.subtotal, fee.tax, fee.total), ("cancellation_fee", m("250.00"), m("12.50"), m("262.50")));
        let no_show = c.bill(absent, |_| true).await;
        assert_eq!((no_show.purpose.as_str(), no_show.total), ("no_show_fee", m("525.00")));
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(c.bills_of(early).await.is_empty(), "more than 2 hours ahead: no fee");
        c.app.stop().await;
    }

    async fn a_redelivered_completion_bills_once(b: Backend) {
        let c = clinic(&b).await;
        let a = c.book(tue(0)).await;
        c.app.clock.set(tue(0));
        c.app.client(Role::Admin).transition_appointment(a, "complete", None).await.unwrap();
        c.bill(a, |_| true).await;
        let mut ev = outbox_event(c.app.db(Service::Appointment), "appointment", "appointment.completed").await;
        let token = c.app.keys.issue(Role::Service, "service:appointment", None, chrono::Duration::minutes(5));
        let url = format!("{}/v1/events", c.app.url(Service::Billing));
        let same = futures::future::join_all((0..20).map(|_| c.app.http.post(&url).bearer_auth(&token).json(&ev).send())).await;
        assert!(same.into_iter().all(|r| r.unwrap().status() == 200));
        // Even under a new event id (the inbox bypassed), the unique (appointment, purpose) holds.
        ev.event_id = uuid::Uuid::new_v4();
        assert_eq!(c.app.http.post(&url).bearer_auth(&token).json(&ev).send().await.unwrap().status(), 200);
        assert_eq!(c.bills_of(a).await.len(), 1);
        c.app.stop().await;
    }

    async fn a_movement_sent_again_under_new_event_ids_moves_the_bill_once(b: Backend) {
        let c = clinic(&b).await;
        let a = c.book(tue(1)).await;
        c.app.clock.set(tue(1) + Duration::minutes(20));
        c.app.client(Role::Admin).transition_appointment(a, "complete", None).await.unwrap();
        let bill = c.bill(a, |_| true).await;
        c.payment_knows(bill.bill_id).await;
        let cashier = c.app.client(Role::Billing);
        let p = cashier.pay(&pay(bill.bill_id, "525.00"), "once-1").await.unwrap();
        cashier.refund(p.payment_id, &NewRefund { amount: m("25.00"), reason: "once".into() }, "once-refund").await.unwrap();
        let settled = eventually(15, "the refund on the bill", || async {
            c.bills_of(a).await.into_iter().find(|b| b.refunded == m("25.00"))
        }).await;
        let paid_events = || async {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE aggregate_id = $1 AND event_type IN ('bill.paid', 'bill.refunded')")
                .bind(bill.bill_id.to_string())
                .fetch_one(c.app.db(Service::Billing).pool()).await.unwrap();
            n
        };
        assert_eq!(paid_events().await, 2);

        // The capture and the refund again, each under twenty new event ids at once (the inbox
        // cannot tell them apart): the movement ids judge, and the bill neither moves nor
        // announces anything again.
        let token = c.app.keys.issue(Role::Service, "service:payment", None, chrono::Duration::minutes(5));
        let url = format!("{}/v1/events", c.app.url(Service::Billing));
        for kind in ["payment.captured", "payment.refunded"] {
            let ev = outbox_event(c.app.db(Service::Payment), "payment", kind).await;
            let sent = futures::future::join_all((0..20).map(|_| {
                let mut again = ev.clone();
                again.event_id = uuid::Uuid::new_v4();
                c.app.http.post(&url).bearer_auth(&token).json(&again).send()
            })).await;
            assert!(sent.into_iter().all(|r| r.unwrap().status() == 200), "{kind}");
        }
        let after = c.bills_of(a).await.pop().unwrap();
        assert_eq!(
            (after.version, after.paid, after.refunded, after.credits, after.status.as_str()),
            (settled.version, m("525.00"), m("25.00"), settled.credits, "PARTIALLY_REFUNDED")
        );
        assert_eq!(paid_events().await, 2);
        c.app.stop().await;
    }

    async fn fifty_charges_with_one_key_capture_once(b: Backend) {
        let mut c = clinic(&b).await;
        let bill = c.no_show_bill(tue(1)).await;
        let cashiers = c.cashiers(&b, Role::Billing).await;
        let body = pay(bill.bill_id, "525.00");
        let results = futures::future::join_all((0..50).map(|i| {
            let url = format!("{}/v1/payments", cashiers[i % cashiers.len()].urls().get(Service::Payment));
            let req = c.app.http.post(url).bearer_auth(c.app.token(Role::Billing)).header("idempotency-key", "one-key-525").json(&body);
            async move { req.send().await.unwrap() }
        })).await;
        let mut bodies = std::collections::BTreeSet::new();
        let mut replayed = 0;
        for r in results {
            assert_eq!(r.status(), 201);
            if r.headers().get("idempotent-replayed").is_some() { replayed += 1; }
            bodies.insert(r.text().await.unwrap());
        }
        assert_eq!(bodies.len(), 1, "50 identical bodies");
        assert!(replayed >= 49, "{replayed} replays");
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payments").fetch_one(c.app.db(Service::Payment).pool()).await.unwrap();
        assert_eq!(rows, 1);
        let paid = c.bill(bill.appointment_id, |b| b.status == "PAID").await;
        assert_eq!(paid.paid, m("525.00"));

        // Misuse of the key.
        let cashier = c.app.client(Role::Billing);
        let code = |r: Result<hms_client::models::Payment, ClientError>| r.map(|_| "ok".to_string()).unwrap_or_else(|e| e.code().unwrap_or("?").to_string());
        assert_eq!(code(cashier.pay(&pay(bill.bill_id, "1.00"), "one-key-525").await), "idempotency_key_reused");
        assert_eq!(code(c.app.client(Role::Admin).pay(&body, "one-key-525").await), "idempotency_key_reused", "another caller");
        let other = cashier.refund(1, &NewRefund { amount: m("1.00"), reason: String::new() }, "one-key-525").await.unwrap_err();
        assert_eq!(other.code(), Some("idempotency_key_reused"), "another operation");
        for key in [None, Some("k".repeat(256))] {
            let mut req = c.app.req(Role::Billing, Method::POST, Service::Payment, "/v1/payments").json(&body);
            if let Some(k) = &key { req = req.header("idempotency-key", k); }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 400);
        }
        assert_eq!(code(cashier.pay(&pay(bill.bill_id, "1.00"), "after-paid").await), "bill_not_payable");
        // After a restart the original answer is still the answer.
        c.app.stop_service(Service::Payment).await;
        c.app.start_service(&hms_payment::SERVICE).await;
        let again = c.app.client(Role::Billing).pay(&body, "one-key-525").await.unwrap();
        let original = bodies.into_iter().next().unwrap();
        assert_eq!(serde_json::to_string(&again).unwrap(), original);
        // 31 days on, the stored response is swept; the key on the payment still holds.
        let db = c.app.db(Service::Payment).clone();
        sqlx::query("UPDATE idempotency_keys SET created_at = '2000-01-01T00:00:00.000000Z'").execute(db.pool()).await.unwrap();
        // (The relay sweeps too, in the background; either way the stored answer is gone.)
        hms_kit::idempotency::sweep(&db, Utc::now()).await.unwrap();
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys").fetch_one(db.pool()).await.unwrap();
        assert_eq!(stored, 0, "swept");
        let late = c.app.req(Role::Billing, Method::POST, Service::Payment, "/v1/payments")
            .header("idempotency-key", "one-key-525").json(&body).send().await.unwrap();
        assert_eq!(late.status(), 200);
        assert_eq!(late.headers()["idempotent-replayed"], "true");
        let late: hms_client::models::Payment = late.json().await.unwrap();
        assert_eq!(late.payment_id, again.payment_id);
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payments").fetch_one(db.pool()).await.unwrap();
        assert_eq!(rows, 1, "still one payment");
        c.app.stop().await;
    }

    async fn fifty_keys_never_pay_more_than_owed(b: Backend) {
        let mut c = clinic(&b).await;
        let bill = c.no_show_bill(tue(1)).await;
        let cashiers = c.cashiers(&b, Role::Billing).await;
        let results = futures::future::join_all((0..50).map(|i| {
            let cashier = cashiers[i % cashiers.len()].clone();
            let body = pay(bill.bill_id, "100.00");
            async move { cashier.pay(&body, &format!("many-keys-{i}")).await }
        })).await;
        assert_eq!(tally(&results), [("ok".to_string(), 5), ("overpayment".to_string(), 45)].into_iter().collect());
        let captured: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM payments WHERE bill_id = $1")
            .bind(bill.bill_id).fetch_one(c.app.db(Service::Payment).pool()).await.unwrap();
        assert_eq!(captured, 50_000);
        let rest = c.app.client(Role::Billing).pay(&pay(bill.bill_id, "25.00"), "the-rest").await.unwrap();
        assert_eq!(rest.amount, m("25.00"));
        c.bill(bill.appointment_id, |b| b.status == "PAID" && b.paid == m("525.00")).await;

        // Refunds: 20 concurrent refunds of 100.00 against one 100.00 payment and four more.
        let paid = c.app.client(Role::Billing).payments_of_bill(bill.bill_id).await.unwrap().items;
        let target = paid[0].payment_id;
        let results = futures::future::join_all((0..20).map(|i| {
            let cashier = cashiers[i % cashiers.len()].clone();
            async move { cashier.refund(target, &NewRefund { amount: m("20.00"), reason: "split".into() }, &format!("refund-{i}")).await }
        })).await;
        assert_eq!(tally(&results), [("ok".to_string(), 5), ("refund_exceeds_paid".to_string(), 15)].into_iter().collect());
        let refunded = c.bill(bill.appointment_id, |b| b.refunded == m("100.00")).await;
        assert_eq!(refunded.status, "PARTIALLY_REFUNDED");
        c.app.stop().await;
    }

    // Payments on different bills are committed together (one group, one commit); each is
    // still its own: its own payment and reference, its key's replay is its answer, and one
    // refused in the crowd (an overpayment) is refused alone while the rest are kept.
    async fn payments_on_many_bills_at_once_each_capture_their_own(b: Backend) {
        let mut c = clinic(&b).await;
        // All booked first (each at least two hours ahead), then each missed in turn.
        let mut booked = Vec::new();
        for h in 1..7 {
            booked.push((tue(h), c.book(tue(h)).await));
        }
        let mut bills = Vec::new();
        for (at, a) in booked {
            c.app.clock.set(at + Duration::minutes(16));
            c.app.client(Role::Reception).transition_appointment(a, "no-show", None).await.unwrap();
            let bill = c.bill(a, |_| true).await;
            c.payment_knows(bill.bill_id).await;
            bills.push(bill);
        }
        let cashiers = c.cashiers(&b, Role::Billing).await;
        let mut calls = Vec::new();
        for (i, bill) in bills.iter().enumerate() {
            for j in 0..3 {
                // Each key sent twice at once, to different instances where there are two.
                for r in 0..2 {
                    calls.push((cashiers[(i + j + r) % cashiers.len()].clone(), bill.bill_id, "100.00", format!("spread-{i}-{j}")));
                }
            }
        }
        calls.push((cashiers[0].clone(), bills[0].bill_id, "600.00", "spread-too-much".to_string()));
        let results = futures::future::join_all(calls.iter().map(|(cashier, bill, amount, key)| {
            let body = pay(*bill, amount);
            async move { (key.clone(), cashier.pay(&body, key).await) }
        })).await;
        let mut by_key: BTreeMap<String, std::collections::BTreeSet<i64>> = BTreeMap::new();
        let mut references = std::collections::BTreeSet::new();
        for (key, r) in &results {
            if key == "spread-too-much" {
                assert_eq!(r.as_ref().err().and_then(|e| e.code()), Some("overpayment"), "{r:?}");
                continue;
            }
            let p = r.as_ref().unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(p.amount, m("100.00"));
            by_key.entry(key.clone()).or_default().insert(p.payment_id);
            references.insert(p.reference.clone());
        }
        assert_eq!(by_key.len(), 18);
        assert!(by_key.values().all(|ids| ids.len() == 1), "a key answered with two payments: {by_key:?}");
        let ids: std::collections::BTreeSet<i64> = by_key.values().flatten().copied().collect();
        assert_eq!(ids.len(), 18, "eighteen payments");
        assert_eq!(references.len(), 18, "eighteen references");
        let pool = c.app.db(Service::Payment).pool().clone();
        for bill in &bills {
            let (rows, captured): (i64, i64) = sqlx::query_as("SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM payments WHERE bill_id = $1")
                .bind(bill.bill_id).fetch_one(&pool).await.unwrap();
            assert_eq!((rows, captured), (3, 30_000), "bill {}", bill.bill_id);
            let left: i64 = sqlx::query_scalar("SELECT CAST(total - captured AS BIGINT) FROM bill_balance WHERE bill_id = $1")
                .bind(bill.bill_id).fetch_one(&pool).await.unwrap();
            assert_eq!(left, 22_500, "bill {}", bill.bill_id);
            c.bill(bill.appointment_id, |b| b.paid == m("300.00")).await;
        }
        // One Captured event per payment, none for the refused one's capture.
        let captured: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE event_type = 'payment.captured'")
            .fetch_one(&pool).await.unwrap();
        assert_eq!(captured, 18);
        c.app.stop().await;
    }

    async fn a_payment_while_billing_is_down_settles_when_it_returns(b: Backend) {
        let mut c = clinic(&b).await;
        let bill = c.no_show_bill(tue(1)).await;
        c.app.stop_service(Service::Billing).await;
        let p = c.app.client(Role::Billing).pay(&pay(bill.bill_id, "525.00"), "while-down").await.unwrap();
        assert_eq!(p.amount, m("525.00"));
        c.app.start_service(&hms_billing::SERVICE).await;
        let settled = c.bill(bill.appointment_id, |b| b.status == "PAID").await;
        assert_eq!(settled.paid, m("525.00"));
        c.app.stop().await;
    }

    async fn the_books_stay_right_after_settlement(b: Backend) {
        let c = clinic(&b).await;
        let a = c.book(tue(2)).await;
        c.app.clock.set(tue(2) + Duration::minutes(20));
        let dr = c.app.doctor_client(c.doctor);
        dr.transition_appointment(a, "complete", None).await.unwrap();
        let bill = c.bill(a, |_| true).await;
        assert_eq!(bill.total, m("525.00"));
        c.payment_knows(bill.bill_id).await;
        let cashier = c.app.client(Role::Billing);
        let p = cashier.pay(&pay(bill.bill_id, "525.00"), "settle-1").await.unwrap();
        c.bill(a, |b| b.status == "PAID").await;

        // A prescription after the bill is PAID is billed on a supplementary bill; the paid
        // bill's lines stay as they were.
        dr.create_prescription(&NewPrescription {
            prescription_id: None, appointment_id: a, patient_id: c.patient, doctor_id: None,
            medication: "Paracetamol".into(), dosage: "1-0-1".into(), days: 5, issued_at: None,
        }).await.unwrap();
        let both = eventually(15, "a supplementary bill", || async {
            let b = c.bills_of(a).await;
            (b.len() == 2).then_some(b)
        }).await;
        let settled = both.iter().find(|b| b.purpose == "consultation").unwrap();
        let extra = both.iter().find(|b| b.purpose.starts_with("supplementary:")).unwrap();
        assert_eq!((settled.status.as_str(), settled.lines.len()), ("PAID", 1));
        assert_eq!((extra.status.as_str(), extra.subtotal, extra.tax, extra.total), ("OPEN", m("20.00"), m("1.00"), m("21.00")));
        assert_eq!(extra.lines[0].description, "Paracetamol");

        // A refund is credited: the balance never asks for the refunded money again, and the
        // payment service, applying the same rule, refuses to take it twice.
        cashier.refund(p.payment_id, &NewRefund { amount: m("46.00"), reason: "unused test".into() }, "settle-refund").await.unwrap();
        let after = eventually(15, "the refund on the bill", || async {
            c.bills_of(a).await.into_iter().find(|b| b.purpose == "consultation" && b.refunded == m("46.00"))
        }).await;
        assert_eq!((after.status.as_str(), after.credits, after.amount_due, after.balance), ("PARTIALLY_REFUNDED", m("46.00"), m("479.00"), m("0.00")));
        let again = cashier.pay(&pay(bill.bill_id, "46.00"), "settle-again").await.unwrap_err();
        assert_eq!(again.code(), Some("bill_not_payable"), "{again:?}");
        c.app.stop().await;
    }

    async fn amounts_are_bounded_where_they_enter(b: Backend) {
        let c = clinic(&b).await;
        let admin = c.app.client(Role::Admin);
        let post = |svc: Service, path: &str, body: serde_json::Value, key: Option<&str>| {
            let mut r = c.app.req(Role::Admin, Method::POST, svc, path).json(&body);
            if let Some(k) = key { r = r.header("idempotency-key", k); }
            r.send()
        };
        let cases = [
            (Service::Prescription, "/v1/formulary", serde_json::json!({"name": "Goldamol", "form": "tablet", "unit_price": "46116860184273880.04"}), None, "unit_price"),
            (Service::Prescription, "/v1/formulary", serde_json::json!({"name": "Goldamol", "form": "tablet", "unit_price": "1000000.01"}), None, "unit_price"),
            (Service::Payment, "/v1/payments", serde_json::json!({"bill_id": 1, "amount": "92233720368547758.07", "method": "CASH"}), Some("big-pay"), "amount"),
            (Service::Payment, "/v1/payments", serde_json::json!({"bill_id": 1, "amount": "0.00", "method": "CASH"}), Some("zero-pay"), "amount"),
            (Service::Billing, "/v1/bills/1/adjustments", serde_json::json!({"amount": "10000000000.01", "reason": "x"}), None, "amount"),
            (Service::Billing, "/v1/bills/import", serde_json::json!({"bill_id": 9001, "patient_id": 1, "appointment_id": 9001, "amount": "92233720368547758.07", "status": "OPEN", "created_at": "2024-05-01T08:30:00Z"}), None, "amount"),
            (Service::Doctor, "/v1/doctors", serde_json::json!({"name": "Dr. Costly", "department": "Cardiology", "specialization": "General", "consultation_fee": "1000000.01"}), None, "consultation_fee"),
        ];
        for (svc, path, body, key, field) in cases {
            let r = post(svc, path, body.clone(), key).await.unwrap();
            assert_eq!(r.status(), reqwest::StatusCode::BAD_REQUEST, "{path} {body}");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!((v["code"].as_str(), v["details"]["field"].as_str()), (Some("validation_failed"), Some(field)), "{v}");
            assert!(v["message"].as_str().unwrap().contains(" and "), "the bound is in the message: {v}");
        }
        let top = admin.add_medication(&hms_client::models::NewMedication { name: "Dearamol".into(), form: "tablet".into(), unit_price: m("1000000.00") }).await;
        assert!(top.is_ok(), "the bound itself is allowed: {top:?}");
        c.app.stop().await;
    }

    async fn void_and_its_limits(b: Backend) {
        let c = clinic(&b).await;
        let open = c.no_show_bill(tue(1)).await;
        let cashier = c.app.client(Role::Billing);
        let voided = cashier.void_bill(open.bill_id).await.unwrap();
        assert_eq!(voided.status, "VOID");
        let again = cashier.void_bill(open.bill_id).await.unwrap_err();
        assert_eq!((again.status(), again.code()), (Some(409), Some("invalid_transition")));
        let pool = c.app.db(Service::Payment).pool().clone();
        eventually(15, "payment to learn of the VOID", || { let pool = pool.clone(); async move {
            let s: String = sqlx::query_scalar("SELECT status FROM bill_balance WHERE bill_id = $1").bind(open.bill_id).fetch_one(&pool).await.ok()?;
            (s == "VOID").then_some(())
        }}).await;
        let refused = cashier.pay(&pay(open.bill_id, "525.00"), "pay-void").await.unwrap_err();
        assert_eq!((refused.status(), refused.code()), (Some(422), Some("bill_not_payable")));
        assert_eq!(c.app.client(Role::Reception).void_bill(open.bill_id).await.unwrap_err().status(), Some(403));
        c.app.stop().await;
    }
}

both_backends! {
    // Payment references are random: a reference drawn twice is judged by the UNIQUE
    // constraint and drawn again (it once failed the payment with a 500), while a key used
    // twice is still refused.
    async fn a_payment_reference_drawn_twice_is_drawn_again(b: Backend) {
        use hms_payment::store;
        let app = TestApp::spawn(&b, &[&hms_payment::SERVICE]).await;
        let db = app.db(Service::Payment);
        let now = app.clock.now();
        let mut tx = db.begin().await.unwrap();
        store::apply_bill(&mut tx, 7, 3, 100_000, "OPEN", 1).await.unwrap();
        let bill = store::balance(&mut *tx, 7).await.unwrap().unwrap();
        let taken = "HMS20261130-AAAAAA";
        let first = store::insert_payment(&mut tx, &bill, 100, "UPI", "k1", "h1", now, |_| taken.into())
            .await.unwrap();
        assert_eq!(first.reference, taken);
        let mut draws = [taken, taken, "HMS20261130-BBBBBB"].into_iter();
        let second = store::insert_payment(&mut tx, &bill, 200, "UPI", "k2", "h2", now,
            |_| draws.next().unwrap().to_string()).await.unwrap();
        assert_eq!(second.reference, "HMS20261130-BBBBBB");
        assert_eq!(draws.next(), None, "drawn until free");
        // A key is not a reference: its clash is an error, not drawn again.
        let again = store::insert_payment(&mut tx, &bill, 300, "UPI", "k1", "h3", now,
            |_| "HMS20261130-CCCCCC".into()).await;
        assert!(again.is_err());
        tx.rollback().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        store::apply_bill(&mut tx, 7, 3, 100_000, "OPEN", 1).await.unwrap();
        let bill = store::balance(&mut *tx, 7).await.unwrap().unwrap();
        store::insert_payment(&mut tx, &bill, 100, "UPI", "k1", "h1", now, |_| taken.into()).await.unwrap();
        let mut draws = [taken, "HMS20261130-DDDDDD"].into_iter();
        store::insert_payment(&mut tx, &bill, 200, "UPI", "k2", "h2", now,
            |_| draws.next().unwrap().to_string()).await.unwrap();
        tx.commit().await.unwrap();
        let refs: Vec<String> = sqlx::query_scalar("SELECT reference FROM payments ORDER BY payment_id")
            .fetch_all(db.pool()).await.unwrap();
        assert_eq!(refs, [taken, "HMS20261130-DDDDDD"], "both payments kept, each its own reference");
        app.stop().await;
    }
}

// A bill is recomputed on every payment: its sums read that bill's rows by index, not every
// money movement and credit note of every bill (they did, and grew slower with the ledger).
#[tokio::test]
async fn a_recomputation_reads_only_its_bills_rows() {
    use sqlx::Row;
    let app = TestApp::spawn_with(
        &Backend::Sqlite,
        &[&hms_billing::SERVICE],
        Clock::system(),
        |_| {},
    )
    .await;
    let plan: Vec<String> = sqlx::query(&format!(
        "EXPLAIN QUERY PLAN {}",
        hms_billing::store::RECOMPUTED
    ))
    .bind(1_i64)
    .fetch_all(app.db(Service::Billing).pool())
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("detail"))
    .collect();
    assert!(
        plan.iter().any(|step| step.contains("bill_money")),
        "{plan:?}"
    );
    let scans: Vec<&String> = plan
        .iter()
        .filter(|step| step.starts_with("SCAN"))
        .collect();
    assert!(
        scans.is_empty(),
        "whole tables read for one bill: {scans:?}"
    );
    app.stop().await;
}

//! The contracts between services and with outside clients: an event missing a field it must
//! carry is refused (400 naming it, so the producer's relay parks it), never read as a default;
//! and every OpenAPI operation declares what the shared middleware can answer.

use crate::both_backends;
use crate::support::*;
use hms_kit::auth::Role;
use hms_kit::Service;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn event(source: &str, event_type: &str, payload: Value) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4(), "event_type": event_type, "source": source,
        "aggregate_type": "x", "aggregate_id": "1", "aggregate_seq": 1,
        "occurred_at": "2026-11-25T10:00:00Z", "correlation_id": "contract-test", "payload": payload,
    })
}

both_backends! {
    async fn an_event_missing_a_decision_or_status_is_refused_not_defaulted(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_doctor::SERVICE, &hms_billing::SERVICE, &hms_payment::SERVICE, &hms_notification::SERVICE]).await;
        // Complete payloads as the producers write them; each case takes one thing away or
        // puts one thing wrong.
        let appointment = json!({"appointment_id": 1, "patient_id": 1, "doctor_id": 1, "slot_start": "2026-12-01T04:00:00Z",
                                 "slot_end": "2026-12-01T04:30:00Z", "consultation_fee": "500.00", "department": "Cardiology",
                                 "status": "SCHEDULED", "reschedule_count": 0, "fee_decision": null});
        let with = |mut v: Value, k: &str, x: Value| { v[k] = x; v };
        let without = |mut v: Value, k: &str| { v.as_object_mut().unwrap().remove(k); v };
        let cancelled = with(with(with(appointment.clone(), "status", json!("CANCELLED")), "cancelled_at", json!("2026-11-30T04:00:00Z")),
                             "minutes_before_start", json!(1440));
        let completed = with(with(appointment.clone(), "status", json!("COMPLETED")), "completed_at", json!("2026-12-01T04:30:00Z"));
        let bill = json!({"bill_id": 1, "patient_id": 1, "appointment_id": 1, "purpose": "consultation", "total": "525.00",
                          "amount_due": "525.00", "paid": "0.00", "refunded": "0.00", "legacy": false, "status": "VOID"});
        let rx = json!({"prescription_id": 1, "appointment_id": 1, "patient_id": 1, "doctor_id": 1, "medication": "Paracetamol",
                        "quantity": 2, "unit_price": "1.00"});
        let cases = [
            // Payment read a missing bill status as OPEN: a VOID bill could become payable.
            (Service::Payment, event("billing", "bill.voided", without(bill.clone(), "status")), "status"),
            (Service::Payment, event("billing", "bill.voided", with(bill.clone(), "status", json!("CLOSED"))), "status"),
            // Billing read a missing fee decision as none: no fee bill.
            (Service::Billing, event("appointment", "appointment.cancelled", without(cancelled.clone(), "fee_decision")), "fee_decision"),
            (Service::Billing, event("appointment", "appointment.cancelled", with(cancelled.clone(), "fee_decision", json!("most"))), "fee_decision"),
            // Notification read a missing status as SCHEDULED.
            (Service::Notification, event("appointment", "appointment.booked", without(appointment.clone(), "status")), "status"),
            (Service::Doctor, event("appointment", "appointment.booked", without(appointment.clone(), "status")), "status"),
            // Amounts in events are bounded like amounts at the door.
            (Service::Payment, event("billing", "bill.created", with(with(bill.clone(), "status", json!("OPEN")), "amount_due", json!("92233720368547758.07"))), "amount_due"),
            (Service::Billing, event("appointment", "appointment.completed",
                with(completed.clone(), "consultation_fee", json!("46116860184273880.04"))), "consultation_fee"),
            (Service::Billing, event("prescription", "prescription.created", without(rx.clone(), "medication")), "medication"),
            (Service::Notification, event("payment", "payment.captured",
                json!({"payment_id": 1, "bill_id": 1, "patient_id": 1, "amount": "1.00", "reference": "r", "legacy": false})), "method"),
        ];
        for (svc, ev, field) in cases {
            let source = ev["source"].as_str().unwrap().to_string();
            let token = app.keys.issue(Role::Service, &format!("service:{source}"), None, chrono::Duration::minutes(5));
            let r = app.http.post(format!("{}/v1/events", app.url(svc))).bearer_auth(token).json(&ev).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{svc} {ev}");
            let body: Value = r.json().await.unwrap();
            assert_eq!((body["code"].as_str(), body["details"]["field"].as_str()), (Some("validation_failed"), Some(field)), "{svc}: {body}");
        }
        // Nothing was recorded as processed: once fixed and redelivered, an event is applied.
        for svc in [Service::Billing, Service::Payment, Service::Notification, Service::Doctor] {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox").fetch_one(app.db(svc).pool()).await.unwrap();
            assert_eq!(n, 0, "{svc} recorded a refused event");
        }
        // The complete payloads themselves fit: the refusals above are the missing pieces'.
        for (svc, ev) in [(Service::Payment, event("billing", "bill.voided", bill.clone())),
                          (Service::Billing, event("prescription", "prescription.created", rx.clone())),
                          (Service::Doctor, event("appointment", "appointment.booked", appointment.clone()))] {
            let source = ev["source"].as_str().unwrap().to_string();
            let token = app.keys.issue(Role::Service, &format!("service:{source}"), None, chrono::Duration::minutes(5));
            let r = app.http.post(format!("{}/v1/events", app.url(svc))).bearer_auth(token).json(&ev).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{svc} {ev}: {}", r.text().await.unwrap());
        }
        app.stop().await;
    }

    async fn a_batch_of_events_is_judged_event_by_event(b: Backend) {
        // The relay delivers many events in one request, applied in one transaction: each is
        // still judged alone — refused with its own error, its writes undone — while the
        // others commit.
        let app = TestApp::spawn(&b, &[&hms_billing::SERVICE]).await;
        let with = |mut v: Value, k: &str, x: Value| { v[k] = x; v };
        let appointment = |id: i64| json!({"appointment_id": id, "patient_id": 1, "doctor_id": 1, "slot_start": "2026-12-01T04:00:00Z",
                                 "slot_end": "2026-12-01T04:30:00Z", "consultation_fee": "500.00", "department": "Cardiology",
                                 "status": "COMPLETED", "reschedule_count": 0, "fee_decision": null,
                                 "completed_at": "2026-12-01T04:30:00Z"});
        let completed = event("appointment", "appointment.completed", appointment(7));
        // Decodes, but billing refuses it in its effect, after the inbox row was written.
        let cancelled = event("appointment", "appointment.cancelled", with(with(with(with(appointment(8), "status", json!("CANCELLED")),
            "cancelled_at", json!("2026-11-30T04:00:00Z")), "minutes_before_start", json!(1440)), "fee_decision", json!("full")));
        let misfit = event("appointment", "appointment.completed", with(appointment(9), "consultation_fee", json!("46116860184273880.04")));
        let foreign = event("payment", "payment.captured", json!({}));
        let url = format!("{}/v1/events/batch", app.url(Service::Billing));
        let token = app.keys.issue(Role::Service, "service:appointment", None, chrono::Duration::minutes(5));
        let send = |events: Vec<Value>| app.http.post(&url).bearer_auth(&token).json(&json!({"events": events})).send();

        let r = send(vec![cancelled.clone(), completed.clone(), misfit.clone(), foreign.clone()]).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let ack: Value = r.json().await.unwrap();
        let results = ack["results"].as_array().unwrap();
        let seen: Vec<(&str, i64, Option<&str>)> = results.iter()
            .map(|r| (r["event_id"].as_str().unwrap(), r["status"].as_i64().unwrap(), r["error"]["code"].as_str()))
            .collect();
        let id = |e: &Value| e["event_id"].as_str().unwrap().to_string();
        assert_eq!(seen, vec![
            (id(&cancelled).as_str(), 400, Some("validation_failed")),
            (id(&completed).as_str(), 200, None),
            (id(&misfit).as_str(), 400, Some("validation_failed")),
            (id(&foreign).as_str(), 403, Some("forbidden")),
        ], "{ack}");
        assert_eq!(results[2]["error"]["details"]["field"], "consultation_fee");
        let pool = app.db(Service::Billing).pool().clone();
        let count = |sql: &'static str| { let pool = pool.clone(); async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() } };
        assert_eq!(count("SELECT COUNT(*) FROM inbox").await, 1, "only the accepted event is recorded as processed");
        assert_eq!(count("SELECT COUNT(*) FROM bills WHERE appointment_id = 7").await, 1, "the accepted event took effect");
        assert_eq!(count("SELECT COUNT(*) FROM bills WHERE appointment_id = 8").await, 0, "the refused one changed nothing");

        // Delivered again (a relay that crashed before recording), beside a new event: the
        // repeat is a duplicate with no second effect.
        let outcomes = |ack: &Value| -> Vec<(i64, bool)> { ack["results"].as_array().unwrap().iter()
            .map(|r| (r["status"].as_i64().unwrap(), r["duplicate"].as_bool().unwrap())).collect() };
        let later = event("appointment", "appointment.completed", appointment(10));
        let ack: Value = send(vec![completed.clone(), later.clone()]).await.unwrap().json().await.unwrap();
        assert_eq!(outcomes(&ack), vec![(200, true), (200, false)], "{ack}");
        assert_eq!(count("SELECT COUNT(*) FROM bills WHERE appointment_id = 7").await, 1);
        assert_eq!(count("SELECT COUNT(*) FROM bills WHERE appointment_id = 10").await, 1);

        // One event twice in one batch: the first copy is applied, the second is its duplicate.
        let twice = event("appointment", "appointment.completed", appointment(11));
        let ack: Value = send(vec![twice.clone(), twice.clone()]).await.unwrap().json().await.unwrap();
        assert_eq!(outcomes(&ack), vec![(200, false), (200, true)], "{ack}");
        assert_eq!(count("SELECT COUNT(*) FROM bills WHERE appointment_id = 11").await, 1);

        // An empty batch is a bad request; a person may not deliver events at all.
        assert_eq!(send(vec![]).await.unwrap().status(), StatusCode::BAD_REQUEST);
        let r = app.http.post(&url).bearer_auth(app.token(Role::Admin)).json(&json!({"events": [later]})).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        app.stop().await;
    }

    async fn every_operation_declares_what_the_middleware_answers(b: Backend) {
        let app = TestApp::spawn(&b, &[&hms_patient::SERVICE, &hms_doctor::SERVICE, &hms_appointment::SERVICE, &hms_billing::SERVICE,
            &hms_payment::SERVICE, &hms_prescription::SERVICE, &hms_notification::SERVICE]).await;
        let mut operations = 0;
        for svc in Service::ALL {
            let doc: Value = app.http.get(format!("{}/v1/openapi.json", app.url(svc))).send().await.unwrap().json().await.unwrap();
            assert_eq!(doc["info"]["contact"]["name"], "HMS maintainers", "{svc}");
            assert!(doc["info"]["contact"]["email"].is_null(), "no personal address: {svc}");
            for (path, item) in doc["paths"].as_object().unwrap() {
                for (method, op) in item.as_object().unwrap() {
                    let responses = op["responses"].as_object().unwrap();
                    for code in ["400", "401", "403", "408", "429", "500", "503"] {
                        assert!(responses.contains_key(code), "{svc} {method} {path} lacks {code}");
                    }
                    if path.contains('{') {
                        assert!(responses.contains_key("404"), "{svc} {method} {path} lacks 404");
                    }
                    if op.get("requestBody").is_some() {
                        assert!(responses.contains_key("415") && responses.contains_key("413"), "{svc} {method} {path}");
                    }
                    for (code, r) in responses {
                        let d = r["description"].as_str().unwrap_or("");
                        assert!(!d.trim().is_empty(), "{svc} {method} {path} {code} has no description");
                    }
                    for p in op["parameters"].as_array().into_iter().flatten() {
                        if p["name"] == "limit" {
                            assert_eq!((p["schema"]["minimum"].as_f64(), p["schema"]["maximum"].as_f64()), (Some(1.0), Some(500.0)), "{svc} {path}");
                        }
                    }
                    operations += 1;
                }
            }
        }
        assert!(operations >= 45, "{operations} operations checked");
        app.stop().await;
    }
}

/// A narrowed subscription names event types of its producer's contract: a misspelt or
/// renamed type would silently send that subscriber nothing of it.
#[test]
fn narrowed_subscriptions_name_their_producers_event_types() {
    use hms_client::contract::{
        AppointmentEvent, BillEvent, Contract, DoctorEvent, PatientEvent, PaymentEvent,
        PrescriptionEvent,
    };
    let producers: [(&hms_kit::server::ServiceDef, &[&str]); 6] = [
        (&hms_patient::SERVICE, PatientEvent::EVENT_TYPES),
        (&hms_doctor::SERVICE, DoctorEvent::EVENT_TYPES),
        (&hms_appointment::SERVICE, AppointmentEvent::EVENT_TYPES),
        (&hms_prescription::SERVICE, PrescriptionEvent::EVENT_TYPES),
        (&hms_billing::SERVICE, BillEvent::EVENT_TYPES),
        (&hms_payment::SERVICE, PaymentEvent::EVENT_TYPES),
    ];
    for (def, published) in producers {
        for (subscriber, types) in def.narrowed {
            assert!(
                def.subscribers.contains(subscriber),
                "{}: {subscriber} is narrowed but not a subscriber",
                def.service
            );
            for t in *types {
                assert!(
                    published.contains(t),
                    "{} → {subscriber}: {t} is not one of its events {published:?}",
                    def.service
                );
            }
        }
    }
    assert!(
        hms_notification::SERVICE.narrowed.is_empty(),
        "notification publishes nothing"
    );
}

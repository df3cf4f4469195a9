//! Notification routes: events in, alerts and reminders out to staff.

use crate::messages::{self, AppointmentFacts};
use crate::store::{self, AppointmentState};
use crate::worker::{lookup, record_for};
use axum::extract::State;
use axum::http::Method;
use hms_client::models::*;
use hms_client::ErrorBody;
use hms_kit::auth::{AccessTable, Caller, Role};
use hms_kit::extract::{Json, Query};
use hms_kit::inbox::payload::{int, money as amount};
use hms_kit::pagination::PageRequest;
use hms_kit::server::{ServiceCtx, ServiceRoutes};
use hms_kit::{Error, Service};
use std::sync::Arc;

fn instant(p: &serde_json::Value, k: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    hms_kit::inbox::payload::instant(p, k).ok()
}
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Ctx = State<Arc<ServiceCtx>>;

pub fn routes(ctx: &ServiceCtx) -> ServiceRoutes {
    let api = OpenApiRouter::new()
        .routes(routes!(list_notifications))
        .routes(routes!(list_reminders))
        .routes(routes!(receive_event))
        .with_state(Arc::new(ctx.clone()));
    let access = AccessTable::new(&[
        (
            Method::GET,
            "/v1/notifications",
            &[Role::Reception, Role::Billing, Role::Admin],
        ),
        (
            Method::GET,
            "/v1/reminders",
            &[Role::Reception, Role::Admin],
        ),
        (Method::POST, "/v1/events", &[Role::Service]),
    ]);
    ServiceRoutes { api, access }
}

/// Messages sent (or being sent) to patients: the alerts staff see. Filter by recipient,
/// patient, event type, status (`pending`, `sent`, `failed`) and creation time.
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications",
    params(NotificationQuery),
    responses((status = 200, body = Page<Notification>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_notifications(
    State(ctx): Ctx,
    Query(q): Query<NotificationQuery>,
) -> Result<Json<Page<Notification>>, Error> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let rows = store::list_notifications(ctx.db.pool(), &q, page).await?;
    Ok(Json(page.page(rows, |n| n.notification_id)))
}

/// Appointment reminders and their state (`scheduled`, `sent`, `cancelled`).
#[utoipa::path(get, path = "/v1/reminders", tag = "notifications",
    params(ReminderQuery),
    responses((status = 200, body = Page<Reminder>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_reminders(
    State(ctx): Ctx,
    Query(q): Query<ReminderQuery>,
) -> Result<Json<Page<Reminder>>, Error> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let rows = store::list_reminders(ctx.db.pool(), &q, page).await?;
    Ok(Json(page.page(rows, |r| r.reminder_id)))
}

/// Events from the appointment, billing and payment services: each processed once (inbox),
/// each turned into messages on the patient's channels; appointment events also schedule,
/// move or cancel reminders.
#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body = Event,
    responses((status = 200, description = "Processed, or a duplicate", body = EventAck),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 503, description = "the patient or doctor service is down; redeliver later", body = ErrorBody)))]
async fn receive_event(
    State(ctx): Ctx,
    caller: Caller,
    Json(ev): Json<Event>,
) -> Result<Json<EventAck>, Error> {
    hms_kit::inbox::authorise(
        &caller,
        &ev,
        &[Service::Appointment, Service::Billing, Service::Payment],
    )?;
    if hms_kit::inbox::seen(&ctx.db, &ev).await? {
        return Ok(Json(EventAck { duplicate: true }));
    }
    let p = ev.payload.clone();
    let patient_id = int(&p, "patient_id")?;
    let tz = ctx.config.clinic_tz();
    let currency = ctx.config.currency.clone();
    let now = ctx.clock.now();
    let source_id = ev.event_id.to_string();
    let event_type = ev.event_type.clone();

    let ack = if let Some(kind) = ev.event_type.strip_prefix("appointment.") {
        let doctor_id = int(&p, "doctor_id")?;
        let state = AppointmentState {
            appointment_id: int(&p, "appointment_id")?,
            patient_id,
            doctor_id,
            slot_start: instant(&p, "slot_start")
                .ok_or_else(|| Error::validation("slot_start", "event payload lacks slot_start"))?,
            status: hms_kit::inbox::payload::one_of(
                &p,
                "status",
                &hms_client::models::APPOINTMENT_STATUSES,
            )?
            .to_string(),
            seq: ev.aggregate_seq,
        };
        let (patient, doctor) = lookup(&ctx, patient_id, Some(doctor_id)).await?;
        let doctor = doctor.expect("asked for the doctor");
        let facts = AppointmentFacts {
            appointment_id: state.appointment_id,
            doctor: &doctor.name,
            department: &doctor.department,
            slot_start: state.slot_start,
            tz,
            currency: &currency,
        };
        let fee = hms_kit::inbox::payload::money(&p, "consultation_fee")?;
        let message = match kind {
            "booked" => Some(facts.booked()),
            "rescheduled" => Some(facts.rescheduled(instant(&p, "previous_slot_start"))),
            "cancelled" => Some(facts.cancelled(
                hms_kit::inbox::payload::one_of(&p, "fee_decision", &["none", "half"])?,
                fee,
            )),
            "no_show" => Some(facts.no_show(fee)),
            // Completion is followed by the bill's own message.
            _ => None,
        };
        let offsets = ctx.config.reminder_offsets_minutes.clone();
        let metadata =
            serde_json::json!({ "appointment_id": state.appointment_id, "doctor_id": doctor_id });
        hms_kit::inbox::receive(&ctx.db, &ctx.outbox, &ev, now, move |tx| {
            Box::pin(async move {
                // Only a newer event changes anything: a late or repeated one is a no-op.
                if store::apply_appointment(tx, &state).await? {
                    store::cancel_reminders(tx, state.appointment_id).await?;
                    if state.status == "SCHEDULED" {
                        store::schedule_reminders(tx, &state, &offsets, now).await?;
                    }
                    if let Some(m) = message {
                        record_for(tx, &patient, &source_id, &event_type, &m, metadata, now)
                            .await?;
                    }
                }
                Ok(())
            })
        })
        .await?
    } else {
        // Imported history is not news to anyone.
        let legacy = p["legacy"].as_bool().unwrap_or(false);
        let message = match ev.event_type.as_str() {
            _ if legacy => None,
            "bill.created" => Some(messages::bill_created(
                int(&p, "bill_id")?,
                amount(&p, "total")?,
                &currency,
            )),
            "payment.captured" => Some(messages::payment_received(
                int(&p, "bill_id")?,
                amount(&p, "amount")?,
                &currency,
            )),
            "payment.refunded" => Some(messages::refund_issued(
                int(&p, "bill_id")?,
                amount(&p, "amount")?,
                &currency,
            )),
            _ => None,
        };
        let patient = match message {
            Some(_) => Some(lookup(&ctx, patient_id, None).await?.0),
            None => None,
        };
        let metadata = p.clone();
        hms_kit::inbox::receive(&ctx.db, &ctx.outbox, &ev, now, move |tx| {
            Box::pin(async move {
                if let (Some(m), Some(patient)) = (message, patient) {
                    record_for(tx, &patient, &source_id, &event_type, &m, metadata, now).await?;
                }
                Ok(())
            })
        })
        .await?
    };
    Ok(Json(ack))
}

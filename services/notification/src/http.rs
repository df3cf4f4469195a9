//! Notification routes: events in, alerts and reminders out to staff.

use crate::contacts::Contacts;
use crate::doctors;
use crate::messages::{self, AppointmentFacts};
use crate::providers::SentWhenRecorded;
use crate::store::{self, AppointmentState, When};
use crate::worker::{record_for, recorded_sent, Message, Recording};
use axum::extract::State;
use axum::http::Method;
use hms_client::contract::{
    AppointmentEvent, AppointmentStatus, BillEvent, DoctorEvent, FeeDecision, PaymentEvent,
};
use hms_client::models::*;
use hms_client::ErrorBody;
use hms_kit::auth::{AccessTable, Caller, Role};
use hms_kit::db::Script;
use hms_kit::extract::{Json, Query};
use hms_kit::inbox::decode;
use hms_kit::pagination::PageRequest;
use hms_kit::server::{ServiceCtx, ServiceRoutes};
use hms_kit::{Error, Service};
use std::sync::Arc;

/// An event notification acts on, decoded by its producer's contract.
enum Incoming {
    Appointment(AppointmentEvent),
    Bill(BillEvent),
    Payment(PaymentEvent),
    Doctor(DoctorEvent),
}

fn incoming(ev: &Event) -> Result<Option<Incoming>, Error> {
    Ok(match ev.source.as_str() {
        "appointment" => decode::<AppointmentEvent>(ev)?.map(Incoming::Appointment),
        "billing" => decode::<BillEvent>(ev)?.map(Incoming::Bill),
        "payment" => decode::<PaymentEvent>(ev)?.map(Incoming::Payment),
        "doctor" => decode::<DoctorEvent>(ev)?.map(Incoming::Doctor),
        _ => None,
    })
}
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Ctx = State<Arc<NotificationCtx>>;

/// The service's context, and its lookups of patients' contact details and doctors' names.
pub struct NotificationCtx {
    ctx: ServiceCtx,
    contacts: Contacts,
    doctors: doctors::Names,
}

impl std::ops::Deref for NotificationCtx {
    type Target = ServiceCtx;
    fn deref(&self) -> &ServiceCtx {
        &self.ctx
    }
}

pub fn routes(ctx: &ServiceCtx) -> ServiceRoutes {
    let api = OpenApiRouter::new()
        .routes(routes!(list_notifications))
        .routes(routes!(list_reminders))
        .routes(routes!(receive_event))
        .routes(routes!(receive_events))
        .with_state(Arc::new(NotificationCtx {
            ctx: ctx.clone(),
            contacts: Contacts::spawn(ctx.downstream.clone()),
            doctors: doctors::Names::spawn(ctx.clone()),
        }));
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
        (Method::POST, "/v1/events/batch", &[Role::Service]),
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
    let rows = store::list_notifications(&mut *ctx.db.read().await?, &q, page).await?;
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
    let rows = store::list_reminders(&mut *ctx.db.read().await?, &q, page).await?;
    Ok(Json(page.page(rows, |r| r.reminder_id)))
}

hms_kit::event_routes!(
    NotificationCtx,
    prepare_event,
    /// Events from the appointment, billing and payment services: each processed once (inbox),
    /// each turned into messages on the patient's channels; appointment events also schedule,
    /// move or cancel reminders. The doctor service's events say which kept doctors' names are
    /// out of date.
);

async fn prepare_event(
    ctx: Arc<NotificationCtx>,
    caller: Caller,
    ev: Event,
) -> Result<hms_kit::inbox::Effect, Error> {
    hms_kit::inbox::authorise(
        &caller,
        &ev,
        &[
            Service::Appointment,
            Service::Billing,
            Service::Payment,
            Service::Doctor,
        ],
    )?;
    // A repeat needs no lookups; the inbox then finds it processed.
    if hms_kit::inbox::seen(&ctx.db, &ev).await? {
        return Ok(hms_kit::inbox::no_effect());
    }
    let tz = ctx.config.clinic_tz();
    let currency = ctx.config.currency.clone();
    let now = ctx.clock.now();
    let recording = Recording {
        now,
        sent: SentWhenRecorded::of(&ctx.config),
    };
    let source_id = ev.event_id.to_string();
    let event_type = ev.event_type.clone();
    let metadata = ev.payload.clone();

    let effect = match incoming(&ev)? {
        Some(Incoming::Appointment(event)) => {
            let a = event.appointment();
            let state = AppointmentState {
                appointment_id: a.appointment_id,
                patient_id: a.patient_id,
                doctor_id: a.doctor_id,
                slot_start: a.slot_start,
                status: a.status.as_str().to_string(),
                seq: ev.aggregate_seq,
            };
            let scheduled = a.status == AppointmentStatus::Scheduled;
            let (patient, doctor) = tokio::try_join!(
                ctx.contacts.patient(a.patient_id),
                ctx.doctors.named(a.doctor_id)
            )?;
            let facts = AppointmentFacts {
                appointment_id: a.appointment_id,
                doctor: &doctor.name,
                department: &doctor.department,
                slot_start: a.slot_start,
                tz,
                currency: &currency,
            };
            let message = match &event {
                AppointmentEvent::Booked(_) => Some(facts.booked()),
                AppointmentEvent::Rescheduled(r) => {
                    Some(facts.rescheduled(Some(r.extra.previous_slot_start)))
                }
                AppointmentEvent::Cancelled(c) => Some(facts.cancelled(
                    c.appointment.fee_decision.unwrap_or(FeeDecision::None),
                    c.appointment.consultation_fee,
                )),
                AppointmentEvent::NoShow(n) => Some(facts.no_show(n.appointment.consultation_fee)),
                // Completion is followed by the bill's own message.
                AppointmentEvent::Completed(_) => None,
            };
            let offsets = ctx.config.reminder_offsets_minutes.clone();
            let metadata =
                serde_json::json!({ "appointment_id": a.appointment_id, "doctor_id": a.doctor_id });
            // Only a newer event changes anything: a late or repeated one is a no-op, decided
            // in each statement (see `store::When`).
            let mut script = Script::new();
            store::record_appointment(&mut script, &state);
            store::cancel_reminders(&mut script, &state);
            if scheduled {
                store::schedule_reminders(&mut script, &state, &offsets, now);
            }
            if let Some(text) = message {
                let m = Message {
                    source_id: &source_id,
                    event_type: &event_type,
                    text: &text,
                    metadata,
                };
                record_for(&mut script, &patient, &m, When::Newest(&state), recording);
            }
            hms_kit::inbox::returning(script, recorded_sent)
        }
        Some(Incoming::Doctor(
            DoctorEvent::Registered(f) | DoctorEvent::Updated(f) | DoctorEvent::ScheduleChanged(f),
        )) => hms_kit::inbox::effect(move |tx| {
            Box::pin(async move { doctors::announced(tx, f.doctor_id, f.version).await })
        }),
        other => {
            // Imported history is not news to anyone.
            let news = match other {
                Some(Incoming::Bill(BillEvent::Created(b))) if !b.legacy => Some((
                    b.patient_id,
                    messages::bill_created(b.bill_id, b.total, &currency),
                )),
                Some(Incoming::Payment(PaymentEvent::Captured(c))) if !c.legacy => Some((
                    c.patient_id,
                    messages::payment_received(c.bill_id, c.amount, &currency),
                )),
                Some(Incoming::Payment(PaymentEvent::Refunded(r))) => Some((
                    r.patient_id,
                    messages::refund_issued(r.bill_id, r.amount, &currency),
                )),
                _ => None,
            };
            let news = match news {
                Some((patient_id, m)) => Some((ctx.contacts.patient(patient_id).await?, m)),
                None => None,
            };
            let mut script = Script::new();
            if let Some((patient, text)) = news {
                let m = Message {
                    source_id: &source_id,
                    event_type: &event_type,
                    text: &text,
                    metadata,
                };
                record_for(&mut script, &patient, &m, When::Always, recording);
            }
            hms_kit::inbox::returning(script, recorded_sent)
        }
    };
    Ok(effect)
}

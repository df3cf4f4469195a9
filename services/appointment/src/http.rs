//! Appointment routes, their access rules, and the translation of the database's verdicts.

use crate::checks;
use crate::domain::{self, check_doctor, Action, FeeDecision, Rules, Status};
use crate::known;
use crate::store::{self, Booking, Fee, Refused};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hms_client::contract::{
    AppointmentAnd, AppointmentEvent, AppointmentFacts, AppointmentStatus, Cancelled, Completed,
    DoctorEvent, FeeDecision as ContractFee, NoShow, PatientEvent, Rescheduled,
};
use hms_client::models::{Appointment, AppointmentQuery, NewAppointment, Page, Reschedule};
use hms_client::ErrorBody;
use hms_kit::auth::{AccessTable, Caller, Role};
use hms_kit::db::{backend_of, Backend};
use hms_kit::extract::{with_etag, IfMatch, Json, Path, Query};
use hms_kit::group_commit::{Group, Turn};
use hms_kit::idempotency::{self, Answer, Idempotent, Keyed, Outcome};
use hms_kit::outbox::NewEvent;
use hms_kit::pagination::PageRequest;
use hms_kit::server::{ServiceCtx, ServiceRoutes};
use hms_kit::time::clinic;
use hms_kit::Error;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Ctx = State<Arc<AppointmentCtx>>;

/// The service's context, the task that group-commits bookings, and the reads of what is
/// kept of patients and doctors.
pub struct AppointmentCtx {
    ctx: ServiceCtx,
    bookings: Group<Asking, Appointment>,
    /// On SQLite only (see [`transitions`]).
    transitions: Option<Group<Moving, Appointment>>,
    kept: known::Kept,
}

impl std::ops::Deref for AppointmentCtx {
    type Target = ServiceCtx;
    fn deref(&self) -> &ServiceCtx {
        &self.ctx
    }
}

/// A booking that passed every rule outside the database, given to the group writer.
struct Asking {
    booking: Booking,
    cap: i64,
    now: DateTime<Utc>,
    key: Option<Keyed>,
    /// The request's, carried by its event.
    correlation_id: String,
}

/// Bookings committed in groups (`kit::group_commit::Group`): the rows, claims and day counts
/// of the whole group in one statement each, their events and stored answers likewise, one
/// commit. If any is refused the group is undone and each books alone (the `book` route).
fn bookings(ctx: &ServiceCtx) -> Group<Asking, Appointment> {
    Group::spawn(
        ctx.db.clone(),
        ctx.outbox.clone(),
        Arc::new(move |tx, outbox, group: &[Asking]| {
            Box::pin(async move {
                let backend = backend_of(tx);
                let asked: Vec<store::Asked> = group
                    .iter()
                    .map(|g| store::Asked {
                        booking: &g.booking,
                        cap: g.cap,
                        now: g.now,
                    })
                    .collect();
                store::book_all(tx, &asked, |made, script| {
                    let events = made
                        .iter()
                        .zip(group)
                        .map(|(a, g)| {
                            let booked = event(a, &AppointmentEvent::Booked(facts(a)?));
                            Ok((booked, g.correlation_id.as_str()))
                        })
                        .collect::<Result<Vec<_>, Error>>()?;
                    outbox.enqueue_all_in(script, &events)?;
                    let bodies = made
                        .iter()
                        .zip(group)
                        .filter_map(|(a, g)| g.key.as_ref().map(|k| (k, a)))
                        .map(|(k, a)| Ok((k, serde_json::to_string(a).map_err(Error::internal)?)))
                        .collect::<Result<Vec<_>, Error>>()?;
                    let answers: Vec<_> = bodies
                        .iter()
                        .map(|(k, body)| (*k, StatusCode::CREATED, body.as_str()))
                        .collect();
                    idempotency::store_all_in(script, backend, &answers, group[0].now)
                })
                .await
            })
        }),
    )
}

/// A cancel, no-show or complete that passed every check outside the database, given to the
/// group writer.
struct Moving {
    id: i64,
    action: Action,
    fee: Fee,
    bound: Option<DateTime<Utc>>,
    expected: Option<i64>,
    now: DateTime<Utc>,
    /// The request's, carried by its event.
    correlation_id: String,
}

/// Transitions committed in groups, as bookings are: each the same guarded UPDATE (and slot
/// release) as alone, their events one script, one commit for the group. If any is refused
/// (no longer SCHEDULED, too early, a stale `If-Match`), the group is undone and each is taken
/// alone (`finish`), where the refusal is judged and answered.
///
/// SQLite only. There every write waits for the one writer, which a group takes once for
/// many. PostgreSQL writes in parallel, and a group there would hold several appointments'
/// and doctor-days' row locks at once, taken in arrival order: with two instances it
/// deadlocked with reschedules and bookings, and a reschedule chosen as the victim was
/// answered 503 (random churn, two instances). Alone, a transition holds one of each.
fn transitions(ctx: &ServiceCtx) -> Option<Group<Moving, Appointment>> {
    if ctx.db.backend() != Backend::Sqlite {
        return None;
    }
    Some(Group::spawn(
        ctx.db.clone(),
        ctx.outbox.clone(),
        Arc::new(move |tx, outbox, group: &[Moving]| {
            Box::pin(async move {
                let mut made = Vec::with_capacity(group.len());
                for m in group {
                    let to = m.action.target();
                    match store::finish(tx, m.id, to, m.fee, m.bound, m.expected, m.now).await? {
                        Ok(a) => made.push(a),
                        Err(_) => return Err(Error::rule("invalid_transition", "judged alone")),
                    }
                }
                let events = made
                    .iter()
                    .zip(group)
                    .map(|(a, m)| Ok((announced(a, m.action, m.now)?, m.correlation_id.as_str())))
                    .collect::<Result<Vec<_>, Error>>()?;
                outbox.enqueue_all(tx, &events).await?;
                Ok(made)
            })
        }),
    ))
}

const DESK: &[Role] = &[Role::Reception, Role::Admin];
const READERS: &[Role] = &[
    Role::Reception,
    Role::Doctor,
    Role::Billing,
    Role::Admin,
    Role::Service,
];
/// A doctor completes their own appointments; the desk may too.
const COMPLETERS: &[Role] = &[Role::Reception, Role::Doctor, Role::Admin];

pub fn routes(ctx: &ServiceCtx) -> ServiceRoutes {
    let api = OpenApiRouter::new()
        .routes(routes!(reserve_ids))
        .routes(routes!(book, list))
        .routes(routes!(get_one))
        .routes(routes!(reschedule))
        .routes(routes!(cancel))
        .routes(routes!(no_show))
        .routes(routes!(complete))
        .routes(routes!(import))
        .routes(routes!(receive_event))
        .routes(routes!(receive_events))
        .with_state(Arc::new(AppointmentCtx {
            ctx: ctx.clone(),
            bookings: bookings(ctx),
            transitions: transitions(ctx),
            kept: known::Kept::spawn(ctx.db.clone()),
        }));
    let access = AccessTable::new(&[
        (Method::POST, "/v1/appointments/import/ids", &[Role::Admin]),
        (Method::POST, "/v1/appointments", DESK),
        (Method::GET, "/v1/appointments", READERS),
        (Method::GET, "/v1/appointments/{id}", READERS),
        (Method::POST, "/v1/appointments/{id}/reschedule", DESK),
        (Method::POST, "/v1/appointments/{id}/cancel", DESK),
        (Method::POST, "/v1/appointments/{id}/no-show", DESK),
        (Method::POST, "/v1/appointments/{id}/complete", COMPLETERS),
        (Method::POST, "/v1/events", &[Role::Service]),
        (Method::POST, "/v1/events/batch", &[Role::Service]),
        (Method::POST, "/v1/appointments/import", &[Role::Admin]),
    ]);
    ServiceRoutes { api, access }
}

/// The appointment as its events carry it; the statuses come from the database's CHECKed
/// columns, so a value outside the contract is a bug, not input.
fn facts(a: &Appointment) -> Result<AppointmentFacts, Error> {
    let status = AppointmentStatus::parse(&a.status)
        .ok_or_else(|| Error::internal(anyhow::anyhow!("appointment status {:?}", a.status)))?;
    let fee_decision = match a.fee_decision.as_deref() {
        None => None,
        Some(d) => Some(
            ContractFee::parse(d)
                .ok_or_else(|| Error::internal(anyhow::anyhow!("fee decision {d:?}")))?,
        ),
    };
    Ok(AppointmentFacts {
        appointment_id: a.appointment_id,
        patient_id: a.patient_id,
        doctor_id: a.doctor_id,
        department: a.department.clone(),
        slot_start: a.slot_start,
        slot_end: a.slot_end,
        status,
        reschedule_count: a.reschedule_count,
        consultation_fee: a.consultation_fee,
        fee_decision,
    })
}

fn event(a: &Appointment, event: &AppointmentEvent) -> NewEvent<'static> {
    NewEvent::of("appointment", a.appointment_id, a.version, event)
}

/// A doctor sees only their own appointments; to them, others' do not exist.
fn visible_to(caller: &Caller, a: &Appointment) -> bool {
    caller.role != Role::Doctor || caller.doctor_id == Some(a.doctor_id)
}

async fn load(ctx: &ServiceCtx, caller: &Caller, id: i64) -> Result<Appointment, Error> {
    store::get(&mut *ctx.db.read().await?, id)
        .await?
        .filter(|a| visible_to(caller, a))
        .ok_or_else(|| Error::not_found(format!("appointment {id}")))
}

fn created(a: &Appointment) -> Response {
    hms_kit::extract::created(
        &format!("/v1/appointments/{}", a.appointment_id),
        a.version,
        a,
    )
}

/// Book a standard slot.
///
/// Rules, each with its own code: the slot is standard (`slot_not_standard`), inside clinic
/// hours (`outside_clinic_hours`), at least 2 h ahead (`lead_time`); the patient exists and is
/// active (`patient_inactive`); the doctor is active (`doctor_inactive`), in the department
/// (`department_mismatch`), working and not on leave (`doctor_unavailable`); the slot is free
/// for the doctor (409 `slot_taken`) and the patient (409 `patient_busy`); the doctor's day is
/// not full (`daily_cap_reached`). With `Idempotency-Key`, a retry returns the same appointment.
#[utoipa::path(post, path = "/v1/appointments", tag = "appointments",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and body return the same appointment")),
    request_body = NewAppointment,
    responses(
        (status = 201, description = "Booked (SCHEDULED)", body = Appointment),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such patient or doctor", body = ErrorBody),
        (status = 409, description = "slot_taken, patient_busy, idempotency_key_in_progress", body = ErrorBody),
        (status = 422, description = "A booking rule refused it (see the code)", body = ErrorBody),
        (status = 503, description = "dependency_unavailable: patient or doctor service down", body = ErrorBody),
    ))]
async fn book(
    State(ctx): Ctx,
    caller: Caller,
    headers: HeaderMap,
    Json(new): Json<NewAppointment>,
) -> Result<Response, Error> {
    let now = ctx.clock.now();
    let key = idempotency::key_from(&headers)?;
    let idem = Idempotent::new(
        &ctx.db,
        key.as_deref(),
        "appointments.create",
        "",
        &caller.subject,
        &new,
    )?;
    // A retry is answered before any rule is re-judged (the slot may be "too soon" by now).
    if let Some(stored) = idem.replay().await? {
        return Ok(stored.into_response());
    }
    if new.department.trim().is_empty() {
        return Err(Error::validation("department", "department is required"));
    }
    let rules = Rules::from_config(&ctx.config);
    let slot = rules.check_slot(new.slot_start, new.slot_end, now)?;
    let schedule =
        checks::patient_and_doctor(&ctx, &ctx.kept, new.patient_id, new.doctor_id, slot.day)
            .await?;
    check_doctor(&schedule, &new.department, &slot)?;
    let booking = Booking {
        patient_id: new.patient_id,
        doctor_id: new.doctor_id,
        department: schedule.doctor.department.clone(),
        slot,
        fee: schedule.doctor.consultation_fee,
    };
    let asking = Asking {
        booking,
        cap: rules.daily_cap,
        now,
        key: idem.request().map(|r| r.keyed()),
        correlation_id: hms_kit::correlation::current_id(),
    };
    // Committed with whatever else is being booked; or, if that group was refused, alone.
    let booking = match ctx.bookings.submit(asking).await? {
        Turn::Committed(a) => return Ok(booked(&a)),
        Turn::Alone(asking) => asking.booking,
    };
    let answer = idem
        .run(&ctx.outbox, now, |mut tx| async {
            let a = store::book(&mut tx, &booking, rules.daily_cap, now, |a, script| {
                let booked = event(a, &AppointmentEvent::Booked(facts(a)?));
                ctx.outbox.enqueue_in(script, booked)?;
                Ok(())
            })
            .await?;
            Ok((tx, Outcome::Done(StatusCode::CREATED, a)))
        })
        .await?;
    match answer {
        Answer::Fresh(_, a) => Ok(booked(&a)),
        Answer::Replay(stored) => Ok(stored.into_response()),
    }
}

fn booked(a: &Appointment) -> Response {
    metrics::counter!("appointments_created_total", "service" => "appointment").increment(1);
    tracing::info!(
        appointment_id = a.appointment_id, patient_id = a.patient_id, doctor_id = a.doctor_id,
        slot_start = %a.slot_start, "appointment booked"
    );
    created(a)
}

hms_kit::event_routes!(
    AppointmentCtx,
    prepare_event,
    /// Patient and doctor events: keep what booking needs to know of them (`known`).
);

async fn prepare_event(
    _ctx: Arc<AppointmentCtx>,
    caller: Caller,
    ev: hms_client::models::Event,
) -> Result<hms_kit::inbox::Effect, Error> {
    use hms_kit::inbox::{decode, effect, no_effect};
    use hms_kit::Service;
    hms_kit::inbox::authorise(&caller, &ev, &[Service::Patient, Service::Doctor])?;
    if ev.source == Service::Patient.name() {
        let Some(e) = decode::<PatientEvent>(&ev)? else {
            return Ok(no_effect());
        };
        let (id, active, version) = match e {
            PatientEvent::Registered(f) | PatientEvent::Deactivated(f) => {
                (f.patient_id, f.active, f.version)
            }
            PatientEvent::Updated(c) => (c.patient_id, c.active, c.version),
        };
        return Ok(effect(move |tx| {
            Box::pin(async move { known::remember_patient(&mut **tx, id, active, version).await })
        }));
    }
    let Some(e) = decode::<DoctorEvent>(&ev)? else {
        return Ok(no_effect());
    };
    let (DoctorEvent::Registered(f) | DoctorEvent::Updated(f) | DoctorEvent::ScheduleChanged(f)) =
        e;
    Ok(effect(move |tx| {
        Box::pin(async move { known::doctor_changed(tx, f.doctor_id, f.version).await })
    }))
}

/// List appointments; filter by patient, doctor, status, department and a slot-start range.
/// A doctor sees only their own.
#[utoipa::path(get, path = "/v1/appointments", tag = "appointments",
    params(AppointmentQuery),
    responses(
        (status = 200, description = "One page", body = Page<Appointment>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ))]
async fn list(
    State(ctx): Ctx,
    caller: Caller,
    Query(mut q): Query<AppointmentQuery>,
) -> Result<Json<Page<Appointment>>, Error> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let status = q.status.as_deref().map(str::parse::<Status>).transpose()?;
    if caller.role == Role::Doctor {
        match (q.doctor_id, caller.doctor_id) {
            (Some(asked), Some(own)) if asked != own => {
                return Err(Error::forbidden(
                    "a doctor sees only their own appointments",
                ))
            }
            _ => q.doctor_id = caller.doctor_id,
        }
    }
    // A window that ends before it starts holds nothing.
    if let (Some(f), Some(t)) = (q.from, q.to) {
        if t <= f {
            return Ok(Json(Page {
                items: Vec::new(),
                next_cursor: None,
            }));
        }
    }
    let rows = store::list(&mut *ctx.db.read().await?, &q, status, page).await?;
    Ok(Json(page.page(rows, |a| a.appointment_id)))
}

/// One appointment. Carries `ETag: W/"<version>"`.
#[utoipa::path(get, path = "/v1/appointments/{id}", tag = "appointments",
    params(("id" = i64, Path, description = "Appointment id")),
    responses((status = 200, body = Appointment), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_one(State(ctx): Ctx, caller: Caller, Path(id): Path<i64>) -> Result<Response, Error> {
    let a = load(&ctx, &caller, id).await?;
    Ok(with_etag(a.version, StatusCode::OK, &a))
}

/// Turns a refused guarded update into the rule it broke.
fn refused(
    id: i64,
    action: Action,
    why: Refused,
    rules: &Rules,
    now: chrono::DateTime<chrono::Utc>,
) -> Error {
    match why {
        Refused::NotFound => Error::not_found(format!("appointment {id}")),
        Refused::Stale(v) => Error::version_conflict(v),
        Refused::Current(a) => {
            let status: Status = a.status.parse().unwrap_or(Status::Scheduled);
            if !domain::allowed(status, action) {
                return domain::invalid_transition(status, action);
            }
            match action {
                Action::NoShow => Error::rule(
                    "no_show_too_early",
                    format!(
                        "a no-show can be recorded from {} ({} minutes after the start)",
                        clinic(a.slot_start + rules.no_show_grace),
                        rules.no_show_grace.num_minutes()
                    ),
                ),
                Action::Complete => Error::rule(
                    "complete_too_early",
                    format!(
                        "the appointment starts at {}; it can be completed from then",
                        clinic(a.slot_start)
                    ),
                ),
                Action::Reschedule if a.reschedule_count >= domain::MAX_RESCHEDULES => Error::rule(
                    "reschedule_limit",
                    format!(
                        "an appointment can be rescheduled at most {} times",
                        domain::MAX_RESCHEDULES
                    ),
                ),
                Action::Reschedule if a.slot_start <= rules.reschedule_earliest_start(now) => {
                    Error::rule(
                        "reschedule_cutoff",
                        format!(
                            "no rescheduling within {} minutes of the start",
                            rules.reschedule_cutoff.num_minutes()
                        ),
                    )
                }
                _ => domain::invalid_transition(status, action),
            }
        }
    }
}

async fn finish(
    ctx: &AppointmentCtx,
    caller: &Caller,
    id: i64,
    action: Action,
    expected: Option<i64>,
) -> Result<Response, Error> {
    let current = load(ctx, caller, id).await?;
    if action == Action::Complete {
        caller.require_own_doctor(current.doctor_id)?;
    }
    let rules = Rules::from_config(&ctx.config);
    let now = ctx.clock.now();
    let (fee, bound) = match action {
        Action::Cancel => (Fee::HalfIfStartsBy(rules.fee_threshold(now)), None),
        Action::NoShow => (
            Fee::Fixed(FeeDecision::Full),
            Some(rules.no_show_latest_start(now)),
        ),
        Action::Complete => (Fee::Unchanged, Some(now)),
        Action::Reschedule => unreachable!("reschedule has its own handler"),
    };
    let moving = Moving {
        id,
        action,
        fee,
        bound,
        expected,
        now,
        correlation_id: hms_kit::correlation::current_id(),
    };
    // Committed with whatever else is moving; or, if that group was refused (or there are no
    // groups), alone.
    let grouped = match &ctx.transitions {
        Some(group) => Some(group.submit(moving).await?),
        None => None,
    };
    let a = match grouped {
        Some(Turn::Committed(a)) => a,
        Some(Turn::Alone(_)) | None => {
            let mut tx = ctx.db.begin().await?;
            let a = match store::finish(&mut tx, id, action.target(), fee, bound, expected, now)
                .await?
            {
                Ok(a) => a,
                Err(why) => return Err(refused(id, action, why, &rules, now)),
            };
            ctx.outbox
                .enqueue(&mut tx, announced(&a, action, now)?)
                .await?;
            ctx.outbox.commit(tx).await?;
            a
        }
    };
    tracing::info!(appointment_id = id, action = action.as_str(), fee = ?a.fee_decision, "appointment transition");
    Ok(with_etag(a.version, StatusCode::OK, &a))
}

/// The event a transition announces, as of the row it left.
fn announced(
    a: &Appointment,
    action: Action,
    now: DateTime<Utc>,
) -> Result<NewEvent<'static>, Error> {
    let appointment = facts(a)?;
    let said = match action {
        Action::Cancel => AppointmentEvent::Cancelled(AppointmentAnd {
            appointment,
            extra: Cancelled {
                cancelled_at: now,
                minutes_before_start: (a.slot_start - now).num_minutes(),
            },
        }),
        Action::NoShow => AppointmentEvent::NoShow(AppointmentAnd {
            appointment,
            extra: NoShow { recorded_at: now },
        }),
        _ => AppointmentEvent::Completed(AppointmentAnd {
            appointment,
            extra: Completed { completed_at: now },
        }),
    };
    Ok(event(a, &said))
}

/// Cancel: releases the slot. 2 hours or less before the start (or later), a 50% fee is
/// decided (`fee_decision: half`), else none; the event carries it.
#[utoipa::path(post, path = "/v1/appointments/{id}/cancel", tag = "appointments",
    params(("id" = i64, Path, description = "Appointment id"), ("If-Match" = Option<String>, Header, description = "ETag from a read")),
    responses(
        (status = 200, description = "CANCELLED", body = Appointment), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "invalid_transition", body = ErrorBody), (status = 412, body = ErrorBody),
    ))]
async fn cancel(
    State(ctx): Ctx,
    caller: Caller,
    Path(id): Path<i64>,
    IfMatch(v): IfMatch,
) -> Result<Response, Error> {
    finish(&ctx, &caller, id, Action::Cancel, v).await
}

/// No-show: once the 15-minute grace period after the start has passed; 100% fee.
#[utoipa::path(post, path = "/v1/appointments/{id}/no-show", tag = "appointments",
    params(("id" = i64, Path, description = "Appointment id"), ("If-Match" = Option<String>, Header, description = "ETag from a read")),
    responses(
        (status = 200, description = "NO_SHOW", body = Appointment), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 412, body = ErrorBody),
        (status = 422, description = "no_show_too_early", body = ErrorBody),
    ))]
async fn no_show(
    State(ctx): Ctx,
    caller: Caller,
    Path(id): Path<i64>,
    IfMatch(v): IfMatch,
) -> Result<Response, Error> {
    finish(&ctx, &caller, id, Action::NoShow, v).await
}

/// Complete: from the slot's start; a doctor completes only their own appointments.
#[utoipa::path(post, path = "/v1/appointments/{id}/complete", tag = "appointments",
    params(("id" = i64, Path, description = "Appointment id"), ("If-Match" = Option<String>, Header, description = "ETag from a read")),
    responses(
        (status = 200, description = "COMPLETED", body = Appointment), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 412, body = ErrorBody),
        (status = 422, description = "complete_too_early", body = ErrorBody),
    ))]
async fn complete(
    State(ctx): Ctx,
    caller: Caller,
    Path(id): Path<i64>,
    IfMatch(v): IfMatch,
) -> Result<Response, Error> {
    finish(&ctx, &caller, id, Action::Complete, v).await
}

/// The new slot, from a JSON body or (the original system's form) query parameters.
fn new_slot(query: Option<String>, body: &Bytes) -> Result<Reschedule, Error> {
    // A JSON `null` body is no body (the document declares the body optional).
    let absent = body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null";
    if !absent {
        return serde_json::from_slice::<Reschedule>(body).map_err(|e| {
            let field = if e.to_string().contains("new_slot_start") {
                "new_slot_start"
            } else {
                "body"
            };
            Error::validation(field, format!("invalid JSON body: {e}"))
        });
    }
    let q = query.unwrap_or_default();
    if q.is_empty() {
        return Err(Error::validation(
            "new_slot_start",
            "give new_slot_start (and new_slot_end) as a JSON body or as query parameters",
        ));
    }
    let uri: axum::http::Uri = format!("/?{q}")
        .parse()
        .map_err(|_| Error::bad_request("the query string is malformed"))?;
    let axum::extract::Query(r) = axum::extract::Query::<Reschedule>::try_from_uri(&uri)?;
    Ok(r)
}

/// Reschedule to a new slot: at most twice, not within 1 hour of the current start, and the
/// new slot passes every booking rule. The version is bumped; the slot claims move atomically.
#[utoipa::path(post, path = "/v1/appointments/{id}/reschedule", tag = "appointments",
    params(("id" = i64, Path, description = "Appointment id"), ("If-Match" = Option<String>, Header, description = "ETag from a read")),
    request_body(content = Reschedule, description = "The new slot (the original system's query parameters `new_slot_start`, `new_slot_end` are still read when there is no body)"),
    responses(
        (status = 200, description = "Moved", body = Appointment), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "slot_taken, patient_busy, invalid_transition", body = ErrorBody),
        (status = 412, body = ErrorBody),
        (status = 422, description = "reschedule_limit, reschedule_cutoff, or a booking rule", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
async fn reschedule(
    State(ctx): Ctx,
    caller: Caller,
    Path(id): Path<i64>,
    IfMatch(expected): IfMatch,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, Error> {
    let to = new_slot(query, &body)?;
    let current = load(&ctx, &caller, id).await?;
    let rules = Rules::from_config(&ctx.config);
    let now = ctx.clock.now();
    let status: Status = current.status.parse()?;
    if !domain::allowed(status, Action::Reschedule) {
        return Err(domain::invalid_transition(status, Action::Reschedule));
    }
    let slot = rules.check_slot(to.new_slot_start, to.new_slot_end, now)?;
    let schedule = checks::patient_and_doctor(
        &ctx,
        &ctx.kept,
        current.patient_id,
        current.doctor_id,
        slot.day,
    )
    .await?;
    check_doctor(&schedule, &current.department, &slot)?;

    let mut tx = ctx.db.begin().await?;
    let earliest = rules.reschedule_earliest_start(now);
    let (a, previous) =
        match store::reschedule(&mut tx, id, &slot, earliest, expected, rules.daily_cap, now)
            .await?
        {
            Ok(moved) => moved,
            Err(why) => return Err(refused(id, Action::Reschedule, why, &rules, now)),
        };
    ctx.outbox
        .enqueue(
            &mut tx,
            event(
                &a,
                &AppointmentEvent::Rescheduled(AppointmentAnd {
                    appointment: facts(&a)?,
                    extra: Rescheduled {
                        previous_slot_start: previous,
                    },
                }),
            ),
        )
        .await?;
    ctx.outbox.commit(tx).await?;
    tracing::info!(appointment_id = id, slot_start = %a.slot_start, "appointment rescheduled");
    Ok(with_etag(a.version, StatusCode::OK, &a))
}

/// Import one historical appointment (admin), keeping its id and status. Booking rules are not
/// re-judged (a past appointment is not "too soon"); an end before the start is replaced by
/// start + 30 minutes with a warning. Repeating an import changes nothing (`already_present`).
#[utoipa::path(post, path = "/v1/appointments/import", tag = "appointments",
    request_body = hms_client::models::LegacyAppointment,
    responses((status = 200, body = hms_client::models::ImportOutcome), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, description = "its patient or doctor is not in HMS", body = ErrorBody),
              (status = 409, description = "import_conflict: another appointment holds the id; slot_taken, patient_busy: a SCHEDULED one ahead clashes", body = ErrorBody),
              (status = 422, description = "a rule a SCHEDULED appointment still ahead must keep", body = ErrorBody)))]
async fn import(
    State(ctx): Ctx,
    headers: HeaderMap,
    Json(a): Json<hms_client::models::LegacyAppointment>,
) -> Result<Json<hms_client::models::ImportOutcome>, Error> {
    let status: Status = a.status.parse()?;
    hms_kit::import::legacy_id("appointment_id", a.appointment_id)?;
    if a.department.trim().is_empty() || a.department.chars().count() > 100 {
        return Err(Error::validation(
            "department",
            "department is required (at most 100 characters)",
        ));
    }
    for (field, id) in [("patient_id", a.patient_id), ("doctor_id", a.doctor_id)] {
        if id <= 0 {
            return Err(Error::validation(
                field,
                format!("{field} must be positive, not {id}"),
            ));
        }
    }
    let mut warnings = Vec::new();
    let slot_end = if a.slot_end <= a.slot_start {
        warnings.push(format!(
            "slot_end {} is not after slot_start {}; recorded as a 30-minute slot",
            a.slot_end, a.slot_start
        ));
        a.slot_start + chrono::Duration::minutes(domain::SLOT_MINUTES)
    } else {
        a.slot_end
    };
    let doctors_fee = checks::legacy_refs(&ctx, a.patient_id, a.doctor_id)
        .await?
        .map(|d| d.consultation_fee)
        .unwrap_or(ctx.config.default_consultation_fee);
    if let Some(f) = a.consultation_fee {
        hms_kit::money::price("consultation_fee", f)?;
    }
    let fee = a.consultation_fee.unwrap_or(doctors_fee);
    let now = ctx.clock.now();
    let tz = ctx.config.clinic_tz();
    let slot = domain::SlotChoice {
        start: a.slot_start,
        end: slot_end,
        day: a.slot_start.with_timezone(&tz).date_naive(),
    };
    // A SCHEDULED appointment still ahead holds its slot exactly as a booking does; one in
    // the past is history, claimed by nobody, and can still be completed or cancelled.
    let holds_slot = status == Status::Scheduled && a.slot_start > now;
    let legacy = store::Legacy {
        appointment: &a,
        slot,
        status,
        fee,
        holds_slot,
        cap: Rules::from_config(&ctx.config).daily_cap,
    };
    let mut tx = ctx.db.begin().await?;
    if let Some(vouched) = hms_kit::dry_run::context(&headers) {
        store::vouch_claims(&mut tx, &vouched.claims, &tz).await?;
    }
    let Some(created) = store::import(ctx.db.backend(), &mut tx, &legacy).await? else {
        return Ok(Json(hms_client::models::ImportOutcome {
            outcome: "already_present".into(),
            warnings,
        }));
    };
    if a.consultation_fee.is_none() {
        warnings.push(format!(
            "consultation fee {fee} is doctor {}'s current fee (the legacy data has none)",
            a.doctor_id
        ));
    }
    if holds_slot {
        // Availability, reminders and the doctor's day learn of it as of any booking.
        ctx.outbox
            .enqueue(
                &mut tx,
                event(&created, &AppointmentEvent::Booked(facts(&created)?)),
            )
            .await?;
    }
    ctx.outbox.commit(tx).await?;
    Ok(Json(hms_client::models::ImportOutcome {
        outcome: "imported".into(),
        warnings,
    }))
}

hms_kit::legacy_ids_route!(
    AppointmentCtx,
    "/v1/appointments/import/ids",
    "appointments",
    "appointments",
    "appointment_id"
);

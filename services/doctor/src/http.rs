//! Doctor and scheduling routes and their access rules.

use crate::domain::{
    check_leave, free_slots, parse_week, DayPlan, Shift, ValidDoctor, ValidDoctorUpdate,
};
use crate::domain::{day_bounds, working_periods};
use crate::store;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, NaiveDate};
use hms_client::contract::{AppointmentEvent, AppointmentStatus, DoctorEvent, DoctorFacts};
use hms_client::models::*;
use hms_client::ErrorBody;
use hms_kit::auth::{AccessTable, Caller, Role};
use hms_kit::extract::{created as created_response, with_etag, IfMatch, Json, Path, Query};
use hms_kit::outbox::NewEvent;
use hms_kit::pagination::PageRequest;
use hms_kit::server::{ServiceCtx, ServiceRoutes};
use hms_kit::Error;
use serde::Deserialize;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Ctx = State<Arc<ServiceCtx>>;

const EVERYONE: &[Role] = &[
    Role::Reception,
    Role::Doctor,
    Role::Billing,
    Role::Admin,
    Role::Service,
];
const ADMIN: &[Role] = &[Role::Admin];
/// Admins for anyone; a doctor for their own schedule only (checked in the handler).
const SCHEDULERS: &[Role] = &[Role::Admin, Role::Doctor];

pub fn routes(ctx: &ServiceCtx) -> ServiceRoutes {
    let api = OpenApiRouter::new()
        .routes(routes!(reserve_ids))
        .routes(routes!(create_doctor, list_doctors))
        .routes(routes!(get_doctor, update_doctor))
        .routes(routes!(get_hours, set_hours))
        .routes(routes!(list_leave, add_leave))
        .routes(routes!(delete_leave))
        .routes(routes!(doctor_availability))
        .routes(routes!(department_availability))
        .routes(routes!(doctor_schedule))
        .routes(routes!(doctor_schedules))
        .routes(routes!(receive_event))
        .routes(routes!(receive_events))
        .with_state(Arc::new(ctx.clone()));
    let access = AccessTable::new(&[
        (Method::POST, "/v1/doctors/import/ids", &[Role::Admin]),
        (Method::POST, "/v1/doctors", ADMIN),
        (Method::GET, "/v1/doctors", EVERYONE),
        (Method::GET, "/v1/doctors/{id}", EVERYONE),
        (Method::PATCH, "/v1/doctors/{id}", ADMIN),
        (Method::GET, "/v1/doctors/{id}/working-hours", EVERYONE),
        (Method::PUT, "/v1/doctors/{id}/working-hours", SCHEDULERS),
        (Method::GET, "/v1/doctors/{id}/leave", EVERYONE),
        (Method::POST, "/v1/doctors/{id}/leave", SCHEDULERS),
        (
            Method::DELETE,
            "/v1/doctors/{id}/leave/{leave_id}",
            SCHEDULERS,
        ),
        (Method::GET, "/v1/doctors/{id}/availability", EVERYONE),
        (Method::GET, "/v1/availability", EVERYONE),
        (Method::GET, "/v1/doctors/{id}/schedule", EVERYONE),
        (Method::GET, "/v1/doctors/{id}/schedules", EVERYONE),
        (Method::POST, "/v1/events", &[Role::Service]),
        (Method::POST, "/v1/events/batch", &[Role::Service]),
    ]);
    ServiceRoutes { api, access }
}

fn event(d: &Doctor, kind: fn(DoctorFacts) -> DoctorEvent) -> NewEvent<'static> {
    let facts = DoctorFacts {
        doctor_id: d.doctor_id,
        department: d.department.clone(),
        specialization: d.specialization.clone(),
        consultation_fee: d.consultation_fee,
        active: d.active,
        version: d.version,
    };
    NewEvent::of("doctor", d.doctor_id, d.version, &kind(facts))
}

async fn must_get(ctx: &ServiceCtx, id: i64) -> Result<Doctor, Error> {
    store::get(&mut *ctx.db.read().await?, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("doctor {id}")))
}

/// Register a doctor. Without `working_hours`, Monday–Friday during clinic hours.
#[utoipa::path(post, path = "/v1/doctors", tag = "doctors",
    request_body = NewDoctor,
    responses(
        (status = 201, description = "Registered", body = Doctor),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "already_exists", body = ErrorBody),
        (status = 422, description = "invalid_hours: a shift ends before it starts, or two overlap", body = ErrorBody),
    ))]
async fn create_doctor(State(ctx): Ctx, Json(new): Json<NewDoctor>) -> Result<Response, Error> {
    let d = ValidDoctor::parse(
        new,
        ctx.config.clinic_hours(),
        ctx.config.default_consultation_fee,
    )?;
    let now = ctx.clock.now();
    let mut tx = ctx.db.begin().await?;
    let created = store::insert(ctx.db.backend(), &mut tx, &d, now).await?;
    ctx.outbox
        .enqueue(&mut tx, event(&created, DoctorEvent::Registered))
        .await?;
    ctx.outbox.commit(tx).await?;
    tracing::info!(doctor_id = created.doctor_id, name = %d.name, department = %d.department, "doctor registered");
    Ok(created_response(
        &format!("/v1/doctors/{}", created.doctor_id),
        created.version,
        &created,
    ))
}

/// List doctors; filter by department, specialization (exact, any case), name (partial), active.
#[utoipa::path(get, path = "/v1/doctors", tag = "doctors",
    params(DoctorQuery),
    responses(
        (status = 200, description = "One page of doctors", body = Page<Doctor>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    ))]
async fn list_doctors(
    State(ctx): Ctx,
    Query(q): Query<DoctorQuery>,
) -> Result<Json<Page<Doctor>>, Error> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let rows = store::list(&mut *ctx.db.read().await?, &q, page).await?;
    Ok(Json(page.page(rows, |d| d.doctor_id)))
}

/// One doctor. Carries `ETag: W/"<version>"`.
#[utoipa::path(get, path = "/v1/doctors/{id}", tag = "doctors",
    params(("id" = i64, Path, description = "Doctor id")),
    responses((status = 200, body = Doctor), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_doctor(State(ctx): Ctx, Path(id): Path<i64>) -> Result<Response, Error> {
    let d = must_get(&ctx, id).await?;
    Ok(with_etag(d.version, StatusCode::OK, &d))
}

/// Change a doctor (department, fee, active…). With `If-Match`, refused (412) if changed since.
#[utoipa::path(patch, path = "/v1/doctors/{id}", tag = "doctors",
    params(("id" = i64, Path, description = "Doctor id"),
           ("If-Match" = Option<String>, Header, description = "ETag from a read")),
    request_body = DoctorUpdate,
    responses(
        (status = 200, body = Doctor), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody),
        (status = 422, description = "nothing_to_change (every field null)", body = ErrorBody),
    ))]
async fn update_doctor(
    State(ctx): Ctx,
    Path(id): Path<i64>,
    IfMatch(expected): IfMatch,
    Json(u): Json<DoctorUpdate>,
) -> Result<Response, Error> {
    let u = ValidDoctorUpdate::parse(u)?;
    let mut tx = ctx.db.begin().await?;
    let d = match store::update(&mut tx, id, &u, expected, ctx.clock.now()).await? {
        Ok(d) => d,
        Err(None) => return Err(Error::not_found(format!("doctor {id}"))),
        Err(Some(v)) => return Err(Error::version_conflict(v)),
    };
    ctx.outbox
        .enqueue(&mut tx, event(&d, DoctorEvent::Updated))
        .await?;
    ctx.outbox.commit(tx).await?;
    tracing::info!(doctor_id = id, changed = ?u.fields(), "doctor updated");
    Ok(with_etag(d.version, StatusCode::OK, &d))
}

/// A doctor's weekly working hours (clinic-local).
#[utoipa::path(get, path = "/v1/doctors/{id}/working-hours", tag = "schedule",
    params(("id" = i64, Path, description = "Doctor id")),
    responses((status = 200, body = WeeklyHours), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_hours(State(ctx): Ctx, Path(id): Path<i64>) -> Result<Json<WeeklyHours>, Error> {
    must_get(&ctx, id).await?;
    let mut hours = store::hours_of(&mut *ctx.db.read().await?, &[id]).await?;
    let shifts = hours.remove(&id).unwrap_or_default();
    Ok(Json(WeeklyHours {
        hours: shifts.into_iter().map(Shift::to_wire).collect(),
    }))
}

/// Replace a doctor's weekly hours (admin, or the doctor themself).
#[utoipa::path(put, path = "/v1/doctors/{id}/working-hours", tag = "schedule",
    params(("id" = i64, Path, description = "Doctor id")),
    request_body = WeeklyHours,
    responses(
        (status = 200, body = WeeklyHours), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "invalid_hours: a shift ends before it starts, or two overlap", body = ErrorBody),
    ))]
async fn set_hours(
    State(ctx): Ctx,
    caller: Caller,
    Path(id): Path<i64>,
    Json(week): Json<WeeklyHours>,
) -> Result<Json<WeeklyHours>, Error> {
    caller.require_own_doctor(id)?;
    let shifts = parse_week(&week.hours)?;
    let mut tx = ctx.db.begin().await?;
    let d = store::touch(&mut tx, id, ctx.clock.now())
        .await?
        .ok_or_else(|| Error::not_found(format!("doctor {id}")))?;
    store::replace_hours(&mut tx, id, &shifts).await?;
    ctx.outbox
        .enqueue(&mut tx, event(&d, DoctorEvent::ScheduleChanged))
        .await?;
    ctx.outbox.commit(tx).await?;
    Ok(Json(WeeklyHours {
        hours: shifts.into_iter().map(Shift::to_wire).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// Page size, 1–500 (default 50).
    limit: Option<u32>,
    cursor: Option<String>,
}

/// A doctor's recorded leave.
#[utoipa::path(get, path = "/v1/doctors/{id}/leave", tag = "schedule",
    params(("id" = i64, Path, description = "Doctor id"), PageQuery),
    responses((status = 200, body = Page<Leave>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_leave(
    State(ctx): Ctx,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<Leave>>, Error> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    must_get(&ctx, id).await?;
    let rows = store::list_leave(&mut *ctx.db.read().await?, id, page).await?;
    Ok(Json(page.page(rows, |l| l.leave_id)))
}

/// Record leave (admin, or the doctor themself): no free slots on those dates.
#[utoipa::path(post, path = "/v1/doctors/{id}/leave", tag = "schedule",
    params(("id" = i64, Path, description = "Doctor id")),
    request_body = NewLeave,
    responses(
        (status = 201, body = Leave), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "invalid_leave: it ends before it starts, or lasts over a year", body = ErrorBody),
    ))]
async fn add_leave(
    State(ctx): Ctx,
    caller: Caller,
    Path(id): Path<i64>,
    Json(l): Json<NewLeave>,
) -> Result<Response, Error> {
    caller.require_own_doctor(id)?;
    check_leave(&l)?;
    let now = ctx.clock.now();
    let mut tx = ctx.db.begin().await?;
    let d = store::touch(&mut tx, id, now)
        .await?
        .ok_or_else(|| Error::not_found(format!("doctor {id}")))?;
    let leave = store::add_leave(&mut tx, id, &l, now).await?;
    ctx.outbox
        .enqueue(&mut tx, event(&d, DoctorEvent::ScheduleChanged))
        .await?;
    ctx.outbox.commit(tx).await?;
    Ok((StatusCode::CREATED, axum::Json(leave)).into_response())
}

/// Cancel a recorded leave (admin, or the doctor themself).
#[utoipa::path(delete, path = "/v1/doctors/{id}/leave/{leave_id}", tag = "schedule",
    params(("id" = i64, Path, description = "Doctor id"), ("leave_id" = i64, Path, description = "Leave id")),
    responses(
        (status = 204, description = "Removed"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn delete_leave(
    State(ctx): Ctx,
    caller: Caller,
    Path((id, leave_id)): Path<(i64, i64)>,
) -> Result<StatusCode, Error> {
    caller.require_own_doctor(id)?;
    let mut tx = ctx.db.begin().await?;
    if !store::delete_leave(&mut tx, id, leave_id).await? {
        return Err(Error::not_found(format!("leave {leave_id} of doctor {id}")));
    }
    let d = store::touch(&mut tx, id, ctx.clock.now())
        .await?
        .ok_or_else(|| Error::not_found(format!("doctor {id}")))?;
    ctx.outbox
        .enqueue(&mut tx, event(&d, DoctorEvent::ScheduleChanged))
        .await?;
    ctx.outbox.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DateQuery {
    /// Clinic-local date, `YYYY-MM-DD`.
    date: NaiveDate,
}

/// The availability of each doctor in `doctors` on `date`, from one query per table.
async fn availability(
    ctx: &ServiceCtx,
    doctors: Vec<Doctor>,
    date: NaiveDate,
) -> Result<Vec<DoctorAvailability>, Error> {
    let ids: Vec<i64> = doctors.iter().map(|d| d.doctor_id).collect();
    let hours = store::hours_of(&mut *ctx.db.read().await?, &ids).await?;
    let away = store::on_leave(&mut *ctx.db.read().await?, &ids, date).await?;
    let (day_start, day_end) = day_bounds(date, ctx.config.clinic_tz());
    let booked =
        store::booked_between(&mut *ctx.db.read().await?, &ids, day_start, day_end).await?;
    let earliest = ctx.clock.now() + Duration::minutes(ctx.config.booking_lead_minutes);
    let none = Vec::new();
    Ok(doctors
        .into_iter()
        .map(|d| {
            let plan = DayPlan {
                date,
                tz: ctx.config.clinic_tz(),
                clinic: ctx.config.clinic_hours(),
                active: d.active,
                on_leave: away.contains(&d.doctor_id),
                shifts: hours.get(&d.doctor_id).unwrap_or(&none),
                booked: booked.get(&d.doctor_id).map(Vec::as_slice).unwrap_or(&[]),
                earliest,
            };
            let (slots, reason) = free_slots(&plan);
            DoctorAvailability {
                doctor_id: d.doctor_id,
                name: d.name,
                department: d.department,
                date,
                unavailable_reason: reason.map(str::to_string),
                slots,
            }
        })
        .collect())
}

/// Free standard slots of one doctor on a clinic-local date (working hours, leave, clinic
/// hours and the booking lead time considered).
#[utoipa::path(get, path = "/v1/doctors/{id}/availability", tag = "availability",
    params(("id" = i64, Path, description = "Doctor id"), DateQuery),
    responses((status = 200, body = DoctorAvailability), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn doctor_availability(
    State(ctx): Ctx,
    Path(id): Path<i64>,
    Query(q): Query<DateQuery>,
) -> Result<Json<DoctorAvailability>, Error> {
    let d = must_get(&ctx, id).await?;
    let mut v = availability(&ctx, vec![d], q.date).await?;
    Ok(Json(v.remove(0)))
}

/// Free standard slots of every active doctor of a department on a clinic-local date.
#[utoipa::path(get, path = "/v1/availability", tag = "availability",
    params(hms_client::models::DepartmentDay),
    responses((status = 200, body = DepartmentAvailability), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
async fn department_availability(
    State(ctx): Ctx,
    Query(q): Query<hms_client::models::DepartmentDay>,
) -> Result<Json<DepartmentAvailability>, Error> {
    let department = Some(q.department.trim())
        .filter(|d| !d.is_empty())
        .ok_or_else(|| Error::validation("department", "department is required"))?
        .to_string();
    let doctors = store::in_department(&mut *ctx.db.read().await?, &department).await?;
    let doctors = availability(&ctx, doctors, q.date).await?;
    Ok(Json(DepartmentAvailability {
        department,
        date: q.date,
        doctors,
    }))
}

/// A doctor's day as the booking rules need it: the doctor, leave, and working periods (UTC).
#[utoipa::path(get, path = "/v1/doctors/{id}/schedule", tag = "schedule",
    params(("id" = i64, Path, description = "Doctor id"), DateQuery),
    responses((status = 200, body = DoctorSchedule), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn doctor_schedule(
    State(ctx): Ctx,
    Path(id): Path<i64>,
    Query(q): Query<DateQuery>,
) -> Result<Json<DoctorSchedule>, Error> {
    let day = schedules(&ctx, id, &[q.date]).await?.pop();
    day.map(Json)
        .ok_or_else(|| Error::internal(anyhow::anyhow!("the schedule of one day left it out")))
}

/// Doctor `id`'s schedule on each of `dates` (consecutive, in order): the doctor, their
/// weekly hours and the leave touching the run, read once for all of them.
async fn schedules(
    ctx: &ServiceCtx,
    id: i64,
    dates: &[NaiveDate],
) -> Result<Vec<DoctorSchedule>, Error> {
    let (Some(&first), Some(&last)) = (dates.first(), dates.last()) else {
        return Ok(Vec::new());
    };
    let doctor = must_get(ctx, id).await?;
    let hours = store::hours_of(&mut *ctx.db.read().await?, &[id]).await?;
    let leave = store::leave_between(&mut *ctx.db.read().await?, id, first, last).await?;
    let shifts = hours.get(&id).map(Vec::as_slice).unwrap_or(&[]);
    let tz = ctx.config.clinic_tz();
    Ok(dates
        .iter()
        .map(|&date| DoctorSchedule {
            doctor: doctor.clone(),
            date,
            on_leave: leave.iter().any(|&(from, to)| from <= date && date <= to),
            working: working_periods(date, tz, shifts),
        })
        .collect())
}

/// The most days one `GET /v1/doctors/{id}/schedules` answers.
pub const MAX_SCHEDULE_DAYS: u32 = 31;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DaysQuery {
    /// The first clinic-local date, `YYYY-MM-DD`.
    from: NaiveDate,
    /// How many days from `from` (1 to 31).
    #[param(minimum = 1, maximum = 31)]
    days: u32,
}

/// A doctor's days from `from` as the booking rules need them, one entry per date in order:
/// what `GET /v1/doctors/{id}/schedule` answers for each, read at once (the appointment
/// service keeps a fortnight of a doctor's days from one call instead of calling every day).
#[utoipa::path(get, path = "/v1/doctors/{id}/schedules", tag = "schedule",
    params(("id" = i64, Path, description = "Doctor id"), DaysQuery),
    responses((status = 200, body = [DoctorSchedule]), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn doctor_schedules(
    State(ctx): Ctx,
    Path(id): Path<i64>,
    Query(q): Query<DaysQuery>,
) -> Result<Json<Vec<DoctorSchedule>>, Error> {
    if !(1..=MAX_SCHEDULE_DAYS).contains(&q.days) {
        return Err(Error::validation(
            "days",
            format!("days must be from 1 to {MAX_SCHEDULE_DAYS}"),
        ));
    }
    let dates: Vec<NaiveDate> = q.from.iter_days().take(q.days as usize).collect();
    if dates.len() != q.days as usize {
        return Err(Error::validation(
            "from",
            "the range passes the last date there is",
        ));
    }
    Ok(Json(schedules(&ctx, id, &dates).await?))
}

hms_kit::event_routes!(
    ServiceCtx,
    prepare_event,
    /// Appointment events: keep the booked-slot read model that availability subtracts.
);

/// What an appointment event does here: every appointment event carries the appointment as it
/// now stands; an event type this version does not know is recorded as seen and changes nothing.
async fn prepare_event(
    _ctx: Arc<ServiceCtx>,
    caller: Caller,
    ev: Event,
) -> Result<hms_kit::inbox::Effect, Error> {
    hms_kit::inbox::authorise(&caller, &ev, &[hms_kit::Service::Appointment])?;
    let Some(e) = hms_kit::inbox::decode::<AppointmentEvent>(&ev)? else {
        return Ok(hms_kit::inbox::no_effect());
    };
    let a = e.appointment().clone();
    let active = a.status == AppointmentStatus::Scheduled;
    let row = store::booking_row(
        a.appointment_id,
        a.doctor_id,
        a.slot_start,
        active,
        ev.aggregate_seq,
    );
    Ok(hms_kit::inbox::row(&store::BOOKINGS, row))
}

hms_kit::legacy_ids_route!(
    ServiceCtx,
    "/v1/doctors/import/ids",
    "doctors",
    "doctors",
    "doctor_id"
);

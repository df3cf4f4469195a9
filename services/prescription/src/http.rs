//! Prescription and formulary routes and their access rules.

use crate::domain::{self, check_appointment, check_days, quantity, Dosage};
use crate::store::{self, NewRx};
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use hms_client::contract::{PrescriptionEvent, PrescriptionFacts};
use hms_client::models::*;
use hms_client::{ClientError, ErrorBody};
use hms_kit::auth::{AccessTable, Caller, Role};
use hms_kit::extract::{with_etag, Json, Path, Query};
use hms_kit::group_commit::{Group, Turn};
use hms_kit::outbox::NewEvent;
use hms_kit::pagination::PageRequest;
use hms_kit::server::{ServiceCtx, ServiceRoutes};
use hms_kit::Error;
use serde::Deserialize;

use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Ctx = State<Arc<PrescriptionCtx>>;

/// The service's state: the kit's, and the writer that commits prescriptions in groups.
pub struct PrescriptionCtx {
    ctx: ServiceCtx,
    written: Group<Writing, Prescription>,
}

impl std::ops::Deref for PrescriptionCtx {
    type Target = ServiceCtx;
    fn deref(&self) -> &ServiceCtx {
        &self.ctx
    }
}

/// A prescription that passed every rule, given to the group writer.
struct Writing {
    rx: NewRx,
    /// The request's, carried by its event.
    correlation_id: String,
}

/// Prescriptions committed in groups (`kit::group_commit::Group`): each row the same insert
/// as alone, their events one script, one commit for the group — instead of a transaction of
/// four statements each on the database's one writer. If anything is refused, the group is
/// undone and each prescription is written alone (`create`), where the refusal is answered.
fn written(ctx: &ServiceCtx) -> Group<Writing, Prescription> {
    let backend = ctx.db.backend();
    Group::spawn(
        ctx.db.clone(),
        ctx.outbox.clone(),
        Arc::new(move |tx, outbox, group: &[Writing]| {
            Box::pin(async move {
                let mut made = Vec::with_capacity(group.len());
                for w in group {
                    made.push(store::insert(backend, tx, &w.rx).await?);
                }
                let events: Vec<_> = made
                    .iter()
                    .zip(group)
                    .map(|(p, w)| (created_event(p), w.correlation_id.as_str()))
                    .collect();
                outbox.enqueue_all(tx, &events).await?;
                Ok(made)
            })
        }),
    )
}

const EVERYONE: &[Role] = &[
    Role::Reception,
    Role::Doctor,
    Role::Billing,
    Role::Admin,
    Role::Service,
];
const PRESCRIBERS: &[Role] = &[Role::Doctor, Role::Admin];
const ADMIN: &[Role] = &[Role::Admin];

pub fn routes(ctx: &ServiceCtx) -> ServiceRoutes {
    let api = OpenApiRouter::new()
        .routes(routes!(reserve_ids))
        .routes(routes!(create, list))
        .routes(routes!(get_one))
        .routes(routes!(import))
        .routes(routes!(list_formulary, add_medication))
        .routes(routes!(update_medication))
        .with_state(Arc::new(PrescriptionCtx {
            ctx: ctx.clone(),
            written: written(ctx),
        }));
    let access = AccessTable::new(&[
        (Method::POST, "/v1/prescriptions/import/ids", &[Role::Admin]),
        (Method::POST, "/v1/prescriptions", PRESCRIBERS),
        (Method::GET, "/v1/prescriptions", EVERYONE),
        (Method::GET, "/v1/prescriptions/{id}", EVERYONE),
        (Method::POST, "/v1/prescriptions/import", ADMIN),
        (Method::GET, "/v1/formulary", EVERYONE),
        (Method::POST, "/v1/formulary", ADMIN),
        (Method::PATCH, "/v1/formulary/{id}", ADMIN),
    ]);
    ServiceRoutes { api, access }
}

/// The appointment a prescription is for, or why there is none to prescribe at.
async fn appointment(ctx: &ServiceCtx, id: i64) -> Result<Appointment, Error> {
    match ctx.downstream.client().get_appointment(id).await {
        Ok(a) => Ok(a),
        Err(ClientError::Api { status: 404, .. }) => Err(Error::rule(
            "appointment_required",
            format!("there is no appointment {id}; a prescription needs one"),
        )),
        Err(ClientError::Api {
            service, status, ..
        }) if status == 401 || status == 403 => Err(Error::dependency(
            &service,
            "it refused this service's token",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Write a prescription at an appointment (a doctor for their own appointments).
///
/// The appointment must exist, not be CANCELLED or NO_SHOW, and be of this patient and doctor
/// (`appointment_required`); the medication must be in the formulary and active
/// (`unknown_medication`, `medication_inactive`); dosage `morning-noon-night`, days ≥ 1;
/// quantity = doses per day × days.
#[utoipa::path(post, path = "/v1/prescriptions", tag = "prescriptions",
    request_body = NewPrescription,
    responses(
        (status = 201, description = "Written", body = Prescription),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "already_exists (imported id)", body = ErrorBody),
        (status = 422, description = "appointment_required, unknown_medication, medication_inactive, doctor_required (no doctor_id and not a doctor's token)", body = ErrorBody),
        (status = 503, description = "the appointment service is down", body = ErrorBody),
    ))]
async fn create(
    State(ctx): Ctx,
    caller: Caller,
    Json(new): Json<NewPrescription>,
) -> Result<Response, Error> {
    if (new.prescription_id.is_some() || new.issued_at.is_some()) && caller.role != Role::Admin {
        return Err(Error::forbidden(
            "only an admin may set prescription_id or issued_at (legacy import)",
        ));
    }
    if let Some(id) = new.prescription_id {
        hms_kit::import::legacy_id("prescription_id", id)?;
    }
    let doctor_id = match (caller.role, new.doctor_id, caller.doctor_id) {
        (Role::Doctor, Some(d), Some(own)) if d != own => {
            return Err(Error::forbidden(
                "a doctor writes prescriptions only in their own name",
            ))
        }
        (Role::Doctor, _, Some(own)) => own,
        (_, Some(d), _) => d,
        // Who prescribes depends on the caller (a doctor's token names them): a rule, 422.
        _ => {
            return Err(Error::rule(
                "doctor_required",
                "doctor_id is required unless the token is a doctor's",
            ))
        }
    };
    let dosage = Dosage::parse(&new.dosage)?;
    let days = check_days(new.days)?;
    if new.medication.trim().is_empty() {
        return Err(Error::validation("medication", "medication is required"));
    }
    let medication = store::medication_named(&mut *ctx.db.read().await?, &new.medication)
        .await?
        .ok_or_else(|| {
            Error::rule(
                "unknown_medication",
                format!(
                    "{} is not in the formulary (GET /v1/formulary lists it)",
                    new.medication.trim()
                ),
            )
        })?;
    if !medication.active {
        return Err(Error::rule(
            "medication_inactive",
            format!("{} is no longer dispensed", medication.name),
        ));
    }
    let a = appointment(&ctx, new.appointment_id).await?;
    check_appointment(&a, new.patient_id, doctor_id)?;

    let rx = NewRx {
        prescription_id: new.prescription_id,
        appointment_id: a.appointment_id,
        patient_id: new.patient_id,
        doctor_id,
        quantity: quantity(dosage, days),
        dosage: dosage.to_string(),
        days,
        medication,
        issued_at: new.issued_at.unwrap_or_else(|| ctx.clock.now()),
    };
    // A new prescription is committed with whatever else is being written; one that keeps a
    // legacy id (the id sequence follows it), or one whose group was refused, alone.
    let rx = match rx.prescription_id {
        Some(_) => rx,
        None => {
            let writing = Writing {
                rx,
                correlation_id: hms_kit::correlation::current_id(),
            };
            match ctx.written.submit(writing).await? {
                Turn::Committed(p) => return Ok(prescribed(p)),
                Turn::Alone(w) => w.rx,
            }
        }
    };
    let mut tx = ctx.db.begin().await?;
    let p = store::insert(ctx.db.backend(), &mut tx, &rx).await?;
    ctx.outbox.enqueue(&mut tx, created_event(&p)).await?;
    ctx.outbox.commit(tx).await?;
    Ok(prescribed(p))
}

fn prescribed(p: Prescription) -> Response {
    tracing::info!(
        prescription_id = p.prescription_id,
        appointment_id = p.appointment_id,
        "prescription written"
    );
    hms_kit::extract::created(&format!("/v1/prescriptions/{}", p.prescription_id), 1, &p)
}

/// Import one legacy prescription (admin), keeping its id, as history: today's prescribing
/// rules become warnings (see `LegacyPrescription`). The appointment must be in HMS and the
/// medication in the formulary. Only a prescription on a SCHEDULED appointment reaches billing
/// (its bill is still to be made); others were billed, or not, by the old system. Repeating
/// it is `already_present`; a different prescription under the id is 409 `import_conflict`.
#[utoipa::path(post, path = "/v1/prescriptions/import", tag = "prescriptions",
    request_body = LegacyPrescription,
    responses(
        (status = 200, body = ImportOutcome), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "import_conflict", body = ErrorBody),
        (status = 422, description = "appointment_required, unknown_medication", body = ErrorBody),
        (status = 503, description = "the appointment service is down", body = ErrorBody),
    ))]
async fn import(
    State(ctx): Ctx,
    headers: axum::http::HeaderMap,
    Json(l): Json<LegacyPrescription>,
) -> Result<Json<ImportOutcome>, Error> {
    hms_kit::import::legacy_id("prescription_id", l.prescription_id)?;
    let days = check_days(l.days)?;
    let medication = store::medication_named(&mut *ctx.db.read().await?, &l.medication)
        .await?
        .ok_or_else(|| {
            Error::rule(
                "unknown_medication",
                format!(
                    "medication '{}' is not in the formulary",
                    l.medication.trim()
                ),
            )
        })?;
    // Bound first: a temporary of an `if let` lives through its body (the reader with it).
    let existing = store::get(&mut *ctx.db.read().await?, l.prescription_id).await?;
    if let Some(held) = existing {
        let fields = [
            (
                "appointment_id",
                held.appointment_id.to_string(),
                l.appointment_id.to_string(),
            ),
            (
                "patient_id",
                held.patient_id.to_string(),
                l.patient_id.to_string(),
            ),
            (
                "doctor_id",
                held.doctor_id.to_string(),
                l.doctor_id.to_string(),
            ),
            (
                "medication",
                held.medication.clone(),
                medication.name.clone(),
            ),
            ("dosage", held.dosage.clone(), l.dosage.trim().to_string()),
            ("days", held.days.to_string(), days.to_string()),
        ];
        if fields.iter().all(|(_, h, g)| h == g) {
            return Ok(Json(ImportOutcome {
                outcome: "already_present".into(),
                warnings: vec![],
            }));
        }
        return Err(hms_kit::import::conflict(
            "prescription",
            l.prescription_id,
            &fields,
        ));
    }
    // In a dry run, an appointment written by an earlier row of the run (and rolled back) is
    // known only from what the caller vouches for.
    let vouched = hms_kit::dry_run::context(&headers).and_then(|c| c.appointment);
    let found = match (appointment(&ctx, l.appointment_id).await, vouched) {
        (Err(e), Some(v)) if e.code == "appointment_required" => {
            (v.status, v.patient_id, v.doctor_id)
        }
        (a, _) => {
            let a = a?;
            (a.status, a.patient_id, a.doctor_id)
        }
    };
    let visit = domain::Visit {
        appointment_id: l.appointment_id,
        status: &found.0,
        patient_id: found.1,
        doctor_id: found.2,
    };
    let (quantity, mut warnings) =
        domain::legacy_warnings(&visit, l.patient_id, l.doctor_id, &l.dosage, days);
    if !medication.active {
        warnings.push(format!(
            "{} is no longer dispensed; kept as history",
            medication.name
        ));
    }
    let rx = NewRx {
        prescription_id: Some(l.prescription_id),
        appointment_id: l.appointment_id,
        patient_id: l.patient_id,
        doctor_id: l.doctor_id,
        quantity,
        dosage: l.dosage.trim().to_string(),
        days,
        medication,
        issued_at: l.issued_at,
    };
    let mut tx = ctx.db.begin().await?;
    let p = store::insert(ctx.db.backend(), &mut tx, &rx).await?;
    if visit.status == "SCHEDULED" {
        ctx.outbox.enqueue(&mut tx, created_event(&p)).await?;
    }
    ctx.outbox.commit(tx).await?;
    Ok(Json(ImportOutcome {
        outcome: "imported".into(),
        warnings,
    }))
}

fn created_event(p: &Prescription) -> NewEvent<'static> {
    NewEvent::of(
        "prescription",
        p.prescription_id,
        1,
        &PrescriptionEvent::Created(PrescriptionFacts {
            prescription_id: p.prescription_id,
            appointment_id: p.appointment_id,
            patient_id: p.patient_id,
            doctor_id: p.doctor_id,
            medication: p.medication.clone(),
            quantity: p.quantity,
            unit_price: p.unit_price,
        }),
    )
}

/// List prescriptions by appointment, patient or doctor. A doctor sees only their own.
#[utoipa::path(get, path = "/v1/prescriptions", tag = "prescriptions",
    params(PrescriptionQuery),
    responses((status = 200, body = Page<Prescription>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list(
    State(ctx): Ctx,
    caller: Caller,
    Query(mut q): Query<PrescriptionQuery>,
) -> Result<Json<Page<Prescription>>, Error> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    if caller.role == Role::Doctor {
        if q.doctor_id.is_some() && q.doctor_id != caller.doctor_id {
            return Err(Error::forbidden(
                "a doctor sees only their own prescriptions",
            ));
        }
        q.doctor_id = caller.doctor_id;
    }
    let rows = store::list(&mut *ctx.db.read().await?, &q, page).await?;
    Ok(Json(page.page(rows, |p| p.prescription_id)))
}

/// One prescription.
#[utoipa::path(get, path = "/v1/prescriptions/{id}", tag = "prescriptions",
    params(("id" = i64, Path, description = "Prescription id")),
    responses((status = 200, body = Prescription), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(ctx): Ctx,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<Prescription>, Error> {
    store::get(&mut *ctx.db.read().await?, id)
        .await?
        .filter(|p| caller.role != Role::Doctor || caller.doctor_id == Some(p.doctor_id))
        .map(Json)
        .ok_or_else(|| Error::not_found(format!("prescription {id}")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct FormularyQuery {
    active: Option<bool>,
    /// Page size, 1–500 (default 50).
    limit: Option<u32>,
    cursor: Option<String>,
}

/// The formulary: medications and their unit prices.
#[utoipa::path(get, path = "/v1/formulary", tag = "formulary",
    params(FormularyQuery),
    responses((status = 200, body = Page<Medication>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_formulary(
    State(ctx): Ctx,
    Query(q): Query<FormularyQuery>,
) -> Result<Json<Page<Medication>>, Error> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let rows = store::formulary(&mut *ctx.db.read().await?, q.active, page).await?;
    Ok(Json(page.page(rows, |m| m.medication_id)))
}

fn required(field: &'static str, v: &str) -> Result<String, Error> {
    let t = v.trim();
    if t.is_empty() || t.len() > 100 {
        return Err(Error::validation(
            field,
            format!("{field} is required (at most 100 characters)"),
        ));
    }
    Ok(t.to_string())
}

/// Add a medication to the formulary.
#[utoipa::path(post, path = "/v1/formulary", tag = "formulary",
    request_body = NewMedication,
    responses((status = 201, body = Medication), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn add_medication(State(ctx): Ctx, Json(m): Json<NewMedication>) -> Result<Response, Error> {
    let (name, form, unit_price) = (
        required("name", &m.name)?,
        required("form", &m.form)?,
        hms_kit::money::price("unit_price", m.unit_price)?,
    );
    let mut tx = ctx.db.begin().await?;
    let med = store::add_medication(&mut tx, &name, &form, unit_price, ctx.clock.now()).await?;
    tx.commit().await?;
    Ok(with_etag(med.version, StatusCode::CREATED, &med))
}

/// Change a medication's form, price or availability (prices of past prescriptions stay).
#[utoipa::path(patch, path = "/v1/formulary/{id}", tag = "formulary",
    params(("id" = i64, Path, description = "Medication id")),
    request_body = MedicationUpdate,
    responses((status = 200, body = Medication), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, description = "nothing_to_change (every field null)", body = ErrorBody)))]
async fn update_medication(
    State(ctx): Ctx,
    Path(id): Path<i64>,
    Json(u): Json<MedicationUpdate>,
) -> Result<Response, Error> {
    let form = u.form.as_deref().map(|f| required("form", f)).transpose()?;
    let unit_price = u
        .unit_price
        .map(|p| hms_kit::money::price("unit_price", p))
        .transpose()?;
    if form.is_none() && unit_price.is_none() && u.active.is_none() {
        return Err(Error::rule(
            "nothing_to_change",
            "nothing to change: give form, unit_price or active",
        ));
    }
    let mut tx = ctx.db.begin().await?;
    let med = store::update_medication(
        &mut tx,
        id,
        form.as_deref(),
        unit_price,
        u.active,
        ctx.clock.now(),
    )
    .await?
    .ok_or_else(|| Error::not_found(format!("medication {id}")))?;
    tx.commit().await?;
    Ok(with_etag(med.version, StatusCode::OK, &med))
}

hms_kit::legacy_ids_route!(
    PrescriptionCtx,
    "/v1/prescriptions/import/ids",
    "prescriptions",
    "prescriptions",
    "prescription_id"
);

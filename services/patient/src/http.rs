//! Patient routes, their access rules, and the audit of every disclosure.
//!
//! Every response that carries patient data is preceded by its audit rows, committed first:
//! if the audit cannot be written, the request fails with 503 and no data (fail closed).

use crate::domain::{lookup_ids, ValidPatient, ValidUpdate};
use crate::store::{self, Audit, AuditRow, Changed};
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use hms_client::contract::{PatientChanged, PatientEvent, PatientFacts};
use hms_client::models::{AuditEntry, NewPatient, Page, Patient, PatientQuery, PatientUpdate};
use hms_client::ErrorBody;
use hms_kit::auth::{AccessTable, Caller, Role};
use hms_kit::correlation;
use hms_kit::extract::{created as created_response, with_etag, IfMatch, Json, Path, Query};
use hms_kit::group_commit::Batcher;
use hms_kit::outbox::NewEvent;
use hms_kit::pagination::PageRequest;
use hms_kit::server::{ServiceCtx, ServiceRoutes};
use hms_kit::Error;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Ctx = State<Arc<PatientCtx>>;

/// The service's context, and the task that group-commits disclosures.
pub struct PatientCtx {
    ctx: ServiceCtx,
    disclosures: Batcher<Disclosure, Option<Patient>>,
}

/// What a request discloses: one patient it reads (in the disclosing transaction itself, and
/// audited only if found), or the hits of a search it read already.
enum Disclosure {
    Read(i64, AuditRow),
    Hits(Vec<AuditRow>),
}

impl std::ops::Deref for PatientCtx {
    type Target = ServiceCtx;
    fn deref(&self) -> &ServiceCtx {
        &self.ctx
    }
}

const EVERYONE: &[Role] = &[
    Role::Reception,
    Role::Doctor,
    Role::Billing,
    Role::Admin,
    Role::Service,
];
const FRONT_DESK: &[Role] = &[Role::Reception, Role::Admin];
const ADMIN: &[Role] = &[Role::Admin];

/// The routes and who may call each (deny by default: an unlisted route refuses to start).
pub fn routes(ctx: &ServiceCtx) -> ServiceRoutes {
    let api = OpenApiRouter::new()
        .routes(routes!(reserve_ids))
        .routes(routes!(create_patient, list_patients))
        .routes(routes!(get_patient, update_patient))
        .routes(routes!(deactivate_patient))
        .routes(routes!(patient_audit))
        .with_state(Arc::new(PatientCtx {
            ctx: ctx.clone(),
            disclosures: disclosures(ctx),
        }));
    let access = AccessTable::new(&[
        (Method::POST, "/v1/patients/import/ids", &[Role::Admin]),
        (Method::POST, "/v1/patients", FRONT_DESK),
        (Method::GET, "/v1/patients", EVERYONE),
        (Method::GET, "/v1/patients/{id}", EVERYONE),
        (Method::PATCH, "/v1/patients/{id}", FRONT_DESK),
        (Method::POST, "/v1/patients/{id}/deactivate", FRONT_DESK),
        (Method::GET, "/v1/patients/{id}/audit", ADMIN),
    ]);
    ServiceRoutes { api, access }
}

fn today(ctx: &ServiceCtx) -> chrono::NaiveDate {
    ctx.clock
        .now()
        .with_timezone(&ctx.config.clinic_tz())
        .date_naive()
}

fn audit_unavailable(e: impl std::fmt::Display) -> Error {
    tracing::error!(error = %e, "audit trail write failed; refusing to disclose patient data");
    Error::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        "the audit trail cannot be written, so no patient data is returned; retry shortly",
    )
    .with_retry_after(1)
}

/// A disclosure's audit row.
fn disclosure(
    caller: &Caller,
    cid: &str,
    id: i64,
    action: &'static str,
    route: &'static str,
) -> AuditRow {
    AuditRow {
        patient_id: id,
        subject: caller.subject.clone(),
        role: caller.role.as_str(),
        action,
        route,
        correlation_id: cid.to_string(),
    }
}

fn row<'a>(
    caller: &'a Caller,
    cid: &'a str,
    id: i64,
    action: &'a str,
    route: &'a str,
) -> Audit<'a> {
    Audit {
        patient_id: id,
        subject: &caller.subject,
        role: caller.role.as_str(),
        action,
        route,
        correlation_id: cid,
        detail: None,
    }
}

/// The writer of disclosures, committed in groups (see `kit::group_commit`): the patients read
/// by the batch's reads and every audit row (a read's only if it found its patient), in one
/// transaction and, on SQLite, one query; each request is answered only once it has committed.
fn disclosures(ctx: &ServiceCtx) -> Batcher<Disclosure, Option<Patient>> {
    Batcher::spawn(
        ctx.db.clone(),
        ctx.clock.clone(),
        Arc::new(|tx, batch: &[Disclosure], now| {
            Box::pin(async move {
                let mut ids: Vec<i64> = Vec::new();
                let mut rows: Vec<(Audit, bool)> = Vec::new();
                for d in batch {
                    match d {
                        Disclosure::Read(id, row) => {
                            ids.push(*id);
                            rows.push((row.as_audit(), true));
                        }
                        Disclosure::Hits(hits) => {
                            rows.extend(hits.iter().map(|h| (h.as_audit(), false)));
                        }
                    }
                }
                let found: HashMap<i64, Patient> = store::read_audited(tx, &ids, &rows, now)
                    .await?
                    .into_iter()
                    .map(|p| (p.patient_id, p))
                    .collect();
                Ok(batch
                    .iter()
                    .map(|d| match d {
                        Disclosure::Read(id, _) => found.get(id).cloned(),
                        Disclosure::Hits(_) => None,
                    })
                    .collect())
            })
        }),
    )
}

/// Records a search's hits in the audit trail; returns once they are committed, before the
/// data goes out (fail closed: no record, no data).
async fn disclose(ctx: &PatientCtx, rows: Vec<AuditRow>) -> Result<(), Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let n = rows.len();
    ctx.disclosures
        .submit(Disclosure::Hits(rows), n)
        .await
        .map(|_| ())
        .map_err(audit_unavailable)
}

/// Reads patient `id` and records the read in the audit trail, in one committed transaction
/// (`None`: no such patient, and nothing recorded).
async fn read_disclosed(
    ctx: &PatientCtx,
    id: i64,
    row: AuditRow,
) -> Result<Option<Patient>, Error> {
    ctx.disclosures
        .submit(Disclosure::Read(id, row), 1)
        .await
        .map_err(audit_unavailable)
}

/// Reads the patients `ids` names, each as [`read_disclosed`] reads one (so riding the same
/// group commits, each audited once and only if found); those found, in the order asked.
async fn read_many(ctx: &PatientCtx, caller: &Caller, ids: &[i64]) -> Result<Vec<Patient>, Error> {
    let cid = correlation::current_id();
    let reads = ids.iter().map(|&id| {
        let row = disclosure(caller, &cid, id, "read", "/v1/patients");
        read_disclosed(ctx, id, row)
    });
    let found = futures::future::try_join_all(reads).await?;
    Ok(found.into_iter().flatten().collect())
}

fn facts(p: &Patient) -> PatientFacts {
    PatientFacts {
        patient_id: p.patient_id,
        active: p.active,
        version: p.version,
    }
}

fn event(p: &Patient, event: PatientEvent) -> NewEvent<'static> {
    NewEvent::of("patient", p.patient_id, p.version, &event)
}

/// Register a patient.
///
/// `patient_id` and `created_at` may be given only by an admin, to import legacy records.
#[utoipa::path(post, path = "/v1/patients", tag = "patients",
    request_body = NewPatient,
    responses(
        (status = 201, description = "Registered", body = Patient),
        (status = 400, description = "A field is invalid (details.field names it)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "already_exists: that patient_id is taken", body = ErrorBody),
        (status = 422, description = "dob_in_future", body = ErrorBody),
    ))]
async fn create_patient(
    State(ctx): Ctx,
    caller: Caller,
    Json(new): Json<NewPatient>,
) -> Result<Response, Error> {
    if (new.patient_id.is_some() || new.created_at.is_some()) && caller.role != Role::Admin {
        return Err(Error::forbidden(
            "only an admin may set patient_id or created_at (legacy import)",
        ));
    }
    let p = ValidPatient::parse(new, today(&ctx))?;
    let now = ctx.clock.now();
    let mut tx = ctx.db.begin().await?;
    let created = store::insert(ctx.db.backend(), &mut tx, &p, now).await?;
    let cid = correlation::current_id();
    store::audit(
        &mut tx,
        &[row(
            &caller,
            &cid,
            created.patient_id,
            "create",
            "/v1/patients",
        )],
        now,
    )
    .await
    .map_err(audit_unavailable)?;
    ctx.outbox
        .enqueue(
            &mut tx,
            event(&created, PatientEvent::Registered(facts(&created))),
        )
        .await?;
    ctx.outbox.commit(tx).await?;
    tracing::info!(
        patient_id = created.patient_id, name = %p.name, email = ?p.email, phone = %p.phone,
        "patient registered"
    );
    Ok(created_response(
        &format!("/v1/patients/{}", created.patient_id),
        created.version,
        &created,
    ))
}

/// Search patients: name (partial, any case), phone (partial digits), e-mail (partial, any
/// case), active. Each patient returned is recorded in their audit trail as a search hit.
/// Or look patients up by id (`ids`, at most 100): each one found is recorded as a read.
#[utoipa::path(get, path = "/v1/patients", tag = "patients",
    params(PatientQuery),
    responses(
        (status = 200, description = "One page of patients", body = Page<Patient>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, description = "lookup_stands_alone: ids with another filter, a limit or a cursor", body = ErrorBody),
        (status = 503, description = "audit_unavailable: nothing is disclosed unaudited", body = ErrorBody),
    ))]
async fn list_patients(
    State(ctx): Ctx,
    caller: Caller,
    Query(q): Query<PatientQuery>,
) -> Result<Json<Page<Patient>>, Error> {
    if let Some(ids) = lookup_ids(&q)? {
        return Ok(Json(Page {
            items: read_many(&ctx, &caller, &ids).await?,
            next_cursor: None,
        }));
    }
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let rows = store::list(&mut *ctx.db.read().await?, ctx.db.backend(), &q, page).await?;
    let page = page.page(rows, |p| p.patient_id);
    let cid = correlation::current_id();
    let hits: Vec<AuditRow> = page
        .items
        .iter()
        .map(|p| disclosure(&caller, &cid, p.patient_id, "search_hit", "/v1/patients"))
        .collect();
    disclose(&ctx, hits).await?;
    Ok(Json(page))
}

/// Read one patient (recorded in the audit trail). Carries `ETag: W/"<version>"`.
#[utoipa::path(get, path = "/v1/patients/{id}", tag = "patients",
    params(("id" = i64, Path, description = "Patient id")),
    responses(
        (status = 200, description = "The patient", body = Patient),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, description = "audit_unavailable: nothing is disclosed unaudited", body = ErrorBody),
    ))]
async fn get_patient(
    State(ctx): Ctx,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Response, Error> {
    let cid = correlation::current_id();
    let row = disclosure(&caller, &cid, id, "read", "/v1/patients/{id}");
    let p = read_disclosed(&ctx, id, row)
        .await?
        .ok_or_else(|| Error::not_found(format!("patient {id}")))?;
    Ok(with_etag(p.version, StatusCode::OK, &p))
}

/// Change a patient's details. With `If-Match`, refused (412) if the record changed since.
#[utoipa::path(patch, path = "/v1/patients/{id}", tag = "patients",
    params(("id" = i64, Path, description = "Patient id"),
           ("If-Match" = Option<String>, Header, description = "ETag from a read, e.g. W/\"3\"")),
    request_body = PatientUpdate,
    responses(
        (status = 200, description = "Changed", body = Patient),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 412, description = "version_conflict: stale If-Match", body = ErrorBody),
        (status = 422, description = "nothing_to_change (every field null), dob_in_future", body = ErrorBody),
    ))]
async fn update_patient(
    State(ctx): Ctx,
    caller: Caller,
    Path(id): Path<i64>,
    IfMatch(expected): IfMatch,
    Json(u): Json<PatientUpdate>,
) -> Result<Response, Error> {
    let u = ValidUpdate::parse(u, today(&ctx))?;
    let now = ctx.clock.now();
    let mut tx = ctx.db.begin().await?;
    let p = match store::update(&mut tx, id, &u, expected, now).await? {
        Changed::Done(p) => p,
        Changed::NotFound => return Err(Error::not_found(format!("patient {id}"))),
        Changed::Stale(v) => return Err(Error::version_conflict(v)),
    };
    let cid = correlation::current_id();
    let fields = u.fields();
    let mut audit = row(&caller, &cid, id, "update", "/v1/patients/{id}");
    audit.detail = Some(fields.join(","));
    store::audit(&mut tx, &[audit], now)
        .await
        .map_err(audit_unavailable)?;
    ctx.outbox
        .enqueue(
            &mut tx,
            event(
                &p,
                PatientEvent::Updated(PatientChanged {
                    patient_id: p.patient_id,
                    active: p.active,
                    version: p.version,
                    changed: fields.iter().map(|f| f.to_string()).collect(),
                }),
            ),
        )
        .await?;
    ctx.outbox.commit(tx).await?;
    tracing::info!(patient_id = id, changed = ?fields, "patient updated");
    Ok(with_etag(p.version, StatusCode::OK, &p))
}

/// Deactivate a patient: kept on record, but no new appointments. Repeating it changes nothing.
#[utoipa::path(post, path = "/v1/patients/{id}/deactivate", tag = "patients",
    params(("id" = i64, Path, description = "Patient id"),
           ("If-Match" = Option<String>, Header, description = "ETag from a read")),
    responses(
        (status = 200, description = "Inactive", body = Patient),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 412, body = ErrorBody),
    ))]
async fn deactivate_patient(
    State(ctx): Ctx,
    caller: Caller,
    Path(id): Path<i64>,
    IfMatch(expected): IfMatch,
) -> Result<Response, Error> {
    let now = ctx.clock.now();
    let mut tx = ctx.db.begin().await?;
    let (outcome, changed) = store::deactivate(&mut tx, id, expected, now).await?;
    let p = match outcome {
        Changed::Done(p) => p,
        Changed::NotFound => return Err(Error::not_found(format!("patient {id}"))),
        Changed::Stale(v) => return Err(Error::version_conflict(v)),
    };
    let cid = correlation::current_id();
    let action = if changed { "deactivate" } else { "read" };
    store::audit(
        &mut tx,
        &[row(
            &caller,
            &cid,
            id,
            action,
            "/v1/patients/{id}/deactivate",
        )],
        now,
    )
    .await
    .map_err(audit_unavailable)?;
    if changed {
        ctx.outbox
            .enqueue(&mut tx, event(&p, PatientEvent::Deactivated(facts(&p))))
            .await?;
    }
    ctx.outbox.commit(tx).await?;
    Ok(with_etag(p.version, StatusCode::OK, &p))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Page size, 1–500 (default 50).
    limit: Option<u32>,
    cursor: Option<String>,
}

/// A patient's audit trail, oldest first (admin only; reading it is itself audited).
#[utoipa::path(get, path = "/v1/patients/{id}/audit", tag = "patients",
    params(("id" = i64, Path, description = "Patient id"), AuditQuery),
    responses(
        (status = 200, description = "One page of audit rows", body = Page<AuditEntry>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
async fn patient_audit(
    State(ctx): Ctx,
    caller: Caller,
    Path(id): Path<i64>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Page<AuditEntry>>, Error> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    if store::get(&mut *ctx.db.read().await?, id).await?.is_none() {
        return Err(Error::not_found(format!("patient {id}")));
    }
    let cid = correlation::current_id();
    disclose(
        &ctx,
        vec![disclosure(
            &caller,
            &cid,
            id,
            "audit_read",
            "/v1/patients/{id}/audit",
        )],
    )
    .await?;
    let rows = store::audit_trail(&mut *ctx.db.read().await?, id, page).await?;
    Ok(Json(page.page(rows, |a| a.audit_id)))
}

hms_kit::legacy_ids_route!(
    PatientCtx,
    "/v1/patients/import/ids",
    "patients",
    "patients",
    "patient_id"
);

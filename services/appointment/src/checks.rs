//! What booking needs to know from other services — the patient (exists, active) and the
//! doctor's day (active, department, leave, working hours) — taken from what this service keeps
//! (`known`), and asked through the shared client only when nothing is kept yet. Asked of a
//! service that is down → 503 `dependency_unavailable` naming it.

use chrono::NaiveDate;
use hms_client::models::{DoctorSchedule, Patient};
use hms_client::ClientError;
use hms_kit::server::ServiceCtx;
use hms_kit::Error;

fn map(e: ClientError) -> Error {
    match &e {
        // Our own token refused is a deployment fault, not the caller's.
        ClientError::Api {
            service, status, ..
        } if *status == 401 || *status == 403 => {
            Error::dependency(service, "it refused this service's token")
        }
        _ => e.into(),
    }
}

/// What booking needs: the doctor's schedule for `date`, once the patient is known to be
/// active — both from what this service keeps (`known`), asked of their services only when
/// nothing is kept yet.
pub async fn patient_and_doctor(
    ctx: &ServiceCtx,
    kept: &crate::known::Kept,
    patient_id: i64,
    doctor_id: i64,
    date: NaiveDate,
) -> Result<DoctorSchedule, Error> {
    let (active, schedule) = tokio::join!(
        crate::known::patient_active(ctx, kept, patient_id),
        crate::known::doctor_day(ctx, kept, doctor_id, date)
    );
    if !active? {
        return Err(Error::rule(
            "patient_inactive",
            format!("patient {patient_id} is not active"),
        ));
    }
    schedule
}

/// Asks the patient service for patient `id`.
pub async fn fetch_patient(ctx: &ServiceCtx, id: i64) -> Result<Patient, Error> {
    ctx.downstream.client().get_patient(id).await.map_err(map)
}

/// Asks the doctor service for `days` of doctor `id`'s schedule from `date`. A doctor service
/// of an earlier release, without `GET /v1/doctors/{id}/schedules` (a rolling upgrade), answers
/// 404 to it: then the one day is asked the old way, which also answers a doctor that is not
/// there.
pub async fn fetch_doctor_days(
    ctx: &ServiceCtx,
    id: i64,
    date: NaiveDate,
    days: u32,
) -> Result<Vec<DoctorSchedule>, Error> {
    let client = ctx.downstream.client();
    match client.doctor_schedules(id, date, days).await {
        Ok(days) => Ok(days),
        Err(ClientError::Api { status: 404, .. }) => client
            .doctor_schedule(id, date)
            .await
            .map(|day| vec![day])
            .map_err(map),
        Err(e) => Err(map(e)),
    }
}

/// For a legacy appointment: that its patient and doctor are in HMS (whatever their state
/// today), and the doctor, whose fee the appointment carries. In a dry run a record the
/// services cannot see was written by an earlier row of the same run (and rolled back), which
/// the caller has checked: `None` then.
pub async fn legacy_refs(
    ctx: &ServiceCtx,
    patient_id: i64,
    doctor_id: i64,
) -> Result<Option<hms_client::models::Doctor>, Error> {
    let client = ctx.downstream.client();
    let (patient, doctor) =
        tokio::join!(client.get_patient(patient_id), client.get_doctor(doctor_id));
    let dry = hms_kit::dry_run::active();
    let unseen = |e: &ClientError| dry && matches!(e, ClientError::Api { status: 404, .. });
    if let Err(e) = patient {
        if !unseen(&e) {
            return Err(map(e));
        }
    }
    match doctor {
        Ok(d) => Ok(Some(d)),
        Err(e) if unseen(&e) => Ok(None),
        Err(e) => Err(map(e)),
    }
}

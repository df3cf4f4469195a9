//! What this service knows of patients and doctors, for booking without calling their services:
//! read models fed by the events the patient and doctor services publish (`POST /v1/events`
//! here), and, for a record no event has brought yet, fetched once and kept.
//!
//! - A patient's status (`known_patients`): every patient event carries it, with the
//!   patient's version; a newer version replaces an older one, never the reverse.
//! - A doctor's day (`doctor_days`): the doctor service's schedule of one date (the doctor,
//!   leave, working periods), fetched the first time a booking asks for that day and kept at
//!   the doctor's version. Every change of a doctor (details, hours, leave) bumps the version
//!   and is announced; the announcement drops the kept days of older versions, and a day kept
//!   from a fetch that raced it is not used (`known_doctors` holds the latest version).
//!
//! Freshness: a change reaches booking when its event has been delivered (normally within a
//! second); until then the previous state applies — a booking made in that window is as if
//! it had been made just before the change.

use crate::checks;
use chrono::NaiveDate;
use hms_client::models::DoctorSchedule;
use hms_kit::db::Tx;
use hms_kit::server::ServiceCtx;
use hms_kit::time::date_to_db;
use hms_kit::Error;
use sqlx::{Any, Executor};

/// Whether patient `id` is active: from the read model, or asked of the patient service once.
pub async fn patient_active(ctx: &ServiceCtx, id: i64) -> Result<bool, Error> {
    let kept: Option<i64> =
        sqlx::query_scalar("SELECT active FROM known_patients WHERE patient_id = $1")
            .bind(id)
            .fetch_optional(ctx.db.pool())
            .await?;
    if let Some(active) = kept {
        return Ok(active == 1);
    }
    let p = checks::fetch_patient(ctx, id).await?;
    remember_patient(ctx.db.writer(), p.patient_id, p.active, p.version).await?;
    Ok(p.active)
}

/// Keeps a patient's status at `version`, unless a newer one is kept already.
pub async fn remember_patient<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    id: i64,
    active: bool,
    version: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO known_patients (patient_id, active, version) VALUES ($1, $2, $3) \
         ON CONFLICT (patient_id) DO UPDATE SET active = excluded.active, version = excluded.version \
         WHERE excluded.version > known_patients.version",
    )
    .bind(id)
    .bind(i64::from(active))
    .bind(version)
    .execute(exec)
    .await?;
    Ok(())
}

/// Doctor `id`'s schedule on `date`: kept, or asked of the doctor service once and kept.
pub async fn doctor_day(
    ctx: &ServiceCtx,
    id: i64,
    date: NaiveDate,
) -> Result<DoctorSchedule, Error> {
    let kept: Option<String> = sqlx::query_scalar(
        "SELECT d.schedule FROM doctor_days d LEFT JOIN known_doctors k ON k.doctor_id = d.doctor_id \
         WHERE d.doctor_id = $1 AND d.day = $2 AND (k.version IS NULL OR d.version >= k.version)",
    )
    .bind(id)
    .bind(date_to_db(date))
    .fetch_optional(ctx.db.pool())
    .await?;
    if let Some(json) = kept {
        match serde_json::from_str(&json) {
            Ok(schedule) => return Ok(schedule),
            // Written by another release in another shape: ask again.
            Err(e) => {
                tracing::warn!(doctor_id = id, error = %e, "a kept doctor's day is unreadable; fetching it")
            }
        }
    }
    let schedule = checks::fetch_doctor_day(ctx, id, date).await?;
    let json = serde_json::to_string(&schedule).map_err(Error::internal)?;
    sqlx::query(
        "INSERT INTO doctor_days (doctor_id, day, version, schedule) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (doctor_id, day) DO UPDATE SET version = excluded.version, schedule = excluded.schedule \
         WHERE excluded.version >= doctor_days.version",
    )
    .bind(id)
    .bind(date_to_db(date))
    .bind(schedule.doctor.version)
    .bind(json)
    .execute(ctx.db.writer())
    .await?;
    // Days gone by are never booked again: the doctor's are dropped as a new one is kept.
    let today = ctx
        .clock
        .now()
        .with_timezone(&ctx.config.clinic_tz())
        .date_naive();
    sqlx::query("DELETE FROM doctor_days WHERE doctor_id = $1 AND day < $2")
        .bind(id)
        .bind(date_to_db(today))
        .execute(ctx.db.writer())
        .await?;
    Ok(schedule)
}

/// A doctor changed (now at `version`): days kept of older versions go.
pub async fn doctor_changed(tx: &mut Tx, id: i64, version: i64) -> Result<(), Error> {
    hms_kit::inbox::raise_version(tx, "known_doctors", "doctor_id", "version", id, version).await?;
    sqlx::query("DELETE FROM doctor_days WHERE doctor_id = $1 AND version < $2")
        .bind(id)
        .bind(version)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

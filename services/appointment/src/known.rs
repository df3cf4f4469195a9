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
use hms_kit::coalesce::{fetch_with, Coalescer};
use hms_kit::db::{ids_in, ids_param, json_rows, json_rows_param, Bind, Db, Script, Tx};
use hms_kit::server::ServiceCtx;
use hms_kit::time::date_to_db;
use hms_kit::Error;
use sqlx::{Any, Executor, Row};
use std::collections::HashMap;

/// The read models as bookings read them: the bookings that arrive together read what is
/// kept of their patients in one query and of their doctors' days in another (see
/// `hms_kit::coalesce`), instead of two queries each — every query a hand-off to a database
/// connection's thread, and a booking's two were most of those it made before its group commit.
#[derive(Debug, Clone)]
pub struct Kept {
    patients: Coalescer<i64, Option<bool>>,
    days: Coalescer<(i64, NaiveDate), Option<String>>,
}

/// Keys read in one query at most.
const PER_QUERY: usize = 256;
/// Queries of each model at once (the service's reader connections).
const QUERIES_AT_ONCE: usize = 2;

impl Kept {
    /// Starts the lookup tasks (on the current runtime).
    pub fn spawn(db: Db) -> Self {
        Kept {
            patients: Coalescer::spawn(
                PER_QUERY,
                QUERIES_AT_ONCE,
                lost,
                fetch_with(db.clone(), kept_patients),
            ),
            days: Coalescer::spawn(PER_QUERY, QUERIES_AT_ONCE, lost, fetch_with(db, kept_days)),
        }
    }
}

/// Every key asked is answered (`None`: nothing kept), so a key missing is a fault.
fn lost<K>(_: &K) -> Error {
    Error::internal(anyhow::anyhow!("a kept-record lookup lost a key"))
}

async fn kept_patients(db: Db, ids: Vec<i64>) -> Result<HashMap<i64, Option<bool>>, Error> {
    let sql = format!(
        "SELECT patient_id, active FROM known_patients \
         WHERE patient_id IN {}",
        ids_in(db.backend(), "$1")
    );
    let found: HashMap<i64, bool> = sqlx::query(&sql)
        .bind(ids_param(&ids)?)
        .fetch_all(&mut *db.read().await?)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("patient_id")?,
                r.try_get::<i64, _>("active")? == 1,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(ids
        .into_iter()
        .map(|id| (id, found.get(&id).copied()))
        .collect())
}

async fn kept_days(
    db: Db,
    keys: Vec<(i64, NaiveDate)>,
) -> Result<HashMap<(i64, NaiveDate), Option<String>>, Error> {
    let sql = format!(
        "SELECT d.doctor_id, d.day, d.schedule FROM doctor_days d \
         JOIN {} ON d.doctor_id = CAST(j.value ->> 0 AS BIGINT) AND d.day = j.value ->> 1 \
         LEFT JOIN known_doctors k ON k.doctor_id = d.doctor_id \
         WHERE k.version IS NULL OR d.version >= k.version",
        json_rows(db.backend(), "$1")
    );
    let rows: Vec<(i64, String)> = keys
        .iter()
        .map(|(id, day)| (*id, date_to_db(*day)))
        .collect();
    let mut found: HashMap<(i64, String), String> = HashMap::with_capacity(keys.len());
    let read = sqlx::query(&sql)
        .bind(json_rows_param(&rows)?)
        .fetch_all(&mut *db.read().await?)
        .await?;
    for r in read {
        found.insert(
            (r.try_get("doctor_id")?, r.try_get("day")?),
            r.try_get("schedule")?,
        );
    }
    Ok(keys
        .into_iter()
        .map(|(id, day)| {
            let kept = found.remove(&(id, date_to_db(day)));
            ((id, day), kept)
        })
        .collect())
}

/// Whether patient `id` is active: from the read model, or asked of the patient service once.
pub async fn patient_active(ctx: &ServiceCtx, kept: &Kept, id: i64) -> Result<bool, Error> {
    if let Some(active) = kept.patients.get(id).await? {
        return Ok(active);
    }
    let p = checks::fetch_patient(ctx, id).await?;
    remember_patient(
        &mut *ctx.db.write().await?,
        p.patient_id,
        p.active,
        p.version,
    )
    .await?;
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

/// Days of a doctor's schedule fetched and kept at once when a booking finds its day not kept:
/// the day asked and the thirteen after it. A desk books a doctor across the coming days, so
/// one call to the doctor service and one write here serve a fortnight of bookings instead of
/// one call and two writes for every new day (in a booking run, a quarter of the statements a
/// booking cost, and the slowest tenth of bookings were those waiting on them).
const DAYS_FETCHED: u32 = 14;

/// Doctor `id`'s schedule on `date`: kept, or asked of the doctor service once (with the days
/// after it) and kept.
pub async fn doctor_day(
    ctx: &ServiceCtx,
    kept: &Kept,
    id: i64,
    date: NaiveDate,
) -> Result<DoctorSchedule, Error> {
    if let Some(json) = kept.days.get((id, date)).await? {
        match serde_json::from_str(&json) {
            Ok(schedule) => return Ok(schedule),
            // Written by another release in another shape: ask again.
            Err(e) => {
                tracing::warn!(doctor_id = id, error = %e, "a kept doctor's day is unreadable; fetching it")
            }
        }
    }
    let days = checks::fetch_doctor_days(ctx, id, date, DAYS_FETCHED).await?;
    let Some(schedule) = days.iter().find(|d| d.date == date).cloned() else {
        return Err(Error::internal(anyhow::anyhow!(
            "the doctor service's schedules of doctor {id} from {date} left that day out"
        )));
    };
    keep_days(ctx, id, &days).await?;
    Ok(schedule)
}

/// Keeps `days` of doctor `id` (each at the doctor's version it was read at, unless a newer
/// copy is kept) and drops the doctor's days gone by, which are never booked again: one
/// transaction, one hand-off to SQLite's writer for all of them.
async fn keep_days(ctx: &ServiceCtx, id: i64, days: &[DoctorSchedule]) -> Result<(), Error> {
    let backend = ctx.db.backend();
    let rows = days
        .iter()
        .map(|d| {
            let json = serde_json::to_string(d).map_err(Error::internal)?;
            Ok((id, date_to_db(d.date), d.doctor.version, json))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let today = ctx
        .clock
        .now()
        .with_timezone(&ctx.config.clinic_tz())
        .date_naive();
    let mut script = Script::new();
    script.push(
        &format!(
            "INSERT INTO doctor_days (doctor_id, day, version, schedule) \
             SELECT CAST(j.value ->> 0 AS BIGINT), j.value ->> 1, CAST(j.value ->> 2 AS BIGINT), j.value ->> 3 \
             FROM {} WHERE true \
             ON CONFLICT (doctor_id, day) DO UPDATE SET version = excluded.version, schedule = excluded.schedule \
             WHERE excluded.version >= doctor_days.version",
            json_rows(backend, "?")
        ),
        [Bind::Text(json_rows_param(&rows)?)],
    );
    script.push(
        "DELETE FROM doctor_days WHERE doctor_id = ? AND day < ?",
        [Bind::Int(id), Bind::Text(date_to_db(today))],
    );
    let mut tx = ctx.db.begin().await?;
    script.run(&mut tx).await?;
    tx.commit().await?;
    Ok(())
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

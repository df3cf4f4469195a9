//! Doctor and scheduling SQL, written once for SQLite and PostgreSQL.

use crate::domain::{Shift, ValidDoctor, ValidDoctorUpdate};
use chrono::{DateTime, NaiveDate, Utc};
use hms_client::models::{Doctor, DoctorQuery, Leave, NewLeave};
use hms_client::Money;
use hms_kit::db::{json_rows, sync_id_sequence, violation, Backend, Bind, Select, Tx, Violation};
use hms_kit::inbox::Rows;
use hms_kit::pagination::PageRequest;
use hms_kit::time::{date_from_db, date_to_db, from_db, to_db};
use hms_kit::Error;
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};
use std::collections::HashMap;

const COLUMNS: &str = "doctor_id, name, email, phone, department, specialization, \
                       consultation_fee, active, version, created_at, updated_at";

fn doctor(r: &AnyRow) -> Result<Doctor, sqlx::Error> {
    Ok(Doctor {
        doctor_id: r.try_get("doctor_id")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        phone: r.try_get("phone")?,
        department: r.try_get("department")?,
        specialization: r.try_get("specialization")?,
        consultation_fee: Money(r.try_get("consultation_fee")?),
        active: r.try_get::<i64, _>("active")? == 1,
        version: r.try_get("version")?,
        created_at: from_db(&r.try_get::<String, _>("created_at")?)?,
        updated_at: from_db(&r.try_get::<String, _>("updated_at")?)?,
    })
}

fn leave(r: &AnyRow) -> Result<Leave, sqlx::Error> {
    Ok(Leave {
        leave_id: r.try_get("leave_id")?,
        doctor_id: r.try_get("doctor_id")?,
        start_date: date_from_db(&r.try_get::<String, _>("start_date")?)?,
        end_date: date_from_db(&r.try_get::<String, _>("end_date")?)?,
        reason: r.try_get("reason")?,
        created_at: from_db(&r.try_get::<String, _>("created_at")?)?,
    })
}

/// Registers a doctor with their weekly hours.
pub async fn insert(
    backend: Backend,
    tx: &mut Tx,
    d: &ValidDoctor,
    now: DateTime<Utc>,
) -> Result<Doctor, Error> {
    let mut s = Select::new("INSERT INTO doctors (");
    if d.doctor_id.is_some() {
        s.push("doctor_id, ", []);
    }
    s.push(
        "name, email, phone, department, specialization, consultation_fee, active, version, created_at, updated_at) VALUES (",
        [],
    );
    if let Some(id) = d.doctor_id {
        s.push("?, ", [Bind::Int(id)]);
    }
    let opt = |v: Option<&str>| v.map(|s| Bind::Text(s.to_string()));
    s.push("?, ", [Bind::Text(d.name.expose().to_string())]);
    match opt(d.email.as_ref().map(|e| e.expose())) {
        Some(b) => s.push("?, ", [b]),
        None => s.push("NULL, ", []),
    };
    match opt(d.phone.as_ref().map(|p| p.expose())) {
        Some(b) => s.push("?, ", [b]),
        None => s.push("NULL, ", []),
    };
    s.push(
        "?, ?, ?, 1, 1, ?, ?)",
        [
            Bind::Text(d.department.clone()),
            Bind::Text(d.specialization.clone()),
            Bind::Int(d.fee.0),
            Bind::Text(to_db(d.created_at.unwrap_or(now))),
            Bind::Text(to_db(now)),
        ],
    );
    s.push(&format!(" RETURNING {COLUMNS}"), []);
    let row = s
        .query()
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| match violation(&e) {
            Some(Violation::Unique) => Error::conflict(
                "already_exists",
                format!("doctor {} already exists", d.doctor_id.unwrap_or_default()),
            ),
            _ => e.into(),
        })?;
    if d.doctor_id.is_some() {
        sync_id_sequence(backend, tx, "doctors", "doctor_id").await?;
    }
    let created = doctor(&row)?;
    replace_hours(tx, created.doctor_id, &d.hours).await?;
    Ok(created)
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    id: i64,
) -> Result<Option<Doctor>, Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM doctors WHERE doctor_id = $1"
    ))
    .bind(id)
    .fetch_optional(exec)
    .await?;
    Ok(row.as_ref().map(doctor).transpose()?)
}

/// One page of doctors matching every given filter, in id order.
pub async fn list<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    q: &DoctorQuery,
    page: PageRequest,
) -> Result<Vec<Doctor>, Error> {
    let mut s = Select::new(&format!("SELECT {COLUMNS} FROM doctors WHERE 1 = 1"));
    s.and("doctor_id > ?", Bind::Int(page.after_or_min()));
    if let Some(d) = q
        .department
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        s.and("LOWER(department) = ?", Bind::Text(d.to_lowercase()));
    }
    if let Some(sp) = q
        .specialization
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        s.and("LOWER(specialization) = ?", Bind::Text(sp.to_lowercase()));
    }
    if let Some(n) = q.name.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        s.push(
            " AND LOWER(name) LIKE ? ESCAPE '\\'",
            [Bind::Text(hms_kit::db::contains_pattern(n))],
        );
    }
    if let Some(a) = q.active {
        s.and("active = ?", Bind::Int(i64::from(a)));
    }
    s.push(" ORDER BY doctor_id LIMIT ?", [Bind::Int(page.fetch())]);
    let rows = s.fetch_all(exec).await?;
    Ok(rows.iter().map(doctor).collect::<Result<_, _>>()?)
}

/// Applies `u`, guarded by `expected` version if given. `None` → not found; `Err(Stale)` via
/// the returned current version.
pub async fn update(
    tx: &mut Tx,
    id: i64,
    u: &ValidDoctorUpdate,
    expected: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Result<Doctor, Option<i64>>, Error> {
    let mut s = Select::new("UPDATE doctors SET version = version + 1");
    s.push(", updated_at = ?", [Bind::Text(to_db(now))]);
    if let Some(n) = &u.name {
        s.push(", name = ?", [Bind::Text(n.expose().to_string())]);
    }
    match &u.email {
        Some(Some(e)) => {
            s.push(", email = ?", [Bind::Text(e.expose().to_string())]);
        }
        Some(None) => {
            s.push(", email = NULL", []);
        }
        None => {}
    }
    match &u.phone {
        Some(Some(p)) => {
            s.push(", phone = ?", [Bind::Text(p.expose().to_string())]);
        }
        Some(None) => {
            s.push(", phone = NULL", []);
        }
        None => {}
    }
    if let Some(d) = &u.department {
        s.push(", department = ?", [Bind::Text(d.clone())]);
    }
    if let Some(sp) = &u.specialization {
        s.push(", specialization = ?", [Bind::Text(sp.clone())]);
    }
    if let Some(f) = u.fee {
        s.push(", consultation_fee = ?", [Bind::Int(f.0)]);
    }
    if let Some(a) = u.active {
        s.push(", active = ?", [Bind::Int(i64::from(a))]);
    }
    s.push(" WHERE doctor_id = ?", [Bind::Int(id)]);
    if let Some(v) = expected {
        s.and("version = ?", Bind::Int(v));
    }
    s.push(&format!(" RETURNING {COLUMNS}"), []);
    match s.query().fetch_optional(&mut **tx).await? {
        Some(row) => Ok(Ok(doctor(&row)?)),
        None => Ok(Err(get(&mut **tx, id).await?.map(|d| d.version))),
    }
}

/// Bumps a doctor's version for a schedule change; `None` if there is no such doctor.
pub async fn touch(tx: &mut Tx, id: i64, now: DateTime<Utc>) -> Result<Option<Doctor>, Error> {
    let row = sqlx::query(&format!(
        "UPDATE doctors SET version = version + 1, updated_at = $1 WHERE doctor_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(to_db(now))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.as_ref().map(doctor).transpose()?)
}

/// Replaces a doctor's weekly hours.
pub async fn replace_hours(tx: &mut Tx, id: i64, shifts: &[Shift]) -> Result<(), Error> {
    sqlx::query("DELETE FROM working_hours WHERE doctor_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    for s in shifts {
        sqlx::query(
            "INSERT INTO working_hours (doctor_id, weekday, start_minute, end_minute) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(i64::from(s.weekday))
        .bind(i64::from(s.start))
        .bind(i64::from(s.end))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn in_list(s: &mut Select, column: &str, ids: &[i64]) {
    s.push(&format!(" AND {column} IN ("), []);
    for (i, id) in ids.iter().enumerate() {
        s.push(if i == 0 { "?" } else { ", ?" }, [Bind::Int(*id)]);
    }
    s.push(")", []);
}

/// Weekly hours of several doctors at once (one query, not one per doctor).
pub async fn hours_of<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<Shift>>, Error> {
    let mut out: HashMap<i64, Vec<Shift>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let mut s = Select::new(
        "SELECT doctor_id, weekday, start_minute, end_minute FROM working_hours WHERE 1 = 1",
    );
    in_list(&mut s, "doctor_id", ids);
    s.push(" ORDER BY doctor_id, weekday, start_minute", []);
    for r in s.fetch_all(exec).await? {
        let id: i64 = r.try_get("doctor_id")?;
        out.entry(id).or_default().push(Shift {
            weekday: r.try_get::<i64, _>("weekday")? as u8,
            start: r.try_get::<i64, _>("start_minute")? as u32,
            end: r.try_get::<i64, _>("end_minute")? as u32,
        });
    }
    Ok(out)
}

/// Which of `ids` are on leave on `date` (one query).
pub async fn on_leave<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    ids: &[i64],
    date: NaiveDate,
) -> Result<Vec<i64>, Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let d = date_to_db(date);
    let mut s = Select::new("SELECT DISTINCT doctor_id FROM leaves WHERE 1 = 1");
    s.and("start_date <= ?", Bind::Text(d.clone()));
    s.and("end_date >= ?", Bind::Text(d));
    in_list(&mut s, "doctor_id", ids);
    let rows = s.fetch_all(exec).await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get("doctor_id"))
        .collect::<Result<_, _>>()?)
}

/// The leave of doctor `id` that touches `from..=to`, as `(start, end)` dates (one query).
pub async fn leave_between<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    id: i64,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(NaiveDate, NaiveDate)>, Error> {
    let mut s = Select::new("SELECT start_date, end_date FROM leaves WHERE 1 = 1");
    s.and("doctor_id = ?", Bind::Int(id));
    s.and("start_date <= ?", Bind::Text(date_to_db(to)));
    s.and("end_date >= ?", Bind::Text(date_to_db(from)));
    let rows = s.fetch_all(exec).await?;
    Ok(rows
        .iter()
        .map(|r| {
            Ok((
                date_from_db(r.try_get("start_date")?)?,
                date_from_db(r.try_get("end_date")?)?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?)
}

/// Active doctors of a department (any case), in id order.
pub async fn in_department<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    department: &str,
) -> Result<Vec<Doctor>, Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM doctors WHERE LOWER(department) = $1 AND active = 1 ORDER BY doctor_id"
    ))
    .bind(department.trim().to_lowercase())
    .fetch_all(exec)
    .await?;
    Ok(rows.iter().map(doctor).collect::<Result<_, _>>()?)
}

pub async fn add_leave(
    tx: &mut Tx,
    id: i64,
    l: &NewLeave,
    now: DateTime<Utc>,
) -> Result<Leave, Error> {
    let reason = l.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let row = sqlx::query(
        "INSERT INTO leaves (doctor_id, start_date, end_date, reason, created_at) VALUES ($1, $2, $3, $4, $5) \
         RETURNING leave_id, doctor_id, start_date, end_date, reason, created_at",
    )
    .bind(id)
    .bind(date_to_db(l.start_date))
    .bind(date_to_db(l.end_date))
    .bind(reason)
    .bind(to_db(now))
    .fetch_one(&mut **tx)
    .await?;
    Ok(leave(&row)?)
}

pub async fn list_leave<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    id: i64,
    page: PageRequest,
) -> Result<Vec<Leave>, Error> {
    let rows = sqlx::query(
        "SELECT leave_id, doctor_id, start_date, end_date, reason, created_at FROM leaves \
         WHERE doctor_id = $1 AND leave_id > $2 ORDER BY leave_id LIMIT $3",
    )
    .bind(id)
    .bind(page.after_or_min())
    .bind(page.fetch())
    .fetch_all(exec)
    .await?;
    Ok(rows.iter().map(leave).collect::<Result<_, _>>()?)
}

/// Deletes one leave of a doctor; false if there was none.
pub async fn delete_leave(tx: &mut Tx, id: i64, leave_id: i64) -> Result<bool, Error> {
    let n = sqlx::query("DELETE FROM leaves WHERE doctor_id = $1 AND leave_id = $2")
        .bind(id)
        .bind(leave_id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Booked slot starts of several doctors within `[from, to)` (one query).
pub async fn booked_between<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    ids: &[i64],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<HashMap<i64, Vec<DateTime<Utc>>>, Error> {
    let mut out: HashMap<i64, Vec<DateTime<Utc>>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let mut s = Select::new("SELECT doctor_id, slot_start FROM booked_slots WHERE active = 1");
    s.and("slot_start >= ?", Bind::Text(to_db(from)));
    s.and("slot_start < ?", Bind::Text(to_db(to)));
    in_list(&mut s, "doctor_id", ids);
    for r in s.fetch_all(exec).await? {
        let id: i64 = r.try_get("doctor_id")?;
        out.entry(id)
            .or_default()
            .push(from_db(&r.try_get::<String, _>("slot_start")?)?);
    }
    Ok(out)
}

/// Applies appointment events to the booked-slot read model, each only if it is newer than
/// what is stored (events may arrive out of order or twice): one row per event
/// (`[appointment_id, doctor_id, slot_start, active, seq]`, see [`booking_row`]), the rows of a
/// delivered batch in one statement.
pub static BOOKINGS: Rows = Rows { sql: bookings_sql };

fn bookings_sql(backend: Backend) -> String {
    // SQLite applies the rows one after another, in their order; PostgreSQL cannot update a
    // row twice in one statement, so it is given each appointment's newest row (the one that
    // would win anyway).
    let rows = match backend {
        Backend::Sqlite => format!(
            "SELECT CAST(j.value ->> 0 AS BIGINT) AS appointment_id, CAST(j.value ->> 1 AS BIGINT) AS doctor_id, \
             j.value ->> 2 AS slot_start, CAST(j.value ->> 3 AS BIGINT) AS active, \
             CAST(j.value ->> 4 AS BIGINT) AS seq FROM {} WHERE true ORDER BY j.key",
            json_rows(backend, "$1")
        ),
        Backend::Postgres => format!(
            "SELECT DISTINCT ON (CAST(j.value ->> 0 AS BIGINT)) CAST(j.value ->> 0 AS BIGINT) AS appointment_id, \
             CAST(j.value ->> 1 AS BIGINT) AS doctor_id, j.value ->> 2 AS slot_start, \
             CAST(j.value ->> 3 AS BIGINT) AS active, CAST(j.value ->> 4 AS BIGINT) AS seq FROM {} \
             ORDER BY CAST(j.value ->> 0 AS BIGINT), CAST(j.value ->> 4 AS BIGINT) DESC",
            json_rows(backend, "$1")
        ),
    };
    format!(
        "INSERT INTO booked_slots (appointment_id, doctor_id, slot_start, active, seq) {rows} \
         ON CONFLICT (appointment_id) DO UPDATE SET doctor_id = excluded.doctor_id, \
         slot_start = excluded.slot_start, active = excluded.active, seq = excluded.seq \
         WHERE booked_slots.seq < excluded.seq"
    )
}

/// One appointment event's row of [`BOOKINGS`].
pub fn booking_row(
    appointment_id: i64,
    doctor_id: i64,
    slot_start: DateTime<Utc>,
    active: bool,
    seq: i64,
) -> serde_json::Value {
    serde_json::json!([
        appointment_id,
        doctor_id,
        to_db(slot_start),
        i64::from(active),
        seq
    ])
}

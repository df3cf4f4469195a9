//! Appointment SQL, written once for SQLite and PostgreSQL. The database decides every rule
//! concurrency could break: slot claims (primary keys), the daily cap (a counter under a
//! CHECK, bumped by a guarded upsert), and transitions (guarded UPDATEs that bump `version`).

use crate::domain::{FeeDecision, SlotChoice, Status};
use chrono::{DateTime, NaiveDate, Utc};
use hms_client::models::{Appointment, AppointmentQuery};
use hms_client::Money;
use hms_kit::db::{
    backend_of, json_rows, json_rows_param, violation, Bind, Script, Select, Tx, Violation,
};
use hms_kit::pagination::PageRequest;
use hms_kit::time::{date_to_db, from_db, to_db};
use hms_kit::Error;
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

const COLUMNS: &str = "appointment_id, patient_id, doctor_id, department, slot_start, slot_end, \
    status, reschedule_count, version, consultation_fee, fee_decision, created_at, updated_at";

fn appointment(r: &AnyRow) -> Result<Appointment, sqlx::Error> {
    Ok(Appointment {
        appointment_id: r.try_get("appointment_id")?,
        patient_id: r.try_get("patient_id")?,
        doctor_id: r.try_get("doctor_id")?,
        department: r.try_get("department")?,
        slot_start: from_db(&r.try_get::<String, _>("slot_start")?)?,
        slot_end: from_db(&r.try_get::<String, _>("slot_end")?)?,
        status: r.try_get("status")?,
        reschedule_count: r.try_get("reschedule_count")?,
        version: r.try_get("version")?,
        consultation_fee: Money(r.try_get("consultation_fee")?),
        fee_decision: r.try_get("fee_decision")?,
        created_at: from_db(&r.try_get::<String, _>("created_at")?)?,
        updated_at: from_db(&r.try_get::<String, _>("updated_at")?)?,
    })
}

/// A booking that passed the rules outside the database.
#[derive(Debug, Clone)]
pub struct Booking {
    pub patient_id: i64,
    pub doctor_id: i64,
    pub department: String,
    pub slot: SlotChoice,
    pub fee: Money,
}

/// Claims the doctor's and the patient's slot as separate statements, so the one the
/// database refuses says which rule failed.
async fn claim(
    tx: &mut Tx,
    appointment_id: i64,
    doctor_id: i64,
    patient_id: i64,
    slot: &SlotChoice,
) -> Result<(), Error> {
    let mut script = Script::new();
    claims(&mut script, appointment_id, doctor_id, patient_id, slot);
    script.run(tx).await
}

/// The two slot claims of [`claim`], as statements of `script`.
fn claims(
    script: &mut Script,
    appointment_id: i64,
    doctor_id: i64,
    patient_id: i64,
    slot: &SlotChoice,
) {
    let start = to_db(slot.start);
    let at = hms_kit::time::clinic(slot.start).to_string();
    let taken_at = at.clone();
    script
        .push(
            "INSERT INTO doctor_slot_claims (doctor_id, slot_start, clinic_day, appointment_id) VALUES (?, ?, ?, ?)",
            [
                Bind::Int(doctor_id),
                Bind::Text(start.clone()),
                Bind::Text(date_to_db(slot.day)),
                Bind::Int(appointment_id),
            ],
        )
        .refusing(move |e| {
            (violation(e) == Some(Violation::Unique)).then(|| {
                Error::conflict(
                    "slot_taken",
                    format!("doctor {doctor_id} already has an appointment at {taken_at}"),
                )
            })
        })
        .push(
            "INSERT INTO patient_slot_claims (patient_id, slot_start, appointment_id) VALUES (?, ?, ?)",
            [Bind::Int(patient_id), Bind::Text(start), Bind::Int(appointment_id)],
        )
        .refusing(move |e| {
            (violation(e) == Some(Violation::Unique)).then(|| {
                Error::conflict(
                    "patient_busy",
                    format!("patient {patient_id} already has an appointment at {at}"),
                )
            })
        });
}

/// Releases an appointment's claims; returns the clinic day its doctor claim was on.
async fn release(tx: &mut Tx, appointment_id: i64) -> Result<Option<NaiveDate>, Error> {
    let day: Option<String> = sqlx::query_scalar(
        "DELETE FROM doctor_slot_claims WHERE appointment_id = $1 RETURNING clinic_day",
    )
    .bind(appointment_id)
    .fetch_optional(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM patient_slot_claims WHERE appointment_id = $1")
        .bind(appointment_id)
        .execute(&mut **tx)
        .await?;
    Ok(day.map(|d| hms_kit::time::date_from_db(&d)).transpose()?)
}

/// One more appointment on a doctor's day, unless the cap is reached.
async fn count_in(tx: &mut Tx, doctor_id: i64, day: NaiveDate, cap: i64) -> Result<(), Error> {
    let mut script = Script::new();
    counted_in(&mut script, doctor_id, day, cap);
    script.run(tx).await
}

/// [`count_in`] as a statement of `script`: the day's CHECK (`booked <= cap`) refuses the
/// appointment one past the cap, on a new day or a counted one (the cap is the one in force).
fn counted_in(script: &mut Script, doctor_id: i64, day: NaiveDate, cap: i64) {
    script
        .push(
            "INSERT INTO doctor_day_load (doctor_id, day, booked, cap) VALUES (?, ?, 1, ?) \
             ON CONFLICT (doctor_id, day) DO UPDATE SET booked = doctor_day_load.booked + 1, cap = excluded.cap",
            [Bind::Int(doctor_id), Bind::Text(date_to_db(day)), Bind::Int(cap)],
        )
        .refusing(move |e| {
            (violation(e) == Some(Violation::Check)).then(|| cap_reached(doctor_id, day, cap))
        });
}

fn cap_reached(doctor_id: i64, day: NaiveDate, cap: i64) -> Error {
    Error::rule(
        "daily_cap_reached",
        format!("doctor {doctor_id} already has {cap} appointments on {day}"),
    )
}

async fn count_out(tx: &mut Tx, doctor_id: i64, day: NaiveDate) -> Result<(), Error> {
    sqlx::query("UPDATE doctor_day_load SET booked = booked - 1 WHERE doctor_id = $1 AND day = $2")
        .bind(doctor_id)
        .bind(date_to_db(day))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Books: the appointment row, its two slot claims, and its place in the doctor's day. `also`
/// adds the caller's writes of the booking (its event) to the claims' script, so they reach
/// the database together (one hand-off on SQLite; see [`Script`]).
pub async fn book(
    tx: &mut Tx,
    b: &Booking,
    cap: i64,
    now: DateTime<Utc>,
    also: impl FnOnce(&Appointment, &mut Script) -> Result<(), Error>,
) -> Result<Appointment, Error> {
    let row = sqlx::query(&format!(
        "INSERT INTO appointments (patient_id, doctor_id, department, slot_start, slot_end, clinic_day, \
         status, reschedule_count, version, consultation_fee, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'SCHEDULED', 0, 1, $7, $8, $8) RETURNING {COLUMNS}"
    ))
    .bind(b.patient_id)
    .bind(b.doctor_id)
    .bind(&b.department)
    .bind(to_db(b.slot.start))
    .bind(to_db(b.slot.end))
    .bind(date_to_db(b.slot.day))
    .bind(b.fee.0)
    .bind(to_db(now))
    .fetch_one(&mut **tx)
    .await?;
    let a = appointment(&row)?;
    let mut script = Script::new();
    claims(
        &mut script,
        a.appointment_id,
        b.doctor_id,
        b.patient_id,
        &b.slot,
    );
    counted_in(&mut script, b.doctor_id, b.slot.day, cap);
    also(&a, &mut script)?;
    script.run(tx).await?;
    Ok(a)
}

/// A booking of a group: the booking, the daily cap in force and when it was asked.
#[derive(Debug, Clone)]
pub struct Asked<'a> {
    pub booking: &'a Booking,
    pub cap: i64,
    pub now: DateTime<Utc>,
}

/// Books a group together ([`hms_kit::group_commit::Group`]): the same rows and constraints as
/// [`book`] — the appointment rows, both slot claims of each, each doctor's day counted
/// under its CHECK — in one statement each, whatever the group's size. Any refusal fails the
/// whole (the caller rolls it back and books each alone, where the refusal is judged and
/// named). `also` adds the caller's writes of the group (events, stored answers).
pub async fn book_all(
    tx: &mut Tx,
    asked: &[Asked<'_>],
    also: impl FnOnce(&[Appointment], &mut Script) -> Result<(), Error>,
) -> Result<Vec<Appointment>, Error> {
    let backend = backend_of(tx);
    let rows: Vec<_> = asked
        .iter()
        .map(|a| {
            let b = a.booking;
            (
                b.patient_id,
                b.doctor_id,
                b.department.as_str(),
                to_db(b.slot.start),
                to_db(b.slot.end),
                date_to_db(b.slot.day),
                b.fee.0,
                to_db(a.now),
            )
        })
        .collect();
    let inserted = sqlx::query(&format!(
        "INSERT INTO appointments (patient_id, doctor_id, department, slot_start, slot_end, clinic_day, \
         status, reschedule_count, version, consultation_fee, created_at, updated_at) \
         SELECT CAST(j.value ->> 0 AS BIGINT), CAST(j.value ->> 1 AS BIGINT), j.value ->> 2, \
         j.value ->> 3, j.value ->> 4, j.value ->> 5, 'SCHEDULED', 0, 1, CAST(j.value ->> 6 AS BIGINT), \
         j.value ->> 7, j.value ->> 7 FROM {} ORDER BY j.key RETURNING {COLUMNS}",
        json_rows(backend, "$1")
    ))
    .bind(json_rows_param(&rows)?)
    .fetch_all(&mut **tx)
    .await?;
    let mut made = inserted
        .iter()
        .map(appointment)
        .collect::<Result<Vec<_>, _>>()?;
    made.sort_by_key(|a| a.appointment_id);
    // RETURNING promises no order: each booking takes the first row made of it (two equal
    // bookings are interchangeable, and their claims refuse the second anyway).
    let mut taken = vec![false; made.len()];
    let mut booked = Vec::with_capacity(asked.len());
    for a in asked {
        let b = a.booking;
        let i = (0..made.len())
            .find(|&i| {
                !taken[i]
                    && made[i].patient_id == b.patient_id
                    && made[i].doctor_id == b.doctor_id
                    && made[i].slot_start == b.slot.start
            })
            .ok_or_else(|| Error::internal(anyhow::anyhow!("a booked row is missing")))?;
        taken[i] = true;
        booked.push(made[i].clone());
    }
    let mut doctors = Vec::with_capacity(asked.len());
    let mut patients = Vec::with_capacity(asked.len());
    let mut days = Vec::with_capacity(asked.len());
    for (a, row) in asked.iter().zip(&booked) {
        let b = a.booking;
        let start = to_db(b.slot.start);
        let day = date_to_db(b.slot.day);
        doctors.push((b.doctor_id, start.clone(), day.clone(), row.appointment_id));
        patients.push((b.patient_id, start, row.appointment_id));
        days.push((b.doctor_id, day, a.cap));
    }
    let mut script = Script::new();
    script
        .push(
            &format!(
                "INSERT INTO doctor_slot_claims (doctor_id, slot_start, clinic_day, appointment_id) \
                 SELECT CAST(j.value ->> 0 AS BIGINT), j.value ->> 1, j.value ->> 2, \
                 CAST(j.value ->> 3 AS BIGINT) FROM {}",
                json_rows(backend, "?")
            ),
            [Bind::Text(json_rows_param(&doctors)?)],
        )
        .push(
            &format!(
                "INSERT INTO patient_slot_claims (patient_id, slot_start, appointment_id) \
                 SELECT CAST(j.value ->> 0 AS BIGINT), j.value ->> 1, CAST(j.value ->> 2 AS BIGINT) FROM {}",
                json_rows(backend, "?")
            ),
            [Bind::Text(json_rows_param(&patients)?)],
        )
        // A day's count moves by its bookings in the group at once, under the same CHECK;
        // the days in one order, so that two groups (two instances) never wait on each other's
        // day rows in opposite orders.
        .push(
            &format!(
                "INSERT INTO doctor_day_load (doctor_id, day, booked, cap) \
                 SELECT CAST(j.value ->> 0 AS BIGINT), j.value ->> 1, COUNT(*), MIN(CAST(j.value ->> 2 AS BIGINT)) \
                 FROM {} WHERE true GROUP BY j.value ->> 0, j.value ->> 1 ORDER BY 1, 2 \
                 ON CONFLICT (doctor_id, day) DO UPDATE SET booked = doctor_day_load.booked + excluded.booked, cap = excluded.cap",
                json_rows(backend, "?")
            ),
            [Bind::Text(json_rows_param(&days)?)],
        );
    also(&booked, &mut script)?;
    script.run(tx).await?;
    Ok(booked)
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    id: i64,
) -> Result<Option<Appointment>, Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM appointments WHERE appointment_id = $1"
    ))
    .bind(id)
    .fetch_optional(exec)
    .await?;
    Ok(row.as_ref().map(appointment).transpose()?)
}

/// One page of appointments matching every given filter, in id order.
pub async fn list<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    q: &AppointmentQuery,
    status: Option<Status>,
    page: PageRequest,
) -> Result<Vec<Appointment>, Error> {
    let mut s = Select::new(&format!("SELECT {COLUMNS} FROM appointments WHERE 1 = 1"));
    s.and("appointment_id > ?", Bind::Int(page.after_or_min()));
    if let Some(p) = q.patient_id {
        s.and("patient_id = ?", Bind::Int(p));
    }
    if let Some(d) = q.doctor_id {
        s.and("doctor_id = ?", Bind::Int(d));
    }
    if let Some(st) = status {
        s.and("status = ?", Bind::Text(st.as_str().into()));
    }
    if let Some(d) = q
        .department
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        s.and("LOWER(department) = ?", Bind::Text(d.to_lowercase()));
    }
    if let Some(f) = q.from {
        s.and("slot_start >= ?", Bind::Text(to_db(f)));
    }
    if let Some(t) = q.to {
        s.and("slot_start < ?", Bind::Text(to_db(t)));
    }
    s.push(
        " ORDER BY appointment_id LIMIT ?",
        [Bind::Int(page.fetch())],
    );
    let rows = s.fetch_all(exec).await?;
    Ok(rows.iter().map(appointment).collect::<Result<_, _>>()?)
}

/// Why a guarded UPDATE changed nothing.
pub enum Refused {
    NotFound,
    /// `If-Match` was stale; the current version.
    Stale(i64),
    /// The row is as it is; the caller decides which rule it broke.
    Current(Appointment),
}

async fn why_not(tx: &mut Tx, id: i64, expected: Option<i64>) -> Result<Refused, Error> {
    Ok(match get(&mut **tx, id).await? {
        None => Refused::NotFound,
        Some(a) if expected.is_some_and(|v| v != a.version) => Refused::Stale(a.version),
        Some(a) => Refused::Current(a),
    })
}

/// How a transition sets `fee_decision`.
#[derive(Debug, Clone, Copy)]
pub enum Fee {
    Unchanged,
    Fixed(FeeDecision),
    /// A cancellation: `half` if the slot starts at or before this instant, else `none` —
    /// decided by the UPDATE against the row it changes, so a concurrent reschedule cannot
    /// make the fee stale.
    HalfIfStartsBy(DateTime<Utc>),
}

/// Cancel, no-show or complete, guarded in SQL so that one of any concurrent transitions wins.
/// `start_bound` narrows which slots qualify (`slot_start <= bound`), e.g. the no-show grace.
/// Cancel and no-show release the slot and the doctor's day count.
pub async fn finish(
    tx: &mut Tx,
    id: i64,
    to: Status,
    fee: Fee,
    start_bound: Option<DateTime<Utc>>,
    expected: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Result<Appointment, Refused>, Error> {
    let mut s = Select::new("UPDATE appointments SET version = version + 1");
    s.push(", status = ?", [Bind::Text(to.as_str().into())]);
    s.push(", updated_at = ?", [Bind::Text(to_db(now))]);
    match fee {
        Fee::Unchanged => {}
        Fee::Fixed(f) => {
            s.push(", fee_decision = ?", [Bind::Text(f.as_str().into())]);
        }
        Fee::HalfIfStartsBy(t) => {
            s.push(
                ", fee_decision = CASE WHEN slot_start <= ? THEN 'half' ELSE 'none' END",
                [Bind::Text(to_db(t))],
            );
        }
    }
    s.push(
        " WHERE appointment_id = ? AND status = 'SCHEDULED'",
        [Bind::Int(id)],
    );
    if let Some(b) = start_bound {
        s.and("slot_start <= ?", Bind::Text(to_db(b)));
    }
    if let Some(v) = expected {
        s.and("version = ?", Bind::Int(v));
    }
    s.push(&format!(" RETURNING {COLUMNS}"), []);
    let Some(row) = s.query().fetch_optional(&mut **tx).await? else {
        return Ok(Err(why_not(tx, id, expected).await?));
    };
    let a = appointment(&row)?;
    if matches!(to, Status::Cancelled | Status::NoShow) {
        if let Some(day) = release(tx, id).await? {
            count_out(tx, a.doctor_id, day).await?;
        }
    }
    Ok(Ok(a))
}

/// Moves an appointment to `slot`: at most twice, not within the cut-off of its current
/// start (both in the UPDATE's WHERE); the claims move and the day counts follow.
pub async fn reschedule(
    tx: &mut Tx,
    id: i64,
    slot: &SlotChoice,
    earliest_current_start: DateTime<Utc>,
    expected: Option<i64>,
    cap: i64,
    now: DateTime<Utc>,
) -> Result<Result<(Appointment, DateTime<Utc>), Refused>, Error> {
    let mut s = Select::new(
        "UPDATE appointments SET version = version + 1, reschedule_count = reschedule_count + 1",
    );
    s.push(", slot_start = ?", [Bind::Text(to_db(slot.start))]);
    s.push(", slot_end = ?", [Bind::Text(to_db(slot.end))]);
    s.push(", clinic_day = ?", [Bind::Text(date_to_db(slot.day))]);
    s.push(", updated_at = ?", [Bind::Text(to_db(now))]);
    s.push(
        " WHERE appointment_id = ? AND status = 'SCHEDULED' AND reschedule_count < 2",
        [Bind::Int(id)],
    );
    s.and("slot_start > ?", Bind::Text(to_db(earliest_current_start)));
    if let Some(v) = expected {
        s.and("version = ?", Bind::Int(v));
    }
    s.push(&format!(" RETURNING {COLUMNS}"), []);
    let Some(row) = s.query().fetch_optional(&mut **tx).await? else {
        return Ok(Err(why_not(tx, id, expected).await?));
    };
    let a = appointment(&row)?;
    // The row is locked by our UPDATE: its claims are ours to move.
    let old_start: Option<String> =
        sqlx::query_scalar("SELECT slot_start FROM doctor_slot_claims WHERE appointment_id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    let old_day = release(tx, id).await?;
    claim(tx, id, a.doctor_id, a.patient_id, slot).await?;
    match old_day {
        Some(d) if d == slot.day => {}
        Some(d) => {
            // Always touch a doctor's day rows in date order, so concurrent moves cannot deadlock.
            if d < slot.day {
                count_out(tx, a.doctor_id, d).await?;
                count_in(tx, a.doctor_id, slot.day, cap).await?;
            } else {
                count_in(tx, a.doctor_id, slot.day, cap).await?;
                count_out(tx, a.doctor_id, d).await?;
            }
        }
        None => count_in(tx, a.doctor_id, slot.day, cap).await?,
    }
    let previous = old_start
        .map(|s| from_db(&s))
        .transpose()?
        .unwrap_or(slot.start);
    Ok(Ok((a, previous)))
}

/// The daily counter of a doctor's day (for tests and operators).
pub async fn day_load<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    doctor_id: i64,
    day: NaiveDate,
) -> Result<i64, Error> {
    let n: Option<i64> =
        sqlx::query_scalar("SELECT booked FROM doctor_day_load WHERE doctor_id = $1 AND day = $2")
            .bind(doctor_id)
            .bind(date_to_db(day))
            .fetch_optional(exec)
            .await?;
    Ok(n.unwrap_or(0))
}

/// Inserts a historical appointment as it was (no claims, no day count: it is not a booking);
/// false if that id exists already.
/// A legacy appointment as it is written: the row, and, when it still holds its slot, the
/// same claims and day count a booking takes.
pub struct Legacy<'a> {
    pub appointment: &'a hms_client::models::LegacyAppointment,
    pub slot: SlotChoice,
    pub status: Status,
    pub fee: Money,
    pub holds_slot: bool,
    pub cap: i64,
}

/// A dry run's earlier rows' appointments and slot claims (rolled back with their rows),
/// written again in this row's transaction so its claim meets them as the real run's would.
pub async fn vouch_claims(
    tx: &mut Tx,
    claims: &[hms_client::models::VouchedClaim],
    tz: &chrono_tz::Tz,
) -> Result<(), Error> {
    for c in claims {
        let slot = SlotChoice {
            start: c.slot_start,
            end: c.slot_start + chrono::Duration::minutes(crate::domain::SLOT_MINUTES),
            day: c.slot_start.with_timezone(tz).date_naive(),
        };
        sqlx::query(
            "INSERT INTO appointments (appointment_id, patient_id, doctor_id, department, slot_start, slot_end, \
             clinic_day, status, created_at, updated_at) VALUES ($1, $2, $3, '', $4, $5, $6, 'SCHEDULED', $4, $4) \
             ON CONFLICT (appointment_id) DO NOTHING",
        )
        .bind(c.appointment_id)
        .bind(c.patient_id)
        .bind(c.doctor_id)
        .bind(to_db(slot.start))
        .bind(to_db(slot.end))
        .bind(date_to_db(slot.day))
        .execute(&mut **tx)
        .await?;
        claim(tx, c.appointment_id, c.doctor_id, c.patient_id, &slot).await?;
    }
    Ok(())
}

/// Writes a legacy appointment under its own id; `None` if the same one is already there. A
/// different one under that id is 409 `import_conflict`; a slot another appointment holds is
/// 409 `slot_taken` or `patient_busy`, naming it.
pub async fn import(
    backend: hms_kit::db::Backend,
    tx: &mut Tx,
    l: &Legacy<'_>,
) -> Result<Option<Appointment>, Error> {
    let a = l.appointment;
    if let Some(held) = get(&mut **tx, a.appointment_id).await? {
        let given_status = l.status.as_str();
        let fields = [
            (
                "patient_id",
                held.patient_id.to_string(),
                a.patient_id.to_string(),
            ),
            (
                "doctor_id",
                held.doctor_id.to_string(),
                a.doctor_id.to_string(),
            ),
            (
                "slot_start",
                held.slot_start.to_rfc3339(),
                a.slot_start.to_rfc3339(),
            ),
            ("status", held.status.clone(), given_status.to_string()),
        ];
        // A re-run finds what it wrote, or what became of it since (a legacy SCHEDULED one
        // completed or cancelled live is still the same appointment).
        let same = fields[..3].iter().all(|(_, h, g)| h == g)
            && (held.status == given_status || given_status == "SCHEDULED");
        if same {
            return Ok(None);
        }
        return Err(hms_kit::import::conflict(
            "appointment",
            a.appointment_id,
            &fields,
        ));
    }
    let row = sqlx::query(&format!(
        "INSERT INTO appointments (appointment_id, patient_id, doctor_id, department, slot_start, slot_end, clinic_day, \
         status, reschedule_count, version, consultation_fee, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 1, $9, $10, $10) RETURNING {COLUMNS}"
    ))
    .bind(a.appointment_id)
    .bind(a.patient_id)
    .bind(a.doctor_id)
    .bind(a.department.trim())
    .bind(to_db(l.slot.start))
    .bind(to_db(l.slot.end))
    .bind(date_to_db(l.slot.day))
    .bind(l.status.as_str())
    .bind(l.fee.0)
    .bind(to_db(a.created_at))
    .fetch_one(&mut **tx)
    .await?;
    let created = appointment(&row)?;
    if l.holds_slot {
        // Name the appointment in the way (the claims' unique keys stay the judge of races).
        for (who, sql, id) in [
            ("doctor", "SELECT appointment_id FROM doctor_slot_claims WHERE doctor_id = $1 AND slot_start = $2", a.doctor_id),
            ("patient", "SELECT appointment_id FROM patient_slot_claims WHERE patient_id = $1 AND slot_start = $2", a.patient_id),
        ] {
            let other: Option<i64> = sqlx::query_scalar(sql)
                .bind(id)
                .bind(to_db(l.slot.start))
                .fetch_optional(&mut **tx)
                .await?;
            if let Some(other) = other {
                return Err(Error::conflict(
                    if who == "doctor" { "slot_taken" } else { "patient_busy" },
                    format!(
                        "{who} {id} already has appointment {other} at {}; appointment {} would double-book it",
                        hms_kit::time::clinic(l.slot.start), a.appointment_id
                    ),
                )
                .with_details(serde_json::json!({ "appointment_id": other })));
            }
        }
        claim(tx, a.appointment_id, a.doctor_id, a.patient_id, &l.slot).await?;
        count_in(tx, a.doctor_id, l.slot.day, l.cap).await?;
    }
    hms_kit::db::sync_id_sequence(backend, tx, "appointments", "appointment_id").await?;
    Ok(Some(created))
}

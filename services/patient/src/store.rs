//! Patient SQL, written once for SQLite and PostgreSQL.

use crate::domain::{ValidPatient, ValidUpdate};
use chrono::{DateTime, Utc};
use hms_client::models::{AuditEntry, Patient, PatientQuery};
use hms_kit::db::{
    backend_of, contains_pattern, ids_in, ids_param, json_rows, json_rows_param, sync_id_sequence,
    violation, Backend, Bind, Select, Tx, Violation,
};
use hms_kit::pagination::PageRequest;
use hms_kit::time::{date_from_db, date_to_db, from_db, to_db};
use hms_kit::Error;
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

const COLUMNS: &str =
    "patient_id, name, email, phone, dob, active, version, created_at, updated_at";

fn patient(r: &AnyRow) -> Result<Patient, sqlx::Error> {
    Ok(Patient {
        patient_id: r.try_get("patient_id")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        phone: r.try_get("phone")?,
        dob: date_from_db(&r.try_get::<String, _>("dob")?)?,
        active: r.try_get::<i64, _>("active")? == 1,
        version: r.try_get("version")?,
        created_at: from_db(&r.try_get::<String, _>("created_at")?)?,
        updated_at: from_db(&r.try_get::<String, _>("updated_at")?)?,
    })
}

/// Registers a patient; an explicit id that exists already is 409 `already_exists`.
pub async fn insert(
    backend: Backend,
    tx: &mut Tx,
    p: &ValidPatient,
    now: DateTime<Utc>,
) -> Result<Patient, Error> {
    let created = to_db(p.created_at.unwrap_or(now));
    let email = p.email.as_ref().map(|e| e.expose().to_string());
    let row = match p.patient_id {
        Some(id) => {
            sqlx::query(&format!(
                "INSERT INTO patients (patient_id, name, email, phone, dob, active, version, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 1, 1, $6, $7) RETURNING {COLUMNS}"
            ))
            .bind(id)
            .bind(p.name.expose())
            .bind(email)
            .bind(p.phone.expose())
            .bind(date_to_db(p.dob))
            .bind(&created)
            .bind(to_db(now))
            .fetch_one(&mut **tx)
            .await
        }
        None => {
            sqlx::query(&format!(
                "INSERT INTO patients (name, email, phone, dob, active, version, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 1, 1, $5, $6) RETURNING {COLUMNS}"
            ))
            .bind(p.name.expose())
            .bind(email)
            .bind(p.phone.expose())
            .bind(date_to_db(p.dob))
            .bind(&created)
            .bind(to_db(now))
            .fetch_one(&mut **tx)
            .await
        }
    };
    let row = row.map_err(|e| match violation(&e) {
        Some(Violation::Unique) => Error::conflict(
            "already_exists",
            format!(
                "patient {} already exists",
                p.patient_id.unwrap_or_default()
            ),
        ),
        _ => e.into(),
    })?;
    if p.patient_id.is_some() {
        sync_id_sequence(backend, tx, "patients", "patient_id").await?;
    }
    Ok(patient(&row)?)
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    id: i64,
) -> Result<Option<Patient>, Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM patients WHERE patient_id = $1"
    ))
    .bind(id)
    .fetch_optional(exec)
    .await?;
    Ok(row.as_ref().map(patient).transpose()?)
}

/// One page of patients matching every given filter, in id order.
pub async fn list<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    backend: Backend,
    q: &PatientQuery,
    page: PageRequest,
) -> Result<Vec<Patient>, Error> {
    let mut sel = Select::new(&format!("SELECT {COLUMNS} FROM patients WHERE 1 = 1"));
    sel.and("patient_id > ?", Bind::Int(page.after_or_min()));
    if let Some(name) = q.name.as_deref().filter(|n| !n.trim().is_empty()) {
        sel.push(
            " AND LOWER(name) LIKE ? ESCAPE '\\'",
            [Bind::Text(contains_pattern(name.trim()))],
        );
        narrow(&mut sel, backend, "name", name.trim());
    }
    if let Some(email) = q.email.as_deref().filter(|n| !n.trim().is_empty()) {
        sel.push(
            " AND LOWER(email) LIKE ? ESCAPE '\\'",
            [Bind::Text(contains_pattern(email.trim()))],
        );
        narrow(&mut sel, backend, "email", email.trim());
    }
    if let Some(phone) = q.phone.as_deref() {
        let digits: String = phone
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect();
        if digits.is_empty() {
            return Err(Error::validation("phone", "phone search needs digits"));
        }
        sel.push(
            " AND phone LIKE ? ESCAPE '\\'",
            [Bind::Text(contains_pattern(&digits))],
        );
        narrow(&mut sel, backend, "phone", &digits);
    }
    if let Some(active) = q.active {
        sel.and("active = ?", Bind::Int(i64::from(active)));
    }
    sel.push(" ORDER BY patient_id LIMIT ?", [Bind::Int(page.fetch())]);
    let rows = sel.fetch_all(exec).await?;
    Ok(rows.iter().map(patient).collect::<Result<_, _>>()?)
}

/// On SQLite, narrows a substring search of `column` to the patients whose trigram index
/// holds `term` (migration 0102); the `LIKE` beside it stays the judge. A term under three
/// characters has no trigram, so it is left to the `LIKE` alone. PostgreSQL's trigram indexes
/// serve the `LIKE` itself.
fn narrow(sel: &mut Select, backend: Backend, column: &str, term: &str) {
    if backend != Backend::Sqlite || term.chars().count() < 3 {
        return;
    }
    let phrase = format!("{column} : \"{}\"", term.replace('"', "\"\""));
    sel.push(
        " AND patient_id IN (SELECT rowid FROM patients_search WHERE patients_search MATCH ?)",
        [Bind::Text(phrase)],
    );
}

/// What a guarded change found.
pub enum Changed {
    Done(Patient),
    NotFound,
    /// `If-Match` was stale; the current version.
    Stale(i64),
}

/// Applies `u`; with `expected`, only if the version still matches (optimistic concurrency,
/// decided by the UPDATE's own WHERE so two writers cannot both pass).
pub async fn update(
    tx: &mut Tx,
    id: i64,
    u: &ValidUpdate,
    expected: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Changed, Error> {
    let mut s = Select::new("UPDATE patients SET version = version + 1");
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
    if let Some(p) = &u.phone {
        s.push(", phone = ?", [Bind::Text(p.expose().to_string())]);
    }
    if let Some(d) = u.dob {
        s.push(", dob = ?", [Bind::Text(date_to_db(d))]);
    }
    s.push(" WHERE patient_id = ?", [Bind::Int(id)]);
    if let Some(v) = expected {
        s.and("version = ?", Bind::Int(v));
    }
    s.push(&format!(" RETURNING {COLUMNS}"), []);
    match s.query().fetch_optional(&mut **tx).await? {
        Some(row) => Ok(Changed::Done(patient(&row)?)),
        None => stale_or_missing(tx, id).await,
    }
}

async fn stale_or_missing(tx: &mut Tx, id: i64) -> Result<Changed, Error> {
    Ok(match get(&mut **tx, id).await? {
        None => Changed::NotFound,
        Some(p) => Changed::Stale(p.version),
    })
}

/// Marks a patient inactive. Already inactive → unchanged (`Done` with the same version).
pub async fn deactivate(
    tx: &mut Tx,
    id: i64,
    expected: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(Changed, bool), Error> {
    let mut s = Select::new("UPDATE patients SET active = 0, version = version + 1");
    s.push(", updated_at = ?", [Bind::Text(to_db(now))]);
    s.push(" WHERE patient_id = ? AND active = 1", [Bind::Int(id)]);
    if let Some(v) = expected {
        s.and("version = ?", Bind::Int(v));
    }
    s.push(&format!(" RETURNING {COLUMNS}"), []);
    if let Some(row) = s.query().fetch_optional(&mut **tx).await? {
        return Ok((Changed::Done(patient(&row)?), true));
    }
    match get(&mut **tx, id).await? {
        None => Ok((Changed::NotFound, false)),
        Some(p) if expected.is_some_and(|v| v != p.version) => {
            Ok((Changed::Stale(p.version), false))
        }
        Some(p) => Ok((Changed::Done(p), false)),
    }
}

/// One audit row to write.
#[derive(Debug, Clone)]
pub struct Audit<'a> {
    pub patient_id: i64,
    pub subject: &'a str,
    pub role: &'a str,
    pub action: &'a str,
    pub route: &'a str,
    pub correlation_id: &'a str,
    pub detail: Option<String>,
}

/// An audit row owned, to travel to the group-commit writer.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub patient_id: i64,
    pub subject: String,
    pub role: &'static str,
    pub action: &'static str,
    pub route: &'static str,
    pub correlation_id: String,
}

impl AuditRow {
    pub fn as_audit(&self) -> Audit<'_> {
        Audit {
            patient_id: self.patient_id,
            subject: &self.subject,
            role: self.role,
            action: self.action,
            route: self.route,
            correlation_id: &self.correlation_id,
            detail: None,
        }
    }
}

/// The statement inserting audit rows given as one JSON parameter (see `json_rows`), in
/// the rows' order; `rows` is `$2` and `at` is `$1`. With `only_found`, a row whose eighth
/// value is 1 is written only if its patient exists (a read is audited only if it found one).
fn audit_insert(backend: Backend, only_found: bool) -> String {
    let filter = if only_found {
        " WHERE CAST(j.value ->> 7 AS BIGINT) = 0 OR EXISTS \
         (SELECT 1 FROM patients p WHERE p.patient_id = CAST(j.value ->> 0 AS BIGINT))"
    } else {
        ""
    };
    format!(
        "INSERT INTO patient_audit (at, patient_id, subject, role, action, route, outcome, correlation_id, detail) \
         SELECT $1, CAST(j.value ->> 0 AS BIGINT), j.value ->> 1, j.value ->> 2, j.value ->> 3, \
         j.value ->> 4, 'success', j.value ->> 5, j.value ->> 6 FROM {}{filter} ORDER BY j.key",
        json_rows(backend, "$2")
    )
}

type AuditParam<'a> = (
    i64,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    i64,
);

fn audit_param<'a>(a: &'a Audit<'_>, only_if_found: bool) -> AuditParam<'a> {
    (
        a.patient_id,
        a.subject,
        a.role,
        a.action,
        a.route,
        a.correlation_id,
        a.detail.as_deref().unwrap_or_default(),
        i64::from(only_if_found),
    )
}

/// Writes `rows` to the audit trail, in their order, in one statement.
pub async fn audit(tx: &mut Tx, rows: &[Audit<'_>], now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let backend = backend_of(tx);
    let rows: Vec<_> = rows.iter().map(|a| audit_param(a, false)).collect();
    sqlx::query(&audit_insert(backend, false))
        .bind(to_db(now))
        .bind(json_rows_param(&rows)?)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The patients among `ids` that exist, with `rows` written to the audit trail in their order
/// (a row whose flag is true only if its patient exists): a batch of reads and search hits.
/// On SQLite both statements go as one query, one hand-off to the connection's thread, which
/// matters because every patient read waits for its batch's commit.
pub async fn read_audited(
    tx: &mut Tx,
    ids: &[i64],
    rows: &[(Audit<'_>, bool)],
    now: DateTime<Utc>,
) -> Result<Vec<Patient>, sqlx::Error> {
    let backend = backend_of(tx);
    let audit_rows: Vec<_> = rows
        .iter()
        .map(|(a, found)| audit_param(a, *found))
        .collect();
    // The reads' ids are the query's third parameter after the insert's two, or alone.
    let select = |param: &str| {
        format!(
            "SELECT {COLUMNS} FROM patients WHERE patient_id IN {}",
            ids_in(backend, param)
        )
    };
    let insert = audit_insert(backend, true);
    let (at, audit_json, ids_json) = (to_db(now), json_rows_param(&audit_rows)?, ids_param(ids)?);
    let found = match backend {
        Backend::Sqlite => {
            sqlx::query(&format!("{insert}; {}", select("$3")))
                .bind(at)
                .bind(audit_json)
                .bind(ids_json)
                .fetch_all(&mut **tx)
                .await?
        }
        Backend::Postgres => {
            // One statement per message in PostgreSQL's protocol.
            sqlx::query(&insert)
                .bind(at)
                .bind(audit_json)
                .execute(&mut **tx)
                .await?;
            sqlx::query(&select("$1"))
                .bind(ids_json)
                .fetch_all(&mut **tx)
                .await?
        }
    };
    found.iter().map(patient).collect()
}

/// One page of a patient's audit trail, oldest first.
pub async fn audit_trail<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    patient_id: i64,
    page: PageRequest,
) -> Result<Vec<AuditEntry>, Error> {
    let rows = sqlx::query(
        "SELECT audit_id, at, patient_id, subject, role, action, route, outcome, correlation_id, detail \
         FROM patient_audit WHERE patient_id = $1 AND audit_id > $2 ORDER BY audit_id LIMIT $3",
    )
    .bind(patient_id)
    .bind(page.after_or_min())
    .bind(page.fetch())
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|r| {
            let detail: Option<String> = r.try_get("detail")?;
            Ok(AuditEntry {
                audit_id: r.try_get("audit_id")?,
                at: from_db(&r.try_get::<String, _>("at")?)?,
                patient_id: r.try_get("patient_id")?,
                subject: r.try_get("subject")?,
                role: r.try_get("role")?,
                action: r.try_get("action")?,
                route: r.try_get("route")?,
                outcome: r.try_get("outcome")?,
                correlation_id: r.try_get("correlation_id")?,
                detail: detail.filter(|d| !d.is_empty()),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

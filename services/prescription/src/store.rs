//! Prescription and formulary SQL, written once for SQLite and PostgreSQL.

use chrono::{DateTime, Utc};
use hms_client::models::{Medication, Prescription, PrescriptionQuery};
use hms_client::Money;
use hms_kit::db::{sync_id_sequence, violation, Backend, Bind, Select, Tx, Violation};
use hms_kit::pagination::PageRequest;
use hms_kit::time::{from_db, to_db};
use hms_kit::Error;
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

const RX: &str =
    "prescription_id, appointment_id, patient_id, doctor_id, medication, dosage, days, \
                  quantity, unit_price, issued_at";
const MED: &str = "medication_id, name, form, unit_price, active, version";

fn prescription(r: &AnyRow) -> Result<Prescription, sqlx::Error> {
    Ok(Prescription {
        prescription_id: r.try_get("prescription_id")?,
        appointment_id: r.try_get("appointment_id")?,
        patient_id: r.try_get("patient_id")?,
        doctor_id: r.try_get("doctor_id")?,
        medication: r.try_get("medication")?,
        dosage: r.try_get("dosage")?,
        days: r.try_get("days")?,
        quantity: r.try_get("quantity")?,
        unit_price: Money(r.try_get("unit_price")?),
        issued_at: from_db(&r.try_get::<String, _>("issued_at")?)?,
    })
}

fn medication(r: &AnyRow) -> Result<Medication, sqlx::Error> {
    Ok(Medication {
        medication_id: r.try_get("medication_id")?,
        name: r.try_get("name")?,
        form: r.try_get("form")?,
        unit_price: Money(r.try_get("unit_price")?),
        active: r.try_get::<i64, _>("active")? == 1,
        version: r.try_get("version")?,
    })
}

/// A formulary entry by name, any case.
pub async fn medication_named<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    name: &str,
) -> Result<Option<Medication>, Error> {
    let row = sqlx::query(&format!(
        "SELECT {MED} FROM formulary WHERE LOWER(name) = $1"
    ))
    .bind(name.trim().to_lowercase())
    .fetch_optional(exec)
    .await?;
    Ok(row.as_ref().map(medication).transpose()?)
}

pub async fn formulary<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    active: Option<bool>,
    page: PageRequest,
) -> Result<Vec<Medication>, Error> {
    let mut s = Select::new(&format!("SELECT {MED} FROM formulary WHERE 1 = 1"));
    s.and("medication_id > ?", Bind::Int(page.after_or_min()));
    if let Some(a) = active {
        s.and("active = ?", Bind::Int(i64::from(a)));
    }
    s.push(" ORDER BY medication_id LIMIT ?", [Bind::Int(page.fetch())]);
    Ok(s.fetch_all(exec)
        .await?
        .iter()
        .map(medication)
        .collect::<Result<_, _>>()?)
}

pub async fn add_medication(
    tx: &mut Tx,
    name: &str,
    form: &str,
    price: Money,
    now: DateTime<Utc>,
) -> Result<Medication, Error> {
    let row = sqlx::query(&format!(
        "INSERT INTO formulary (name, form, unit_price, active, version, created_at, updated_at) \
         VALUES ($1, $2, $3, 1, 1, $4, $4) RETURNING {MED}"
    ))
    .bind(name)
    .bind(form)
    .bind(price.0)
    .bind(to_db(now))
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| match violation(&e) {
        Some(Violation::Unique) => Error::conflict(
            "already_exists",
            format!("{name} is already in the formulary"),
        ),
        _ => e.into(),
    })?;
    Ok(medication(&row)?)
}

pub async fn update_medication(
    tx: &mut Tx,
    id: i64,
    form: Option<&str>,
    price: Option<Money>,
    active: Option<bool>,
    now: DateTime<Utc>,
) -> Result<Option<Medication>, Error> {
    let mut s = Select::new("UPDATE formulary SET version = version + 1");
    s.push(", updated_at = ?", [Bind::Text(to_db(now))]);
    if let Some(f) = form {
        s.push(", form = ?", [Bind::Text(f.to_string())]);
    }
    if let Some(p) = price {
        s.push(", unit_price = ?", [Bind::Int(p.0)]);
    }
    if let Some(a) = active {
        s.push(", active = ?", [Bind::Int(i64::from(a))]);
    }
    s.push(" WHERE medication_id = ?", [Bind::Int(id)]);
    s.push(&format!(" RETURNING {MED}"), []);
    Ok(s.query()
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(medication)
        .transpose()?)
}

/// A prescription that passed every rule.
#[derive(Debug, Clone)]
pub struct NewRx {
    pub prescription_id: Option<i64>,
    pub appointment_id: i64,
    pub patient_id: i64,
    pub doctor_id: i64,
    pub medication: Medication,
    pub dosage: String,
    pub days: i64,
    pub quantity: i64,
    pub issued_at: DateTime<Utc>,
}

pub async fn insert(backend: Backend, tx: &mut Tx, rx: &NewRx) -> Result<Prescription, Error> {
    let mut s = Select::new("INSERT INTO prescriptions (");
    if rx.prescription_id.is_some() {
        s.push("prescription_id, ", []);
    }
    s.push("appointment_id, patient_id, doctor_id, medication_id, medication, dosage, days, quantity, unit_price, issued_at) VALUES (", []);
    if let Some(id) = rx.prescription_id {
        s.push("?, ", [Bind::Int(id)]);
    }
    s.push(
        "?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            Bind::Int(rx.appointment_id),
            Bind::Int(rx.patient_id),
            Bind::Int(rx.doctor_id),
            Bind::Int(rx.medication.medication_id),
            Bind::Text(rx.medication.name.clone()),
            Bind::Text(rx.dosage.clone()),
            Bind::Int(rx.days),
            Bind::Int(rx.quantity),
            Bind::Int(rx.medication.unit_price.0),
            Bind::Text(to_db(rx.issued_at)),
        ],
    );
    s.push(&format!(" RETURNING {RX}"), []);
    let row = s
        .query()
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| match violation(&e) {
            Some(Violation::Unique) => Error::conflict(
                "already_exists",
                format!(
                    "prescription {} already exists",
                    rx.prescription_id.unwrap_or_default()
                ),
            ),
            _ => e.into(),
        })?;
    if rx.prescription_id.is_some() {
        sync_id_sequence(backend, tx, "prescriptions", "prescription_id").await?;
    }
    Ok(prescription(&row)?)
}

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    id: i64,
) -> Result<Option<Prescription>, Error> {
    let row = sqlx::query(&format!(
        "SELECT {RX} FROM prescriptions WHERE prescription_id = $1"
    ))
    .bind(id)
    .fetch_optional(exec)
    .await?;
    Ok(row.as_ref().map(prescription).transpose()?)
}

pub async fn list<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    q: &PrescriptionQuery,
    page: PageRequest,
) -> Result<Vec<Prescription>, Error> {
    let mut s = Select::new(&format!("SELECT {RX} FROM prescriptions WHERE 1 = 1"));
    s.and("prescription_id > ?", Bind::Int(page.after_or_min()));
    if let Some(a) = q.appointment_id {
        s.and("appointment_id = ?", Bind::Int(a));
    }
    if let Some(p) = q.patient_id {
        s.and("patient_id = ?", Bind::Int(p));
    }
    if let Some(d) = q.doctor_id {
        s.and("doctor_id = ?", Bind::Int(d));
    }
    s.push(
        " ORDER BY prescription_id LIMIT ?",
        [Bind::Int(page.fetch())],
    );
    Ok(s.fetch_all(exec)
        .await?
        .iter()
        .map(prescription)
        .collect::<Result<_, _>>()?)
}

//! What the messages say of a doctor — the name and department — read from the doctor service
//! once and kept (`known_doctors`), so a confirmation or a reminder makes no call to it.
//!
//! The doctor service announces every change of a doctor with the doctor's new version
//! (`doctor.*` events, delivered here); a kept copy older than the latest announced is read
//! again. A read that raced an announcement is kept at the version it read, so it is not used
//! once the announcement is in. Until a change's event is delivered (normally within a
//! second), messages name the doctor as before the change.

use hms_client::models::Doctor;
use hms_kit::db::Tx;
use hms_kit::server::ServiceCtx;
use hms_kit::Error;
use sqlx::{Any, Executor, Row};

/// A doctor as the messages name them.
#[derive(Debug, Clone)]
pub struct Named {
    pub name: String,
    pub department: String,
}

/// Doctor `id`'s name and department: kept, or read from the doctor service and kept.
pub async fn named(ctx: &ServiceCtx, id: i64) -> Result<Named, Error> {
    let kept = sqlx::query(
        "SELECT name, department FROM known_doctors WHERE doctor_id = $1 AND version >= announced",
    )
    .bind(id)
    .fetch_optional(ctx.db.pool())
    .await?;
    if let Some(r) = kept {
        return Ok(Named {
            name: r.try_get("name")?,
            department: r.try_get("department")?,
        });
    }
    let d = ctx.downstream.client().get_doctor(id).await?;
    keep(ctx.db.writer(), &d).await?;
    Ok(Named {
        name: d.name,
        department: d.department,
    })
}

/// Keeps what `d` says, unless a copy of a newer version is kept already.
async fn keep<'e, E: Executor<'e, Database = Any>>(exec: E, d: &Doctor) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO known_doctors (doctor_id, name, department, version, announced) \
         VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (doctor_id) DO UPDATE SET name = excluded.name, \
           department = excluded.department, version = excluded.version \
         WHERE known_doctors.version IS NULL OR excluded.version > known_doctors.version",
    )
    .bind(d.doctor_id)
    .bind(&d.name)
    .bind(&d.department)
    .bind(d.version)
    .execute(exec)
    .await?;
    Ok(())
}

/// The doctor service announced doctor `id` at `version`: a kept copy of an older one is not
/// used again.
pub async fn announced(tx: &mut Tx, id: i64, version: i64) -> Result<(), Error> {
    hms_kit::inbox::raise_version(tx, "known_doctors", "doctor_id", "announced", id, version).await
}

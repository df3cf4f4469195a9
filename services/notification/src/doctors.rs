//! What the messages say of a doctor — the name and department — read from the doctor service
//! once and kept (`known_doctors`), so a confirmation or a reminder makes no call to it.
//!
//! The doctor service announces every change of a doctor with the doctor's new version
//! (`doctor.*` events, delivered here); a kept copy older than the latest announced is read
//! again. A read that raced an announcement is kept at the version it read, so it is not used
//! once the announcement is in. Until a change's event is delivered (normally within a
//! second), messages name the doctor as before the change.

use hms_client::models::Doctor;
use hms_kit::coalesce::{fetch_with, Coalescer};
use hms_kit::db::{ids_in, ids_param, Tx};
use hms_kit::inbox::MAX_BATCH;
use hms_kit::server::ServiceCtx;
use hms_kit::Error;
use sqlx::{Any, Executor, Row};
use std::collections::HashMap;

/// A doctor as the messages name them.
#[derive(Debug, Clone)]
pub struct Named {
    pub name: String,
    pub department: String,
}

/// Doctor `id`'s name and department: kept, or read from the doctor service and kept.
pub async fn named(ctx: &ServiceCtx, id: i64) -> Result<Named, Error> {
    named_many(ctx, vec![id])
        .await?
        .remove(&id)
        .ok_or_else(|| unknown(&id))
}

/// The answer for a doctor the doctor service does not have.
fn unknown(id: &i64) -> Error {
    Error::not_found(format!("doctor {id}"))
}

/// The doctors of `ids` that exist, by id: those kept in one query, the rest read from the
/// doctor service and kept. A doctor the doctor service does not have is left out.
pub async fn named_many(ctx: &ServiceCtx, ids: Vec<i64>) -> Result<HashMap<i64, Named>, Error> {
    let sql = format!(
        "SELECT doctor_id, name, department FROM known_doctors \
         WHERE doctor_id IN {} AND version >= announced",
        ids_in(ctx.db.backend(), "$1")
    );
    let mut found = HashMap::with_capacity(ids.len());
    let rows = sqlx::query(&sql)
        .bind(ids_param(&ids)?)
        .fetch_all(&mut *ctx.db.read().await?)
        .await?;
    for r in rows {
        let named = Named {
            name: r.try_get("name")?,
            department: r.try_get("department")?,
        };
        found.insert(r.try_get::<i64, _>("doctor_id")?, named);
    }
    let unknown: Vec<i64> = ids
        .into_iter()
        .filter(|id| !found.contains_key(id))
        .collect();
    let client = ctx.downstream.client();
    let read = futures::future::join_all(unknown.iter().map(|&id| client.get_doctor(id))).await;
    for got in read {
        let d = match got {
            Ok(d) => d,
            Err(hms_client::ClientError::Api { status: 404, .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        keep(&mut *ctx.db.write().await?, &d).await?;
        let named = Named {
            name: d.name,
            department: d.department,
        };
        found.insert(d.doctor_id, named);
    }
    Ok(found)
}

/// Names of doctors for the events of a delivered batch, asked for together (see
/// `hms_kit::coalesce`): one query of the kept doctors for all of them.
#[derive(Debug, Clone)]
pub struct Names(Coalescer<i64, Named>);

impl Names {
    /// Starts the lookup task (on the current runtime).
    pub fn spawn(ctx: ServiceCtx) -> Self {
        Names(Coalescer::spawn(
            MAX_BATCH,
            2,
            unknown,
            fetch_with(ctx, |ctx, ids| async move { named_many(&ctx, ids).await }),
        ))
    }

    /// Doctor `id`'s name and department.
    pub async fn named(&self, id: i64) -> Result<Named, Error> {
        self.0.get(id).await
    }
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

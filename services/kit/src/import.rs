//! What every legacy import endpoint shares: a record already under the given id is compared
//! by content, so a re-run of the same data is `already_present` and a different record under
//! that id is a conflict naming what differs (never silently "present").

use crate::db::Db;
use crate::error::Error;
use hms_client::models::MAX_LEGACY_ID;
use serde_json::json;

/// Declares a service's `POST /v1/<records>/import/ids` (admin), named `reserve_ids`: the
/// legacy data's ids up to `through` are reserved in `table` (see [`reserve`]). `$state` is
/// the service's handler state (anything that derefs to its `ServiceCtx`).
#[macro_export]
macro_rules! legacy_ids_route {
    ($state:ty, $path:literal, $tag:literal, $table:literal, $column:literal) => {
        /// Reserve the legacy data's ids up to `through` (admin): imported or rejected, no
        /// record made live will take one. `hmsctl import` calls it with the highest id of
        /// its file.
        #[utoipa::path(post, path = $path, tag = $tag,
            request_body = hms_client::models::IdReservation,
            responses((status = 200, description = "Reserved", body = hms_client::models::IdReservation),
                      (status = 400, body = hms_client::ErrorBody), (status = 401, body = hms_client::ErrorBody),
                      (status = 403, body = hms_client::ErrorBody)))]
        async fn reserve_ids(
            axum::extract::State(ctx): axum::extract::State<std::sync::Arc<$state>>,
            $crate::extract::Json(r): $crate::extract::Json<hms_client::models::IdReservation>,
        ) -> Result<$crate::extract::Json<hms_client::models::IdReservation>, $crate::Error> {
            $crate::import::reserve(&ctx.db, $table, $column, r.through).await?;
            Ok($crate::extract::Json(r))
        }
    };
}

/// An id given from outside (a legacy record's, or a reservation's bound): 1 to
/// [`MAX_LEGACY_ID`], so the ids made live after it can never run out (an id at the 64-bit
/// limit would leave the next insert nowhere to go).
pub fn legacy_id(field: &str, id: i64) -> Result<i64, Error> {
    if !(1..=MAX_LEGACY_ID).contains(&id) {
        return Err(Error::validation(
            field,
            format!("{field} must be between 1 and {MAX_LEGACY_ID}, not {id}"),
        ));
    }
    Ok(id)
}

/// Reserves the ids of a legacy file up to `through` in `table` (see [`crate::db::reserve_ids`]);
/// the shared body of every service's `POST /v1/<records>/import/ids`.
pub async fn reserve(db: &Db, table: &str, column: &str, through: i64) -> Result<(), Error> {
    legacy_id("through", through)?;
    let mut tx = db.begin().await?;
    crate::db::reserve_ids(db.backend(), &mut tx, table, column, through).await?;
    if crate::dry_run::active() {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(())
}

/// 409 `import_conflict`: `kind` `id` is already held by a record that differs in `fields`
/// (name, held, given); only the differing ones are named.
pub fn conflict(kind: &str, id: i64, fields: &[(&str, String, String)]) -> Error {
    let differ: Vec<String> = fields
        .iter()
        .filter(|(_, held, given)| held != given)
        .map(|(name, held, given)| format!("{name} is {held} here, {given} in the import"))
        .collect();
    Error::conflict(
        "import_conflict",
        format!(
            "{kind} {id} already exists with different content: {}",
            differ.join("; ")
        ),
    )
    .with_details(json!({ "differs": fields.iter().filter(|(_, h, g)| h != g).map(|(n, _, _)| *n).collect::<Vec<_>>() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_names_only_what_differs() {
        let e = conflict(
            "bill",
            7,
            &[
                ("patient_id", "3".into(), "3".into()),
                ("amount", "200.00".into(), "250.00".into()),
            ],
        );
        assert_eq!((e.status.as_u16(), e.code), (409, "import_conflict"));
        assert!(e
            .message
            .contains("amount is 200.00 here, 250.00 in the import"));
        assert!(!e.message.contains("patient_id"));
    }
}

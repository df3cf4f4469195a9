//! Inbox: the consumer side of events. Each event id is processed once, in the same
//! transaction as its effect, however often it is delivered.

use crate::auth::{Caller, Role};
use crate::db::{Db, Tx};
use crate::error::Error;
use crate::outbox::Outbox;
use crate::time::to_db;
use crate::Service;
use futures::future::BoxFuture;
use hms_client::contract::Contract;
use hms_client::models::{Event, EventAck};

/// Checks that `caller` may deliver `event`: a service token of the event's own source, a
/// source this consumer subscribes to, and an event type of that source's namespace
/// (`patient.*`, `bill.*` for billing).
pub fn authorise(caller: &Caller, event: &Event, sources: &[Service]) -> Result<(), Error> {
    if caller.role != Role::Service {
        return Err(Error::forbidden("only services deliver events"));
    }
    let Some(name) = caller.service_name() else {
        return Err(Error::forbidden(
            "a service token's subject must be service:<name>",
        ));
    };
    if name != event.source {
        return Err(Error::forbidden(format!(
            "service {name} may not deliver events of {}",
            event.source
        )));
    }
    if !sources.iter().any(|s| s.name() == event.source) {
        return Err(Error::forbidden(format!(
            "this service does not take events from {}",
            event.source
        )));
    }
    let ns = namespace(&event.source);
    if !event.event_type.starts_with(&format!("{ns}.")) {
        return Err(Error::forbidden(format!(
            "{} may only deliver {ns}.* events",
            event.source
        )));
    }
    Ok(())
}

/// The event-type namespace of a producing service: `bill.*` for billing, `<name>.*` otherwise.
pub fn namespace(source: &str) -> &str {
    match source {
        "billing" => "bill",
        other => other,
    }
}

/// Reads `event` as one of producer `E`'s events (`None`: a type `E` does not publish, which
/// this consumer ignores). A payload that does not fit the contract — a field missing, a status
/// or decision not in its set, an amount out of bounds — is 400 naming it, which tells the
/// producer's relay to park the event: retrying cannot fix it, and no default is guessed.
pub fn decode<E: Contract>(event: &Event) -> Result<Option<E>, Error> {
    hms_client::contract::decode(event).map_err(|e| {
        Error::validation(
            &e.field,
            format!("event {} does not fit the contract: {e}", event.event_id),
        )
    })
}

/// Whether `event` was processed already (a cheap check before expensive preparation; the
/// transaction in [`receive`] remains the judge).
pub async fn seen(db: &Db, event: &Event) -> Result<bool, Error> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM inbox WHERE source = $1 AND event_id = $2")
            .bind(&event.source)
            .bind(event.event_id.to_string())
            .fetch_one(db.pool())
            .await?;
    Ok(n > 0)
}

/// Processes `event` once: records its id and applies `effect` in one transaction (with
/// `BEGIN IMMEDIATE` on SQLite). A repeat delivery commits nothing and answers
/// `{"duplicate": true}`; concurrent duplicates serialise on the inbox's primary key.
/// Events the effect writes to `outbox` go out when the transaction commits.
pub async fn receive<F>(
    db: &Db,
    outbox: &Outbox,
    event: &Event,
    now: chrono::DateTime<chrono::Utc>,
    effect: F,
) -> Result<EventAck, Error>
where
    F: for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<(), Error>>,
{
    let mut tx = db.begin().await?;
    let fresh = sqlx::query(
        "INSERT INTO inbox (source, event_id, event_type, processed_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&event.source)
    .bind(event.event_id.to_string())
    .bind(&event.event_type)
    .bind(to_db(now))
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !fresh {
        tx.commit().await?;
        tracing::info!(event_id = %event.event_id, event_type = %event.event_type, "duplicate event ignored");
        return Ok(EventAck { duplicate: true });
    }
    effect(&mut tx).await?;
    outbox.commit(tx).await?;
    tracing::info!(event_id = %event.event_id, event_type = %event.event_type, "event processed");
    Ok(EventAck { duplicate: false })
}

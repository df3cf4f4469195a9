//! Inbox: the consumer side of events. Each event id is processed once, in the same
//! transaction as its effect, however often it is delivered.

use crate::auth::{Caller, Role};
use crate::correlation::{self, RequestContext};
use crate::db::{backend_of, json_rows, json_rows_param, Backend, Db, Script, Tx};
use crate::error::Error;
use crate::outbox::Outbox;
use crate::time::to_db;
use crate::Service;
use futures::future::BoxFuture;
use hms_client::contract::Contract;
use hms_client::models::{BatchAck, Event, EventAck, EventOutcome};
use sqlx::Row;
use std::collections::HashSet;

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

/// An event's key in the inbox: its source and id.
type Key = (String, String);

fn key_of(ev: &Event) -> Key {
    (ev.source.clone(), ev.event_id.to_string())
}

/// The events of the batch being prepared, and, once one of them asks, which were processed
/// already: the batch's [`seen`] checks are one query, asked by the first and answered to all
/// at once (so what each then asks of other services arrives there together too).
struct BatchSeen {
    keys: HashSet<Key>,
    seen: tokio::sync::OnceCell<HashSet<Key>>,
}

tokio::task_local! {
    static BATCH: std::sync::Arc<BatchSeen>;
}

/// Whether `event` was processed already (a cheap check before expensive preparation; the
/// transaction in [`receive`] remains the judge). In a batch, one query answers every event.
pub async fn seen(db: &Db, event: &Event) -> Result<bool, Error> {
    let key = key_of(event);
    if let Ok(batch) = BATCH.try_with(std::sync::Arc::clone) {
        if batch.keys.contains(&key) {
            let seen = batch
                .seen
                .get_or_try_init(|| seen_among(db, &batch.keys))
                .await?;
            return Ok(seen.contains(&key));
        }
    }
    let one = HashSet::from([key]);
    Ok(!seen_among(db, &one).await?.is_empty())
}

/// Which of `keys` the inbox holds.
async fn seen_among(db: &Db, keys: &HashSet<Key>) -> Result<HashSet<Key>, Error> {
    let rows: Vec<&Key> = keys.iter().collect();
    let sql = format!(
        "SELECT i.source, i.event_id FROM inbox i JOIN {} \
         ON i.source = j.value ->> 0 AND i.event_id = j.value ->> 1",
        json_rows(db.backend(), "$1")
    );
    let found = sqlx::query(&sql)
        .bind(json_rows_param(&rows)?)
        .fetch_all(&mut *db.read().await?)
        .await?;
    keys_in(&found)
}

/// The inbox keys (`source`, `event_id` columns) of `rows`.
fn keys_in(rows: &[sqlx::any::AnyRow]) -> Result<HashSet<Key>, Error> {
    rows.iter()
        .map(|r| Ok((r.try_get("source")?, r.try_get("event_id")?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Processes `event` once: records its id and applies `effect` in one transaction (with
/// `BEGIN IMMEDIATE` on SQLite). A repeat delivery commits nothing and answers
/// `{"duplicate": true}`; concurrent duplicates serialise on the inbox's primary key.
/// Events the effect writes to `outbox` go out when the transaction commits.
pub async fn receive(
    db: &Db,
    outbox: &Outbox,
    event: &Event,
    now: chrono::DateTime<chrono::Utc>,
    effect: Effect,
) -> Result<EventAck, Error> {
    let mut tx = db.begin().await?;
    let fresh = record(&mut tx, event, now).await?;
    if !fresh {
        tx.commit().await?;
        tracing::info!(event_id = %event.event_id, event_type = %event.event_type, "duplicate event ignored");
        return Ok(EventAck { duplicate: true });
    }
    let mut applied = Applied::default();
    applied.add(effect.apply(&mut tx).await?);
    outbox.commit(tx).await?;
    applied.committed();
    tracing::info!(event_id = %event.event_id, event_type = %event.event_type, "event processed");
    Ok(EventAck { duplicate: false })
}

/// Records `event` as processed in `tx`; false if it was already.
async fn record(
    tx: &mut Tx,
    event: &Event,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO inbox (source, event_id, event_type, processed_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&event.source)
    .bind(event.event_id.to_string())
    .bind(&event.event_type)
    .bind(to_db(now))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// A consumer's read model hears that record `id` of its producer is at `version`: the row's
/// `column` (keyed by `key` in `table`) rises to it and never falls, so a late or repeated
/// event changes nothing. The row is made if it is not there (its other columns must allow
/// that). Table and column names are the caller's constants, never input.
pub async fn raise_version(
    tx: &mut Tx,
    table: &'static str,
    key: &'static str,
    column: &'static str,
    id: i64,
    version: i64,
) -> Result<(), Error> {
    sqlx::query(&format!(
        "INSERT INTO {table} ({key}, {column}) VALUES ($1, $2) \
         ON CONFLICT ({key}) DO UPDATE SET {column} = excluded.{column} \
         WHERE excluded.{column} > {table}.{column}"
    ))
    .bind(id)
    .bind(version)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Events per batch at most.
pub const MAX_BATCH: usize = 512;

/// An effect's work, given the transaction that records its event.
pub type EffectFn = Box<dyn for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<(), Error>> + Send>;

/// What a consumer does for one event, in the transaction that records it — decided before
/// that transaction begins (anything slow, such as asking another service, happens first).
pub enum Effect {
    /// Work that reads what it writes, or decides as it goes.
    Run(EffectFn),
    /// Statements alone, decided in full beforehand (each may still be conditional in its SQL):
    /// one [`Script`], so one hand-off to the database on SQLite.
    ///
    /// (The scripts of a batch's events are not joined into one: a joined script's text is
    /// one of a kind, so kept in the connection's statement cache it held hundreds of
    /// prepared statements per entry — 340 MB resident after a book run — and not kept,
    /// SQLite parsed every statement again for each batch, which cost more CPU than the
    /// hand-offs saved: the book run's CPU per booking rose by a sixth. Each event's own
    /// script is of a few shapes, prepared once and kept.)
    Statements(Script),
    /// One row of a statement that applies many ([`Rows`]): the rows of consecutive events of
    /// a batch for the same statement go to the database as one statement — one hand-off and
    /// one prepared text for them all, whatever their number.
    Row(&'static Rows, serde_json::Value),
    /// Statements, as [`Effect::Statements`], and what to do with the rows they return once
    /// the transaction that applied them has committed (and only then: a batch undone and
    /// applied again calls it once) — telling the metrics what the statements did.
    Returning(Script, AfterCommit),
}

/// Called with the rows an [`Effect::Returning`]'s statements returned, after they commit.
pub type AfterCommit = Box<dyn FnOnce(Vec<sqlx::any::AnyRow>) + Send>;

/// What an applied effect leaves to do once its transaction commits: its hook, with the rows
/// its statements returned.
type AfterApplied = Option<(AfterCommit, Vec<sqlx::any::AnyRow>)>;

/// The effects of a transaction applied so far, waiting for it to commit.
#[derive(Default)]
struct Applied(Vec<(AfterCommit, Vec<sqlx::any::AnyRow>)>);

impl Applied {
    fn add(&mut self, after: AfterApplied) {
        self.0.extend(after);
    }

    /// The transaction committed.
    fn committed(self) {
        for (after, rows) in self.0 {
            after(rows);
        }
    }
}

/// A statement applying rows given as one JSON array (parameter `$1`, read with
/// [`json_rows`]), in their order; built for the backend it runs on. Rows of one statement in
/// one batch may repeat a key (an appointment booked and cancelled): the statement must apply
/// them as their order says (on PostgreSQL, where one statement cannot update a row twice, by
/// keeping the row that would win).
pub struct Rows {
    pub sql: fn(Backend) -> String,
}

impl Rows {
    async fn run(&self, tx: &mut Tx, rows: &[serde_json::Value]) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_string(rows).map_err(Error::internal)?;
        sqlx::query(&(self.sql)(backend_of(tx)))
            .bind(json)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

impl Effect {
    async fn apply(self, tx: &mut Tx) -> Result<AfterApplied, Error> {
        match self {
            Effect::Run(f) => f(tx).await.map(|()| None),
            Effect::Statements(script) => script.run(tx).await.map(|()| None),
            Effect::Row(rows, row) => rows.run(tx, &[row]).await.map(|()| None),
            Effect::Returning(script, after) => Ok(Some((after, script.fetch_all(tx).await?))),
        }
    }

    /// As [`Effect::apply`], in a transaction that is undone whole if this fails (a batch
    /// applied together): a script then needs no savepoint of its own.
    async fn apply_undone_with_transaction(self, tx: &mut Tx) -> Result<AfterApplied, Error> {
        match self {
            Effect::Statements(script) => {
                script.run_undone_with_transaction(tx).await.map(|_| None)
            }
            Effect::Returning(script, after) => {
                Ok(Some((after, script.run_undone_with_transaction(tx).await?)))
            }
            other => other.apply(tx).await,
        }
    }
}

/// Rows of one [`Rows`] statement gathered from consecutive events, not yet sent.
#[derive(Default)]
struct Pending {
    of: Option<&'static Rows>,
    rows: Vec<serde_json::Value>,
}

impl Pending {
    async fn flush(&mut self, tx: &mut Tx) -> Result<(), Error> {
        match self.of.take() {
            Some(of) => of.run(tx, &std::mem::take(&mut self.rows)).await,
            None => Ok(()),
        }
    }
}

/// An [`Effect`] from a closure.
pub fn effect<F>(f: F) -> Effect
where
    F: for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<(), Error>> + Send + 'static,
{
    Effect::Run(Box::new(f))
}

/// An [`Effect`] that is `script`'s statements.
pub fn statements(script: Script) -> Effect {
    Effect::Statements(script)
}

/// An [`Effect`] that is `script`'s statements, `after` called with the rows they return once
/// they commit.
pub fn returning(
    script: Script,
    after: impl FnOnce(Vec<sqlx::any::AnyRow>) + Send + 'static,
) -> Effect {
    Effect::Returning(script, Box::new(after))
}

/// An [`Effect`] that is one row of `rows`.
pub fn row(rows: &'static Rows, row: serde_json::Value) -> Effect {
    Effect::Row(rows, row)
}

/// The effect of an event a consumer records as seen and otherwise ignores.
pub fn no_effect() -> Effect {
    Effect::Statements(Script::new())
}

/// Processes a batch of events (`POST /v1/events/batch`): each is prepared by `prepare` (all
/// at once, each under its own correlation id), then all are applied in one transaction — one
/// commit for the batch instead of one per event. Each event is processed once, as in
/// [`receive`], and answered alone: if any event's effect fails, nothing of that transaction
/// is kept and the batch is applied again with each event under a savepoint, so the one that
/// fails is undone alone and answered with its own error while the others commit. (A
/// savepoint per event costs two more statements each, every statement a hand-off to the
/// database; events are rarely refused, so the first attempt goes without.) A fault of the
/// transaction itself (storage, commit) fails the whole request, and the producer delivers
/// them all again.
pub async fn receive_batch<P, Fut>(
    db: &Db,
    outbox: &Outbox,
    events: Vec<Event>,
    now: chrono::DateTime<chrono::Utc>,
    prepare: P,
) -> Result<BatchAck, Error>
where
    P: Fn(Event) -> Fut,
    Fut: std::future::Future<Output = Result<Effect, Error>>,
{
    if events.is_empty() || events.len() > MAX_BATCH {
        return Err(Error::validation(
            "events",
            format!("a batch holds 1 to {MAX_BATCH} events"),
        ));
    }
    let scopes: Vec<RequestContext> = events.iter().map(scope_of).collect();
    let prepare_all = || {
        let batch = std::sync::Arc::new(BatchSeen {
            keys: events.iter().map(key_of).collect(),
            seen: tokio::sync::OnceCell::new(),
        });
        BATCH.scope(
            batch,
            futures::future::join_all(
                events
                    .iter()
                    .zip(&scopes)
                    .map(|(ev, scope)| correlation::scope(scope.clone(), prepare(ev.clone()))),
            ),
        )
    };
    let batch = Batch {
        db,
        outbox,
        events: &events,
        scopes: &scopes,
        now,
    };
    let done = match batch.apply_together(prepare_all().await).await? {
        Some(done) => done,
        None => batch.apply_each(prepare_all().await).await?,
    };
    let results = events
        .iter()
        .zip(done)
        .map(|(ev, outcome)| match outcome {
            Ok(fresh) => {
                tracing::info!(event_id = %ev.event_id, event_type = %ev.event_type, duplicate = !fresh, "event processed");
                EventOutcome {
                    event_id: ev.event_id,
                    status: 200,
                    duplicate: !fresh,
                    error: None,
                }
            }
            Err(e) => {
                tracing::warn!(event_id = %ev.event_id, event_type = %ev.event_type, status = e.status.as_u16(), error = %e.message, "event refused");
                EventOutcome {
                    event_id: ev.event_id,
                    status: e.status.as_u16(),
                    duplicate: false,
                    error: Some(e.body()),
                }
            }
        })
        .collect();
    Ok(BatchAck { results })
}

/// Each event's outcome: fresh (true) or a duplicate, or why it was refused.
type Outcomes = Vec<Result<bool, Error>>;

/// A batch being applied: what both ways of applying it take.
struct Batch<'a> {
    db: &'a Db,
    outbox: &'a Outbox,
    events: &'a [Event],
    scopes: &'a [RequestContext],
    now: chrono::DateTime<chrono::Utc>,
}

impl Batch<'_> {
    /// The batch in one transaction without savepoints: every prepared event's inbox row in one
    /// statement, then the effects of those that are new. `None` (nothing kept) if an effect
    /// failed.
    async fn apply_together(
        &self,
        prepared: Vec<Result<Effect, Error>>,
    ) -> Result<Option<Outcomes>, Error> {
        let mut tx = self.db.begin().await?;
        let ready: Vec<&Event> = self
            .events
            .iter()
            .zip(&prepared)
            .filter(|(_, p)| p.is_ok())
            .map(|(ev, _)| ev)
            .collect();
        let mut fresh = record_all(&mut tx, &ready, self.now).await?;
        let mut done = Vec::with_capacity(self.events.len());
        let mut applied = Applied::default();
        let mut pending = Pending::default();
        for ((ev, scope), prepared) in self.events.iter().zip(self.scopes).zip(prepared) {
            let effect = match prepared {
                Err(e) => {
                    done.push(Err(e));
                    continue;
                }
                Ok(effect) => effect,
            };
            // The first of two copies of an event in one batch is the one applied.
            let new = fresh.remove(&key_of(ev));
            let outcome = match effect {
                _ if !new => Ok(None),
                Effect::Row(of, row) => {
                    // Rows of another statement: those gathered go first.
                    let other = pending.of.is_some_and(|p| !std::ptr::eq(p, of));
                    let flushed = if other {
                        pending.flush(&mut tx).await
                    } else {
                        Ok(())
                    };
                    flushed.map(|()| {
                        pending.of = Some(of);
                        pending.rows.push(row);
                        None
                    })
                }
                // Anything else goes after the rows gathered before it, which it may read.
                other => match pending.flush(&mut tx).await {
                    Ok(()) => {
                        let applied = other.apply_undone_with_transaction(&mut tx);
                        correlation::scope(scope.clone(), applied).await
                    }
                    Err(e) => Err(e),
                },
            };
            match outcome {
                Ok(after) => applied.add(after),
                Err(_) => {
                    tx.rollback().await?;
                    return Ok(None);
                }
            }
            done.push(Ok(new));
        }
        if pending.flush(&mut tx).await.is_err() {
            tx.rollback().await?;
            return Ok(None);
        }
        self.outbox.commit(tx).await?;
        applied.committed();
        Ok(Some(done))
    }

    /// The batch with each event under a savepoint of its own (see [`apply`]).
    async fn apply_each(&self, prepared: Vec<Result<Effect, Error>>) -> Result<Outcomes, Error> {
        let mut tx = self.db.begin().await?;
        let mut done = Vec::with_capacity(self.events.len());
        let mut applied = Applied::default();
        for ((ev, scope), prepared) in self.events.iter().zip(self.scopes).zip(prepared) {
            let outcome = match prepared {
                Err(e) => Err(e),
                Ok(effect) => {
                    correlation::scope(scope.clone(), apply(&mut tx, ev, self.now, effect)).await?
                }
            };
            done.push(outcome.map(|(fresh, after)| {
                applied.add(after);
                fresh
            }));
        }
        self.outbox.commit(tx).await?;
        applied.committed();
        Ok(done)
    }
}

/// Records `events` as processed in `tx`; returns those that were not already.
async fn record_all(
    tx: &mut Tx,
    events: &[&Event],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<HashSet<Key>, Error> {
    if events.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<(&str, String, &str)> = events
        .iter()
        .map(|ev| {
            (
                ev.source.as_str(),
                ev.event_id.to_string(),
                ev.event_type.as_str(),
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO inbox (source, event_id, event_type, processed_at) \
         SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, $2 FROM {} WHERE true \
         ON CONFLICT DO NOTHING RETURNING source, event_id",
        json_rows(backend_of(tx), "$1")
    );
    let inserted = sqlx::query(&sql)
        .bind(json_rows_param(&rows)?)
        .bind(to_db(now))
        .fetch_all(&mut **tx)
        .await?;
    keys_in(&inserted)
}

/// The request context an event is processed under: the batch request's, with the event's own
/// correlation id (so its log lines and the events it causes carry the id of the request that
/// began it all).
fn scope_of(ev: &Event) -> RequestContext {
    let base = correlation::current().unwrap_or_else(|| RequestContext::background("hms"));
    base.with_correlation_id(&ev.correlation_id)
}

/// Applies one event of a batch under a savepoint. The inner result is the event's own (fresh
/// or duplicate, and what is left to do once the batch commits; or why it was refused, its
/// writes undone); the outer error is a fault of the transaction, which ends the batch.
async fn apply(
    tx: &mut Tx,
    ev: &Event,
    now: chrono::DateTime<chrono::Utc>,
    effect: Effect,
) -> Result<Result<(bool, AfterApplied), Error>, Error> {
    sqlx::query("SAVEPOINT event").execute(&mut **tx).await?;
    let outcome = async {
        let fresh = record(tx, ev, now).await?;
        let after = if fresh { effect.apply(tx).await? } else { None };
        Ok::<_, Error>((fresh, after))
    }
    .await;
    if outcome.is_err() {
        sqlx::query("ROLLBACK TO SAVEPOINT event")
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("RELEASE SAVEPOINT event")
        .execute(&mut **tx)
        .await?;
    Ok(outcome)
}

/// A consumer's two event routes, from one `prepare` function
/// (`async fn(Arc<State>, Caller, Event) -> Result<Effect, Error>`: authorise, decode, ask
/// what must be asked; the effect then runs in the transaction that records the event):
/// `POST /v1/events` (one event; its handler is `receive_event`) and `POST /v1/events/batch`
/// (many, one transaction; `receive_events`). The doc comments given describe what the
/// consumer does with the events.
#[macro_export]
macro_rules! event_routes {
    ($state:ty, $prepare:path, $(#[$doc:meta])*) => {
        $(#[$doc])*
        #[utoipa::path(post, path = "/v1/events", tag = "events",
            request_body = hms_client::models::Event,
            responses((status = 200, description = "Processed, or a duplicate", body = hms_client::models::EventAck),
                      (status = 400, description = "The event does not fit the contract (the relay parks it)", body = hms_client::ErrorBody),
                      (status = 401, body = hms_client::ErrorBody), (status = 403, body = hms_client::ErrorBody),
                      (status = 503, description = "Not processed now (storage, or a service it asks, is down); redeliver later", body = hms_client::ErrorBody)))]
        async fn receive_event(
            axum::extract::State(ctx): axum::extract::State<std::sync::Arc<$state>>,
            caller: $crate::auth::Caller,
            $crate::extract::Json(ev): $crate::extract::Json<hms_client::models::Event>,
        ) -> Result<axum::Json<hms_client::models::EventAck>, $crate::Error> {
            let now = ctx.clock.now();
            let effect = $prepare(ctx.clone(), caller, ev.clone()).await?;
            $crate::inbox::receive(&ctx.db, &ctx.outbox, &ev, now, effect)
                .await
                .map(axum::Json)
        }

        /// Several events at once, as the outbox relay delivers them: each is processed as
        /// `POST /v1/events` would process it alone, all in one transaction; each has its own
        /// outcome (200, or its error), in the batch's order.
        #[utoipa::path(post, path = "/v1/events/batch", tag = "events",
            request_body = hms_client::models::EventBatch,
            responses((status = 200, description = "Each event's outcome", body = hms_client::models::BatchAck),
                      (status = 400, body = hms_client::ErrorBody),
                      (status = 401, body = hms_client::ErrorBody), (status = 403, body = hms_client::ErrorBody),
                      (status = 503, description = "None processed (storage is down); redeliver later", body = hms_client::ErrorBody)))]
        async fn receive_events(
            axum::extract::State(ctx): axum::extract::State<std::sync::Arc<$state>>,
            caller: $crate::auth::Caller,
            $crate::extract::Json(batch): $crate::extract::Json<hms_client::models::EventBatch>,
        ) -> Result<axum::Json<hms_client::models::BatchAck>, $crate::Error> {
            let now = ctx.clock.now();
            $crate::inbox::receive_batch(&ctx.db, &ctx.outbox, batch.events, now, |ev| {
                $prepare(ctx.clone(), caller.clone(), ev)
            })
            .await
            .map(axum::Json)
        }
    };
}

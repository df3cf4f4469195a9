//! Transactional outbox: events are rows written in the caller's transaction, delivered
//! afterwards by a relay to each subscriber's `POST /v1/events/batch` (many events in one
//! request, applied there in one transaction), at least once, never lost.
//!
//! - [`Outbox::enqueue`] writes the event and one delivery row per subscriber in the same
//!   transaction as the state change; [`Outbox::commit`] commits and wakes the relay at once.
//! - The [`Relay`] claims due deliveries with a lease (never a lock held across HTTP), so any
//!   number of relays (replicas) can run against one PostgreSQL database; delivers at most one
//!   event per (subscriber, aggregate) at a time, in aggregate order; retries with exponential
//!   back-off and jitter; and parks a delivery after `outbox_max_attempts` or on a 4xx that
//!   retrying cannot fix. A parked delivery is kept, counted in `outbox_parked`, and can be
//!   re-queued.

use crate::auth::{Keys, Role};
use crate::clock::Clock;
use crate::correlation;
use crate::db::{json_rows, json_rows_param, unindexed, Backend, Bind, Db, Script, Select, Tx};
use crate::error::Error;
use crate::time::{from_db, to_db};
use crate::Service;
use chrono::{DateTime, Utc};
use hms_client::contract::Contract;
use hms_client::models::{BatchAck, Event, EventOutcome};
use sqlx::Row;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

/// An event to announce, written with [`Outbox::enqueue`].
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: String,
    /// The aggregate's version after this change.
    pub aggregate_seq: i64,
    pub event_type: &'a str,
    /// Ids and facts only; never contact details.
    pub payload: serde_json::Value,
}

impl NewEvent<'static> {
    /// An event of the typed contract ([`hms_client::contract`]): its type and payload come
    /// from `event`, so what a producer announces is what its consumers decode.
    pub fn of<E: Contract>(
        aggregate_type: &'static str,
        aggregate_id: impl ToString,
        aggregate_seq: i64,
        event: &E,
    ) -> Self {
        NewEvent {
            aggregate_type,
            aggregate_id: aggregate_id.to_string(),
            aggregate_seq,
            event_type: event.event_type(),
            payload: event.payload(),
        }
    }
}

/// The producer side of a service's outbox.
#[derive(Debug, Clone)]
pub struct Outbox {
    service: Service,
    /// Of the service's database, which the statements it writes are for.
    backend: Backend,
    subscribers: Arc<Vec<String>>,
    /// The subscribers that take only some event types, and which (`ServiceDef::narrowed`).
    narrowed: &'static [(Service, &'static [&'static str])],
    /// One per subscriber, in the order of `subscribers`: a commit wakes one waiting relay of
    /// each subscriber it wrote for (see `written`), or, if all of them are busy, leaves a permit so that the next one to
    /// wait goes again at once (no commit is missed). Waking only one is deliberate: every
    /// relay woken makes a claim on the database's writer, and a commit woke all of them
    /// before — twelve claims per booking, eleven of them finding nothing.
    wake: Arc<Vec<Arc<Notify>>>,
    /// One per subscriber, in the order of `subscribers`: when a delivery to it was last
    /// written (milliseconds after `started`, 0 for never). A commit wakes only the relays of
    /// subscribers written to within [`WAKE_WINDOW`]: a commit that wrote nothing for a
    /// subscriber (an event it does not take, an event applied that announces nothing) woke
    /// its relays to claims that found nothing — seven in ten of a booking run's claims.
    written: Arc<Vec<AtomicU64>>,
    started: Instant,
    clock: Clock,
}

/// How recently a delivery to a subscriber must have been written for a commit to wake its
/// relays. A transaction whose commit comes later than this after its events were written is
/// not woken for; the relay's poll (1 s by default) takes its deliveries. The window keeps
/// the commits that wrote nothing for a subscriber from waking it, with no record kept per
/// transaction.
const WAKE_WINDOW: Duration = Duration::from_secs(1);

impl Outbox {
    pub fn new(service: Service, backend: Backend, subscribers: Vec<String>, clock: Clock) -> Self {
        Outbox {
            service,
            backend,
            wake: Arc::new(
                subscribers
                    .iter()
                    .map(|_| Arc::new(Notify::new()))
                    .collect(),
            ),
            narrowed: &[],
            written: Arc::new(subscribers.iter().map(|_| AtomicU64::new(0)).collect()),
            started: Instant::now(),
            subscribers: Arc::new(subscribers),
            clock,
        }
    }

    /// Narrows what the named subscribers take to the listed event types (the others' stays).
    pub fn narrowed(mut self, narrowed: &'static [(Service, &'static [&'static str])]) -> Self {
        self.narrowed = narrowed;
        self
    }

    /// Whether `subscriber` takes events of `event_type`.
    fn takes(&self, subscriber: &str, event_type: &str) -> bool {
        self.narrowed
            .iter()
            .find(|(s, _)| s.name() == subscriber)
            .is_none_or(|(_, types)| types.contains(&event_type))
    }

    /// Writes `ev` and its deliveries in `tx`. Nothing is sent until `tx` commits.
    pub async fn enqueue(&self, tx: &mut Tx, ev: NewEvent<'_>) -> Result<Uuid, Error> {
        let mut script = Script::new();
        let event_id = self.enqueue_in(&mut script, ev)?;
        script.run(tx).await?;
        Ok(event_id)
    }

    /// Many events, each with the correlation id of the request that made it, in `tx` (a
    /// group's; see [`Outbox::enqueue_all_in`]).
    pub async fn enqueue_all(
        &self,
        tx: &mut Tx,
        events: &[(NewEvent<'_>, &str)],
    ) -> Result<Vec<Uuid>, Error> {
        let mut script = Script::new();
        let ids = self.enqueue_all_in(&mut script, events)?;
        script.run(tx).await?;
        Ok(ids)
    }

    /// As [`Outbox::enqueue`], as statements of the caller's script (sent with its other
    /// writes: one hand-off to the database for all of them, see [`Script`]).
    pub fn enqueue_in(&self, script: &mut Script, ev: NewEvent<'_>) -> Result<Uuid, Error> {
        let correlation_id = correlation::current_id();
        let ids = self.enqueue_all_in(script, &[(ev, correlation_id.as_str())])?;
        Ok(ids[0])
    }

    /// Many events (each with the correlation id of the request that made it) and all their
    /// deliveries as two statements of `script`, whatever their number (one cached statement
    /// each for a single event and for a group's; see `group_commit::Group`).
    pub fn enqueue_all_in(
        &self,
        script: &mut Script,
        events: &[(NewEvent<'_>, &str)],
    ) -> Result<Vec<Uuid>, Error> {
        let backend = self.backend;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let now = to_db(self.clock.now());
        // Deliveries are scheduled by wall time: the relay runs on real time even when the
        // business clock is set by a test.
        let due = to_db(Utc::now());
        let mut ids = Vec::with_capacity(events.len());
        let mut rows = Vec::with_capacity(events.len());
        let mut deliveries = Vec::with_capacity(events.len() * self.subscribers.len());
        let written_at = self.millis();
        for (ev, correlation_id) in events {
            let event_id = correlation::new_event_id();
            let id = event_id.to_string();
            for (sub, written) in self.subscribers.iter().zip(self.written.iter()) {
                if self.takes(sub, ev.event_type) {
                    deliveries.push((id.clone(), sub.as_str()));
                    written.store(written_at, Ordering::Relaxed);
                }
            }
            rows.push((
                id,
                ev.aggregate_type,
                ev.aggregate_id.as_str(),
                ev.aggregate_seq,
                ev.event_type,
                ev.payload.to_string(),
                *correlation_id,
            ));
            ids.push(event_id);
        }
        script.push(
            &format!(
                "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_seq, \
                 event_type, payload, correlation_id, occurred_at) \
                 SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, CAST(j.value ->> 3 AS BIGINT), \
                 j.value ->> 4, j.value ->> 5, j.value ->> 6, ? FROM {} ORDER BY j.key",
                json_rows(backend, "?")
            ),
            [Bind::Text(now), Bind::Text(json_rows_param(&rows)?)],
        );
        if !deliveries.is_empty() {
            script.push(
                &format!(
                    "INSERT INTO outbox_delivery (event_id, subscriber, state, attempts, next_attempt_at) \
                     SELECT j.value ->> 0, j.value ->> 1, 'pending', 0, ? FROM {}",
                    json_rows(backend, "?")
                ),
                [Bind::Text(due), Bind::Text(json_rows_param(&deliveries)?)],
            );
        }
        for ((ev, _), id) in events.iter().zip(&ids) {
            tracing::debug!(event_type = ev.event_type, event_id = %id, "event written to outbox");
        }
        Ok(ids)
    }

    /// Commits `tx` and wakes the relay so its events go out at once.
    pub async fn commit(&self, tx: Tx) -> Result<(), Error> {
        if crate::dry_run::active() {
            // Everything was written and checked; a dry run keeps none of it.
            tx.rollback().await?;
            return Ok(());
        }
        tx.commit().await?;
        let now = self.millis();
        let window = WAKE_WINDOW.as_millis() as u64;
        for (w, written) in self.wake.iter().zip(self.written.iter()) {
            let at = written.load(Ordering::Relaxed);
            if at != 0 && now.saturating_sub(at) <= window {
                w.notify_one();
            }
        }
        Ok(())
    }

    /// Milliseconds since this outbox was made, at least 1 (0 means never in `written`).
    fn millis(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + 1
    }

    pub fn service(&self) -> Service {
        self.service
    }
}

/// Counts of deliveries not yet done, for `/metrics` and operators.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OutboxStats {
    pub pending: i64,
    pub parked: i64,
    /// How long the oldest due delivery has waited (0 when none is due): how far the
    /// subscribers are behind. A delivery in flight is not due (a claim moves its next attempt
    /// to its lease's end), so a relay that keeps up shows none.
    pub lag_seconds: f64,
}

/// Current pending and parked deliveries of a service's outbox.
pub async fn stats(db: &Db) -> Result<OutboxStats, sqlx::Error> {
    Ok(counts(db).await?.0)
}

/// The figures of [`stats`], and the subscribers with deliveries pending: one read of the due
/// index (state, subscriber, next attempt), which holds every column it needs.
async fn counts(db: &Db) -> Result<(OutboxStats, Vec<String>), sqlx::Error> {
    let now = Utc::now();
    // `MIN` of the due ones only: a delivery waiting out its back-off, or in flight, is not late.
    let rows = sqlx::query(
        "SELECT state, subscriber, COUNT(*) AS n, \
           MIN(CASE WHEN next_attempt_at <= $1 THEN next_attempt_at END) AS oldest \
         FROM outbox_delivery WHERE state IN ('pending', 'parked') GROUP BY state, subscriber",
    )
    .bind(to_db(now))
    .fetch_all(&mut *db.read().await?)
    .await?;
    let mut s = OutboxStats::default();
    let mut pending_for = Vec::new();
    let mut oldest: Option<DateTime<Utc>> = None;
    for r in rows {
        let state: String = r.try_get("state")?;
        let n: i64 = r.try_get("n")?;
        match state.as_str() {
            "pending" => {
                s.pending += n;
                pending_for.push(r.try_get("subscriber")?);
                if let Some(t) = r.try_get::<Option<String>, _>("oldest")? {
                    let t = from_db(&t)?;
                    oldest = Some(oldest.map_or(t, |o| o.min(t)));
                }
            }
            "parked" => s.parked += n,
            _ => {}
        }
    }
    if let Some(t) = oldest {
        s.lag_seconds = (now - t).num_milliseconds().max(0) as f64 / 1000.0;
    }
    Ok((s, pending_for))
}

/// Puts parked deliveries back in the queue (all, or one event's); returns how many.
pub async fn requeue_parked(db: &Db, event_id: Option<&str>) -> Result<u64, sqlx::Error> {
    let mut q = Select::new(
        "UPDATE outbox_delivery SET state = 'pending', attempts = 0, lease_until = NULL",
    );
    q.push(
        ", next_attempt_at = ? WHERE state = 'parked'",
        [Bind::Text(to_db(Utc::now()))],
    );
    if let Some(id) = event_id {
        q.and("event_id = ?", Bind::Text(id.to_string()));
    }
    Ok(q.execute(&mut *db.write().await?).await?.rows_affected())
}

/// What a subscriber made of one batch.
enum Posted {
    /// One outcome per event, in the batch's order.
    Answered(Vec<Outcome>),
    /// 413: over its body limit.
    TooLarge,
    /// 404/405: it has no batch route.
    NoBatchRoute,
}

/// One batch request's deliveries, each with its event's JSON.
type Part = Vec<(Claimed, Vec<u8>)>;

/// `claimed` with each event's JSON, in batches whose request bodies stay within `limit`
/// bytes (an event larger than that alone goes in a batch of its own, to be refused by name);
/// and the deliveries of events whose JSON could not be made, parked with the reason.
fn fitted(
    claimed: Vec<Claimed>,
    events: &HashMap<String, Event>,
    limit: usize,
) -> (Vec<Part>, Vec<(Claimed, Outcome)>) {
    // `{"events":[` and `]}` around the events, a comma between two.
    const FRAME: usize = 13;
    let mut parts: Vec<Part> = Vec::new();
    let mut unsent = Vec::new();
    let mut size = FRAME;
    for c in claimed {
        let json = match serde_json::to_vec(&events[&c.event_id]) {
            Ok(json) => json,
            Err(e) => {
                unsent.push((
                    c,
                    Outcome::Park(format!("the event could not be encoded: {e}")),
                ));
                continue;
            }
        };
        let grows = json.len() + 1;
        match parts.last_mut() {
            Some(part) if size + grows <= limit => part.push((c, json)),
            _ => {
                size = FRAME;
                parts.push(vec![(c, json)]);
            }
        }
        size += grows;
    }
    (parts, unsent)
}

/// The event's columns a claim answers with each delivery (of `outbox o`).
const EVENT_COLUMNS: &str = "o.aggregate_type, o.aggregate_id, o.aggregate_seq, o.event_type, \
     o.payload, o.correlation_id, o.occurred_at";

/// How often the housekeeping relay counts pending deliveries for the gauges.
const STATS_EVERY: Duration = Duration::from_millis(250);

/// Tuning of a relay.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Safety-net poll when nothing wakes the relay.
    pub poll: Duration,
    /// Attempts before a delivery is parked.
    pub max_attempts: i64,
    /// Upper bound of the back-off between attempts.
    pub max_backoff: Duration,
    /// How long a claimed delivery is reserved for the relay that claimed it.
    pub lease: Duration,
    /// Deliveries claimed per round.
    pub batch: i64,
    /// The largest request body a subscriber takes (`max_body_bytes`, the same setting on
    /// every service): a round's events go in as many batches as fit.
    pub max_body_bytes: usize,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            poll: Duration::from_secs(1),
            max_attempts: 20,
            max_backoff: Duration::from_secs(300),
            lease: Duration::from_secs(30),
            batch: 128,
            max_body_bytes: 65_536,
        }
    }
}

/// The wait before attempt `attempts + 1`: exponential from 1 s, capped at `max`, with "equal
/// jitter" (half fixed, half random) so that retries spread out but never hammer.
pub fn backoff(attempts: i64, max: Duration) -> chrono::Duration {
    use rand::Rng;
    let exp = 2f64.powi((attempts - 1).clamp(0, 20) as i32);
    let base = exp.min(max.as_secs_f64());
    let secs = base / 2.0 + rand::rng().random_range(0.0..=base / 2.0);
    chrono::Duration::milliseconds((secs * 1000.0) as i64)
}

/// What a subscriber's answer (`status`) means for a delivery: done, worth another attempt
/// (it is down, busy, or the event waits on another), or parked (retrying cannot fix it).
fn judge(status: u16, why: impl FnOnce() -> String) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 409 | 429 | 500..=599 => Outcome::Retry(why()),
        _ => Outcome::Park(why()),
    }
}

fn unreachable(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else {
        "unreachable".into()
    }
}

/// The start of what a subscriber said, for the delivery's `last_error`.
fn excerpt(said: &str) -> String {
    said.chars().take(300).collect()
}

/// The subscribers of `n` relays each per subscriber (at least one relay in all): every
/// subscriber keeps `n` deliveries in flight at once, as when every relay served every
/// subscriber, and a slow one holds back only its own relays.
fn shares(subscribers: &[String], n: usize) -> Vec<Vec<String>> {
    let mut subs = subscribers.to_vec();
    subs.sort();
    let n = n.max(1);
    if subs.is_empty() {
        return vec![Vec::new()];
    }
    subs.iter()
        .flat_map(|s| std::iter::repeat_n(vec![s.clone()], n))
        .collect()
}

/// Delivers a service's outbox to its subscribers.
#[derive(Clone)]
pub struct Relay {
    db: Db,
    service: Service,
    /// subscriber name → base URL
    targets: HashMap<String, String>,
    http: reqwest::Client,
    keys: Arc<Keys>,
    /// Each listed subscriber's wake-up (see `Outbox::wake`), in the order of `listed`.
    wakers: Arc<Vec<Arc<Notify>>>,
    settings: RelaySettings,
    /// The subscribers this relay delivers to.
    serves: Arc<Vec<String>>,
    /// Every subscriber the outbox lists.
    listed: Arc<Vec<String>>,
    /// Whether this relay also does the housekeeping (one of a service's relays does): the
    /// hourly sweep, the outbox metrics, and deliveries to subscribers no longer listed (so
    /// that they fail with their reason instead of waiting where no relay looks; found by the
    /// metrics' count).
    housekeeping: bool,
}

struct Claimed {
    event_id: String,
    subscriber: String,
    attempts: i64,
}

#[derive(Clone)]
enum Outcome {
    Delivered,
    Retry(String),
    Park(String),
}

impl Relay {
    pub fn new(
        db: Db,
        outbox: &Outbox,
        targets: HashMap<String, String>,
        keys: Arc<Keys>,
        settings: RelaySettings,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client without TLS always builds");
        let listed = outbox.subscribers.clone();
        Relay {
            db,
            service: outbox.service(),
            serves: listed.clone(),
            listed,
            targets,
            http,
            keys,
            wakers: outbox.wake.clone(),
            settings,
            housekeeping: true,
        }
    }

    /// This relay as `n` relays per subscriber of the same outbox, each delivering to one
    /// subscriber, so that a slow or hung subscriber holds back only its own deliveries: a
    /// relay's round waits for every batch it sent. The first keeps the housekeeping and also
    /// takes deliveries to subscribers no longer listed.
    pub fn split(self, n: usize) -> Vec<Relay> {
        shares(&self.listed, n)
            .into_iter()
            .enumerate()
            .map(|(i, share)| Relay {
                housekeeping: i == 0,
                serves: Arc::new(share),
                ..self.clone()
            })
            .collect()
    }

    /// Runs until `shutdown` turns true. Deliveries in flight finish; leases of anything not
    /// finished simply expire, and the next relay picks the delivery up.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut last_sweep = std::time::Instant::now() - Duration::from_secs(3600);
        let mut published = last_sweep;
        let mut stale = false;
        loop {
            // Housekeeping rides on the relay: replayable responses older than 30 days go.
            if self.housekeeping && last_sweep.elapsed() >= Duration::from_secs(3600) {
                last_sweep = std::time::Instant::now();
                if let Err(e) = crate::idempotency::sweep(&self.db, Utc::now()).await {
                    tracing::warn!(error = %e, "idempotency sweep failed");
                }
            }
            if *shutdown.borrow() {
                return;
            }
            let more = match self.round().await {
                Ok(more) => more,
                Err(e) => {
                    tracing::warn!(service = self.service.name(), error = %e, "outbox round failed");
                    false
                }
            };
            // The gauges at most every STATS_EVERY (the count reads every pending and parked
            // delivery's index entry), and again that soon after a count that was not 0, so
            // they reach 0 promptly. Deliveries pending for a subscriber no longer listed,
            // which no relay's claim names, are taken here: they fail with their reason
            // rather than wait where no relay looks.
            if self.housekeeping && published.elapsed() >= STATS_EVERY {
                let pending_for;
                (stale, pending_for) = self.publish_stats().await;
                published = std::time::Instant::now();
                let unlisted: Vec<String> = pending_for
                    .into_iter()
                    .filter(|s| !self.listed.contains(s))
                    .collect();
                if !unlisted.is_empty() {
                    if let Err(e) = self.round_of(&unlisted).await {
                        tracing::warn!(service = self.service.name(), error = %e, "outbox round failed");
                    }
                }
            }
            // Otherwise every delivery due when the round claimed was taken, and a commit
            // since has left a permit: the wait below ends at once for it.
            if more {
                continue;
            }
            let poll = if stale {
                self.settings.poll.min(STATS_EVERY)
            } else {
                self.settings.poll
            };
            tokio::select! {
                _ = self.woken() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Sets the outbox gauges; whether deliveries were pending (the figures will change), and
    /// the subscribers with deliveries pending.
    async fn publish_stats(&self) -> (bool, Vec<String>) {
        match counts(&self.db).await {
            Ok((s, pending_for)) => {
                let svc = self.service.name();
                metrics::gauge!("outbox_pending", "service" => svc).set(s.pending as f64);
                metrics::gauge!("outbox_parked", "service" => svc).set(s.parked as f64);
                metrics::gauge!("outbox_lag_seconds", "service" => svc).set(s.lag_seconds);
                (s.pending > 0, pending_for)
            }
            Err(_) => (true, Vec::new()),
        }
    }

    /// Until a commit wakes this relay (a commit for one of the subscribers it serves).
    async fn woken(&self) {
        let mine: Vec<_> = self
            .listed
            .iter()
            .zip(self.wakers.iter())
            .filter(|(s, _)| self.serves.contains(s))
            .map(|(_, w)| Box::pin(w.notified()))
            .collect();
        if mine.is_empty() {
            return std::future::pending().await;
        }
        futures::future::select_all(mine).await;
    }

    /// One round of the subscribers this relay serves: claim due deliveries, deliver them
    /// concurrently, record the outcomes. Returns whether deliveries may be due that the round
    /// did not take (see the end).
    pub async fn round(&self) -> Result<bool, sqlx::Error> {
        self.round_of(&self.serves).await
    }

    /// A round of `subscribers`' deliveries: two statements on the database's writer, the
    /// claim (which answers the events too) and the record of what was delivered (which
    /// answers whether a later event of an aggregate waits), around one request per subscriber.
    async fn round_of(&self, subscribers: &[String]) -> Result<bool, sqlx::Error> {
        let now = Utc::now();
        let lease_until = now + chrono::Duration::from_std(self.settings.lease).unwrap_or_default();
        // The lease predicate is repeated in the outer WHERE, checked against the row as locked
        // (on PostgreSQL the candidates are locked `SKIP LOCKED`, see below). A claim also moves
        // the delivery's next attempt to its lease's end: a delivery in flight is then not due,
        // so claims walking the due index pass over none (they read every leased delivery of
        // every relay before, each looked up in the table to be skipped), and one whose relay
        // died is due again when its lease ends, as before. The lease predicate stays the judge.
        let backend = self.db.backend();
        let names: Vec<(&str,)> = subscribers.iter().map(|s| (s.as_str(),)).collect();
        // The due deliveries of the subscribers named, oldest first (the due index, by
        // subscriber), none whose aggregate has an earlier event pending for that subscriber.
        let candidates = format!(
            "SELECT d.event_id, d.subscriber FROM outbox_delivery d \
             JOIN outbox o ON o.event_id = d.event_id \
             WHERE d.state = 'pending' AND d.subscriber IN (SELECT j.value ->> 0 FROM {served}) \
               AND d.next_attempt_at <= $2 \
               AND (d.lease_until IS NULL OR d.lease_until < $2) \
               AND NOT EXISTS ( \
                 SELECT 1 FROM outbox_delivery d2 JOIN outbox o2 ON o2.event_id = d2.event_id \
                 WHERE {unindexed}d2.subscriber = d.subscriber AND {unindexed}d2.state = 'pending' \
                   AND o2.aggregate_type = o.aggregate_type AND o2.aggregate_id = o.aggregate_id \
                   AND (o2.aggregate_seq < o.aggregate_seq \
                        OR (o2.aggregate_seq = o.aggregate_seq AND o2.occurred_at < o.occurred_at))) \
             ORDER BY d.next_attempt_at LIMIT $3",
            served = json_rows(backend, "$4"),
            // The earlier events are found from the aggregate (its index) and their deliveries
            // by key; SQLite would otherwise take the due index, whose (state, subscriber)
            // prefix is every pending delivery of the subscriber, for every candidate.
            unindexed = unindexed(backend),
        );
        let claim = match backend {
            // A delivery another relay is claiming right now is passed over, not waited for
            // (relays waiting on each other's row locks deadlocked with two instances on one
            // database). The candidates are picked once, in a materialised CTE: as a subquery
            // of `IN (…)`, PostgreSQL may run a `LIMIT … SKIP LOCKED` query again for each row
            // it updates — one claim took 970 rows past its limit of 128 and ran for minutes,
            // holding the rows that other relays were recording as delivered.
            Backend::Postgres => format!(
                "WITH picked AS MATERIALIZED ({candidates} FOR UPDATE OF d SKIP LOCKED) \
                 UPDATE outbox_delivery AS u SET lease_until = $1, next_attempt_at = $1, \
                   attempts = u.attempts + 1 \
                 FROM picked JOIN outbox o ON o.event_id = picked.event_id \
                 WHERE u.event_id = picked.event_id AND u.subscriber = picked.subscriber \
                   AND u.state = 'pending' AND u.next_attempt_at <= $2 \
                   AND (u.lease_until IS NULL OR u.lease_until < $2) \
                 RETURNING u.event_id, u.subscriber, u.attempts, {EVENT_COLUMNS}"
            ),
            // One writer: nothing to skip. `+` keeps the outer predicates off the due index,
            // so the rows picked are found by primary key (scanning the due index read every
            // pending delivery of every subscriber: half of a claim's time with a backlog).
            // The event's columns come with each row (by the outbox's key), so the round reads
            // them in this hand-off, not another.
            Backend::Sqlite => format!(
                "UPDATE outbox_delivery SET lease_until = $1, next_attempt_at = $1, attempts = attempts + 1 \
                 WHERE +state = 'pending' AND +next_attempt_at <= $2 \
                   AND (+lease_until IS NULL OR +lease_until < $2) \
                   AND (event_id, subscriber) IN ({candidates}) \
                 RETURNING event_id, subscriber, attempts, {}",
                EVENT_COLUMNS
                    .split(", ")
                    .map(|c| {
                        let name = c.trim_start_matches("o.");
                        format!(
                            "(SELECT {c} FROM outbox o WHERE o.event_id = outbox_delivery.event_id) AS {name}"
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let rows = sqlx::query(&claim)
            .bind(to_db(lease_until))
            .bind(to_db(now))
            .bind(self.settings.batch)
            .bind(json_rows_param(&names)?)
            .fetch_all(&mut *self.db.write().await?)
            .await?;
        if rows.is_empty() {
            return Ok(false);
        }
        let n = rows.len();
        let mut events = HashMap::with_capacity(n);
        let mut claimed = Vec::with_capacity(n);
        for r in rows {
            let c = Claimed {
                event_id: r.try_get("event_id")?,
                subscriber: r.try_get("subscriber")?,
                attempts: r.try_get("attempts")?,
            };
            if let Some(ev) = self.event_of(&r)? {
                events.insert(c.event_id.clone(), ev);
            }
            claimed.push(c);
        }
        // One request per subscriber carries all of its deliveries of this round (at most
        // one event per aggregate: the claim above holds back later ones), applied at the
        // subscriber in one transaction.
        let mut by_subscriber: HashMap<String, Vec<Claimed>> = HashMap::new();
        for c in claimed {
            by_subscriber
                .entry(c.subscriber.clone())
                .or_default()
                .push(c);
        }
        let batches = by_subscriber
            .into_iter()
            .map(|(subscriber, claimed)| self.deliver_batch(subscriber, claimed, &events));
        let outcomes: Vec<(Claimed, Outcome)> = futures::future::join_all(batches)
            .await
            .into_iter()
            .flatten()
            .collect();
        // The round's deliveries are recorded in one statement (one commit, not one per
        // delivery: on SQLite each is a turn at the write lock); retries and parks, rare,
        // one by one with their reasons.
        let (delivered, failed): (Vec<_>, Vec<_>) = outcomes
            .into_iter()
            .partition(|(_, o)| matches!(o, Outcome::Delivered));
        // An outcome not recorded leaves its delivery leased (30 s) and holds back the later
        // events of its aggregate, so a transient failure to record (a pool busy with the
        // service's own requests, a lock) is retried at once, a few times. If it never is,
        // or the answer is lost, go again: a claim is the judge.
        let mut held_back = true;
        for attempt in 1..=5 {
            match self.record_delivered(&delivered).await {
                Ok(held) => {
                    held_back = held;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "could not record delivered outbox events");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
            }
        }
        for (c, outcome) in failed {
            for attempt in 1..=5 {
                match self.record(&c, outcome.clone()).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, attempt, "could not record an outbox delivery outcome");
                        tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                    }
                }
            }
        }
        // A full round may have left due deliveries behind; so may one that delivered an
        // event whose aggregate has a later one waiting (held back until now).
        Ok(n >= usize::try_from(self.settings.batch).unwrap_or(usize::MAX) || held_back)
    }

    /// Marks `delivered` (one round's) delivered, in one statement; answers whether a later
    /// event of one of their aggregates waits for the same subscriber (held back until now).
    async fn record_delivered(
        &self,
        delivered: &[(Claimed, Outcome)],
    ) -> Result<bool, sqlx::Error> {
        if delivered.is_empty() {
            return Ok(false);
        }
        // One statement text for any number of deliveries (see `db::json_rows`).
        let pairs: Vec<(&str, &str)> = delivered
            .iter()
            .map(|(c, _)| (c.event_id.as_str(), c.subscriber.as_str()))
            .collect();
        // Each row answers from its event to the aggregate's later events (the aggregate
        // index) to their deliveries to the same subscriber (by primary key); its own event is
        // left out, as the subquery may see its row as it was. `+` keeps SQLite off the due
        // index, which would read every pending delivery of that subscriber instead.
        let pending = format!("{}d.state = 'pending'", unindexed(self.db.backend()));
        let held: Vec<i64> = sqlx::query_scalar(&format!(
            "UPDATE outbox_delivery SET state = 'delivered', delivered_at = $1, \
             lease_until = NULL, last_error = NULL WHERE (event_id, subscriber) IN \
             (SELECT j.value ->> 0, j.value ->> 1 FROM {}) \
             RETURNING CAST(CASE WHEN EXISTS ( \
               SELECT 1 FROM outbox o \
               JOIN outbox o2 ON o2.aggregate_type = o.aggregate_type \
                 AND o2.aggregate_id = o.aggregate_id AND o2.aggregate_seq >= o.aggregate_seq \
               JOIN outbox_delivery d ON d.event_id = o2.event_id \
                 AND d.subscriber = outbox_delivery.subscriber \
               WHERE o.event_id = outbox_delivery.event_id AND o2.event_id <> o.event_id \
                 AND {pending}) THEN 1 ELSE 0 END AS BIGINT)",
            json_rows(self.db.backend(), "$2")
        ))
        .bind(to_db(Utc::now()))
        .bind(json_rows_param(&pairs)?)
        .fetch_all(&mut *self.db.write().await?)
        .await?;
        Ok(held.contains(&1))
    }

    /// The event of a claimed row (its columns as [`EVENT_COLUMNS`] names them); `None` if
    /// its outbox row is missing.
    fn event_of(&self, r: &sqlx::any::AnyRow) -> Result<Option<Event>, sqlx::Error> {
        let Some(payload) = r.try_get::<Option<String>, _>("payload")? else {
            return Ok(None);
        };
        let id: String = r.try_get("event_id")?;
        let occurred: String = r.try_get("occurred_at")?;
        Ok(Some(Event {
            event_id: id.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            event_type: r.try_get("event_type")?,
            source: self.service.name().to_string(),
            aggregate_type: r.try_get("aggregate_type")?,
            aggregate_id: r.try_get("aggregate_id")?,
            aggregate_seq: r.try_get("aggregate_seq")?,
            occurred_at: from_db(&occurred)?,
            correlation_id: r.try_get("correlation_id")?,
            payload: serde_json::from_str(&payload)
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        }))
    }

    /// A token for this service's deliveries.
    fn token(&self) -> String {
        self.keys.issue(
            Role::Service,
            &format!("service:{}", self.service.name()),
            None,
            chrono::Duration::minutes(5),
        )
    }

    /// Delivers `claimed` (one subscriber's) in `POST /v1/events/batch` requests — as few as
    /// fit the subscriber's body limit — and reads each event's outcome from the answers. A
    /// batch the subscriber still finds too large (a smaller limit there) is halved; a
    /// subscriber without the batch route (an older release, during a rolling update) is sent
    /// them one by one.
    async fn deliver_batch(
        &self,
        subscriber: String,
        claimed: Vec<Claimed>,
        events: &HashMap<String, Event>,
    ) -> Vec<(Claimed, Outcome)> {
        let (claimed, missing): (Vec<_>, Vec<_>) = claimed
            .into_iter()
            .partition(|c| events.contains_key(&c.event_id));
        let mut out: Vec<(Claimed, Outcome)> = missing
            .into_iter()
            .map(|c| (c, Outcome::Park("event row is missing".into())))
            .collect();
        if claimed.is_empty() {
            return out;
        }
        let Some(base) = self.targets.get(&subscriber) else {
            let why = format!("no URL is configured for subscriber '{subscriber}'");
            out.extend(claimed.into_iter().map(|c| (c, Outcome::Park(why.clone()))));
            return out;
        };
        let (mut parts, unsent) = fitted(claimed, events, self.settings.max_body_bytes);
        out.extend(unsent);
        while let Some(mut part) = parts.pop() {
            match self.post_batch(base, &part).await {
                Posted::Answered(outcomes) => {
                    out.extend(part.into_iter().map(|(c, _)| c).zip(outcomes));
                }
                Posted::TooLarge if part.len() > 1 => {
                    let half = part.split_off(part.len() / 2);
                    parts.push(half);
                    parts.push(part);
                }
                Posted::TooLarge | Posted::NoBatchRoute => {
                    for (c, _) in part {
                        let outcome = self.deliver(base, &events[&c.event_id]).await;
                        out.push((c, outcome));
                    }
                }
            }
        }
        out
    }

    /// One `POST /v1/events/batch` of `part` (its events' JSON already made).
    async fn post_batch(&self, base: &str, part: &[(Claimed, Vec<u8>)]) -> Posted {
        let mut body =
            Vec::with_capacity(part.iter().map(|(_, e)| e.len() + 1).sum::<usize>() + 16);
        body.extend_from_slice(b"{\"events\":[");
        for (i, (_, ev)) in part.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(ev);
        }
        body.extend_from_slice(b"]}");
        let sent = self
            .http
            .post(format!("{base}/v1/events/batch"))
            .bearer_auth(self.token())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let every = |outcome: Outcome| Posted::Answered(vec![outcome; part.len()]);
        let resp = match sent {
            Err(e) => return every(Outcome::Retry(unreachable(&e))),
            Ok(resp) => resp,
        };
        let status = resp.status().as_u16();
        match status {
            404 | 405 => return Posted::NoBatchRoute,
            413 => return Posted::TooLarge,
            _ => {}
        }
        if !resp.status().is_success() {
            let body = resp.text().await.unwrap_or_default();
            let why = format!("answered {status}: {}", excerpt(&body));
            return every(judge(status, || why));
        }
        let results: HashMap<Uuid, EventOutcome> = match resp.json::<BatchAck>().await {
            Ok(ack) => ack.results.into_iter().map(|r| (r.event_id, r)).collect(),
            Err(e) => {
                let why = format!("answered {status} with a body that is not a batch answer: {e}");
                return every(Outcome::Retry(why));
            }
        };
        Posted::Answered(
            part.iter()
                .map(|(c, _)| {
                    let id: Option<Uuid> = c.event_id.parse().ok();
                    match id.and_then(|id| results.get(&id)) {
                        Some(r) => judge(r.status, || {
                            let said = r
                                .error
                                .as_ref()
                                .map(|e| format!("{}: {}", e.code, e.message))
                                .unwrap_or_default();
                            format!("answered {}: {}", r.status, excerpt(&said))
                        }),
                        None => Outcome::Retry("the batch answer left this event out".into()),
                    }
                })
                .collect(),
        )
    }

    /// Delivers one event to `POST {base}/v1/events`.
    async fn deliver(&self, base: &str, ev: &Event) -> Outcome {
        let sent = self
            .http
            .post(format!("{base}/v1/events"))
            .bearer_auth(self.token())
            .header(correlation::HEADER, &ev.correlation_id)
            .json(ev)
            .send()
            .await;
        match sent {
            Err(e) => Outcome::Retry(unreachable(&e)),
            Ok(resp) => {
                let status = resp.status().as_u16();
                if resp.status().is_success() {
                    Outcome::Delivered
                } else {
                    let body = resp.text().await.unwrap_or_default();
                    judge(status, || format!("answered {status}: {}", excerpt(&body)))
                }
            }
        }
    }

    fn backoff(&self, attempts: i64) -> chrono::Duration {
        backoff(attempts, self.settings.max_backoff)
    }

    async fn record(&self, c: &Claimed, outcome: Outcome) -> Result<(), sqlx::Error> {
        let now: DateTime<Utc> = Utc::now();
        match outcome {
            Outcome::Delivered => {
                sqlx::query(
                    "UPDATE outbox_delivery SET state = 'delivered', delivered_at = $1, \
                     lease_until = NULL, last_error = NULL WHERE event_id = $2 AND subscriber = $3",
                )
                .bind(to_db(now))
                .bind(&c.event_id)
                .bind(&c.subscriber)
                .execute(&mut *self.db.write().await?)
                .await?;
            }
            Outcome::Retry(err) if c.attempts < self.settings.max_attempts => {
                tracing::info!(
                    subscriber = %c.subscriber, event_id = %c.event_id, attempts = c.attempts,
                    error = %err, "event delivery failed; will retry"
                );
                sqlx::query(
                    "UPDATE outbox_delivery SET next_attempt_at = $1, lease_until = NULL, \
                     last_error = $2 WHERE event_id = $3 AND subscriber = $4",
                )
                .bind(to_db(now + self.backoff(c.attempts)))
                .bind(&err)
                .bind(&c.event_id)
                .bind(&c.subscriber)
                .execute(&mut *self.db.write().await?)
                .await?;
            }
            Outcome::Retry(err) | Outcome::Park(err) => {
                tracing::error!(
                    subscriber = %c.subscriber, event_id = %c.event_id, attempts = c.attempts,
                    error = %err, "event delivery parked; it is kept and can be re-queued"
                );
                sqlx::query(
                    "UPDATE outbox_delivery SET state = 'parked', lease_until = NULL, \
                     last_error = $1 WHERE event_id = $2 AND subscriber = $3",
                )
                .bind(&err)
                .bind(&c.event_id)
                .bind(&c.subscriber)
                .execute(&mut *self.db.write().await?)
                .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{shares, NewEvent, Outbox};
    use crate::clock::Clock;
    use crate::db::{Db, Open, Script};
    use crate::Service;
    use futures::FutureExt;

    /// Whether a commit left `subscriber`'s relays a wake-up.
    fn woken(outbox: &Outbox, subscriber: usize) -> bool {
        outbox.wake[subscriber].notified().now_or_never().is_some()
    }

    /// A commit wakes the relays of the subscribers it wrote deliveries for, not the others:
    /// not one that does not take the event's type, and none for a commit that wrote no event.
    #[tokio::test]
    async fn a_commit_wakes_only_the_subscribers_it_wrote_for() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/wake.db", dir.path().display());
        let db = Db::open(
            &url,
            Open {
                service: "wake-test",
                ..Open::default()
            },
        )
        .await
        .unwrap();
        let outbox = Outbox::new(
            Service::Billing,
            db.backend(),
            vec!["notification".into(), "payment".into()],
            Clock::system(),
        )
        .narrowed(&[(Service::Payment, &["bill.created"])]);
        outbox.commit(db.begin().await.unwrap()).await.unwrap();
        assert!(
            !woken(&outbox, 0) && !woken(&outbox, 1),
            "a commit without events woke a relay"
        );
        let mut script = Script::new();
        let paid = NewEvent {
            aggregate_type: "bill",
            aggregate_id: "1".into(),
            aggregate_seq: 2,
            event_type: "bill.paid",
            payload: serde_json::json!({}),
        };
        outbox.enqueue_in(&mut script, paid).unwrap();
        outbox.commit(db.begin().await.unwrap()).await.unwrap();
        assert!(woken(&outbox, 0), "notification takes bill.paid");
        assert!(!woken(&outbox, 1), "payment takes only bill.created");
        db.close().await;
    }

    fn names(v: &[&[&str]]) -> Vec<Vec<String>> {
        v.iter()
            .map(|s| s.iter().map(|x| x.to_string()).collect())
            .collect()
    }

    #[test]
    fn every_subscriber_has_its_relays() {
        let subs = &names(&[&["notification", "billing"]])[0];
        assert_eq!(
            shares(subs, 2),
            names(&[
                &["billing"],
                &["billing"],
                &["notification"],
                &["notification"]
            ])
        );
        assert_eq!(shares(subs, 0), names(&[&["billing"], &["notification"]]));
        assert_eq!(shares(&[], 3), names(&[&[]]), "one relay, for housekeeping");
    }
}

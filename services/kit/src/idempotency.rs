//! Idempotency keys (RELIABILITY.md I1–I7): a retried request with the same key and body gets
//! the original status and body (`Idempotent-Replayed: true`) and nothing runs twice; the same
//! key with another body, operation or caller is 422 `idempotency_key_reused`.
//!
//! The key row is inserted in the transaction that does the work and holds the response, so the
//! work and the key commit together. A concurrent duplicate waits on the key's unique index
//! (PostgreSQL: at most 5 s, then 409 `idempotency_key_in_progress`; SQLite: on the write lock)
//! and then replays what the first one committed; if the first rolled back, it does the work.

use crate::db::{json_rows, json_rows_param, Backend, Bind, Db, Script, Tx};
use crate::error::Error;
use crate::outbox::Outbox;
use crate::time::to_db;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::future::Future;

pub const HEADER: &str = "idempotency-key";
/// How long stored responses are replayed.
pub const RETENTION_DAYS: i64 = 30;

/// The `Idempotency-Key` header: absent → `None`; present, 1–255 visible ASCII characters.
pub fn key_from(headers: &HeaderMap) -> Result<Option<String>, Error> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("");
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::validation(
            "Idempotency-Key",
            "Idempotency-Key must be 1–255 visible ASCII characters (a UUIDv4 is recommended)",
        ));
    }
    Ok(Some(s.to_string()))
}

/// What identifies a request: operation, path parameters and the canonical JSON body (keys
/// sorted, whitespace dropped), hashed.
pub fn fingerprint(operation: &str, path: &str, body: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(operation.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body.to_string().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// One idempotent request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub key: &'a str,
    pub operation: &'a str,
    pub subject: &'a str,
    pub fingerprint: String,
}

impl Request<'_> {
    /// The request's key and identity, owned, to travel with a write done elsewhere (a group).
    pub fn keyed(&self) -> Keyed {
        Keyed {
            key: self.key.to_string(),
            operation: self.operation.to_string(),
            subject: self.subject.to_string(),
            fingerprint: self.fingerprint.clone(),
        }
    }
}

/// An owned [`Request`].
#[derive(Debug, Clone)]
pub struct Keyed {
    pub key: String,
    pub operation: String,
    pub subject: String,
    pub fingerprint: String,
}

/// The answers of fresh requests stored under their keys, as one statement of `script` (the
/// write of a group; see `group_commit::Group`). A key already there — a retry racing its
/// first request — refuses the statement, and so the group: each request then claims its key
/// alone ([`Idempotent::run`]) and the retry replays.
pub fn store_all_in(
    script: &mut Script,
    backend: Backend,
    answers: &[(&Keyed, StatusCode, &str)],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    if answers.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = answers
        .iter()
        .map(|(k, status, body)| {
            (
                k.key.as_str(),
                k.operation.as_str(),
                k.subject.as_str(),
                k.fingerprint.as_str(),
                status.as_u16(),
                *body,
            )
        })
        .collect();
    script.push(
        &format!(
            "INSERT INTO idempotency_keys (key, operation, subject, request_hash, status_code, \
             response_body, created_at) SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, \
             j.value ->> 3, CAST(j.value ->> 4 AS BIGINT), j.value ->> 5, ? FROM {}",
            json_rows(backend, "?")
        ),
        [Bind::Text(to_db(now)), Bind::Text(json_rows_param(&rows)?)],
    );
    Ok(())
}

/// A response stored under a key.
#[derive(Debug, Clone)]
pub struct Stored {
    pub status: u16,
    pub body: String,
}

impl IntoResponse for Stored {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut resp = (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.body,
        )
            .into_response();
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        resp
    }
}

/// Either the work is ours to do (in this transaction), or it was done: replay it.
enum Claim {
    Fresh(Tx),
    Replay(Stored),
}

/// What a key already did: the stored response, `None` if it is new or still in flight, or
/// 422 if it was used for a different request.
async fn lookup(db: &Db, req: &Request<'_>) -> Result<Option<Stored>, Error> {
    let row = sqlx::query(
        "SELECT operation, subject, request_hash, status_code, response_body FROM idempotency_keys WHERE key = $1",
    )
    .bind(req.key)
    .fetch_optional(&mut *db.read().await?)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let (op, subject, hash): (String, String, String) = (
        r.try_get("operation")?,
        r.try_get("subject")?,
        r.try_get("request_hash")?,
    );
    if op != req.operation || subject != req.subject || hash != req.fingerprint {
        return Err(Error::rule(
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request; use a new key for a new request",
        ));
    }
    let status: Option<i64> = r.try_get("status_code")?;
    let body: Option<String> = r.try_get("response_body")?;
    match (status, body) {
        (Some(s), Some(b)) => Ok(Some(Stored {
            status: s as u16,
            body: b,
        })),
        _ => Ok(None),
    }
}

fn in_progress() -> Error {
    Error::conflict(
        "idempotency_key_in_progress",
        "a request with this Idempotency-Key is still being processed; retry shortly",
    )
    .with_retry_after(1)
}

/// Claims `req.key`, or answers with what it already did.
async fn claim(db: &Db, req: &Request<'_>, now: DateTime<Utc>) -> Result<Claim, Error> {
    if let Some(stored) = lookup(db, req).await? {
        return Ok(Claim::Replay(stored));
    }
    let mut tx = db.begin().await?;
    if db.backend() == Backend::Postgres {
        sqlx::query("SET LOCAL lock_timeout = '5s'")
            .execute(&mut *tx)
            .await?;
    }
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (key, operation, subject, request_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(req.key)
    .bind(req.operation)
    .bind(req.subject)
    .bind(&req.fingerprint)
    .bind(to_db(now))
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(r) if r.rows_affected() == 1 => Ok(Claim::Fresh(tx)),
        Ok(_) => {
            // The first request committed while we waited: replay it.
            tx.rollback().await?;
            lookup(db, req)
                .await?
                .map(Claim::Replay)
                .ok_or_else(in_progress)
        }
        Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03") => {
            Err(in_progress())
        }
        Err(e) => Err(e.into()),
    }
}

/// Stores the response in the claiming transaction, to be committed with the work.
async fn record(tx: &mut Tx, key: &str, status: StatusCode, body: &str) -> Result<(), Error> {
    sqlx::query("UPDATE idempotency_keys SET status_code = $1, response_body = $2 WHERE key = $3")
        .bind(i64::from(status.as_u16()))
        .bind(body)
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What the work of an idempotent request decided, stored under the key and committed with it.
pub enum Outcome<T> {
    /// Done; answered with this status and value.
    Done(StatusCode, T),
    /// A refusal decided inside the transaction (say, an overpayment seen under the row lock).
    /// It is committed with whatever the work wrote (a failure event) and replayed to retries,
    /// so a retry is refused the same way rather than judged again.
    Refused(Error),
}

/// The answer to an idempotent request: fresh work, or what its key already did.
pub enum Answer<T> {
    Fresh(StatusCode, T),
    Replay(Stored),
}

/// One request's trip through the flow of I1–I7, written once for every idempotent route:
/// `replay` answers a retry before any rule is judged again; `run` claims the key, runs the
/// work in the claiming transaction, stores the answer with the key and commits both together.
/// Without a key (where the route allows that) the work simply runs in its own transaction.
pub struct Idempotent<'a> {
    db: &'a Db,
    request: Option<Request<'a>>,
}

impl<'a> Idempotent<'a> {
    /// `operation` names the route, `path` its path parameters, `body` the request as received.
    pub fn new(
        db: &'a Db,
        key: Option<&'a str>,
        operation: &'a str,
        path: &str,
        subject: &'a str,
        body: &impl Serialize,
    ) -> Result<Self, Error> {
        let request = match key {
            Some(key) => Some(Request {
                key,
                operation,
                subject,
                fingerprint: fingerprint(
                    operation,
                    path,
                    &serde_json::to_value(body).map_err(Error::internal)?,
                ),
            }),
            None => None,
        };
        Ok(Idempotent { db, request })
    }

    /// The key and fingerprint, for routes that keep them on the record they create.
    pub fn request(&self) -> Option<&Request<'a>> {
        self.request.as_ref()
    }

    /// The stored answer of an earlier request with this key, if there is one.
    pub async fn replay(&self) -> Result<Option<Stored>, Error> {
        match &self.request {
            Some(req) => lookup(self.db, req).await,
            None => Ok(None),
        }
    }

    /// Claims the key (or replays what it did), runs `work` in the claiming transaction, and
    /// commits the work and its stored answer together. `work` gets the transaction and hands
    /// it back with its outcome; an `Err` drops it, which rolls everything back, key included,
    /// so a retry does the work afresh. (The transaction is passed by value because a closure
    /// borrowing it could not be proven `Send` for every lifetime.)
    ///
    /// A transaction PostgreSQL undid to break a deadlock is run again, key claim and all, up
    /// to `CONFLICT_TRIES` times: with two instances, a request done alone (key, then its row)
    /// and another instance's group (rows, then keys) can each wait on the other, and the one
    /// the database picks kept nothing, so the request is done again rather than answered 503.
    pub async fn run<T: Serialize, F, Fut>(
        &self,
        outbox: &Outbox,
        now: DateTime<Utc>,
        mut work: F,
    ) -> Result<Answer<T>, Error>
    where
        F: FnMut(Tx) -> Fut,
        Fut: Future<Output = Result<(Tx, Outcome<T>), Error>>,
    {
        let mut attempt = 1;
        loop {
            match self.run_once(outbox, now, &mut work).await {
                Err(e) if e.is_conflict() && attempt < CONFLICT_TRIES => {
                    tracing::info!(attempt, error = ?e, "transaction undone by a conflict; running it again");
                    metrics::counter!("transactions_retried_total", "service" => self.db.service())
                        .increment(1);
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    async fn run_once<T: Serialize, F, Fut>(
        &self,
        outbox: &Outbox,
        now: DateTime<Utc>,
        work: &mut F,
    ) -> Result<Answer<T>, Error>
    where
        F: FnMut(Tx) -> Fut,
        Fut: Future<Output = Result<(Tx, Outcome<T>), Error>>,
    {
        let tx = match &self.request {
            Some(req) => match claim(self.db, req, now).await? {
                Claim::Fresh(tx) => tx,
                Claim::Replay(stored) => return Ok(Answer::Replay(stored)),
            },
            None => self.db.begin().await?,
        };
        let (mut tx, outcome) = work(tx).await?;
        let key = self.request.as_ref().map(|r| r.key);
        match outcome {
            Outcome::Done(status, value) => {
                if let Some(key) = key {
                    let body = serde_json::to_string(&value).map_err(Error::internal)?;
                    record(&mut tx, key, status, &body).await?;
                }
                outbox.commit(tx).await?;
                Ok(Answer::Fresh(status, value))
            }
            Outcome::Refused(err) => {
                if let Some(key) = key {
                    let body = serde_json::to_string(&err.body()).map_err(Error::internal)?;
                    record(&mut tx, key, err.status, &body).await?;
                }
                outbox.commit(tx).await?;
                Err(err)
            }
        }
    }
}

/// How many times `Idempotent::run` runs a transaction the database undid to break a
/// deadlock before answering 503 (each try waits out at most one deadlock check, about 1 s).
const CONFLICT_TRIES: usize = 3;

/// Deletes stored responses older than the retention period; returns how many.
pub async fn sweep(db: &Db, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let cutoff = now - chrono::Duration::days(RETENTION_DAYS);
    Ok(
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(to_db(cutoff))
            .execute(&mut *db.write().await?)
            .await?
            .rows_affected(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_key_order_but_not_values() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":"525.00"}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{ "b":"525.00", "a":1 }"#).unwrap();
        let c: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":"525.0"}"#).unwrap();
        assert_eq!(fingerprint("op", "", &a), fingerprint("op", "", &b));
        assert_ne!(fingerprint("op", "", &a), fingerprint("op", "", &c));
        assert_ne!(fingerprint("op", "", &a), fingerprint("other", "", &a));
    }

    #[test]
    fn keys_are_validated() {
        let mut h = HeaderMap::new();
        assert_eq!(key_from(&h).unwrap(), None);
        h.insert(HEADER, HeaderValue::from_static("abc-123"));
        assert_eq!(key_from(&h).unwrap().as_deref(), Some("abc-123"));
        h.insert(HEADER, HeaderValue::from_str(&"k".repeat(256)).unwrap());
        assert!(key_from(&h).is_err());
        h.insert(HEADER, HeaderValue::from_static("has space"));
        assert!(key_from(&h).is_err());
    }
}

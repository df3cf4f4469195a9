//! The one error type of every handler, and the standard error body it renders.
//!
//! Codes are the stable contract of API.md. Internal details (`source`) are logged with the
//! correlation id and never shown to the client.

use crate::correlation;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hms_client::ErrorBody;
use serde_json::{json, Value};
use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error a handler returns; renders as `{code, message, correlationId}`.
pub struct Error {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after: Option<u64>,
    source: Option<anyhow::Error>,
}

impl Error {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Error {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
            source: None,
        }
    }

    /// 400 `validation_failed`, naming the field.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Error::new(StatusCode::BAD_REQUEST, "validation_failed", message)
            .with_details(json!({ "field": field }))
    }

    /// 400 `validation_failed` not tied to one field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::new(StatusCode::BAD_REQUEST, "validation_failed", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Error::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`: "patient 42 not found".
    pub fn not_found(what: impl fmt::Display) -> Self {
        Error::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 409 with a specific code (`slot_taken`, `invalid_transition`, …).
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::new(StatusCode::CONFLICT, code, message)
    }

    /// 412 `version_conflict`: a stale `If-Match`.
    pub fn version_conflict(current: i64) -> Self {
        Error::new(
            StatusCode::PRECONDITION_FAILED,
            "version_conflict",
            format!("the record changed since you read it (current version {current}); re-read and retry"),
        )
        .with_details(json!({ "current_version": current }))
    }

    /// 422: a business rule refused the request.
    pub fn rule(code: &'static str, message: impl Into<String>) -> Self {
        Error::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 503 `dependency_unavailable`, naming the dependency.
    pub fn dependency(name: &str, reason: impl fmt::Display) -> Self {
        Error::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency_unavailable",
            format!("{name} is unavailable: {reason}"),
        )
        .with_details(json!({ "dependency": name }))
        .with_retry_after(1)
    }

    /// 503 `storage_unavailable`: the service's database cannot keep a write now (file lost or
    /// unwritable, disk full, I/O error, server unreachable). Nothing was written; retry later.
    pub fn storage(service: &str, reason: impl fmt::Display) -> Self {
        Error::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            format!("the {service} service's storage is unavailable: {reason}"),
        )
        .with_details(json!({ "service": service }))
        .with_retry_after(5)
    }

    /// 500: logged with its cause; the client sees only the correlation id to quote.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        let mut e = Error::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; quote the correlation id when reporting it",
        );
        e.source = Some(source.into());
        e
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The same answer again, for another request it also answers (each of a failed group
    /// commit's requests); the source stays with the first.
    pub fn again(&self) -> Error {
        Error {
            status: self.status,
            code: self.code,
            message: self.message.clone(),
            details: self.details.clone(),
            retry_after: self.retry_after,
            source: None,
        }
    }

    /// Whether PostgreSQL undid this error's transaction to break a deadlock (40P01) or a
    /// serialization conflict (40001): nothing of it was kept, the other transaction has gone
    /// on, and the same transaction run again can succeed. (SQLite's busy lock is not one: it
    /// has already waited out the busy timeout.)
    pub fn is_conflict(&self) -> bool {
        self.source
            .as_ref()
            .and_then(|s| s.downcast_ref::<sqlx::Error>())
            .and_then(|e| e.as_database_error())
            .is_some_and(|d| conflict(d.code().as_deref()))
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The standard body for this error in the current request.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.to_string(),
            message: self.message.clone(),
            correlation_id: correlation::current_id(),
            details: self.details.clone(),
        }
    }

    /// A standard error for a bare status (408 from a timeout, 413 from a body limit, …).
    pub fn from_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::BAD_REQUEST => ("validation_failed", "the request is malformed"),
            StatusCode::UNAUTHORIZED => ("unauthenticated", "a valid bearer token is required"),
            StatusCode::FORBIDDEN => ("forbidden", "your role may not do this"),
            StatusCode::NOT_FOUND => ("not_found", "no such resource"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "this method is not allowed on this route",
            ),
            StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ),
            StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests; retry later"),
            StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "the service is unavailable"),
            s if s.is_client_error() => ("bad_request", "the request was refused"),
            _ => ("internal_error", "internal error; quote the correlation id"),
        };
        Error::new(status, code, message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )?;
        if let Some(s) = &self.source {
            write!(f, " ({s:#})")?;
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source {
            tracing::error!(code = self.code, error = %format!("{source:#}"), "request failed");
        } else if self.status.is_server_error() {
            tracing::warn!(code = self.code, message = %self.message, "request not served");
        }
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut => Error::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the database is busy; retry shortly",
            )
            .with_retry_after(1),
            sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                let mut err = Error::storage(
                    &correlation::current_service(),
                    "the database is unreachable",
                );
                err.source = Some(e.into());
                err
            }
            sqlx::Error::Database(ref d) if storage_fault(d.code().as_deref()) => {
                let mut err = Error::storage(&correlation::current_service(), d.message());
                err.source = Some(e.into());
                err
            }
            // SQLite's single write lock stayed busy past the busy timeout; or PostgreSQL
            // rolled this transaction back to break a deadlock or a serialization conflict:
            // nothing was written, and the same request can simply be sent again.
            sqlx::Error::Database(ref d)
                if matches!(d.code().as_deref(), Some("5") | Some("6"))
                    || conflict(d.code().as_deref()) =>
            {
                let mut err = Error::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is busy; retry shortly",
                )
                .with_retry_after(1);
                // Kept, so that `is_conflict` can tell a transaction undone to break a
                // deadlock (which can simply be run again here) from a busy database.
                err.source = Some(e.into());
                err
            }
            other => Error::internal(other),
        }
    }
}

/// Whether a database error code is PostgreSQL undoing a transaction to break a deadlock
/// (40P01) or a serialization conflict (40001).
fn conflict(code: Option<&str>) -> bool {
    matches!(code, Some("40P01") | Some("40001"))
}

/// Whether a database error code says the storage failed, not the request: SQLite's primary
/// codes PERM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB (extended codes carry the
/// primary one in their low byte); PostgreSQL's classes 08 (connection), 53 (resources: disk
/// full), 58 (system I/O), 57P0x (server shutting down) and 25006 (read-only server).
fn storage_fault(code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    if let Ok(n) = code.parse::<i64>() {
        return matches!(n & 0xff, 3 | 8 | 10 | 11 | 13 | 14 | 26);
    }
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("58")
        || code.starts_with("57P0")
        || code == "25006"
}

impl From<hms_client::ClientError> for Error {
    /// A failed call to another service: unreachable or failing → 503 naming it.
    /// A 4xx it answered is passed on as it is, since it is about this request.
    fn from(e: hms_client::ClientError) -> Self {
        use hms_client::ClientError as C;
        match e {
            C::Unavailable { service, reason } => Error::dependency(&service, reason),
            C::Api {
                service,
                status,
                body,
            } if status >= 500 => {
                Error::dependency(&service, format!("it answered {status} {}", body.code))
            }
            C::Api { status, body, .. } => {
                let code = leak_code(&body.code);
                let mut err = Error::new(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                    code,
                    body.message,
                );
                err.details = body.details;
                err
            }
            C::Protocol { service, reason } => Error::dependency(&service, reason),
        }
    }
}

/// Codes are `&'static str`; a code learnt from another service is one of a small fixed set,
/// so it is interned once rather than allocated per error.
fn leak_code(code: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static CODES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = CODES
        .get_or_init(Default::default)
        .lock()
        .expect("code set");
    if let Some(c) = set.get(code) {
        return c;
    }
    if set.len() > 256 {
        return "upstream_error";
    }
    let leaked: &'static str = Box::leak(code.to_string().into_boxed_str());
    set.insert(leaked);
    leaked
}

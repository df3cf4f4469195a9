//! Correlation id and W3C trace context of the current request.
//!
//! The id arrives in `X-Correlation-ID` (or is generated), is echoed on the response, is a
//! field of every log line of the request, and is forwarded on every downstream call and in
//! every outbox event the request writes. It lives in a task-local for the request's duration,
//! so deep code (error rendering, the outbox) reads it without threading it through.

use axum::http::HeaderMap;
use std::future::Future;

pub const HEADER: &str = "x-correlation-id";

/// What the current request carries for tracing.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The service serving the request, named in errors about its own storage.
    pub service: &'static str,
    pub correlation_id: String,
    /// 32 hex digits (W3C trace id), from `traceparent` or generated.
    pub trace_id: String,
    /// The `traceparent` to forward downstream (this hop's span id).
    pub traceparent: String,
}

tokio::task_local! {
    static CONTEXT: RequestContext;
}

fn valid_correlation_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

/// A W3C trace id: 16 random bytes as 32 hex digits (one allocation; every request makes one).
fn random_trace_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A W3C span id: 8 random bytes as 16 hex digits.
fn random_span_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A random (version 4) UUID from the thread's generator, which the operating system seeds
/// once, rather than a system call per id as `Uuid::new_v4` makes: every request that brings
/// no correlation id gets one, and every event written gets one.
pub fn new_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// A time-ordered (version 7) UUID for an event written to an outbox: its first 48 bits are
/// the wall clock's milliseconds, the rest random. An event's id is the key of its outbox row,
/// of its deliveries and of every consumer's inbox row; random ids put each of those inserts
/// (and each delivery's later update) on a random page of an ever-growing index — on SQLite's
/// small page cache a read from the file for each, about three times the cost of writing
/// where the index ends, which is where time-ordered ids go.
pub fn new_event_id() -> uuid::Uuid {
    let millis = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid()
}

impl RequestContext {
    /// From the incoming headers: a valid `X-Correlation-ID` is kept, anything else replaced.
    pub fn from_headers(service: &'static str, headers: &HeaderMap) -> Self {
        let correlation_id = headers
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|s| valid_correlation_id(s))
            .map(str::to_string)
            .unwrap_or_else(|| new_uuid().to_string());
        // traceparent: 00-<trace-id 32 hex>-<parent-id 16 hex>-<flags>
        let trace_id = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|tp| {
                let parts: Vec<&str> = tp.split('-').collect();
                (parts.len() == 4
                    && parts[1].len() == 32
                    && parts[1].bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| parts[1].to_ascii_lowercase())
            })
            .unwrap_or_else(random_trace_id);
        let traceparent = format!("00-{trace_id}-{}-01", random_span_id());
        RequestContext {
            service,
            correlation_id,
            trace_id,
            traceparent,
        }
    }

    /// This context with another correlation id (kept only if valid): an event of a batch is
    /// processed under the id of the request that caused it.
    pub fn with_correlation_id(mut self, id: &str) -> Self {
        if valid_correlation_id(id) {
            self.correlation_id = id.to_string();
        }
        self
    }

    /// A context for work that no request started (relay, schedulers).
    pub fn background(service: &'static str) -> Self {
        let trace_id = random_trace_id();
        RequestContext {
            service,
            correlation_id: new_uuid().to_string(),
            traceparent: format!("00-{trace_id}-{}-01", random_span_id()),
            trace_id,
        }
    }
}

/// Runs `fut` with `ctx` as the current request context.
pub async fn scope<F: Future>(ctx: RequestContext, fut: F) -> F::Output {
    CONTEXT.scope(ctx, fut).await
}

/// The current request context, if inside one.
pub fn current() -> Option<RequestContext> {
    CONTEXT.try_with(Clone::clone).ok()
}

/// The current correlation id, or `"none"` outside a request.
pub fn current_id() -> String {
    CONTEXT
        .try_with(|c| c.correlation_id.clone())
        .unwrap_or_else(|_| "none".to_string())
}

/// The service of the current request, or `"hms"` outside one.
pub fn current_service() -> String {
    CONTEXT
        .try_with(|c| c.service.to_string())
        .unwrap_or_else(|_| "hms".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_their_formats_and_differ() {
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        let (a, b) = (random_trace_id(), random_trace_id());
        assert!(hex(&a, 32) && hex(&b, 32) && a != b, "{a} {b}");
        assert!(hex(&random_span_id(), 16));
        let (u, v) = (new_uuid(), new_uuid());
        assert_eq!(u.get_version(), Some(uuid::Version::Random));
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(u, v);
        let (e, f) = (new_event_id(), new_event_id());
        assert_eq!(e.get_version(), Some(uuid::Version::SortRand));
        assert_ne!(e, f);
        // Ids of later milliseconds sort after earlier ones, as text too (the key's type).
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = new_event_id();
        assert!(later.to_string() > e.to_string() && later.to_string() > f.to_string());
        let ctx = RequestContext::from_headers("patient", &HeaderMap::new());
        assert!(hex(&ctx.trace_id, 32));
        let parts: Vec<&str> = ctx.traceparent.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            (parts[0], parts[1], parts[3]),
            ("00", ctx.trace_id.as_str(), "01")
        );
        assert!(hex(parts[2], 16));
        assert!(uuid::Uuid::parse_str(&ctx.correlation_id).is_ok());
    }
}

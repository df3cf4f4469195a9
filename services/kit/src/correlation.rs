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

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl RequestContext {
    /// From the incoming headers: a valid `X-Correlation-ID` is kept, anything else replaced.
    pub fn from_headers(service: &'static str, headers: &HeaderMap) -> Self {
        let correlation_id = headers
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|s| valid_correlation_id(s))
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
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
            .unwrap_or_else(|| random_hex(16));
        let traceparent = format!("00-{trace_id}-{}-01", random_hex(8));
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
        let trace_id = random_hex(16);
        RequestContext {
            service,
            correlation_id: uuid::Uuid::new_v4().to_string(),
            traceparent: format!("00-{trace_id}-{}-01", random_hex(8)),
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

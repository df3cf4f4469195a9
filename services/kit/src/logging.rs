//! JSON logs through `tracing`, and the per-request middleware that logs and measures.
//!
//! Every request is served with its correlation id, trace id, method, route and caller at
//! hand ([`crate::log_line`]), so every line logged while serving it carries them too.
//! Bodies, tokens and query strings are never logged; personal fields only ever appear
//! through the masking types of [`crate::pii`].

use crate::correlation::{self, RequestContext};
use crate::error::Error;
use crate::log_line::{self, Line, RequestFields};
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The filter: `level` for HMS, quieter for libraries that log statements or connections.
fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},sqlx=warn,hyper=warn,hyper_util=warn,reqwest=warn,tower_http=warn,h2=warn"
        ))
    })
}

/// Installs the process-wide subscriber (`json` or `pretty`). A second call does nothing.
pub fn init(level: &str, format: &str) {
    init_with_writer(level, format, std::io::stdout);
}

/// As [`init`], writing to `writer` (tests capture the logs this way).
pub fn init_with_writer<W>(level: &str, format: &str, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_writer(writer);
    let _ = if format == "pretty" {
        builder.event_format(Line::Pretty).try_init()
    } else {
        builder.event_format(Line::Json).try_init()
    };
}

/// Outermost middleware: sets the request context, opens the request span, echoes the
/// correlation id, turns any bare error response into the standard body, logs one line per
/// request (route, status, latency) and records the per-route metrics.
pub async fn observe(
    axum::extract::State(service): axum::extract::State<&'static str>,
    req: Request,
    next: Next,
) -> Response {
    let ctx = RequestContext::from_headers(service, req.headers());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let fields = RequestFields::new(
        service,
        ctx.correlation_id.clone(),
        ctx.trace_id.clone(),
        req.method().clone(),
        route,
    );
    let started = Instant::now();
    let in_flight = crate::metrics::InFlight::enter(service);
    let correlation_id = ctx.correlation_id.clone();
    let mut resp = log_line::scope(fields, async move {
        let resp = correlation::scope(
            ctx,
            async move { standardise_error_body(next.run(req).await) },
        )
        .await;
        let latency = started.elapsed();
        let status = resp.status().as_u16();
        tracing::info!(
            status,
            latency_ms = latency.as_secs_f64() * 1000.0,
            "request completed"
        );
        log_line::with_request(|r| {
            crate::metrics::record_request(service, r.method.as_str(), &r.route, status, latency)
        });
        resp
    })
    .await;
    drop(in_flight);
    if let Ok(v) = HeaderValue::from_str(&correlation_id) {
        resp.headers_mut().insert(correlation::HEADER, v);
    }
    resp
}

/// Any error response that is not already JSON (a timeout's 408, a limit's 413, a 405) gets
/// the standard body, so clients never see a bare text error.
fn standardise_error_body(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let retry_after = resp.headers().get(header::RETRY_AFTER).cloned();
    let allow = resp.headers().get(header::ALLOW).cloned();
    let mut fresh = Error::from_status(status).into_response();
    if let Some(v) = retry_after {
        fresh.headers_mut().insert(header::RETRY_AFTER, v);
    }
    if let Some(v) = allow {
        fresh.headers_mut().insert(header::ALLOW, v);
    }
    fresh
}

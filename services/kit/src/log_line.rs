//! How one log line is written, and the request fields every line logged while serving a
//! request carries.
//!
//! The request's fields (correlation id, trace id, method, route, service, subject) live in a
//! task-local for the request's duration, set by [`crate::logging::observe`], and each line
//! written inside it carries them as `span`. A tracing span would carry them too, but it
//! costs per request: its fields are formatted to JSON when it opens, and every line's JSON
//! formatter parses that text back before writing it out again; with entering and leaving
//! the span at every poll, that was about a tenth of the CPU a patient read costs. The JSON
//! line's shape is the one operators search by (`span.correlation_id`, `span.route`,
//! `span.subject`, see the runbook); [`Line`] writes it.

use axum::http::Method;
use serde::ser::{SerializeMap, Serializer as _};
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::sync::OnceLock;
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The fields of the request being served, on every line it logs.
#[derive(Debug)]
pub struct RequestFields {
    pub service: &'static str,
    pub correlation_id: String,
    pub trace_id: String,
    pub method: Method,
    pub route: String,
    /// Known once the token is checked ([`record_subject`]).
    subject: OnceLock<String>,
}

impl RequestFields {
    pub fn new(
        service: &'static str,
        correlation_id: String,
        trace_id: String,
        method: Method,
        route: String,
    ) -> Self {
        RequestFields {
            service,
            correlation_id,
            trace_id,
            method,
            route,
            subject: OnceLock::new(),
        }
    }
}

/// Written as the `span` object of a JSON line: the fields in name order, then the name
/// `request` (the shape a tracing span's JSON had).
impl Serialize for RequestFields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("correlation_id", &self.correlation_id)?;
        m.serialize_entry("method", self.method.as_str())?;
        m.serialize_entry("route", &self.route)?;
        m.serialize_entry("service", self.service)?;
        if let Some(subject) = self.subject.get() {
            m.serialize_entry("subject", subject)?;
        }
        m.serialize_entry("trace_id", &self.trace_id)?;
        m.serialize_entry("name", "request")?;
        m.end()
    }
}

tokio::task_local! {
    static REQUEST: RequestFields;
}

/// Runs `fut` as the serving of the request `fields` describe.
pub async fn scope<F: Future>(fields: RequestFields, fut: F) -> F::Output {
    REQUEST.scope(fields, fut).await
}

/// Names the caller on the current request's lines (once its token is checked).
pub fn record_subject(subject: &str) {
    let _ = REQUEST.try_with(|r| r.subject.set(subject.to_string()));
}

/// `f` of the current request's fields, if inside a request.
pub fn with_request<R>(f: impl FnOnce(&RequestFields) -> R) -> Option<R> {
    REQUEST.try_with(f).ok()
}

/// How a line is written: [`Line::Json`] (one JSON object per line: `timestamp`, `level`, the
/// event's fields with `message` first, `target`, and `span` inside a request) or
/// [`Line::Pretty`] (for a terminal: `timestamp LEVEL target: message fields`, then the
/// request's fields).
#[derive(Debug, Clone, Copy)]
pub enum Line {
    Json,
    Pretty,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::with_capacity(32);
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        // A record of the `log` crate (a library's) is named by its own level and target.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        match self {
            Line::Json => {
                let mut line = Vec::with_capacity(512);
                let mut ser = serde_json::Serializer::new(&mut line);
                let written: Result<(), serde_json::Error> = (|| {
                    let mut map = ser.serialize_map(None)?;
                    map.serialize_entry("timestamp", &timestamp)?;
                    map.serialize_entry("level", meta.level().as_str())?;
                    let mut fields = tracing_serde::SerdeMapVisitor::new(map);
                    event.record(&mut fields);
                    let mut map = fields.take_serializer()?;
                    map.serialize_entry("target", meta.target())?;
                    if let Some(r) = with_request(|r| map.serialize_entry("span", r)) {
                        r?;
                    }
                    map.end()
                })();
                written.map_err(|_| fmt::Error)?;
                // serde_json writes UTF-8 only.
                writer.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)?;
            }
            Line::Pretty => {
                write!(
                    writer,
                    "{timestamp} {:>5} {}: ",
                    meta.level(),
                    meta.target()
                )?;
                ctx.format_fields(writer.by_ref(), event)?;
                if let Some(r) = with_request(|r| {
                    write!(
                        writer,
                        "  [{} {} {} correlation_id={}",
                        r.service, r.method, r.route, r.correlation_id
                    )?;
                    if let Some(subject) = r.subject.get() {
                        write!(writer, " subject={subject}")?;
                    }
                    write!(writer, "]")
                }) {
                    r?;
                }
            }
        }
        writeln!(writer)
    }
}

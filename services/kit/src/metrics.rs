//! Prometheus metrics: one recorder per process, per-route request counters and latency
//! histograms labelled by service (the embedded default runs all services in one process).

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds: 1 ms … 10 s, dense where p50–p99 of an API usually fall.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Millisecond buckets for business latencies such as `bill_creation_latency_ms`.
const MS_BUCKETS: &[f64] = &[
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0,
];

/// Installs the recorder once and returns its handle for rendering `/metrics`.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_ms".into()), MS_BUCKETS))
                .expect("bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a host process); then ours only renders.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// What every metric means (the `# HELP` lines of `/metrics`).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "http_requests_total",
        "Requests answered, by service, method, route template and status."
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its answer, by service, method and route template."
    );
    describe_counter!(
        "appointments_created_total",
        "Appointments booked (SCHEDULED) by the appointment service."
    );
    describe_histogram!(
        "bill_creation_latency_ms",
        Unit::Milliseconds,
        "Time from an appointment's completion to its bill's creation."
    );
    describe_counter!(
        "payments_failed_total",
        "Payments refused by the ledger, by reason (overpayment, bill_not_payable)."
    );
    describe_counter!(
        "notifications_sent_total",
        "Messages delivered to patients, by channel."
    );
    describe_counter!(
        "notifications_failed_total",
        "Message deliveries that failed for good, by channel."
    );
    describe_gauge!(
        "http_requests_in_flight",
        "Requests being served right now, by service."
    );
    describe_gauge!(
        "outbox_pending",
        "Event deliveries not yet acknowledged by their subscriber (the outbox's lag)."
    );
    describe_gauge!(
        "outbox_lag_seconds",
        "How long the oldest due event delivery has waited, in seconds (0: the subscribers are up to date)."
    );
    describe_gauge!(
        "outbox_parked",
        "Event deliveries parked after retries or a refusal retrying cannot fix."
    );
    describe_histogram!(
        "group_commit_batch_rows",
        "Rows (audit rows of reads) or requests (bookings) committed together by a group-commit writer."
    );
    describe_counter!(
        "group_commit_refused_total",
        "Groups of writes rolled back because one was refused; each of their requests was then done alone."
    );
}

/// The exposition of one service: only the series labelled with `service` (the embedded
/// default runs every service in one process, on one recorder), each metric with its HELP and
/// TYPE lines.
pub fn render_for(service: &str) -> String {
    filter_service(&handle().render(), service)
}

/// Keeps, of a Prometheus exposition, the samples labelled `service="<service>"` and the HELP
/// and TYPE lines of the metrics that keep any.
fn filter_service(all: &str, service: &str) -> String {
    let label = format!("service=\"{service}\"");
    let mut out = String::with_capacity(all.len() / 4);
    let mut header: Vec<&str> = Vec::new();
    let mut header_of = "";
    let mut samples: Vec<&str> = Vec::new();
    let flush = |header: &mut Vec<&str>, samples: &mut Vec<&str>, out: &mut String| {
        if !samples.is_empty() {
            for l in header.iter().chain(samples.iter()) {
                out.push_str(l);
                out.push('\n');
            }
        }
        header.clear();
        samples.clear();
    };
    for line in all.lines() {
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
        {
            let name = rest.split_whitespace().next().unwrap_or("");
            if name != header_of {
                flush(&mut header, &mut samples, &mut out);
                header_of = name;
            }
            header.push(line);
        } else if line.contains(&label) {
            samples.push(line);
        }
    }
    flush(&mut header, &mut samples, &mut out);
    out
}

/// A request being served: counted in `http_requests_in_flight` until it is dropped (answered,
/// or abandoned by its client).
pub struct InFlight(&'static str);

impl InFlight {
    pub fn enter(service: &'static str) -> Self {
        metrics::gauge!("http_requests_in_flight", "service" => service).increment(1.0);
        InFlight(service)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("http_requests_in_flight", "service" => self.0).decrement(1.0);
    }
}

/// Counts one request and records its latency (`http_requests_total`,
/// `http_request_duration_seconds`), labelled by service, method, route template and status.
pub fn record_request(
    service: &'static str,
    method: &str,
    route: &str,
    status: u16,
    took: Duration,
) {
    let labels = [
        ("service", service.to_string()),
        ("method", method.to_string()),
        ("route", route.to_string()),
        ("status", status.to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..3]).record(took.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_sees_its_own_series_with_their_help() {
        let all = "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n\
                   http_requests_total{service=\"patient\",status=\"200\"} 3\n\
                   http_requests_total{service=\"billing\",status=\"200\"} 5\n\n\
                   # HELP outbox_pending Pending.\n# TYPE outbox_pending gauge\n\
                   outbox_pending{service=\"billing\"} 0\n";
        let patient = filter_service(all, "patient");
        assert!(patient.contains("# HELP http_requests_total"));
        assert!(patient.contains("service=\"patient\""));
        assert!(!patient.contains("billing") && !patient.contains("outbox_pending"));
        assert!(filter_service(all, "billing").contains("# HELP outbox_pending Pending."));
    }
}

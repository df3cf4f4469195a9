//! `hmsctl status`, `hmsctl completions` and `hmsctl import`: the commands about the system
//! rather than the hospital's records.

use super::Ctx;
use crate::exit;
use crate::output::{drop, emit, keep, shrink, View};
use crate::Failure;
use clap::Args;
use hms_client::{Money, Service};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args)]
pub struct ImportArgs {
    /// The directory holding hms_doctors.csv, hms_patients.csv, hms_appointments.csv,
    /// hms_prescriptions.csv, hms_bills.csv and hms_payments.csv.
    dir: PathBuf,
    /// A true preview: every row is judged and written by the services, then rolled
    /// back; the outcomes are the real run's, and nothing is kept.
    #[arg(long)]
    dry_run: bool,
    /// Write every row's outcome (file, line, id, outcome, reason) to this CSV file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Consultation fee of imported doctors [default: the clinic's configured default]
    #[arg(long)]
    default_fee: Option<Money>,
    /// The time zone the old system wrote its local times in [default: the clinic's,
    /// HMS_CLINIC_TIMEZONE or Asia/Kolkata]. Times with an offset are read as written.
    #[arg(long, value_name = "ZONE")]
    legacy_tz: Option<chrono_tz::Tz>,
}

/// One service's state, as `status` shows it.
#[derive(Serialize)]
struct ServiceState {
    service: &'static str,
    url: String,
    up: bool,
    ready: bool,
    state: &'static str,
    version: Option<String>,
    latency_ms: Option<f64>,
    detail: Option<String>,
}

const STATE: View<ServiceState> = View {
    id: |s| s.service.into(),
    cols: &[
        keep("Service", "service", |s| s.service.into()),
        drop("URL", "url", |s| (&s.url).into()),
        keep("State", "state", |s| s.state.into()),
        drop("Version", "version", |s| (&s.version).into()),
        keep("Latency ms", "latency_ms", |s| {
            s.latency_ms
                .map(|l| l.to_string())
                .unwrap_or_default()
                .into()
        }),
        shrink("Detail", "detail", |s| (&s.detail).into()),
    ],
};

/// Probes every service; exit 6 when one is not ready.
pub async fn status(cx: &Ctx, wanted: Vec<Service>) -> u8 {
    let c = &cx.c;
    let services = if wanted.is_empty() {
        Service::ALL.to_vec()
    } else {
        wanted
    };
    let probes = services.into_iter().map(|svc| async move {
        let started = std::time::Instant::now();
        let health = c.health(svc).await;
        let latency = started.elapsed().as_secs_f64() * 1000.0;
        let ready = match &health {
            Ok(_) => c.ready(svc).await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        ServiceState {
            service: svc.name(),
            url: c.urls().get(svc).to_string(),
            up: health.is_ok(),
            ready: ready.is_ok(),
            state: match (&health, &ready) {
                (Ok(_), Ok(_)) => "ready",
                (Ok(_), Err(_)) => "up, not ready",
                _ => "down",
            },
            version: health.as_ref().ok().map(|h| h.version.clone()),
            latency_ms: health.is_ok().then_some((latency * 10.0).round() / 10.0),
            detail: ready.err(),
        }
    });
    let rows = futures::future::join_all(probes).await;
    cx.out.list(&rows, &STATE);
    if rows.iter().all(|r| r.ready) {
        exit::SUCCESS
    } else {
        exit::UNAVAILABLE
    }
}

pub fn completions(shell: clap_complete::Shell) {
    use clap::CommandFactory;
    // Into a buffer first: a reader that goes away (`| head`) ends quietly.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut super::Cli::command(), "hmsctl", &mut script);
    emit!("{}", String::from_utf8_lossy(&script).trim_end());
}

pub async fn import(cx: &Ctx, a: ImportArgs) -> Result<u8, Failure> {
    let legacy_tz = match a.legacy_tz {
        Some(tz) => tz,
        None => std::env::var("HMS_CLINIC_TIMEZONE")
            .ok()
            .and_then(|z| z.parse().ok())
            .unwrap_or(chrono_tz::Asia::Kolkata),
    };
    let opts = crate::import::Options {
        dry_run: a.dry_run,
        report: a.report.as_deref(),
        default_fee: a.default_fee,
        legacy_tz,
    };
    crate::import::run(&cx.c, &a.dir, opts, &cx.out).await
}

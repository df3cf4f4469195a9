//! `hmsctl`: the HMS front-desk and scripting tool.
//!
//! This first cut offers `hmsctl status`, the health of all seven services; the workflow
//! commands follow the services that back them.
//!
//! Exit codes: 0 success · 2 usage error · 6 a service is unavailable.

use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Color, Table};
use hms_client::{HmsClient, Service, ServiceUrls};
use serde::Serialize;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const EXIT_UNAVAILABLE: u8 = 6;

#[derive(Parser)]
#[command(
    name = "hmsctl",
    version,
    about = "HMS front-desk and scripting tool",
    after_help = "Exit codes: 0 success, 2 usage error, 6 a service is unavailable."
)]
struct Cli {
    /// Host of the services when they run on their default ports.
    #[arg(long, global = true, default_value = "127.0.0.1", env = "HMS_HOST")]
    host: String,
    /// Port of the patient service; the others follow in order.
    #[arg(long, global = true, default_value_t = 8001, env = "HMS_BASE_PORT")]
    base_port: u16,
    /// One base URL behind a path-routing ingress (`<url>/patient`, `<url>/doctor`, …).
    #[arg(long, global = true, env = "HMS_URL")]
    url: Option<String>,
    /// Output for scripts.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Up/down, version, readiness and latency of all seven services (or of those named).
    Status {
        /// Only these services (e.g. `hmsctl status patient doctor`).
        services: Vec<Service>,
    },
}

#[derive(Serialize)]
struct ServiceStatus {
    service: &'static str,
    url: String,
    up: bool,
    ready: bool,
    version: Option<String>,
    latency_ms: Option<f64>,
    detail: Option<String>,
}

async fn probe(client: &HmsClient, svc: Service) -> ServiceStatus {
    let url = client.urls().get(svc).to_string();
    let started = Instant::now();
    match client.health(svc).await {
        Err(e) => ServiceStatus {
            service: svc.name(),
            url,
            up: false,
            ready: false,
            version: None,
            latency_ms: None,
            detail: Some(e.to_string()),
        },
        Ok(h) => {
            let latency = started.elapsed().as_secs_f64() * 1000.0;
            let ready = client.ready(svc).await;
            ServiceStatus {
                service: svc.name(),
                url,
                up: true,
                ready: ready.is_ok(),
                version: Some(h.version),
                latency_ms: Some((latency * 100.0).round() / 100.0),
                detail: ready.err().map(|e| e.to_string()),
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let urls = match &cli.url {
        Some(u) => ServiceUrls::behind_ingress(u),
        None => ServiceUrls::with_base_port(&cli.host, cli.base_port),
    };
    let client = HmsClient::new(urls, Duration::from_secs(3));
    match cli.command {
        Command::Status { services } => {
            let wanted = if services.is_empty() {
                Service::ALL.to_vec()
            } else {
                services
            };
            let rows =
                futures::future::join_all(wanted.into_iter().map(|s| probe(&client, s))).await;
            match cli.output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).unwrap_or_default()
                ),
                Output::Table => {
                    let mut t = Table::new();
                    t.load_preset(UTF8_FULL_CONDENSED)
                        .set_header(["service", "url", "state", "version", "latency"]);
                    for r in &rows {
                        let (state, color) = match (r.up, r.ready) {
                            (true, true) => ("ready", Color::Green),
                            (true, false) => ("up, not ready", Color::Yellow),
                            _ => ("down", Color::Red),
                        };
                        t.add_row(vec![
                            Cell::new(r.service),
                            Cell::new(&r.url),
                            Cell::new(state).fg(color),
                            Cell::new(r.version.as_deref().unwrap_or("-")),
                            Cell::new(
                                r.latency_ms
                                    .map(|l| format!("{l:.1} ms"))
                                    .unwrap_or_else(|| "-".into()),
                            ),
                        ]);
                    }
                    println!("{t}");
                }
            }
            if rows.iter().all(|r| r.ready) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_UNAVAILABLE)
            }
        }
    }
}

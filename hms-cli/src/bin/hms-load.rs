//! `hms-load`: the project's load generator. Drives one workflow with N concurrent clients
//! for a fixed time and reports throughput and latency percentiles from an HDR histogram.
//!
//! ```text
//! hms-load get-patient --connections 64 --duration 10
//! hms-load search-patients --connections 16
//! hms-load create-patient --connections 8 --duration 5
//! ```
//! The token is `--token`, `HMS_TOKEN`, or the embedded default's `hms-data/admin.token`.

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use hms_client::models::{NewPatient, PatientQuery};
use hms_client::{HmsClient, ServiceUrls};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Workflow {
    /// GET /v1/patients/{id} (one audited read each)
    GetPatient,
    /// GET /v1/patients?name=… (a page of 20, each hit audited)
    SearchPatients,
    /// POST /v1/patients
    CreatePatient,
    /// GET /v1/doctors/{id}/availability?date=…
    Availability,
    /// POST /v1/appointments: every request a valid, distinct booking (patient and doctor
    /// checked over HTTP, slot claims, daily-cap counter, outbox event)
    Book,
}

#[derive(Parser)]
#[command(
    name = "hms-load",
    about = "Load generator for HMS workflows (HDR latency histograms)"
)]
struct Args {
    workflow: Workflow,
    /// Concurrent clients (each keeps one request in flight).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds to run, after a 1 s warm-up.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Host of the services (embedded default ports).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8001)]
    base_port: u16,
    #[arg(long, env = "HMS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where the embedded default keeps its admin token.
    #[arg(long, default_value = "hms-data")]
    data_dir: PathBuf,
    /// The clinic's time zone (bookings are placed in its clinic hours).
    #[arg(long, default_value = "Asia/Kolkata")]
    clinic_timezone: chrono_tz::Tz,
    /// The configured daily cap per doctor (bookings fill this many slots per doctor-day).
    #[arg(long, default_value_t = 8)]
    daily_cap: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let token = match &args.token {
        Some(t) => t.clone(),
        None => std::fs::read_to_string(args.data_dir.join("admin.token"))
            .map_err(|e| {
                anyhow::anyhow!(
                    "no --token and no {}/admin.token: {e}",
                    args.data_dir.display()
                )
            })?
            .trim()
            .to_string(),
    };
    let urls = ServiceUrls::with_base_port(&args.host, args.base_port);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(30))
        .build()?;
    let client = HmsClient::with_http(http, urls).with_token(token);

    // Fixtures the workflow reads.
    let seed = std::process::id();
    let mut patient_ids = Vec::new();
    for i in 0..20u32 {
        let p = client.create_patient(&fixture_patient(seed, i)).await?;
        patient_ids.push(p.patient_id);
    }
    let doctor = client.create_doctor(&fixture_doctor()).await?;
    let date = (chrono::Utc::now() + chrono::Duration::days(7)).date_naive();
    // Booking: one doctor and one patient per client, so that bookings never collide: booking
    // n goes to doctor n % D at the k-th free slot (k = n / D) of the working days ahead.
    let mut plan = BookingPlan::default();
    if matches!(args.workflow, Workflow::Book) {
        for i in 0..args.connections as u32 {
            plan.patients.push(
                client
                    .create_patient(&fixture_patient(seed, 500 + i))
                    .await?
                    .patient_id,
            );
            let d = client.create_doctor(&fixture_doctor()).await?;
            plan.doctors.push(d.doctor_id);
        }
        plan.days = working_days(args.clinic_timezone, 400);
        plan.per_day = args.daily_cap.min(18);
        plan.tz = Some(args.clinic_timezone);
    }
    let plan = Arc::new(plan);
    let patient_ids = Arc::new(patient_ids);

    let errors = Arc::new(AtomicU64::new(0));
    let counter = Arc::new(AtomicU64::new(0));
    let warmup_end = Instant::now() + Duration::from_secs(1);
    let end = warmup_end + Duration::from_secs(args.duration);
    let workers = (0..args.connections).map(|w| {
        let client = client.clone();
        let ids = patient_ids.clone();
        let errors = errors.clone();
        let counter = counter.clone();
        let workflow = args.workflow;
        let doctor_id = doctor.doctor_id;
        let plan = plan.clone();
        tokio::spawn(async move {
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let mut i = w;
            loop {
                let started = Instant::now();
                if started >= end {
                    break;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let ok = match workflow {
                    Workflow::GetPatient => client.get_patient(ids[i % ids.len()]).await.is_ok(),
                    Workflow::SearchPatients => client
                        .list_patients(&PatientQuery {
                            name: Some("load fixture".into()),
                            limit: Some(20),
                            ..Default::default()
                        })
                        .await
                        .is_ok(),
                    Workflow::CreatePatient => client
                        .create_patient(&fixture_patient(seed, 1000 + n as u32))
                        .await
                        .is_ok(),
                    Workflow::Availability => {
                        client.doctor_availability(doctor_id, date).await.is_ok()
                    }
                    Workflow::Book => match plan.booking(n as usize) {
                        Some(b) => client.book_appointment(&b, None).await.is_ok(),
                        None => false,
                    },
                };
                i += 1;
                if started >= warmup_end {
                    if ok {
                        let _ = hist.record(started.elapsed().as_micros() as u64);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            hist
        })
    });
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for h in futures::future::join_all(workers).await {
        total.add(h?)?;
    }
    let secs = args.duration as f64;
    let ms = |q: f64| total.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "workflow={:?} connections={} duration={}s requests={} errors={} throughput={:.0} req/s p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        args.workflow,
        args.connections,
        args.duration,
        total.len(),
        errors.load(Ordering::Relaxed),
        total.len() as f64 / secs,
        ms(0.50),
        ms(0.90),
        ms(0.99),
        total.max() as f64 / 1000.0,
    );
    Ok(())
}

fn fixture_patient(seed: u32, i: u32) -> NewPatient {
    NewPatient {
        patient_id: None,
        name: "Load Fixture".into(),
        email: Some(format!("load{seed}.{i}@example.org")),
        phone: format!("7{:09}", (seed as u64 * 1000 + i as u64) % 1_000_000_000),
        dob: chrono::NaiveDate::from_ymd_opt(1980, 1, 1).expect("a date"),
        created_at: None,
    }
}

fn fixture_doctor() -> hms_client::models::NewDoctor {
    hms_client::models::NewDoctor {
        doctor_id: None,
        name: "Dr. Load Generator".into(),
        email: None,
        phone: None,
        department: "Benchmarking".into(),
        specialization: "Throughput".into(),
        consultation_fee: Some(hms_client::Money(50_000)),
        working_hours: None,
        created_at: None,
    }
}

/// Weekdays (the default working week) from the day after tomorrow, clinic-local.
fn working_days(tz: chrono_tz::Tz, n: usize) -> Vec<chrono::NaiveDate> {
    use chrono::Datelike;
    let mut d = (chrono::Utc::now().with_timezone(&tz) + chrono::Duration::days(2)).date_naive();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if d.weekday().number_from_monday() <= 5 {
            out.push(d);
        }
        d = d.succ_opt().expect("a next day");
    }
    out
}

/// Where booking n goes, so that no two bookings of a run collide.
#[derive(Default)]
struct BookingPlan {
    doctors: Vec<i64>,
    patients: Vec<i64>,
    days: Vec<chrono::NaiveDate>,
    per_day: usize,
    tz: Option<chrono_tz::Tz>,
}

impl BookingPlan {
    fn booking(&self, n: usize) -> Option<hms_client::models::NewAppointment> {
        use chrono::TimeZone;
        let d = self.doctors.len();
        let (doctor, k) = (n % d, n / d);
        let day = *self.days.get(k / self.per_day)?;
        let minutes = 9 * 60 + 30 * (k % self.per_day) as u32;
        let local = day.and_hms_opt(minutes / 60, minutes % 60, 0)?;
        let start = self
            .tz?
            .from_local_datetime(&local)
            .earliest()?
            .with_timezone(&chrono::Utc);
        Some(hms_client::models::NewAppointment {
            patient_id: self.patients[doctor],
            doctor_id: self.doctors[doctor],
            department: "Benchmarking".into(),
            slot_start: start,
            slot_end: None,
        })
    }
}

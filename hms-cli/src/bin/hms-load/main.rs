//! `hms-load`: the project's load generator. Drives one workflow with N concurrent clients
//! for a fixed time and reports throughput and latency percentiles from an HDR histogram.
//!
//! ```text
//! hms-load get-patient --connections 64 --duration 10
//! hms-load search-patients --connections 16
//! hms-load create-patient --connections 8 --duration 5
//! hms-load ceiling --connections 64        # a minimal axum handler, then get-patient, and the ratio
//! hms-load mixed --connections 64 --duration 60
//! hms-load workflow --connections 64       # whole visits, on services it starts itself
//! hms-load db-ceiling                      # one SQLite writer's limits, through kit::db
//! ```
//! The token is `--token`, `HMS_TOKEN`, or the embedded default's `hms-data/admin.token`.

mod driver;
mod seed;
mod workflow;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use hms_client::models::{NewPatient, PatientQuery};
use hms_client::Service;
use hms_client::{HmsClient, ServiceUrls};
use std::path::PathBuf;

/// jemalloc rather than the system allocator: the services allocate and free on dozens of
/// threads (the runtime's and each SQLite connection's). Measured in one sitting
/// (docs/benchmarks.md): 12–16% more bookings a second, and freed memory goes back to the
/// system within a fraction of a second (its settings: `.cargo/config.toml`). Built unprefixed,
/// it is SQLite's allocator too (SQLite's C code calls `malloc`): otherwise each connection's
/// thread took a C library arena of its own and kept what it freed, 4 MiB more resident.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// A front desk's mix: per 20 requests, 6 patient searches, 4 availability lookups, 4
    /// patient reads, 3 bookings, a reschedule, a cancellation and a doctor's day list. Each
    /// client books, moves and cancels its own doctor's slots (no collisions).
    Mixed,
    /// Bulk volume for the scale runs: `--patients` patients and `--appointments`
    /// appointments through the services' store functions, into `--data-dir`'s databases.
    Seed,
    /// GET /v1/patients?phone=<6 digits of a seeded patient's phone> (a selective search).
    SearchPhone,
    /// GET /v1/appointments?doctor_id=&from=&to= (a seeded doctor's day).
    DayList,
    /// Whole visits (book → prescribe → complete → pay, with Idempotency-Keys) against all
    /// seven services started in this process on throw-away SQLite files, with a clock the
    /// run moves past the booked slots so they can be completed (no daemon needed).
    #[value(name = "workflow")]
    Visits,
    /// What one SQLite writer connection can do through the services' database layer, with
    /// nothing else in the way: a statement's round trip, and the rate of transactions shaped
    /// like a booking's (no daemon needed).
    DbCeiling,
    /// The machine's ceiling beside HMS, in one run: a minimal axum handler served in this
    /// process (`GET /v1/patients/{id}` answering a literal patient) measured with the same
    /// client, then `get-patient` against HMS; prints both and HMS's share of the ceiling.
    Ceiling,
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
    /// The configured booking horizon in days (bookings are planned within it).
    #[arg(long, default_value_t = 365)]
    booking_horizon_days: i64,
    /// Another instance of the appointment service (its base URL), e.g. a second replica on
    /// the same PostgreSQL database: clients are spread over it and the configured one.
    #[arg(long = "appointment-replica", value_name = "URL")]
    appointment_replicas: Vec<String>,
    /// `workflow`: how many visits a client completes ahead of paying the first of them (the
    /// cashier takes the patient before while the doctor completes the next); 0 waits for
    /// each visit's bill before completing the next.
    #[arg(long, default_value_t = 8)]
    pay_behind: usize,
    /// `seed`: patients to make.
    #[arg(long, default_value_t = 10_000)]
    patients: usize,
    /// `seed`: appointments to make.
    #[arg(long, default_value_t = 10_000)]
    appointments: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.workflow {
        Workflow::Visits => return workflow::run(&args).await,
        Workflow::DbCeiling => return driver::run(&args).await,
        _ => {}
    }
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
    // Per-service URLs override the base port: HMS_PATIENT_URL, HMS_DOCTOR_URL, …
    let urls = ServiceUrls::with_base_port(&args.host, args.base_port).with_env_overrides();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(30))
        .build()?;
    let client = HmsClient::with_http(http.clone(), urls.clone()).with_token(token.clone());

    if matches!(args.workflow, Workflow::Seed) {
        seed::seed(
            &client,
            &args.data_dir,
            args.clinic_timezone,
            args.patients,
            args.appointments,
        )
        .await?;
        return Ok(());
    }
    if matches!(args.workflow, Workflow::Ceiling) {
        let ceiling = serve_ceiling()
            .await
            .context("starting the in-process ceiling handler")?;
        let fixtures = Arc::new(Fixtures::prepare(&client, &args, Workflow::GetPatient).await?);
        let mut urls = urls.clone();
        urls.set(Service::Patient, format!("http://{ceiling}"));
        let bare = HmsClient::with_http(http, urls).with_token(token);
        let floor = drive(&[bare], &args, Workflow::GetPatient, fixtures.clone()).await?;
        report("ceiling (minimal axum handler, in-process)", &args, &floor);
        let hms = drive(&[client], &args, Workflow::GetPatient, fixtures).await?;
        report("get-patient (HMS, audited)", &args, &hms);
        println!(
            "ratio: HMS get-patient = {:.1}% of the ceiling's requests/s (same client, same run)",
            100.0 * hms.throughput() / floor.throughput().max(1.0)
        );
        return Ok(());
    }
    let fixtures = Arc::new(Fixtures::prepare(&client, &args, args.workflow).await?);
    // Client w talks to appointment instance w % instances.
    let mut clients = vec![client.clone()];
    for url in &args.appointment_replicas {
        let mut urls = urls.clone();
        urls.set(Service::Appointment, url.clone());
        clients.push(HmsClient::with_http(http.clone(), urls).with_token(token.clone()));
    }
    let outcome = drive(&clients, &args, args.workflow, fixtures).await?;
    report(&format!("{:?}", args.workflow), &args, &outcome);
    Ok(())
}

/// The records a workflow reads or books against, made before the clock starts.
struct Fixtures {
    seed: u32,
    patients: Vec<i64>,
    doctor: i64,
    date: chrono::NaiveDate,
    plan: BookingPlan,
    /// What `hms-load seed` made (for `search-phone` and `day-list`).
    scale: Option<seed::Scale>,
    /// `day-list`: the start of each seeded day, in the clinic's zone.
    day_starts: Vec<chrono::DateTime<chrono::Utc>>,
}

impl Fixtures {
    async fn prepare(client: &HmsClient, args: &Args, workflow: Workflow) -> anyhow::Result<Self> {
        let seed = std::process::id();
        let mut patients = Vec::new();
        for i in 0..20u32 {
            let p = client
                .create_patient(&fixture_patient(seed, i))
                .await
                .with_context(|| format!("creating fixture patient {i}"))?;
            patients.push(p.patient_id);
        }
        let doctor = client
            .create_doctor(&fixture_doctor())
            .await
            .context("creating the fixture doctor")?
            .doctor_id;
        let date = (chrono::Utc::now() + chrono::Duration::days(7)).date_naive();
        // Booking: one doctor and one patient per client, so that bookings never collide:
        // booking n goes to doctor n % D at the k-th free slot (k = n / D) of the working days
        // ahead.
        let plan = if matches!(workflow, Workflow::Book | Workflow::Mixed) {
            BookingPlan::with_fixtures(client, args, seed).await?
        } else {
            BookingPlan::default()
        };
        let scale = match workflow {
            Workflow::SearchPhone | Workflow::DayList => Some(seed::Scale::read(&args.data_dir)?),
            _ => None,
        };
        // The seeded days' starts, found once here: a day the clinic's zone cannot place is a
        // setup error, not a failure of every request.
        let day_starts = match (&scale, workflow) {
            (Some(scale), Workflow::DayList) => scale
                .day_starts(args.clinic_timezone)
                .with_context(|| format!("placing the seeded days in {}", args.clinic_timezone))?,
            _ => Vec::new(),
        };
        Ok(Fixtures {
            seed,
            patients,
            doctor,
            date,
            plan,
            scale,
            day_starts,
        })
    }
}

/// A request's outcome: `Err` names what went wrong, so a run that fails says how (a refusal
/// of the service's, by status and code, or a service out of reach), not only how often.
type Done = Result<(), String>;

fn done<T>(answer: Result<T, hms_client::ClientError>) -> Done {
    use hms_client::ClientError as E;
    answer.map(drop).map_err(|e| match e {
        E::Api {
            service,
            status,
            body,
        } => format!("{service} {status} {}", body.code),
        E::Unavailable { service, .. } => format!("{service} unreachable"),
        E::Protocol { service, .. } => format!("{service} off contract"),
    })
}

/// What a run measured.
struct Outcome {
    hist: Histogram<u64>,
    errors: u64,
    /// Failed requests by what went wrong, the warm-up's included.
    kinds: std::collections::BTreeMap<String, u64>,
    seconds: f64,
    /// Bookings stopped because every planned slot was taken.
    exhausted: bool,
}

impl Outcome {
    fn throughput(&self) -> f64 {
        self.hist.len() as f64 / self.seconds.max(0.001)
    }
}

/// Runs `workflow` with `args.connections` clients for `args.duration` seconds (after a 1 s
/// warm-up).
async fn drive(
    clients: &[HmsClient],
    args: &Args,
    workflow: Workflow,
    fx: Arc<Fixtures>,
) -> anyhow::Result<Outcome> {
    let errors = Arc::new(AtomicU64::new(0));
    let kinds = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let counter = Arc::new(AtomicU64::new(0));
    let exhausted = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let warmup_end = started + Duration::from_secs(1);
    let end = warmup_end + Duration::from_secs(args.duration);
    let workers = (0..args.connections).map(|w| {
        let client = clients[w % clients.len()].clone();
        let fx = fx.clone();
        let (errors, kinds) = (errors.clone(), kinds.clone());
        let (counter, exhausted) = (counter.clone(), exhausted.clone());
        tokio::spawn(async move {
            let mut hist = histogram();
            let mut i = w;
            let mut desk = Desk::default();
            let mut failing = 0u32;
            loop {
                let began = Instant::now();
                if began >= end || exhausted.load(Ordering::Relaxed) {
                    break;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let outcome: Done = match workflow {
                    Workflow::GetPatient | Workflow::Ceiling => {
                        done(client.get_patient(fx.patients[i % fx.patients.len()]).await)
                    }
                    Workflow::SearchPatients => done(client.list_patients(&fixture_search()).await),
                    Workflow::CreatePatient => done(
                        client
                            .create_patient(&fixture_patient(fx.seed, 1000 + n as u32))
                            .await,
                    ),
                    Workflow::Availability => {
                        done(client.doctor_availability(fx.doctor, fx.date).await)
                    }
                    Workflow::Book => match fx.plan.booking(n as usize) {
                        Some(b) => done(client.book_appointment(&b, None).await),
                        None => {
                            // Every planned slot is taken: stop, rather than count failures.
                            exhausted.store(true, Ordering::Relaxed);
                            break;
                        }
                    },
                    Workflow::SearchPhone | Workflow::DayList => {
                        scale_request(&client, &fx, workflow, n).await
                    }
                    Workflow::Seed | Workflow::Visits | Workflow::DbCeiling => break,
                    Workflow::Mixed => match desk.step(&client, &fx, w, n).await {
                        Some(outcome) => outcome,
                        None => {
                            exhausted.store(true, Ordering::Relaxed);
                            break;
                        }
                    },
                };
                i += 1;
                if outcome.is_ok() {
                    failing = 0;
                }
                match outcome {
                    Ok(()) if began >= warmup_end => {
                        let _ = hist.record(began.elapsed().as_micros() as u64);
                    }
                    Ok(()) => {}
                    Err(kind) => {
                        if began >= warmup_end {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        // Kinds include the warm-up's: a run that fails at once says why.
                        *kinds
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(kind)
                            .or_insert(0) += 1;
                        // A client that keeps failing backs off, as a real one does: a
                        // service that is down or shedding load is not hammered by this
                        // client at full speed (once counted as tens of millions of errors).
                        failing += 1;
                        let pause =
                            backoff(failing).min(end.saturating_duration_since(Instant::now()));
                        tokio::time::sleep(pause).await;
                    }
                }
            }
            hist
        })
    });
    let mut hist = histogram();
    for h in futures::future::join_all(workers).await {
        hist.add(h.context("a load worker failed")?)?;
    }
    let kinds_seen = std::mem::take(&mut *kinds.lock().unwrap_or_else(|e| e.into_inner()));
    let measured = Instant::now()
        .min(end)
        .saturating_duration_since(warmup_end);
    Ok(Outcome {
        hist,
        errors: errors.load(Ordering::Relaxed),
        kinds: kinds_seen,
        seconds: measured.as_secs_f64(),
        exhausted: exhausted.load(Ordering::Relaxed),
    })
}

/// How long a client waits after its `failing`-th failure in a row: 5 ms, doubling, at most
/// 1 s (the `Retry-After` the services give with a 503).
fn backoff(failing: u32) -> Duration {
    Duration::from_millis(5u64 << failing.saturating_sub(1).min(8)).min(Duration::from_secs(1))
}

fn report(name: &str, args: &Args, o: &Outcome) {
    let ms = |q: f64| o.hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "workflow={name} connections={} duration={:.1}s requests={} errors={} throughput={:.0} req/s p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        args.connections,
        o.seconds,
        o.hist.len(),
        o.errors,
        o.throughput(),
        ms(0.50),
        ms(0.90),
        ms(0.99),
        o.hist.max() as f64 / 1000.0,
    );
    if !o.kinds.is_empty() {
        let mut kinds: Vec<(&String, &u64)> = o.kinds.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1));
        let listed: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!("errors by kind (warm-up included): {}", listed.join(", "));
    }
    if o.exhausted {
        println!(
            "note: every planned slot was booked or refused ({} doctors x {} working days x {} a day); the run stopped early",
            args.connections,
            working_days(args.clinic_timezone, args.booking_horizon_days).len(),
            args.daily_cap
        );
    }
}

/// A minimal axum handler on an ephemeral port: the machine's ceiling for one HTTP request
/// and a JSON answer of a patient's size, with no database, token or middleware.
async fn serve_ceiling() -> anyhow::Result<std::net::SocketAddr> {
    const PATIENT: &str = r#"{"patient_id":1,"name":"Load Fixture","email":"load@example.org","phone":"7000000000","dob":"1980-01-01","active":true,"version":1,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}"#;
    let app = axum::Router::new().route(
        "/v1/patients/{id}",
        axum::routing::get(|| async {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                PATIENT,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// One request of the scale workflows, over what `hms-load seed` made.
async fn scale_request(client: &HmsClient, fx: &Fixtures, workflow: Workflow, n: u64) -> Done {
    let Some(scale) = &fx.scale else {
        return Err("no seeded records (run hms-load seed first)".into());
    };
    // Spread over the seeded records (a multiplicative step, not neighbours).
    let i = (n.wrapping_mul(2_654_435_761) % scale.patients as u64) as usize;
    match workflow {
        Workflow::SearchPhone => done(
            client
                .list_patients(&PatientQuery {
                    phone: Some(seed::phone(i)[4..].to_string()),
                    limit: Some(20),
                    ..Default::default()
                })
                .await,
        ),
        _ => {
            let doctor = scale.doctors[i % scale.doctors.len()];
            let Some(&from) = fx.day_starts.get(i % fx.day_starts.len().max(1)) else {
                return Err("no seeded days".into());
            };
            done(
                client
                    .list_appointments(&hms_client::models::AppointmentQuery {
                        doctor_id: Some(doctor),
                        from: Some(from),
                        to: Some(from + chrono::Duration::days(1)),
                        limit: Some(20),
                        ..Default::default()
                    })
                    .await,
            )
        }
    }
}

/// The search of `search-patients` and the mixed run: a page of the fixture patients.
fn fixture_search() -> PatientQuery {
    PatientQuery {
        name: Some("load fixture".into()),
        limit: Some(20),
        ..Default::default()
    }
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

/// Weekdays (the default working week) from the day after tomorrow up to `horizon_days`
/// ahead less a day (a booking beyond the horizon is refused), clinic-local.
/// A latency histogram in microseconds, 1 µs to 60 s.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn working_days(tz: chrono_tz::Tz, horizon_days: i64) -> Vec<chrono::NaiveDate> {
    use chrono::Datelike;
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    let last = today + chrono::Duration::days(horizon_days - 1);
    let mut d = today + chrono::Duration::days(2);
    let mut out = Vec::new();
    while d <= last {
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
    /// A plan over the working days of the horizon, with a fresh doctor and patient for each
    /// of `args.connections` clients (made over HTTP; an error names which one failed).
    async fn with_fixtures(client: &HmsClient, args: &Args, seed: u32) -> anyhow::Result<Self> {
        let mut plan = BookingPlan {
            tz: Some(args.clinic_timezone),
            days: working_days(args.clinic_timezone, args.booking_horizon_days),
            per_day: args.daily_cap.min(18),
            ..Default::default()
        };
        for i in 0..args.connections as u32 {
            plan.patients.push(
                client
                    .create_patient(&fixture_patient(seed, 500 + i))
                    .await
                    .with_context(|| format!("creating booking patient {i}"))?
                    .patient_id,
            );
            plan.doctors.push(
                client
                    .create_doctor(&fixture_doctor())
                    .await
                    .with_context(|| format!("creating booking doctor {i}"))?
                    .doctor_id,
            );
        }
        Ok(plan)
    }

    /// Booking n of the run: doctor n % D at its slot n / D.
    fn booking(&self, n: usize) -> Option<hms_client::models::NewAppointment> {
        let d = self.doctors.len();
        self.appointment(n % d, n / d)
    }

    /// The plan's `doctor`-th doctor and patient at their k-th slot.
    fn appointment(&self, doctor: usize, k: usize) -> Option<hms_client::models::NewAppointment> {
        Some(hms_client::models::NewAppointment {
            patient_id: self.patients[doctor],
            doctor_id: self.doctors[doctor],
            department: "Benchmarking".into(),
            slot_start: self.slot(k)?,
            slot_end: None,
        })
    }

    /// The k-th planned slot of a doctor (the same for every doctor).
    fn slot(&self, k: usize) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::TimeZone;
        let day = *self.days.get(k / self.per_day)?;
        let minutes = 9 * 60 + 30 * (k % self.per_day) as u32;
        let local = day.and_hms_opt(minutes / 60, minutes % 60, 0)?;
        Some(
            self.tz?
                .from_local_datetime(&local)
                .earliest()?
                .with_timezone(&chrono::Utc),
        )
    }
}

/// One client of the mixed run: its own doctor and patient (the plan's `w`-th), the next of
/// their planned slots, and the appointments it holds (id, times rescheduled).
#[derive(Default)]
struct Desk {
    next_slot: usize,
    held: Vec<(i64, i64)>,
}

impl Desk {
    /// Request `n` of the mix; `None` when its doctor's planned slots are all used.
    async fn step(&mut self, client: &HmsClient, fx: &Fixtures, w: usize, n: u64) -> Option<Done> {
        let plan = &fx.plan;
        let doctor = plan.doctors[w];
        let outcome = match n % 20 {
            0..=5 => done(client.list_patients(&fixture_search()).await),
            6..=9 => done(
                client
                    .doctor_availability(doctor, *plan.days.first()?)
                    .await,
            ),
            10..=13 => done(
                client
                    .get_patient(fx.patients[n as usize % fx.patients.len()])
                    .await,
            ),
            17 if self.held.last().is_some_and(|(_, moved)| *moved < 2) => {
                let start = plan.slot(self.next_slot)?;
                self.next_slot += 1;
                let (id, moved) = self.held.last_mut()?;
                let to = hms_client::models::Reschedule {
                    new_slot_start: start,
                    new_slot_end: None,
                };
                *moved += 1;
                done(client.reschedule_appointment(*id, &to, None).await)
            }
            18 if !self.held.is_empty() => {
                let (id, _) = self.held.pop()?;
                done(client.transition_appointment(id, "cancel", None).await)
            }
            19 => done(
                client
                    .list_appointments(&hms_client::models::AppointmentQuery {
                        doctor_id: Some(doctor),
                        limit: Some(20),
                        ..Default::default()
                    })
                    .await,
            ),
            // Bookings (and a reschedule or cancellation with nothing held yet).
            _ => {
                let b = plan.appointment(w, self.next_slot)?;
                self.next_slot += 1;
                let booked = client.book_appointment(&b, None).await;
                if let Ok(a) = &booked {
                    self.held.push((a.appointment_id, 0));
                }
                done(booked)
            }
        };
        Some(outcome)
    }
}

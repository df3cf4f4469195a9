//! The commands: argument parsing and what each does with the typed client.

use crate::connect::Target;
use crate::desk;
use crate::exit;
use crate::output::{Col, Format, Kind, Printer};
use crate::Failure;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use clap::{Args, Parser, Subcommand};
use hms_client::models::*;
use hms_client::{HmsClient, Money, Service};
use serde::Serialize;
use serde_json::Value;
use std::io::IsTerminal;
use std::path::PathBuf;

const EXIT_CODES: &str = "Exit codes:
  0  success
  2  usage error (bad or missing arguments, or input the service refused as invalid)
  3  not found
  4  conflict (slot taken, patient busy, invalid transition, stale version)
  5  business rule rejected (lead time, daily cap, overpayment, …)
  6  service unavailable (down, busy, or a dependency of it)
  7  not authenticated or not allowed
  8  partial success
  1  anything else
Errors print the code, the message and the correlation id on stderr.";

#[derive(Parser)]
#[command(name = "hmsctl", version, about = "HMS front-desk and scripting tool", after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Host of the services on their default ports.
    #[arg(long, global = true, env = "HMS_HOST")]
    host: Option<String>,
    /// Port of the patient service; the others follow in order.
    #[arg(long, global = true, env = "HMS_BASE_PORT")]
    base_port: Option<u16>,
    /// One base URL behind a path-routing ingress (`<url>/patient/…`).
    #[arg(long, global = true, env = "HMS_URL")]
    url: Option<String>,
    /// Bearer token (else HMS_TOKEN, the profile, or <data-dir>/admin.token).
    #[arg(long, global = true, env = "HMS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Profile in ~/.config/hmsctl/config.toml.
    #[arg(long, global = true, env = "HMS_PROFILE", default_value = "default")]
    profile: String,
    /// The embedded default's data directory (for its admin token).
    #[arg(long, global = true, default_value = "hms-data")]
    data_dir: PathBuf,
    /// Output for scripts.
    #[arg(long, short, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Print only ids.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Time zone to show (and read) times in [default: the clinic's, as the services say].
    #[arg(long, global = true)]
    tz: Option<chrono_tz::Tz>,
    /// Currency of amounts shown.
    #[arg(long, global = true, default_value = "INR")]
    currency: String,
    /// Never prompt (missing arguments are an error); implied when stdin is not a terminal.
    #[arg(long, global = true)]
    no_input: bool,
    /// Do destructive actions without asking.
    #[arg(long, short, global = true)]
    yes: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Patients.
    #[command(subcommand)]
    Patient(PatientCmd),
    /// Doctors and their availability.
    #[command(subcommand)]
    Doctor(DoctorCmd),
    /// Appointments.
    #[command(subcommand)]
    Appointment(AppointmentCmd),
    /// Prescriptions.
    #[command(subcommand)]
    Rx(RxCmd),
    /// The formulary (medications and prices).
    #[command(subcommand)]
    Formulary(FormularyCmd),
    /// Bills.
    #[command(subcommand)]
    Bill(BillCmd),
    /// Take a payment. At a terminal the bill's balance is shown and confirmed; a payment of
    /// the same bill minutes ago is pointed out. Prints the Idempotency-Key it used, so a script
    /// can retry safely: a retry with `--key` is answered "already taken — not charged again".
    #[command(after_help = "Example:\n  hmsctl pay --bill 12 --amount 525.00 --method upi")]
    Pay {
        /// The bill to pay.
        #[arg(long)]
        bill: i64,
        /// The amount, e.g. 525.00.
        #[arg(long)]
        amount: Money,
        /// CASH, CARD or UPI (any case). Required without a terminal; asked for at one.
        #[arg(long)]
        method: Option<String>,
        /// Reuse a key to retry a payment whose outcome you did not see.
        #[arg(long)]
        key: Option<String>,
    },
    /// Refund (part of) a payment: give the payment, or `--bill` to refund from its payments.
    Refund {
        /// The payment to refund from.
        payment: Option<i64>,
        /// Refund from this bill's payments (the latest that has enough left; asked at a
        /// terminal when several do).
        #[arg(long, conflicts_with = "payment")]
        bill: Option<i64>,
        /// The amount to refund.
        #[arg(long)]
        amount: Money,
        /// Why (kept with the refund).
        #[arg(long, default_value = "")]
        reason: String,
        /// Reuse a key to retry a refund whose outcome you did not see.
        #[arg(long)]
        key: Option<String>,
    },
    /// Payments: those of a bill, or one.
    #[command(subcommand)]
    Payment(PaymentCmd),
    /// Appointment reminders and their state.
    #[command(subcommand)]
    Reminders(RemindersCmd),
    /// Messages sent to patients.
    #[command(subcommand)]
    Notifications(NotificationsCmd),
    /// Up/down, version, readiness and latency of all seven services (or those named).
    Status { services: Vec<Service> },
    /// Follow new notifications as they are recorded (like `tail -f`); Ctrl-C stops.
    Alerts {
        /// Poll interval in seconds.
        #[arg(long, default_value_t = 2)]
        every: u64,
        /// Stop after this many alerts (scripts, tests).
        #[arg(long)]
        max: Option<usize>,
        /// Show alerts recorded in the last N minutes first.
        #[arg(long, default_value_t = 0)]
        backlog_minutes: i64,
    },
    /// Shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Load the legacy CSVs (seed-data format) from a directory, keeping their ids (admin).
    Import {
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
    },
}

#[derive(Subcommand)]
enum PatientCmd {
    /// Register a patient.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        phone: String,
        /// Date of birth, YYYY-MM-DD.
        #[arg(long)]
        dob: NaiveDate,
        #[arg(long)]
        email: Option<String>,
    },
    /// List patients (filters optional).
    List {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        active: Option<bool>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Find patients by name, phone or e-mail (any part, any case).
    Search {
        term: String,
    },
    Show {
        id: i64,
    },
    /// Change details; `--if-match` refuses if the record changed since that version.
    Update {
        id: i64,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        dob: Option<NaiveDate>,
        #[arg(long)]
        if_match: Option<i64>,
    },
    /// Deactivate (asks first unless --yes).
    Deactivate {
        id: i64,
    },
    /// Who read or changed the record (admin).
    Audit {
        id: i64,
    },
}

#[derive(Subcommand)]
enum DoctorCmd {
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        department: String,
        #[arg(long)]
        specialization: String,
        /// Consultation fee [default: the clinic's default, 500.00 unless configured]
        #[arg(long)]
        fee: Option<Money>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        phone: Option<String>,
    },
    List {
        #[arg(long)]
        department: Option<String>,
        #[arg(long)]
        specialization: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    Show {
        id: i64,
    },
    Update {
        id: i64,
        #[arg(long)]
        department: Option<String>,
        #[arg(long)]
        specialization: Option<String>,
        #[arg(long)]
        fee: Option<Money>,
        #[arg(long)]
        active: Option<bool>,
    },
    /// Free slots of a doctor (ID) or of a department (--department) on a date.
    Availability {
        id: Option<i64>,
        #[arg(long)]
        department: Option<String>,
        #[arg(long)]
        date: NaiveDate,
    },
}

#[derive(Subcommand)]
enum AppointmentCmd {
    /// Book a slot; `--at` is local time (or --tz), e.g. "2026-12-01 09:30". At a terminal,
    /// whatever is missing is asked for (patient search, department, doctor, date, free slots).
    Book {
        #[arg(long)]
        patient: Option<i64>,
        #[arg(long)]
        doctor: Option<i64>,
        #[arg(long)]
        department: Option<String>,
        #[arg(long)]
        at: Option<String>,
        /// Idempotency key, to retry a booking safely.
        #[arg(long)]
        key: Option<String>,
    },
    Reschedule {
        id: i64,
        #[arg(long)]
        to: String,
    },
    /// Cancel (asks first unless --yes).
    Cancel {
        id: i64,
    },
    NoShow {
        id: i64,
    },
    Complete {
        id: i64,
    },
    /// List appointments; with `--date`, the day sheet: that clinic day in slot order, with
    /// patient and doctor names.
    #[command(
        after_help = "Examples:\n  hmsctl appointment list --date today\n  hmsctl appointment list --date 2026-12-01 --doctor 3"
    )]
    List {
        /// A clinic day: YYYY-MM-DD, today or tomorrow.
        #[arg(long)]
        date: Option<String>,
        /// Of this patient.
        #[arg(long)]
        patient: Option<i64>,
        /// Of this doctor.
        #[arg(long)]
        doctor: Option<i64>,
        /// Of this department.
        #[arg(long)]
        department: Option<String>,
        /// SCHEDULED, COMPLETED, CANCELLED or NO_SHOW.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// One appointment.
    Show {
        /// Appointment id.
        id: i64,
    },
}

#[derive(Subcommand)]
enum RxCmd {
    /// Write a prescription at an appointment.
    #[command(
        after_help = "Example:\n  hmsctl rx add --appointment 41 --patient 11 --doctor 3 --medication Paracetamol --dosage 1-0-1 --days 5"
    )]
    Add {
        /// The appointment it is written at.
        #[arg(long)]
        appointment: i64,
        /// The patient (the appointment's).
        #[arg(long)]
        patient: i64,
        /// The prescribing doctor: required unless your token is a doctor's (then it is you).
        #[arg(long)]
        doctor: Option<i64>,
        /// A formulary medication, by name (any case) or by its id in `formulary list`.
        #[arg(long)]
        medication: String,
        /// morning-noon-night, e.g. 1-0-1
        #[arg(long)]
        dosage: String,
        #[arg(long)]
        days: i64,
    },
    List {
        #[arg(long)]
        appointment: Option<i64>,
        #[arg(long)]
        patient: Option<i64>,
    },
    Show {
        id: i64,
    },
}

#[derive(Subcommand)]
enum FormularyCmd {
    List,
}

#[derive(Subcommand)]
enum BillCmd {
    /// List bills (filters optional).
    List {
        /// Of this patient.
        #[arg(long)]
        patient: Option<i64>,
        /// Of this appointment.
        #[arg(long)]
        appointment: Option<i64>,
        /// OPEN, PAID, PARTIALLY_REFUNDED, REFUNDED or VOID.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// One bill: its lines and its totals (credits, amount due, paid, refunded, balance).
    Show {
        /// Bill id.
        id: i64,
    },
    /// VOID an unpaid bill (asks first unless --yes).
    Void { id: i64 },
    /// Record a credit note.
    Adjust {
        id: i64,
        #[arg(long)]
        amount: Money,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum PaymentCmd {
    /// The payments of a bill.
    List {
        /// The bill.
        #[arg(long)]
        bill: i64,
        #[command(flatten)]
        page: PageArgs,
    },
    /// One payment.
    Show {
        /// Payment id.
        id: i64,
    },
}

#[derive(Subcommand)]
enum RemindersCmd {
    /// Reminders (scheduled, sent, cancelled), optionally of one appointment.
    List {
        /// Of this appointment.
        #[arg(long)]
        appointment: Option<i64>,
        /// scheduled, sent or cancelled.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
}

/// How many rows a list shows.
#[derive(Args, Debug, Clone, Copy)]
struct PageArgs {
    /// Rows per page, 1–500.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Every row, following the pages.
    #[arg(long)]
    all: bool,
}

impl PageArgs {
    fn paging(self) -> Result<desk::Paging, Failure> {
        desk::Paging::new(self.limit, self.all)
    }
}

#[derive(Subcommand)]
enum NotificationsCmd {
    List {
        #[arg(long)]
        patient: Option<i64>,
        #[arg(long)]
        event_type: Option<String>,
        #[arg(long)]
        since: Option<String>,
    },
}

const PATIENT: &[Col] = &[
    ("ID", "patient_id", Kind::Text),
    ("Name", "name", Kind::Text),
    ("Phone", "phone", Kind::Text),
    ("E-mail", "email", Kind::Text),
    ("Born", "dob", Kind::Text),
    ("Active", "active", Kind::Text),
];
const DOCTOR: &[Col] = &[
    ("ID", "doctor_id", Kind::Text),
    ("Name", "name", Kind::Text),
    ("Department", "department", Kind::Text),
    ("Specialization", "specialization", Kind::Text),
    ("Fee", "consultation_fee", Kind::Money),
    ("Active", "active", Kind::Text),
];
const APPOINTMENT: &[Col] = &[
    ("ID", "appointment_id", Kind::Text),
    ("Patient", "patient_id", Kind::Text),
    ("Doctor", "doctor_id", Kind::Text),
    ("Department", "department", Kind::Text),
    ("Starts", "slot_start", Kind::Time),
    ("Status", "status", Kind::Text),
    ("Fee", "fee_decision", Kind::Text),
    ("Version", "version", Kind::Text),
];
const RX: &[Col] = &[
    ("ID", "prescription_id", Kind::Text),
    ("Appointment", "appointment_id", Kind::Text),
    ("Patient", "patient_id", Kind::Text),
    ("Medication", "medication", Kind::Text),
    ("Dosage", "dosage", Kind::Text),
    ("Days", "days", Kind::Text),
    ("Quantity", "quantity", Kind::Text),
];
const MEDICATION: &[Col] = &[
    ("ID", "medication_id", Kind::Text),
    ("Name", "name", Kind::Text),
    ("Form", "form", Kind::Text),
    ("Unit price", "unit_price", Kind::Money),
    ("Active", "active", Kind::Text),
];
const BILL: &[Col] = &[
    ("ID", "bill_id", Kind::Text),
    ("Patient", "patient_id", Kind::Text),
    ("Appointment", "appointment_id", Kind::Text),
    ("Purpose", "purpose", Kind::Text),
    ("Status", "status", Kind::Text),
    ("Total", "total", Kind::Money),
    ("Paid", "paid", Kind::Money),
    ("Balance", "balance", Kind::Money),
];
const REFUND: &[Col] = &[
    ("ID", "refund_id", Kind::Text),
    ("Payment", "payment_id", Kind::Text),
    ("Amount", "amount", Kind::Money),
    ("Reason", "reason", Kind::Text),
];
const NOTE: &[Col] = &[
    ("ID", "notification_id", Kind::Text),
    ("When", "created_at", Kind::Time),
    ("Event", "event_type", Kind::Text),
    ("Channel", "channel", Kind::Text),
    ("To", "recipient", Kind::Text),
    ("Status", "status", Kind::Text),
    ("Message", "message", Kind::Text),
];
const SLOT: &[Col] = &[
    ("Starts", "slot_start", Kind::Time),
    ("Ends", "slot_end", Kind::Time),
];

fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn jsons<T: Serialize>(v: &[T]) -> Vec<Value> {
    v.iter().map(json).collect()
}

/// A local time ("2026-12-01 09:30", in --tz or this machine's zone) or RFC 3339.
fn instant(s: &str, tz: Option<chrono_tz::Tz>) -> Result<DateTime<Utc>, Failure> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s.trim(), f).ok())
        .ok_or_else(|| Failure::usage(format!("'{s}' is not a time like \"2026-12-01 09:30\"")))?;
    let local = match tz {
        Some(tz) => tz
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc)),
        None => chrono::Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc)),
    };
    local.ok_or_else(|| Failure::usage(format!("{s} does not exist in that time zone")))
}

/// Asks before a destructive action; without a terminal (or with --no-input) refuses unless --yes.
fn confirm(g: &Global, what: &str) -> Result<(), Failure> {
    if g.yes {
        return Ok(());
    }
    if g.no_input || !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "{what}: add --yes to confirm (no terminal to ask on)"
        )));
    }
    eprint!("{what}? [y/N] ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failure::usage(e.to_string()))?;
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Failure {
            code: exit::OTHER,
            message: "not confirmed; nothing was changed".into(),
        })
    }
}

pub async fn run(cli: Cli) -> Result<u8, Failure> {
    let g = cli.global;
    let target = Target {
        url: g.url.clone(),
        host: g.host.clone(),
        base_port: g.base_port,
        token: g.token.clone(),
        profile: g.profile.clone(),
        data_dir: g.data_dir.clone(),
    };
    let c: HmsClient = target.client().map_err(Failure::usage)?;
    let result = dispatch(cli.command, g, &c).await;
    match result {
        // A 401 with no token anywhere: say where hmsctl looked, not only what the service said.
        Err(f) if f.code == exit::AUTH && !target.has_token() => Err(Failure {
            code: exit::AUTH,
            message: format!(
                "no token found (looked at {}): {}",
                target.token_places(),
                f.message
            ),
        }),
        other => other,
    }
}

async fn dispatch(command: Command, mut g: Global, c: &HmsClient) -> Result<u8, Failure> {
    let c = c.clone();
    // Times are the clinic's, labelled, unless --tz says otherwise.
    let needs_zone = !matches!(
        command,
        Command::Completions { .. } | Command::Status { .. } | Command::Import { .. }
    );
    if g.tz.is_none() && needs_zone {
        g.tz = Some(desk::clinic_zone(&c).await);
    }
    let out = Printer {
        format: g.output,
        quiet: g.quiet,
        tz: g.tz,
        currency: g.currency.clone(),
    };
    match command {
        Command::Patient(cmd) => patient(&g, &c, &out, cmd).await?,
        Command::Doctor(cmd) => doctor(&c, &out, cmd).await?,
        Command::Appointment(cmd) => appointment(&g, &c, &out, cmd).await?,
        Command::Rx(cmd) => rx(&c, &out, cmd).await?,
        Command::Formulary(FormularyCmd::List) => out.list(
            &jsons(&c.formulary().await?.items),
            MEDICATION,
            "medication_id",
        ),
        Command::Bill(cmd) => bill(&g, &c, &out, cmd).await?,
        Command::Pay {
            bill,
            amount,
            method,
            key,
        } => {
            let asks = desk::Asking {
                no_input: g.no_input,
                yes: g.yes,
            };
            let charge = desk::Charge {
                bill_id: bill,
                amount,
                method,
                key,
            };
            desk::pay(&c, &out, asks, charge).await?
        }
        Command::Refund {
            payment,
            bill,
            amount,
            reason,
            key,
        } => {
            let payment = match (payment, bill) {
                (Some(p), _) => p,
                (None, Some(b)) => desk::refundable(&c, &out, g.no_input, b, amount).await?,
                (None, None) => return Err(Failure::usage(
                    "give the payment to refund from, or --bill to refund from a bill's payments",
                )),
            };
            let key = key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            eprintln!("Idempotency-Key: {key}");
            let r = c
                .refund(payment, &NewRefund { amount, reason }, &key)
                .await?;
            out.record(&json(&r), REFUND, "refund_id");
        }
        Command::Payment(PaymentCmd::List { bill, page }) => {
            let c = &c;
            let rows = desk::rows(page.paging()?, |_, _| async move {
                c.payments_of_bill(bill).await
            })
            .await?;
            out.list(&jsons(&rows), desk::PAYMENT, "payment_id");
        }
        Command::Payment(PaymentCmd::Show { id }) => out.record(
            &json(&c.get_payment(id).await?),
            desk::PAYMENT,
            "payment_id",
        ),
        Command::Reminders(RemindersCmd::List {
            appointment,
            status,
            page,
        }) => {
            let c = &c;
            let rows = desk::rows(page.paging()?, |limit, cursor| {
                let q = ReminderQuery {
                    appointment_id: appointment,
                    status: status.clone(),
                    limit: Some(limit),
                    cursor,
                };
                async move { c.list_reminders(&q).await }
            })
            .await?;
            let cols: &[Col] = &[
                ("ID", "reminder_id", Kind::Text),
                ("Appointment", "appointment_id", Kind::Text),
                ("Starts", "slot_start", Kind::Time),
                ("Due", "due_at", Kind::Time),
                ("Status", "status", Kind::Text),
            ];
            out.list(&jsons(&rows), cols, "reminder_id");
        }
        Command::Notifications(NotificationsCmd::List {
            patient,
            event_type,
            since,
        }) => {
            let since = since.map(|s| instant(&s, g.tz)).transpose()?;
            let q = NotificationQuery {
                patient_id: patient,
                event_type,
                since,
                limit: Some(500),
                ..Default::default()
            };
            out.list(
                &jsons(&c.list_notifications(&q).await?.items),
                NOTE,
                "notification_id",
            );
        }
        Command::Status { services } => return Ok(status(&c, &out, services).await),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            // Into a buffer first: a reader that goes away (`| head`) ends quietly.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "hmsctl", &mut script);
            crate::output::emit!("{}", String::from_utf8_lossy(&script).trim_end());
        }
        Command::Alerts {
            every,
            max,
            backlog_minutes,
        } => alerts(&c, &out, every, max, backlog_minutes).await?,
        Command::Import {
            dir,
            dry_run,
            report,
            default_fee,
            legacy_tz,
        } => {
            let legacy_tz = match legacy_tz {
                Some(tz) => tz,
                None => std::env::var("HMS_CLINIC_TIMEZONE")
                    .ok()
                    .and_then(|z| z.parse().ok())
                    .unwrap_or(chrono_tz::Asia::Kolkata),
            };
            let opts = crate::import::Options {
                dry_run,
                report: report.as_deref(),
                default_fee,
                legacy_tz,
            };
            return crate::import::run(&c, &dir, opts, &out).await;
        }
    }
    Ok(exit::SUCCESS)
}

async fn patient(g: &Global, c: &HmsClient, out: &Printer, cmd: PatientCmd) -> Result<(), Failure> {
    match cmd {
        PatientCmd::Add {
            name,
            phone,
            dob,
            email,
        } => {
            let p = c
                .create_patient(&NewPatient {
                    patient_id: None,
                    name,
                    email,
                    phone,
                    dob,
                    created_at: None,
                })
                .await?;
            out.record(&json(&p), PATIENT, "patient_id");
        }
        PatientCmd::List {
            name,
            phone,
            email,
            active,
            page,
        } => {
            let q = PatientQuery {
                name,
                phone,
                email,
                active,
                ..Default::default()
            };
            let rows = desk::rows(page.paging()?, |limit, cursor| {
                let q = PatientQuery {
                    limit: Some(limit),
                    cursor,
                    ..q.clone()
                };
                async move { c.list_patients(&q).await }
            })
            .await?;
            out.list(&jsons(&rows), PATIENT, "patient_id");
        }
        PatientCmd::Search { term } => {
            let t = term.trim();
            let q = if t.contains('@') {
                PatientQuery {
                    email: Some(t.into()),
                    ..Default::default()
                }
            } else if t
                .chars()
                .all(|ch| ch.is_ascii_digit() || ch == '+' || ch == ' ' || ch == '-')
            {
                PatientQuery {
                    phone: Some(t.into()),
                    ..Default::default()
                }
            } else {
                PatientQuery {
                    name: Some(t.into()),
                    ..Default::default()
                }
            };
            out.list(
                &jsons(&c.list_patients(&q).await?.items),
                PATIENT,
                "patient_id",
            );
        }
        PatientCmd::Show { id } => {
            out.record(&json(&c.get_patient(id).await?), PATIENT, "patient_id")
        }
        PatientCmd::Update {
            id,
            name,
            phone,
            email,
            dob,
            if_match,
        } => {
            let u = PatientUpdate {
                name,
                email,
                phone,
                dob,
            };
            out.record(
                &json(&c.update_patient(id, &u, if_match).await?),
                PATIENT,
                "patient_id",
            );
        }
        PatientCmd::Deactivate { id } => {
            confirm(g, &format!("Deactivate patient {id}"))?;
            out.record(
                &json(&c.deactivate_patient(id).await?),
                PATIENT,
                "patient_id",
            );
        }
        PatientCmd::Audit { id } => {
            let cols: &[Col] = &[
                ("When", "at", Kind::Time),
                ("Who", "subject", Kind::Text),
                ("Role", "role", Kind::Text),
                ("Action", "action", Kind::Text),
                ("Detail", "detail", Kind::Text),
                ("Correlation", "correlation_id", Kind::Text),
            ];
            out.list(
                &jsons(&c.patient_audit(id, Some(500), None).await?.items),
                cols,
                "audit_id",
            );
        }
    }
    Ok(())
}

async fn doctor(c: &HmsClient, out: &Printer, cmd: DoctorCmd) -> Result<(), Failure> {
    match cmd {
        DoctorCmd::Add {
            name,
            department,
            specialization,
            fee,
            email,
            phone,
        } => {
            let d = NewDoctor {
                doctor_id: None,
                name,
                email,
                phone,
                department,
                specialization,
                consultation_fee: fee,
                working_hours: None,
                created_at: None,
            };
            out.record(&json(&c.create_doctor(&d).await?), DOCTOR, "doctor_id");
        }
        DoctorCmd::List {
            department,
            specialization,
            limit,
        } => {
            let q = DoctorQuery {
                department,
                specialization,
                limit: Some(limit),
                ..Default::default()
            };
            out.list(
                &jsons(&c.list_doctors(&q).await?.items),
                DOCTOR,
                "doctor_id",
            );
        }
        DoctorCmd::Show { id } => out.record(&json(&c.get_doctor(id).await?), DOCTOR, "doctor_id"),
        DoctorCmd::Update {
            id,
            department,
            specialization,
            fee,
            active,
        } => {
            let u = DoctorUpdate {
                department,
                specialization,
                consultation_fee: fee,
                active,
                ..Default::default()
            };
            out.record(&json(&c.update_doctor(id, &u).await?), DOCTOR, "doctor_id");
        }
        DoctorCmd::Availability {
            id,
            department,
            date,
        } => match (id, department) {
            (Some(id), _) => {
                let a = c.doctor_availability(id, date).await?;
                if out.format == Format::Json {
                    out.record(&json(&a), SLOT, "doctor_id");
                } else if a.slots.is_empty() && !out.quiet && out.format == Format::Table {
                    // Why there is nothing, in words.
                    let why = match a.unavailable_reason.as_deref() {
                        Some("on_leave") => "on leave",
                        Some("not_working") => "not working that day",
                        Some("inactive") => "no longer active",
                        Some(other) => other,
                        None => "every slot is taken",
                    };
                    crate::output::emit!("No free slots: {} is {why} on {date}.", a.name);
                } else {
                    out.list(&jsons(&a.slots), SLOT, "slot_start");
                }
            }
            (None, Some(dep)) => {
                let a = c.department_availability(&dep, date).await?;
                if out.format == Format::Json {
                    out.record(&json(&a), SLOT, "department");
                } else {
                    let rows: Vec<Value> = a.doctors.iter().flat_map(|d| {
                        d.slots.iter().map(move |s| serde_json::json!({"doctor_id": d.doctor_id, "name": d.name, "slot_start": s.slot_start, "slot_end": s.slot_end}))
                    }).collect();
                    out.list(
                        &rows,
                        &[
                            ("Doctor", "doctor_id", Kind::Text),
                            ("Name", "name", Kind::Text),
                            ("Starts", "slot_start", Kind::Time),
                        ],
                        "slot_start",
                    );
                }
            }
            (None, None) => return Err(Failure::usage("give a doctor id or --department")),
        },
    }
    Ok(())
}

async fn appointment(
    g: &Global,
    c: &HmsClient,
    out: &Printer,
    cmd: AppointmentCmd,
) -> Result<(), Failure> {
    let show = |a: &Appointment| out.record(&json(a), APPOINTMENT, "appointment_id");
    match cmd {
        AppointmentCmd::Book {
            patient,
            doctor,
            department,
            at,
            key,
        } => {
            let new = match (patient, doctor, department, at) {
                (Some(p), Some(d), Some(dep), Some(at)) => NewAppointment {
                    patient_id: p,
                    doctor_id: d,
                    department: dep,
                    slot_start: instant(&at, g.tz)?,
                    slot_end: None,
                },
                (p, d, dep, at) => {
                    if g.no_input || !std::io::stdin().is_terminal() {
                        let mut missing = Vec::new();
                        if p.is_none() {
                            missing.push("--patient")
                        }
                        if d.is_none() {
                            missing.push("--doctor")
                        }
                        if dep.is_none() {
                            missing.push("--department")
                        }
                        if at.is_none() {
                            missing.push("--at")
                        }
                        return Err(Failure::usage(format!(
                            "missing {} (no terminal to ask on)",
                            missing.join(", ")
                        )));
                    }
                    let at = at.map(|a| instant(&a, g.tz)).transpose()?;
                    crate::interactive::booking(c, g.tz, p, d, dep, at).await?
                }
            };
            show(&c.book_appointment(&new, key.as_deref()).await?);
        }
        AppointmentCmd::Reschedule { id, to } => show(
            &c.reschedule_appointment(
                id,
                &Reschedule {
                    new_slot_start: instant(&to, g.tz)?,
                    new_slot_end: None,
                },
                None,
            )
            .await?,
        ),
        AppointmentCmd::Cancel { id } => {
            // Say what it will cost: within 2 hours of the start, half the fee is billed.
            let a = c.get_appointment(id).await?;
            let fee = if a.slot_start - Utc::now() <= chrono::Duration::hours(2) {
                format!(
                    " — it starts within 2 hours, so a fee of {} (half the consultation fee, plus tax) will be billed",
                    out.amount(a.consultation_fee.checked_percent(50).unwrap_or(a.consultation_fee))
                )
            } else {
                " — no fee".to_string()
            };
            confirm(g, &format!("Cancel appointment {id}{fee}"))?;
            show(&c.transition_appointment(id, "cancel", None).await?)
        }
        AppointmentCmd::NoShow { id } => {
            show(&c.transition_appointment(id, "no-show", None).await?)
        }
        AppointmentCmd::Complete { id } => {
            show(&c.transition_appointment(id, "complete", None).await?)
        }
        AppointmentCmd::List {
            date,
            patient,
            doctor,
            department,
            status,
            page,
        } => {
            let tz = g.tz.unwrap_or(chrono_tz::Asia::Kolkata);
            if let Some(date) = date {
                let date = desk::day(&date, tz)?;
                return desk::day_sheet(c, out, tz, date, doctor, department, status).await;
            }
            let q = AppointmentQuery {
                patient_id: patient,
                doctor_id: doctor,
                department,
                status,
                ..Default::default()
            };
            let rows = desk::rows(page.paging()?, |limit, cursor| {
                let q = AppointmentQuery {
                    limit: Some(limit),
                    cursor,
                    ..q.clone()
                };
                async move { c.list_appointments(&q).await }
            })
            .await?;
            let mut shown = jsons(&rows);
            if out.format == Format::Table && !out.quiet {
                desk::with_names(c, &mut shown).await?;
            }
            out.list(&shown, desk::DAY_SHEET, "appointment_id");
        }
        AppointmentCmd::Show { id } => show(&c.get_appointment(id).await?),
    }
    Ok(())
}

async fn rx(c: &HmsClient, out: &Printer, cmd: RxCmd) -> Result<(), Failure> {
    match cmd {
        RxCmd::Add {
            appointment,
            patient,
            doctor,
            medication,
            dosage,
            days,
        } => {
            // An id from `formulary list` is taken as well as a name.
            let medication = match medication.trim().parse::<i64>() {
                Ok(id) => c
                    .formulary()
                    .await?
                    .items
                    .into_iter()
                    .find(|m| m.medication_id == id)
                    .map(|m| m.name)
                    .ok_or_else(|| {
                        Failure::usage(format!(
                            "no medication {id} in the formulary (hmsctl formulary list)"
                        ))
                    })?,
                Err(_) => medication,
            };
            let n = NewPrescription {
                prescription_id: None,
                appointment_id: appointment,
                patient_id: patient,
                doctor_id: doctor,
                medication,
                dosage,
                days,
                issued_at: None,
            };
            out.record(
                &json(&c.create_prescription(&n).await?),
                RX,
                "prescription_id",
            );
        }
        RxCmd::List {
            appointment,
            patient,
        } => {
            let q = PrescriptionQuery {
                appointment_id: appointment,
                patient_id: patient,
                limit: Some(500),
                ..Default::default()
            };
            out.list(
                &jsons(&c.list_prescriptions(&q).await?.items),
                RX,
                "prescription_id",
            );
        }
        RxCmd::Show { id } => {
            out.record(&json(&c.get_prescription(id).await?), RX, "prescription_id")
        }
    }
    Ok(())
}

async fn bill(g: &Global, c: &HmsClient, out: &Printer, cmd: BillCmd) -> Result<(), Failure> {
    match cmd {
        BillCmd::List {
            patient,
            appointment,
            status,
            page,
        } => {
            let rows = desk::rows(page.paging()?, |limit, cursor| {
                let q = BillQuery {
                    patient_id: patient,
                    appointment_id: appointment,
                    status: status.clone(),
                    limit: Some(limit),
                    cursor,
                };
                async move { c.list_bills(&q).await }
            })
            .await?;
            out.list(&jsons(&rows), BILL, "bill_id");
        }
        BillCmd::Show { id } => {
            let b = c.get_bill(id).await?;
            out.record(&json(&b), BILL, "bill_id");
            if out.format == Format::Table && !out.quiet {
                let lines: &[Col] = &[
                    ("Line", "description", Kind::Text),
                    ("Qty", "quantity", Kind::Text),
                    ("Unit", "unit_price", Kind::Money),
                    ("Amount", "amount", Kind::Money),
                ];
                out.list(&jsons(&b.lines), lines, "description");
                crate::output::emit!("Subtotal {}  Tax {}", b.subtotal, b.tax);
                desk::totals(out, &b);
            }
        }
        BillCmd::Void { id } => {
            confirm(g, &format!("VOID bill {id}"))?;
            out.record(&json(&c.void_bill(id).await?), BILL, "bill_id");
        }
        BillCmd::Adjust { id, amount, reason } => {
            let a = c.adjust_bill(id, &NewAdjustment { amount, reason }).await?;
            out.record(
                &json(&a),
                &[
                    ("ID", "adjustment_id", Kind::Text),
                    ("Bill", "bill_id", Kind::Text),
                    ("Amount", "amount", Kind::Money),
                    ("Reason", "reason", Kind::Text),
                ],
                "adjustment_id",
            );
        }
    }
    Ok(())
}

/// Probes every service; exit 6 when one is not ready.
async fn status(c: &HmsClient, out: &Printer, wanted: Vec<Service>) -> u8 {
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
        serde_json::json!({
            "service": svc.name(),
            "url": c.urls().get(svc),
            "up": health.is_ok(),
            "ready": ready.is_ok(),
            "state": match (&health, &ready) { (Ok(_), Ok(_)) => "ready", (Ok(_), Err(_)) => "up, not ready", _ => "down" },
            "version": health.as_ref().ok().map(|h| h.version.clone()),
            "latency_ms": health.is_ok().then_some((latency * 10.0).round() / 10.0),
            "detail": ready.err(),
        })
    });
    let rows = futures::future::join_all(probes).await;
    let cols: &[Col] = &[
        ("Service", "service", Kind::Text),
        ("URL", "url", Kind::Text),
        ("State", "state", Kind::Text),
        ("Version", "version", Kind::Text),
        ("Latency ms", "latency_ms", Kind::Text),
    ];
    out.list(&rows, cols, "service");
    if rows.iter().all(|r| r["ready"] == true) {
        exit::SUCCESS
    } else {
        exit::UNAVAILABLE
    }
}

/// Prints notifications as they appear, oldest first, each once.
async fn alerts(
    c: &HmsClient,
    out: &Printer,
    every: u64,
    max: Option<usize>,
    backlog_minutes: i64,
) -> Result<(), Failure> {
    let mut since = Utc::now() - chrono::Duration::minutes(backlog_minutes.max(0));
    let mut seen = std::collections::HashSet::new();
    let mut shown = 0usize;
    loop {
        let q = NotificationQuery {
            since: Some(since),
            limit: Some(500),
            ..Default::default()
        };
        let page = c.list_notifications(&q).await?;
        for n in page.items {
            if !seen.insert(n.notification_id) {
                continue;
            }
            since = since.max(n.created_at);
            if out.quiet {
                crate::output::emit!("{}", n.notification_id);
            } else if out.format == Format::Json {
                // A stream: one JSON object per line.
                crate::output::emit!("{}", serde_json::to_string(&n).unwrap_or_default());
            } else if out.format == Format::Csv {
                // One header for the stream, then a line per alert.
                if shown == 0 {
                    crate::output::emit!(
                        "{}",
                        NOTE.iter().map(|c| c.1).collect::<Vec<_>>().join(",")
                    );
                }
                let v = json(&n);
                let line: Vec<String> = NOTE
                    .iter()
                    .map(|c| crate::output::csv_field(&crate::output::text(&v[c.1])))
                    .collect();
                crate::output::emit!("{}", line.join(","));
            } else {
                let when = match out.tz {
                    Some(tz) => n
                        .created_at
                        .with_timezone(&tz)
                        .format("%H:%M:%S")
                        .to_string(),
                    None => n
                        .created_at
                        .with_timezone(&chrono::Local)
                        .format("%H:%M:%S")
                        .to_string(),
                };
                crate::output::emit!(
                    "{when}  {:<24} {:<5} {:<28} {}",
                    n.event_type,
                    n.channel,
                    n.recipient,
                    n.message
                );
            }
            shown += 1;
            if max.is_some_and(|m| shown >= m) {
                return Ok(());
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(every.max(1))).await;
    }
}

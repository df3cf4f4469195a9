//! The commands, one module per noun: each holds its clap enum, its handlers and the views
//! of its tables. This module holds what they share: the global flags, paging, reading times
//! and dates as the desk types them, and confirmations.

mod appointment;
mod bill;
mod doctor;
mod notify;
mod ops;
mod patient;
mod payment;
mod rx;

use crate::connect::Target;
use crate::desk;
use crate::exit;
use crate::output::{Format, Printer};
use crate::Failure;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use clap::{Args, Parser, Subcommand};
use hms_client::HmsClient;
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
  130  interrupted at a prompt (Ctrl-C)
  1  anything else
Errors print the code, the message and the correlation id on stderr.

Examples:
  hmsctl appointment list --date today
  hmsctl patient search priya
  hmsctl appointment book
  hmsctl pay --bill 12 --amount 525.00 --method upi
  hmsctl -o json bill show 12 | jq .balance";

#[derive(Parser)]
#[command(
    name = "hmsctl",
    version,
    about = "HMS front-desk and scripting tool",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command takes, shown in their own section of every help page.
#[derive(Args)]
#[command(next_help_heading = "Global options")]
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
    /// Output: a table for people; json or csv for scripts.
    #[arg(long, short, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Print only ids.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Time zone to show (and read) times in [default: the clinic's, as the services say].
    #[arg(long, global = true, value_name = "ZONE")]
    tz: Option<chrono_tz::Tz>,
    /// Currency of amounts shown.
    #[arg(long, global = true, default_value = "INR")]
    currency: String,
    /// Never prompt (missing arguments are an error); implied when stdin is not a terminal.
    #[arg(long, global = true)]
    no_input: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Patients: register, find, show, update, deactivate.
    #[command(subcommand)]
    Patient(patient::PatientCmd),
    /// Doctors: their details, weekly hours, leave and free slots.
    #[command(subcommand)]
    Doctor(doctor::DoctorCmd),
    /// Appointments: book, the day sheet, reschedule, cancel, complete.
    #[command(subcommand)]
    Appointment(appointment::AppointmentCmd),
    /// Prescriptions.
    #[command(subcommand)]
    Rx(rx::RxCmd),
    /// The formulary (medications and prices).
    #[command(subcommand)]
    Formulary(rx::FormularyCmd),
    /// Bills: list, show (lines and totals), void, credit notes.
    #[command(subcommand)]
    Bill(bill::BillCmd),
    /// Take a payment. At a terminal the bill's balance is shown and confirmed; a payment of
    /// the same bill minutes ago is pointed out. Prints the Idempotency-Key it used, so a script
    /// can retry safely: a retry with `--key` is answered "already taken — not charged again".
    #[command(
        after_help = "Examples:\n  hmsctl pay --bill 12 --amount 525.00 --method upi\n  hmsctl pay --bill 12 --amount 525.00 --method upi --key 3f0c…   (a retry: never charged twice)"
    )]
    Pay(payment::PayArgs),
    /// Refund (part of) a payment: give the payment, or `--bill` to refund from its payments.
    #[command(
        after_help = "Examples:\n  hmsctl refund --bill 12 --amount 100.00 --reason \"overcharged\"\n  hmsctl refund 31 --amount 100.00"
    )]
    Refund(payment::RefundArgs),
    /// Payments: those of a bill, or one.
    #[command(subcommand)]
    Payment(payment::PaymentCmd),
    /// Appointment reminders and their state.
    #[command(subcommand)]
    Reminders(notify::RemindersCmd),
    /// Messages sent to patients.
    #[command(subcommand)]
    Notifications(notify::NotificationsCmd),
    /// Up/down, version, readiness and latency of all seven services (or those named).
    Status {
        /// patient, doctor, appointment, billing, prescription, payment or notification.
        services: Vec<hms_client::Service>,
    },
    /// Follow new notifications as they are recorded (like `tail -f`); Ctrl-C stops.
    #[command(
        after_help = "Examples:\n  hmsctl alerts --backlog-minutes 30\n  hmsctl alerts -o json | jq .message"
    )]
    Alerts(notify::AlertArgs),
    /// Shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Example:\n  hmsctl completions bash > /etc/bash_completion.d/hmsctl")]
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Load the legacy CSVs (seed-data format) from a directory, keeping their ids (admin).
    #[command(
        after_help = "Examples:\n  hmsctl import ./seed-data --dry-run --report preview.csv\n  hmsctl import ./seed-data --report import.csv"
    )]
    Import(ops::ImportArgs),
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

/// `--yes`, on the commands that change something a person should confirm.
#[derive(Args, Debug, Clone, Copy)]
struct Yes {
    /// Do it without asking (needed without a terminal).
    #[arg(long, short)]
    yes: bool,
}

/// A date as typed on the command line: `YYYY-MM-DD`; the error says so.
fn date_arg(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("'{s}' is not a date: expected YYYY-MM-DD, e.g. 1990-04-17"))
}

/// A local time ("2026-12-01 09:30", in the clinic's zone or `--tz`) or RFC 3339.
fn instant(s: &str, tz: chrono_tz::Tz) -> Result<DateTime<Utc>, Failure> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s.trim(), f).ok())
        .ok_or_else(|| {
            Failure::usage(format!(
                "'{s}' is not a time: expected \"YYYY-MM-DD HH:MM\" in {tz}, e.g. \"2026-12-01 09:30\""
            ))
        })?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| Failure::usage(format!("{s} does not exist in {tz}")))
}

/// What a command runs with: the client, the printer, the zone times are read in, and
/// whether it may ask.
struct Ctx {
    c: HmsClient,
    out: Printer,
    tz: chrono_tz::Tz,
    no_input: bool,
}

impl Ctx {
    fn interactive(&self) -> bool {
        !self.no_input && std::io::stdin().is_terminal()
    }

    /// Asks before a destructive action (Enter needed; default No); without a terminal
    /// refuses unless `--yes`.
    fn confirm(&self, yes: Yes, what: &str) -> Result<(), Failure> {
        if yes.yes {
            return Ok(());
        }
        if !self.interactive() {
            return Err(Failure::usage(format!(
                "{what}: add --yes to confirm (no terminal to ask on)"
            )));
        }
        crate::interactive::confirm(what)
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
    match dispatch(cli.command, g, c).await {
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

async fn dispatch(command: Command, g: Global, c: HmsClient) -> Result<u8, Failure> {
    // Times are the clinic's, labelled, unless --tz says otherwise.
    let needs_zone = !matches!(
        command,
        Command::Completions { .. } | Command::Status { .. } | Command::Import { .. }
    );
    let tz = match g.tz {
        Some(tz) => tz,
        None if needs_zone => desk::clinic_zone(&c).await,
        None => chrono_tz::Asia::Kolkata,
    };
    let out = Printer {
        format: g.output,
        quiet: g.quiet,
        tz: Some(tz),
        currency: g.currency.clone(),
    };
    let cx = Ctx {
        c,
        out,
        tz,
        no_input: g.no_input,
    };
    match command {
        Command::Patient(cmd) => patient::run(&cx, cmd).await?,
        Command::Doctor(cmd) => doctor::run(&cx, cmd).await?,
        Command::Appointment(cmd) => appointment::run(&cx, cmd).await?,
        Command::Rx(cmd) => rx::run(&cx, cmd).await?,
        Command::Formulary(cmd) => rx::formulary(&cx, cmd).await?,
        Command::Bill(cmd) => bill::run(&cx, cmd).await?,
        Command::Pay(args) => payment::pay(&cx, args).await?,
        Command::Refund(args) => payment::refund(&cx, args).await?,
        Command::Payment(cmd) => payment::run(&cx, cmd).await?,
        Command::Reminders(cmd) => notify::reminders(&cx, cmd).await?,
        Command::Notifications(cmd) => notify::notifications(&cx, cmd).await?,
        Command::Alerts(args) => notify::alerts(&cx, args).await?,
        Command::Status { services } => return Ok(ops::status(&cx, services).await),
        Command::Completions { shell } => ops::completions(shell),
        Command::Import(args) => return ops::import(&cx, args).await,
    }
    Ok(exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every verb and every flag says what it is for (help is where a clerk looks first).
    #[test]
    fn every_verb_and_flag_is_described() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let here = format!("{path} {}", cmd.get_name()).trim().to_string();
            if cmd.get_about().is_none() && path.contains("hmsctl") {
                missing.push(format!("verb `{here}`"));
            }
            for a in cmd.get_arguments() {
                let builtin = matches!(a.get_id().as_str(), "help" | "version");
                if !builtin && a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("`{here}` argument `{}`", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    walk(sub, &here, missing);
                }
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "undescribed: {missing:#?}");
    }

    #[test]
    fn clap_is_configured_consistently() {
        Cli::command().debug_assert();
    }

    #[test]
    fn dates_and_times_name_the_form_they_expect() {
        assert!(date_arg("17/04/1990").unwrap_err().contains("YYYY-MM-DD"));
        assert_eq!(date_arg("1990-04-17").unwrap().to_string(), "1990-04-17");
        let tz = chrono_tz::Asia::Kolkata;
        let e = instant("tomorrow at ten", tz).unwrap_err().message;
        assert!(
            e.contains("YYYY-MM-DD HH:MM") && e.contains("Asia/Kolkata"),
            "{e}"
        );
        // 10:00 at the clinic is 04:30 UTC.
        assert_eq!(
            instant("2026-11-27 10:00", tz).unwrap().to_rfc3339(),
            "2026-11-27T04:30:00+00:00"
        );
    }
}

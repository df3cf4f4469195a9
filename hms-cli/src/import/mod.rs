//! `hmsctl import <dir>`: the legacy CSVs (the seed-data format) into HMS, keeping their ids,
//! through the services' own rules (their create and import endpoints; nothing is written
//! around them).
//!
//! Every file is read and checked before anything is written; a missing or unreadable file is
//! reported and the others are imported. Each row ends `imported`, `warning` (imported; the
//! reason says what to know), `already_present` (a re-run), `conflict` (another record holds
//! its id) or `rejected`, with every problem of the row in plain words naming the column and
//! quoting the value. A row that refers to a rejected row says so; references to records
//! already in HMS are valid. `--dry-run` sends every row as a dry run (the services judge and
//! write it, then roll it back), so its outcomes are the real run's.

mod read;
mod report;
mod values;

use crate::output::Printer;
use crate::Failure;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use hms_client::models::*;
use hms_client::{ClientError, HmsClient, Money, Service};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use read::{Line, Sheet};
use report::{Outcome, Report};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;

const DOCTORS: &str = "hms_doctors.csv";
const PATIENTS: &str = "hms_patients.csv";
const APPOINTMENTS: &str = "hms_appointments.csv";
const PRESCRIPTIONS: &str = "hms_prescriptions.csv";
const BILLS: &str = "hms_bills.csv";
const PAYMENTS: &str = "hms_payments.csv";

/// The files in the order they are written (each refers only to earlier ones), with the
/// columns each must have, its id column, and whose ids it holds.
const FILES: [(&str, &[&str], &str, Service, &str); 6] = [
    (
        DOCTORS,
        &["doctor_id", "name", "department"],
        "doctor_id",
        Service::Doctor,
        "doctors",
    ),
    (
        PATIENTS,
        &["patient_id", "name", "phone", "dob"],
        "patient_id",
        Service::Patient,
        "patients",
    ),
    (
        APPOINTMENTS,
        &[
            "appointment_id",
            "patient_id",
            "doctor_id",
            "slot_start",
            "status",
        ],
        "appointment_id",
        Service::Appointment,
        "appointments",
    ),
    (
        PRESCRIPTIONS,
        &[
            "prescription_id",
            "appointment_id",
            "patient_id",
            "doctor_id",
            "medication",
            "dosage",
            "days",
        ],
        "prescription_id",
        Service::Prescription,
        "prescriptions",
    ),
    (
        BILLS,
        &[
            "bill_id",
            "patient_id",
            "appointment_id",
            "amount",
            "status",
        ],
        "bill_id",
        Service::Billing,
        "bills",
    ),
    (
        PAYMENTS,
        &["payment_id", "bill_id", "amount", "method"],
        "payment_id",
        Service::Payment,
        "payments",
    ),
];

const APPOINTMENT_STATUSES: [&str; 4] = ["SCHEDULED", "COMPLETED", "CANCELLED", "NO_SHOW"];
const BILL_STATUSES: [&str; 5] = ["OPEN", "PAID", "PARTIALLY_REFUNDED", "REFUNDED", "VOID"];

pub struct Options<'a> {
    pub dry_run: bool,
    pub report: Option<&'a Path>,
    /// Imported doctors' fee; `None`: the clinic's configured default.
    pub default_fee: Option<Money>,
    /// The zone the old system wrote local times in.
    pub legacy_tz: Tz,
}

/// What a row of one file became, for the rows that refer to it.
#[derive(Debug, Clone)]
struct Fate {
    line: usize,
    outcome: Outcome,
    reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Patient,
    Doctor,
    Appointment,
    Bill,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Patient => "patient",
            Kind::Doctor => "doctor",
            Kind::Appointment => "appointment",
            Kind::Bill => "bill",
        }
    }
    fn file(self) -> &'static str {
        match self {
            Kind::Patient => PATIENTS,
            Kind::Doctor => DOCTORS,
            Kind::Appointment => APPOINTMENTS,
            Kind::Bill => BILLS,
        }
    }
}

struct Import<'a> {
    client: HmsClient,
    report: Report,
    tz: Tz,
    fates: HashMap<(Kind, i64), Fate>,
    /// Records asked of HMS (not in the files): whether they exist.
    in_hms: HashMap<(Kind, i64), bool>,
    /// appointment → its patient, for the bills that refer to it
    visits: HashMap<i64, i64>,
    doctor_departments: HashMap<i64, String>,
    /// lower-case department → the hospital's spelling
    departments: HashMap<String, String>,
    emails: HashMap<String, String>,
    bar: &'a ProgressBar,
    /// What a dry run vouches for (see `DryRunContext`): the rows it accepted, which the
    /// services cannot see because each was rolled back.
    dry_run: bool,
    vouched_appointments: HashMap<i64, VouchedAppointment>,
    vouched_claims: Vec<VouchedClaim>,
    vouched_bills: HashMap<i64, VouchedBill>,
    /// appointment → its first bill in the run
    vouched_consultation_bills: HashMap<i64, i64>,
}

fn fatal(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Unavailable { .. } | ClientError::Protocol { .. }
    ) || matches!(e, ClientError::Api { status, .. } if *status >= 500 || *status == 401 || *status == 403)
}

/// A service's refusal in words (its message; codes are for programs).
fn words(e: &ClientError) -> String {
    match e {
        ClientError::Api { body, .. } => body.message.clone(),
        other => other.to_string(),
    }
}

/// What a service made of a row: an outcome and its reason, or a fault that stops the import.
fn judged(
    result: Result<ImportOutcome, ClientError>,
    mut warnings: Vec<String>,
) -> Result<(Outcome, String), Failure> {
    match result {
        Ok(o) => {
            warnings.extend(o.warnings);
            let outcome = if o.outcome == "already_present" {
                Outcome::AlreadyPresent
            } else if warnings.is_empty() {
                Outcome::Imported
            } else {
                Outcome::Warning
            };
            Ok((outcome, warnings.join("; ")))
        }
        Err(e) if fatal(&e) => Err(e.into()),
        Err(ClientError::Api {
            status: 409, body, ..
        }) if body.code == "import_conflict" => Ok((Outcome::Conflict, body.message)),
        Err(e) => Ok((Outcome::Rejected, words(&e))),
    }
}

pub async fn run(
    client: &HmsClient,
    dir: &Path,
    opts: Options<'_>,
    out: &Printer,
) -> Result<u8, Failure> {
    let files: Vec<&'static str> = FILES.iter().map(|f| f.0).collect();
    let mut report = Report::default();
    // Every file is read and checked before anything is written.
    let mut sheets: HashMap<&'static str, Sheet> = HashMap::new();
    for (file, required, ..) in FILES {
        match read::sheet(dir, file, required) {
            Ok(s) => {
                sheets.insert(file, s);
            }
            Err(why) => report.record(file, 0, "", Outcome::Rejected, why),
        }
    }
    let rows: usize = sheets.values().map(|s| s.lines.len()).sum();
    let bar = progress(rows);
    let client = client.clone().dry_run(opts.dry_run);
    if !opts.dry_run {
        reserve_ids(&client, &sheets).await?;
    }
    let mut run = Import {
        client,
        report,
        tz: opts.legacy_tz,
        fates: HashMap::new(),
        in_hms: HashMap::new(),
        visits: HashMap::new(),
        doctor_departments: HashMap::new(),
        departments: HashMap::new(),
        emails: HashMap::new(),
        bar: &bar,
        dry_run: opts.dry_run,
        vouched_appointments: HashMap::new(),
        vouched_claims: Vec::new(),
        vouched_bills: HashMap::new(),
        vouched_consultation_bills: HashMap::new(),
    };
    run.learn_departments(sheets.get(DOCTORS)).await?;
    let started = std::time::Instant::now();
    if let Some(s) = sheets.get(DOCTORS) {
        for l in &s.lines {
            run.doctor(l, opts.default_fee).await?;
        }
    }
    if let Some(s) = sheets.get(PATIENTS) {
        for l in &s.lines {
            run.patient(l).await?;
        }
    }
    if let Some(s) = sheets.get(APPOINTMENTS) {
        for l in &s.lines {
            run.appointment(l).await?;
        }
    }
    if let Some(s) = sheets.get(PRESCRIPTIONS) {
        for l in &s.lines {
            run.prescription(l).await?;
        }
    }
    if let Some(s) = sheets.get(BILLS) {
        for l in &s.lines {
            run.bill(l).await?;
        }
    }
    if let Some(s) = sheets.get(PAYMENTS) {
        for l in &s.lines {
            run.payment(l).await?;
        }
    }
    bar.finish_and_clear();
    let report = run.report;
    report.print(out, &files);
    if let Some(path) = opts.report {
        report.write(path, &files)?;
        eprintln!("Report: {} ({} rows)", path.display(), report.rows.len());
    }
    if !out.quiet {
        let secs = started.elapsed().as_secs_f64().max(0.001);
        eprintln!(
            "{} {rows} rows in {secs:.1} s ({:.0} rows/s){}",
            if opts.dry_run { "Checked" } else { "Imported" },
            rows as f64 / secs,
            if opts.dry_run {
                "; nothing was written (dry run)"
            } else {
                ""
            }
        );
    }
    Ok(if report.partial() {
        crate::exit::PARTIAL
    } else {
        crate::exit::SUCCESS
    })
}

/// One overall bar at a terminal (rows, rate, time left); nothing in a pipe.
fn progress(rows: usize) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(rows as u64), target);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} rows · {per_sec} · {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// No record made live takes an id of the legacy files, imported or rejected.
async fn reserve_ids(
    client: &HmsClient,
    sheets: &HashMap<&'static str, Sheet>,
) -> Result<(), Failure> {
    for (file, _, id_column, service, records) in FILES {
        let Some(s) = sheets.get(file) else { continue };
        // Every id the file holds, malformed lines' included.
        let highest = s
            .lines
            .iter()
            .filter_map(|l| values::id(id_column, &l.id(id_column)).ok())
            .max();
        if let Some(through) = highest {
            client.reserve_legacy_ids(service, records, through).await?;
        }
    }
    Ok(())
}

/// The first error of each reader, collected with the others of the row.
fn take<T>(problems: &mut Vec<String>, r: Result<T, String>) -> Option<T> {
    r.map_err(|e| problems.push(e)).ok()
}

fn take_read<T>(
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
    r: values::Read<T>,
) -> Option<T> {
    match r {
        Ok((v, w)) => {
            warnings.extend(w);
            Some(v)
        }
        Err(e) => {
            problems.push(e);
            None
        }
    }
}

impl Import<'_> {
    fn record(
        &mut self,
        file: &'static str,
        line: &Line,
        id: &str,
        outcome: Outcome,
        reason: String,
        kind: Option<(Kind, i64)>,
    ) {
        self.bar.inc(1);
        if let Some(k) = kind {
            self.fates.insert(
                k,
                Fate {
                    line: line.number,
                    outcome,
                    reason: reason.clone(),
                },
            );
        }
        self.report.record(file, line.number, id, outcome, reason);
    }

    /// The start of every row: its id as written and empty lists for its problems and
    /// warnings — unless the line is malformed, which is rejected here (`None`).
    #[allow(clippy::type_complexity)]
    fn open_row(
        &mut self,
        file: &'static str,
        l: &Line,
        id_column: &str,
    ) -> Option<(String, Vec<String>, Vec<String>)> {
        let raw_id = l.id(id_column);
        if let Some(m) = &l.malformed {
            self.reject(file, l, &raw_id, vec![m.clone()], None);
            return None;
        }
        Some((raw_id, Vec::new(), Vec::new()))
    }

    fn reject(
        &mut self,
        file: &'static str,
        line: &Line,
        id: &str,
        problems: Vec<String>,
        kind: Option<(Kind, i64)>,
    ) {
        self.record(file, line, id, Outcome::Rejected, problems.join("; "), kind);
    }

    /// Why a reference to `kind` `id` is not valid, if it is not: a row of the files that did
    /// not get in says so with its line and reason; one that is not in the files must be in HMS.
    async fn refer(&mut self, kind: Kind, id: i64) -> Result<Option<String>, Failure> {
        if let Some(f) = self.fates.get(&(kind, id)) {
            return Ok((!f.outcome.is_in()).then(|| {
                let what = if f.outcome == Outcome::Conflict {
                    "is in conflict"
                } else {
                    "was rejected"
                };
                format!(
                    "{} {id} {what}, {} line {}: {}",
                    kind.word(),
                    kind.file(),
                    f.line,
                    f.reason
                )
            }));
        }
        if !self.in_hms.contains_key(&(kind, id)) {
            let found = match kind {
                Kind::Patient => self.client.get_patient(id).await.map(|_| ()),
                Kind::Doctor => self.client.get_doctor(id).await.map(|d| {
                    self.doctor_departments.insert(id, d.department);
                }),
                Kind::Appointment => self.client.get_appointment(id).await.map(|a| {
                    self.visits.insert(id, a.patient_id);
                }),
                Kind::Bill => self.client.get_bill(id).await.map(|_| ()),
            };
            let exists = match found {
                Ok(()) => true,
                Err(ClientError::Api { status: 404, .. }) => false,
                Err(e) => return Err(e.into()),
            };
            self.in_hms.insert((kind, id), exists);
        }
        Ok((!self.in_hms[&(kind, id)]).then(|| {
            format!(
                "{} {id} is neither in {} nor in HMS",
                kind.word(),
                kind.file()
            )
        }))
    }

    /// The hospital's spelling of each department: those of its doctors in HMS first, then
    /// the first spelling of the doctors file.
    async fn learn_departments(&mut self, doctors: Option<&Sheet>) -> Result<(), Failure> {
        let mut cursor = None;
        loop {
            let q = DoctorQuery {
                limit: Some(500),
                cursor: cursor.clone(),
                ..Default::default()
            };
            let page = match self.client.list_doctors(&q).await {
                Ok(p) => p,
                Err(e) if fatal(&e) => return Err(e.into()),
                Err(_) => break,
            };
            for d in page.items {
                self.departments
                    .entry(key(&d.department))
                    .or_insert(d.department);
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        for l in doctors.map(|s| s.lines.as_slice()).unwrap_or_default() {
            let d = l.get("department");
            if !d.is_empty() {
                self.departments
                    .entry(key(d))
                    .or_insert_with(|| title_case(d));
            }
        }
        Ok(())
    }

    /// A department in the hospital's spelling, with a warning if that changed it.
    fn department(&self, column: &str, raw: &str) -> (String, Option<String>) {
        let canonical = self
            .departments
            .get(&key(raw))
            .cloned()
            .unwrap_or_else(|| title_case(raw));
        let warning =
            (canonical != raw.trim()).then(|| format!("{column} '{raw}' read as {canonical}"));
        (canonical, warning)
    }

    async fn doctor(&mut self, l: &Line, fee: Option<Money>) -> Result<(), Failure> {
        const F: &str = DOCTORS;
        let Some((raw_id, mut problems, mut warnings)) = self.open_row(F, l, "doctor_id") else {
            return Ok(());
        };
        let id = take(&mut problems, values::id("doctor_id", &raw_id));
        let created = optional_instant(
            &mut problems,
            &mut warnings,
            "created_at",
            l.get("created_at"),
            self.tz,
            "the time of import is recorded",
        );
        let (department, w) = self.department("department", l.get("department"));
        warnings.extend(w);
        if l.get("name").is_empty() {
            problems.push("name is empty".into());
        }
        if l.get("department").is_empty() {
            problems.push("department is empty".into());
        }
        let Some(id) = id.filter(|_| problems.is_empty()) else {
            self.reject(F, l, &raw_id, problems, id.map(|i| (Kind::Doctor, i)));
            return Ok(());
        };
        let mut new = NewDoctor {
            doctor_id: Some(id),
            name: l.get("name").into(),
            email: Some(l.get("email").to_string()).filter(|e| !e.is_empty()),
            phone: Some(l.get("phone").to_string()).filter(|p| !p.is_empty()),
            department: department.clone(),
            specialization: l.get("specialization").into(),
            consultation_fee: fee,
            working_hours: None,
            created_at: created,
        };
        let (outcome, reason) = loop {
            match self.client.create_doctor(&new).await {
                Ok(_) => {
                    break (
                        if warnings.is_empty() {
                            Outcome::Imported
                        } else {
                            Outcome::Warning
                        },
                        warnings.join("; "),
                    )
                }
                Err(ClientError::Api { status: 409, .. }) => {
                    let held = self.client.get_doctor(id).await?;
                    let fields = [
                        ("name", held.name.clone(), new.name.trim().to_string()),
                        (
                            "department",
                            held.department.clone(),
                            new.department.clone(),
                        ),
                        (
                            "specialization",
                            held.specialization.clone(),
                            new.specialization.trim().to_string(),
                        ),
                    ];
                    break same_or_conflict("doctor", id, &fields);
                }
                Err(e) if fatal(&e) => return Err(e.into()),
                Err(e) => match bad_field(&e).as_deref() {
                    Some("email") if new.email.is_some() => {
                        warnings.push(format!("e-mail dropped: {}", words(&e)));
                        new.email = None
                    }
                    Some("phone") if new.phone.is_some() => {
                        warnings.push(format!("phone dropped: {}", words(&e)));
                        new.phone = None
                    }
                    _ => {
                        warnings.insert(0, words(&e));
                        break (Outcome::Rejected, warnings.join("; "));
                    }
                },
            }
        };
        if outcome.is_in() {
            self.doctor_departments.insert(id, department);
        }
        self.record(F, l, &raw_id, outcome, reason, Some((Kind::Doctor, id)));
        Ok(())
    }

    async fn patient(&mut self, l: &Line) -> Result<(), Failure> {
        const F: &str = PATIENTS;
        let Some((raw_id, mut problems, mut warnings)) = self.open_row(F, l, "patient_id") else {
            return Ok(());
        };
        let id = take(&mut problems, values::id("patient_id", &raw_id));
        let dob = take(&mut problems, values::date("dob", l.get("dob")));
        let created = optional_instant(
            &mut problems,
            &mut warnings,
            "created_at",
            l.get("created_at"),
            self.tz,
            "the time of import is recorded",
        );
        if l.get("name").is_empty() {
            problems.push("name is empty".into());
        }
        let email = l.get("email").to_lowercase();
        let (Some(id), Some(dob), true) = (id, dob, problems.is_empty()) else {
            self.reject(F, l, &raw_id, problems, id.map(|i| (Kind::Patient, i)));
            return Ok(());
        };
        if let Some(other) = self.emails.get(&email) {
            warnings.push(format!("e-mail {email} is also patient {other}'s"));
        } else if !email.is_empty() {
            self.emails.insert(email.clone(), raw_id.clone());
        }
        let mut new = NewPatient {
            patient_id: Some(id),
            name: l.get("name").into(),
            email: Some(email).filter(|e| !e.is_empty()),
            phone: l.get("phone").into(),
            dob,
            created_at: created,
        };
        let (outcome, reason) = loop {
            match self.client.create_patient(&new).await {
                Ok(_) => {
                    break (
                        if warnings.is_empty() {
                            Outcome::Imported
                        } else {
                            Outcome::Warning
                        },
                        warnings.join("; "),
                    )
                }
                Err(ClientError::Api { status: 409, .. }) => {
                    let held = self.client.get_patient(id).await?;
                    let digits =
                        |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
                    let fields = [
                        ("name", held.name.clone(), new.name.trim().to_string()),
                        ("dob", held.dob.to_string(), dob.to_string()),
                        ("phone", digits(&held.phone), digits(&new.phone)),
                    ];
                    break same_or_conflict("patient", id, &fields);
                }
                Err(e) if fatal(&e) => return Err(e.into()),
                Err(e) => match bad_field(&e).as_deref() {
                    Some("email") if new.email.is_some() => {
                        warnings.push(format!("e-mail dropped: {}", words(&e)));
                        new.email = None
                    }
                    _ => {
                        warnings.insert(0, words(&e));
                        break (Outcome::Rejected, warnings.join("; "));
                    }
                },
            }
        };
        self.record(F, l, &raw_id, outcome, reason, Some((Kind::Patient, id)));
        Ok(())
    }

    async fn appointment(&mut self, l: &Line) -> Result<(), Failure> {
        const F: &str = APPOINTMENTS;
        let Some((raw_id, mut problems, mut warnings)) = self.open_row(F, l, "appointment_id")
        else {
            return Ok(());
        };
        let id = take(&mut problems, values::id("appointment_id", &raw_id));
        let patient = take(&mut problems, values::id("patient_id", l.get("patient_id")));
        let doctor = take(&mut problems, values::id("doctor_id", l.get("doctor_id")));
        let start = take_read(
            &mut problems,
            &mut warnings,
            values::instant("slot_start", l.get("slot_start"), self.tz),
        );
        let end = match l.get("slot_end") {
            "" => start.map(|s| s + chrono::Duration::minutes(30)),
            v => take_read(
                &mut problems,
                &mut warnings,
                values::instant("slot_end", v, self.tz),
            ),
        };
        let status = take_read(
            &mut problems,
            &mut warnings,
            values::status(
                "status",
                l.get("status"),
                &APPOINTMENT_STATUSES,
                &[("CANCELED", "CANCELLED"), ("NOSHOW", "NO_SHOW")],
            ),
        );
        let created = optional_instant(
            &mut problems,
            &mut warnings,
            "created_at",
            l.get("created_at"),
            self.tz,
            "recorded as the slot's start",
        );
        // A fee the old system recorded, if its export has the column.
        let fee = match l.get("consultation_fee") {
            "" => None,
            v => take_read(
                &mut problems,
                &mut warnings,
                values::amount("consultation_fee", v),
            ),
        };
        if let Some(p) = patient {
            problems.extend(self.refer(Kind::Patient, p).await?);
        }
        if let Some(d) = doctor {
            problems.extend(self.refer(Kind::Doctor, d).await?);
        }
        let department = match l.get("department") {
            "" => doctor
                .and_then(|d| self.doctor_departments.get(&d).cloned())
                .unwrap_or_default(),
            raw => {
                let (canonical, w) = self.department("department", raw);
                warnings.extend(w);
                canonical
            }
        };
        if let Some(theirs) = doctor.and_then(|d| self.doctor_departments.get(&d)) {
            if !department.is_empty() && theirs != &department {
                warnings.push(format!(
                    "department {department} differs from doctor {}'s {theirs}; kept as written",
                    doctor.unwrap_or_default()
                ));
            }
        }
        let (
            Some(id),
            Some(patient_id),
            Some(doctor_id),
            Some(start),
            Some(end),
            Some(status),
            true,
        ) = (id, patient, doctor, start, end, status, problems.is_empty())
        else {
            self.reject(F, l, &raw_id, problems, id.map(|i| (Kind::Appointment, i)));
            return Ok(());
        };
        let legacy = LegacyAppointment {
            appointment_id: id,
            patient_id,
            doctor_id,
            department,
            slot_start: start,
            slot_end: end,
            status: status.to_string(),
            created_at: created.unwrap_or(start),
            consultation_fee: fee,
        };
        let holds_slot = status == "SCHEDULED" && start > Utc::now();
        let context = DryRunContext {
            claims: self
                .vouched_claims
                .iter()
                .filter(|c| {
                    c.slot_start == start
                        && (c.doctor_id == doctor_id || c.patient_id == patient_id)
                })
                .cloned()
                .collect(),
            ..Default::default()
        };
        let client = self.client.clone().vouching(&context);
        let (outcome, reason) = judged(client.import_appointment(&legacy).await, warnings)?;
        if outcome.is_in() {
            self.visits.insert(id, patient_id);
            if self.dry_run && outcome != Outcome::AlreadyPresent {
                self.vouched_appointments.insert(
                    id,
                    VouchedAppointment {
                        patient_id,
                        doctor_id,
                        status: status.to_string(),
                    },
                );
                if holds_slot {
                    self.vouched_claims.push(VouchedClaim {
                        appointment_id: id,
                        doctor_id,
                        patient_id,
                        slot_start: start,
                    });
                }
            }
        }
        self.record(
            F,
            l,
            &raw_id,
            outcome,
            reason,
            Some((Kind::Appointment, id)),
        );
        Ok(())
    }

    async fn prescription(&mut self, l: &Line) -> Result<(), Failure> {
        const F: &str = PRESCRIPTIONS;
        let Some((raw_id, mut problems, mut warnings)) = self.open_row(F, l, "prescription_id")
        else {
            return Ok(());
        };
        let id = take(&mut problems, values::id("prescription_id", &raw_id));
        let appointment = take(
            &mut problems,
            values::id("appointment_id", l.get("appointment_id")),
        );
        let patient = take(&mut problems, values::id("patient_id", l.get("patient_id")));
        let doctor = take(&mut problems, values::id("doctor_id", l.get("doctor_id")));
        let days = take(&mut problems, values::days("days", l.get("days")));
        let issued = optional_instant(
            &mut problems,
            &mut warnings,
            "issued_at",
            l.get("issued_at"),
            self.tz,
            "the time of import is recorded",
        );
        if l.get("medication").is_empty() {
            problems.push("medication is empty".into());
        }
        if l.get("dosage").is_empty() {
            problems.push("dosage is empty".into());
        }
        if let Some(a) = appointment {
            problems.extend(self.refer(Kind::Appointment, a).await?);
        }
        if let Some(p) = patient {
            problems.extend(self.refer(Kind::Patient, p).await?);
        }
        if let Some(d) = doctor {
            problems.extend(self.refer(Kind::Doctor, d).await?);
        }
        let (Some(id), Some(appointment_id), Some(patient_id), Some(doctor_id), Some(days), true) =
            (id, appointment, patient, doctor, days, problems.is_empty())
        else {
            self.reject(F, l, &raw_id, problems, None);
            return Ok(());
        };
        let legacy = LegacyPrescription {
            prescription_id: id,
            appointment_id,
            patient_id,
            doctor_id,
            medication: l.get("medication").into(),
            dosage: l.get("dosage").into(),
            days,
            issued_at: issued.unwrap_or_else(Utc::now),
        };
        let context = DryRunContext {
            appointment: self.vouched_appointments.get(&appointment_id).cloned(),
            ..Default::default()
        };
        let client = self.client.clone().vouching(&context);
        let (outcome, reason) = judged(client.import_prescription(&legacy).await, warnings)?;
        self.record(F, l, &raw_id, outcome, reason, None);
        Ok(())
    }

    async fn bill(&mut self, l: &Line) -> Result<(), Failure> {
        const F: &str = BILLS;
        let Some((raw_id, mut problems, mut warnings)) = self.open_row(F, l, "bill_id") else {
            return Ok(());
        };
        let id = take(&mut problems, values::id("bill_id", &raw_id));
        let patient = take(&mut problems, values::id("patient_id", l.get("patient_id")));
        let appointment = take(
            &mut problems,
            values::id("appointment_id", l.get("appointment_id")),
        );
        let amount = take_read(
            &mut problems,
            &mut warnings,
            values::amount("amount", l.get("amount")),
        );
        let status = take_read(
            &mut problems,
            &mut warnings,
            values::status("status", l.get("status"), &BILL_STATUSES, &[]),
        );
        let created = optional_instant(
            &mut problems,
            &mut warnings,
            "created_at",
            l.get("created_at"),
            self.tz,
            "the time of import is recorded",
        );
        if let Some(a) = appointment {
            problems.extend(self.refer(Kind::Appointment, a).await?);
        }
        if let Some(p) = patient {
            problems.extend(self.refer(Kind::Patient, p).await?);
        }
        if let (Some(p), Some(&theirs)) = (patient, appointment.and_then(|a| self.visits.get(&a))) {
            if theirs != p {
                warnings.push(format!(
                    "bill is for patient {p}, appointment {} is patient {}'s; kept as written",
                    appointment.unwrap_or_default(),
                    theirs
                ));
            }
        }
        let (Some(id), Some(patient_id), Some(appointment_id), Some(amount), Some(status), true) = (
            id,
            patient,
            appointment,
            amount,
            status,
            problems.is_empty(),
        ) else {
            self.reject(F, l, &raw_id, problems, id.map(|i| (Kind::Bill, i)));
            return Ok(());
        };
        let legacy = LegacyBill {
            bill_id: id,
            patient_id,
            appointment_id,
            amount,
            status: status.to_string(),
            created_at: created.unwrap_or_else(Utc::now),
        };
        let context = DryRunContext {
            consultation_bill: self
                .vouched_consultation_bills
                .get(&appointment_id)
                .copied(),
            ..Default::default()
        };
        let client = self.client.clone().vouching(&context);
        let (outcome, reason) = judged(client.import_bill(&legacy).await, warnings)?;
        if self.dry_run && matches!(outcome, Outcome::Imported | Outcome::Warning) {
            self.vouched_consultation_bills
                .entry(appointment_id)
                .or_insert(id);
            // As billing records it: a refunded bill owes nothing (its refund is credited).
            let amount_due = if status == "REFUNDED" {
                Money::ZERO
            } else {
                amount
            };
            self.vouched_bills.insert(
                id,
                VouchedBill {
                    patient_id,
                    amount_due,
                    status: status.to_string(),
                    captured: Money::ZERO,
                },
            );
        }
        self.record(F, l, &raw_id, outcome, reason, Some((Kind::Bill, id)));
        Ok(())
    }

    async fn payment(&mut self, l: &Line) -> Result<(), Failure> {
        const F: &str = PAYMENTS;
        let Some((raw_id, mut problems, mut warnings)) = self.open_row(F, l, "payment_id") else {
            return Ok(());
        };
        let id = take(&mut problems, values::id("payment_id", &raw_id));
        let bill = take(&mut problems, values::id("bill_id", l.get("bill_id")));
        let amount = take_read(
            &mut problems,
            &mut warnings,
            values::amount("amount", l.get("amount")),
        );
        let paid_at = optional_instant(
            &mut problems,
            &mut warnings,
            "paid_at",
            l.get("paid_at"),
            self.tz,
            "the time of import is recorded",
        );
        if l.get("method").is_empty() {
            problems.push("method is empty".into());
        }
        if let Some(b) = bill {
            problems.extend(self.refer(Kind::Bill, b).await?);
        }
        if amount == Some(Money::ZERO) {
            problems.push(format!("amount '{}' is zero", l.get("amount")));
        }
        let (Some(id), Some(bill_id), Some(amount), true) = (id, bill, amount, problems.is_empty())
        else {
            self.reject(F, l, &raw_id, problems, None);
            return Ok(());
        };
        let reference = match l.get("reference") {
            "" => {
                warnings.push(format!("reference is empty; recorded as LEGACY-{id}"));
                format!("LEGACY-{id}")
            }
            r => r.to_string(),
        };
        let legacy = LegacyPayment {
            payment_id: id,
            bill_id,
            amount,
            method: l.get("method").into(),
            reference,
            paid_at: paid_at.unwrap_or_else(Utc::now),
        };
        let context = DryRunContext {
            bill: self.vouched_bills.get(&bill_id).cloned(),
            ..Default::default()
        };
        let client = self.client.clone().vouching(&context);
        let (outcome, reason) = judged(client.import_payment(&legacy).await, warnings)?;
        if let (true, Some(b)) = (
            outcome == Outcome::Imported || outcome == Outcome::Warning,
            self.vouched_bills.get_mut(&bill_id),
        ) {
            b.captured = Money(b.captured.0 + amount.0);
        }
        self.record(F, l, &raw_id, outcome, reason, None);
        Ok(())
    }
}

/// An optional date-time column: empty is `None`; unreadable is a problem.
fn optional_instant(
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
    column: &str,
    v: &str,
    tz: Tz,
    instead: &str,
) -> Option<DateTime<Utc>> {
    // An empty one is said, with what is recorded instead: nothing is filled in silently.
    if v.is_empty() {
        warnings.push(format!("{column} is empty; {instead}"));
        return None;
    }
    take_read(problems, warnings, values::instant(column, v, tz))
}

/// A record already under its id: the same one (a re-run), or a conflict naming what differs.
fn same_or_conflict(kind: &str, id: i64, fields: &[(&str, String, String)]) -> (Outcome, String) {
    let differ: Vec<String> = fields
        .iter()
        .filter(|(_, held, given)| held != given)
        .map(|(name, held, given)| format!("{name} is '{held}' in HMS, '{given}' in the file"))
        .collect();
    if differ.is_empty() {
        (Outcome::AlreadyPresent, String::new())
    } else {
        (
            Outcome::Conflict,
            format!(
                "{kind} {id} already exists with different content: {}",
                differ.join("; ")
            ),
        )
    }
}

fn bad_field(e: &ClientError) -> Option<String> {
    match e {
        ClientError::Api {
            status: 400, body, ..
        } => body
            .details
            .as_ref()?
            .get("field")?
            .as_str()
            .map(str::to_string),
        _ => None,
    }
}

fn key(department: &str) -> String {
    department
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn title_case(s: &str) -> String {
    s.split_whitespace()
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f
                    .to_uppercase()
                    .chain(c.flat_map(char::to_lowercase))
                    .collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn departments_are_spelled_as_the_hospital_spells_them() {
        assert_eq!(title_case("  pediatrics "), "Pediatrics");
        assert_eq!(key(" Cardiology  Unit"), "cardiology unit");
    }
}

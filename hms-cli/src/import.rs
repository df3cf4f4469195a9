//! `hmsctl import <dir>`: the legacy CSVs (the seed-data format), in dependency order, through
//! the services' APIs (and their admin import endpoints for history), keeping the legacy ids. Every row is imported, imported with a recorded
//! warning, already present (a re-run), or rejected with its reason; the report's totals add
//! up to the rows read. Historical rows are not re-judged by booking rules.

use crate::output::{Col, Kind, Printer};
use crate::Failure;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use hms_client::models::*;
use hms_client::{ClientError, HmsClient, Money};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// What happened to one row.
#[derive(Debug, Clone)]
pub struct RowResult {
    pub file: &'static str,
    pub line: usize,
    pub id: String,
    /// `imported`, `imported_with_warning`, `already_present`, `rejected`, `valid` (dry run).
    pub outcome: &'static str,
    pub reason: String,
}

/// Per-file totals.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Totals {
    pub file: String,
    pub read: usize,
    pub imported: usize,
    pub imported_with_warning: usize,
    pub already_present: usize,
    pub rejected: usize,
    pub valid: usize,
}

fn when(s: &str) -> Result<DateTime<Utc>, String> {
    NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S")
        .map(|t| t.and_utc())
        .map_err(|_| format!("'{s}' is not a date-time (YYYY-MM-DD HH:MM:SS)"))
}

fn why(e: &ClientError) -> String {
    match e {
        ClientError::Api { body, .. } => format!("{}: {}", body.code, body.message),
        other => other.to_string(),
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

/// A service that is down stops the import: nothing is judged on a guess.
fn fatal(e: &ClientError) -> bool {
    matches!(e, ClientError::Unavailable { .. })
        || matches!(e, ClientError::Api { status, .. } if *status >= 500 || *status == 401 || *status == 403)
}

struct Run<'a> {
    client: &'a HmsClient,
    dry_run: bool,
    results: Vec<RowResult>,
    patients: HashSet<i64>,
    doctors: HashMap<i64, String>,
    appointments: HashSet<i64>,
    /// appointment id → its patient, as the legacy data says
    appointment_patients: HashMap<i64, i64>,
    bills: HashSet<i64>,
}

impl Run<'_> {
    /// Records what a service made of one row; `Ok(true)` if the row is in (new or already
    /// there), `Ok(false)` if rejected, `Err` if a service is down (the import stops).
    fn settle(
        &mut self,
        file: &'static str,
        line: usize,
        id: &str,
        result: Result<ImportOutcome, ClientError>,
        mut warnings: Vec<String>,
    ) -> Result<bool, Failure> {
        match result {
            Ok(o) => {
                warnings.extend(o.warnings);
                let w = warnings.join("; ");
                let outcome = if o.outcome == "already_present" {
                    "already_present"
                } else if w.is_empty() {
                    "imported"
                } else {
                    "imported_with_warning"
                };
                self.record(file, line, id, outcome, w);
                Ok(true)
            }
            Err(e) if fatal(&e) => Err(e.into()),
            Err(e) => {
                self.record(file, line, id, "rejected", why(&e));
                Ok(false)
            }
        }
    }

    fn record(
        &mut self,
        file: &'static str,
        line: usize,
        id: &str,
        outcome: &'static str,
        reason: impl Into<String>,
    ) {
        self.results.push(RowResult {
            file,
            line,
            id: id.to_string(),
            outcome,
            reason: reason.into(),
        });
    }
}

fn read(dir: &Path, name: &str) -> Result<Vec<(usize, csv::StringRecord)>, Failure> {
    let path = dir.join(name);
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    let mut rows = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
        rows.push((i + 2, rec));
    }
    Ok(rows)
}

fn bar(name: &str, n: usize) -> ProgressBar {
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(name.to_string());
    pb
}

pub async fn run(
    client: &HmsClient,
    dir: &Path,
    dry_run: bool,
    default_fee: Money,
    out: &Printer,
    report: Option<&Path>,
) -> Result<u8, Failure> {
    let mut run = Run {
        client,
        dry_run,
        results: Vec::new(),
        patients: HashSet::new(),
        doctors: HashMap::new(),
        appointments: HashSet::new(),
        appointment_patients: HashMap::new(),
        bills: HashSet::new(),
    };
    doctors(&mut run, dir, default_fee).await?;
    patients(&mut run, dir).await?;
    appointments(&mut run, dir).await?;
    prescriptions(&mut run, dir).await?;
    bills(&mut run, dir).await?;
    payments(&mut run, dir).await?;

    let mut totals: BTreeMap<&str, Totals> = BTreeMap::new();
    for r in &run.results {
        let t = totals.entry(r.file).or_insert_with(|| Totals {
            file: r.file.to_string(),
            ..Default::default()
        });
        t.read += 1;
        match r.outcome {
            "imported" => t.imported += 1,
            "imported_with_warning" => t.imported_with_warning += 1,
            "already_present" => t.already_present += 1,
            "valid" => t.valid += 1,
            _ => t.rejected += 1,
        }
    }
    let order = [
        "hms_doctors.csv",
        "hms_patients.csv",
        "hms_appointments.csv",
        "hms_prescriptions.csv",
        "hms_bills.csv",
        "hms_payments.csv",
    ];
    let rows: Vec<serde_json::Value> = order
        .iter()
        .filter_map(|f| totals.get(f))
        .map(|t| serde_json::to_value(t).unwrap_or_default())
        .collect();
    let cols: &[Col] = &[
        ("File", "file", Kind::Text),
        ("Read", "read", Kind::Text),
        ("Imported", "imported", Kind::Text),
        ("With warning", "imported_with_warning", Kind::Text),
        ("Already present", "already_present", Kind::Text),
        ("Rejected", "rejected", Kind::Text),
        ("Valid (dry run)", "valid", Kind::Text),
    ];
    out.list(&rows, cols, "file");
    if let Some(path) = report {
        let mut w = csv::Writer::from_path(path)
            .map_err(|e| Failure::usage(format!("cannot write {}: {e}", path.display())))?;
        let _ = w.write_record(["file", "line", "id", "outcome", "reason"]);
        for r in &run.results {
            let _ = w.write_record([r.file, &r.line.to_string(), &r.id, r.outcome, &r.reason]);
        }
        w.flush().map_err(|e| Failure::usage(e.to_string()))?;
        eprintln!("Report: {} ({} rows)", path.display(), run.results.len());
    }
    let rejected = run
        .results
        .iter()
        .filter(|r| r.outcome == "rejected")
        .count();
    Ok(if rejected > 0 {
        crate::exit::PARTIAL
    } else {
        crate::exit::SUCCESS
    })
}

async fn doctors(run: &mut Run<'_>, dir: &Path, fee: Money) -> Result<(), Failure> {
    const F: &str = "hms_doctors.csv";
    let rows = read(dir, F)?;
    let pb = bar(F, rows.len());
    for (line, r) in rows {
        pb.inc(1);
        let id = r.get(0).unwrap_or("").to_string();
        let Ok(doctor_id) = id.trim().parse::<i64>() else {
            run.record(F, line, &id, "rejected", "doctor_id is not a number");
            continue;
        };
        let created = match when(r.get(6).unwrap_or("")) {
            Ok(t) => t,
            Err(e) => {
                run.record(F, line, &id, "rejected", e);
                continue;
            }
        };
        let mut new = NewDoctor {
            doctor_id: Some(doctor_id),
            name: r.get(1).unwrap_or("").into(),
            email: Some(r.get(2).unwrap_or("").into()),
            phone: Some(r.get(3).unwrap_or("").into()),
            department: r.get(4).unwrap_or("").into(),
            specialization: r.get(5).unwrap_or("").into(),
            consultation_fee: Some(fee),
            working_hours: None,
            created_at: Some(created),
        };
        run.doctors
            .insert(doctor_id, new.department.trim().to_string());
        if run.dry_run {
            run.record(F, line, &id, "valid", "");
            continue;
        }
        let mut warnings = Vec::new();
        loop {
            match run.client.create_doctor(&new).await {
                Ok(_) => {
                    let w = warnings.join("; ");
                    run.record(
                        F,
                        line,
                        &id,
                        if w.is_empty() {
                            "imported"
                        } else {
                            "imported_with_warning"
                        },
                        w,
                    );
                    break;
                }
                Err(ClientError::Api { status: 409, .. }) => {
                    run.record(F, line, &id, "already_present", "");
                    break;
                }
                Err(e) if fatal(&e) => return Err(e.into()),
                Err(e) => match bad_field(&e).as_deref() {
                    Some("email") if new.email.is_some() => {
                        warnings.push(format!("e-mail dropped ({})", why(&e)));
                        new.email = None
                    }
                    Some("phone") if new.phone.is_some() => {
                        warnings.push(format!("phone dropped ({})", why(&e)));
                        new.phone = None
                    }
                    _ => {
                        run.doctors.remove(&doctor_id);
                        run.record(F, line, &id, "rejected", why(&e));
                        break;
                    }
                },
            }
        }
    }
    pb.finish();
    Ok(())
}

async fn patients(run: &mut Run<'_>, dir: &Path) -> Result<(), Failure> {
    const F: &str = "hms_patients.csv";
    let rows = read(dir, F)?;
    let pb = bar(F, rows.len());
    let mut emails: HashMap<String, String> = HashMap::new();
    for (line, r) in rows {
        pb.inc(1);
        let id = r.get(0).unwrap_or("").to_string();
        let Ok(patient_id) = id.trim().parse::<i64>() else {
            run.record(F, line, &id, "rejected", "patient_id is not a number");
            continue;
        };
        let created = match when(r.get(5).unwrap_or("")) {
            Ok(t) => t,
            Err(e) => {
                run.record(F, line, &id, "rejected", e);
                continue;
            }
        };
        let Ok(dob) = NaiveDate::parse_from_str(r.get(4).unwrap_or("").trim(), "%Y-%m-%d") else {
            run.record(
                F,
                line,
                &id,
                "rejected",
                format!("dob '{}' is not a date", r.get(4).unwrap_or("")),
            );
            continue;
        };
        let email = r.get(2).unwrap_or("").trim().to_lowercase();
        let mut warnings = Vec::new();
        if let Some(other) = emails.get(&email) {
            warnings.push(format!("e-mail also used by patient {other}"));
        } else if !email.is_empty() {
            emails.insert(email.clone(), id.clone());
        }
        let mut new = NewPatient {
            patient_id: Some(patient_id),
            name: r.get(1).unwrap_or("").into(),
            email: Some(email),
            phone: r.get(3).unwrap_or("").into(),
            dob,
            created_at: Some(created),
        };
        if run.dry_run {
            run.patients.insert(patient_id);
            run.record(F, line, &id, "valid", warnings.join("; "));
            continue;
        }
        loop {
            match run.client.create_patient(&new).await {
                Ok(_) => {
                    run.patients.insert(patient_id);
                    let w = warnings.join("; ");
                    run.record(
                        F,
                        line,
                        &id,
                        if w.is_empty() {
                            "imported"
                        } else {
                            "imported_with_warning"
                        },
                        w,
                    );
                    break;
                }
                Err(ClientError::Api { status: 409, .. }) => {
                    run.patients.insert(patient_id);
                    run.record(F, line, &id, "already_present", "");
                    break;
                }
                Err(e) if fatal(&e) => return Err(e.into()),
                Err(e) => match bad_field(&e).as_deref() {
                    Some("email") if new.email.is_some() => {
                        warnings.push(format!("e-mail dropped ({})", why(&e)));
                        new.email = None
                    }
                    _ => {
                        run.record(F, line, &id, "rejected", why(&e));
                        break;
                    }
                },
            }
        }
    }
    pb.finish();
    Ok(())
}

async fn appointments(run: &mut Run<'_>, dir: &Path) -> Result<(), Failure> {
    const F: &str = "hms_appointments.csv";
    let rows = read(dir, F)?;
    let pb = bar(F, rows.len());
    for (line, r) in rows {
        pb.inc(1);
        let id = r.get(0).unwrap_or("").to_string();
        let nums: Vec<Option<i64>> = (0..3)
            .map(|i| r.get(i).and_then(|s| s.trim().parse().ok()))
            .collect();
        let (Some(appointment_id), Some(patient_id), Some(doctor_id)) = (nums[0], nums[1], nums[2])
        else {
            run.record(
                F,
                line,
                &id,
                "rejected",
                "appointment_id, patient_id and doctor_id must be numbers",
            );
            continue;
        };
        if !run.patients.contains(&patient_id) {
            run.record(
                F,
                line,
                &id,
                "rejected",
                format!("unknown patient {patient_id}"),
            );
            continue;
        }
        let Some(doctor_department) = run.doctors.get(&doctor_id).cloned() else {
            run.record(
                F,
                line,
                &id,
                "rejected",
                format!("unknown doctor {doctor_id}"),
            );
            continue;
        };
        let times: Vec<Result<DateTime<Utc>, String>> = [4, 5, 7]
            .iter()
            .map(|&i| when(r.get(i).unwrap_or("")))
            .collect();
        let (start, end, created) = match (&times[0], &times[1], &times[2]) {
            (Ok(s), Ok(e), Ok(c)) => (*s, *e, *c),
            _ => {
                run.record(
                    F,
                    line,
                    &id,
                    "rejected",
                    times
                        .iter()
                        .filter_map(|t| t.as_ref().err().cloned())
                        .collect::<Vec<_>>()
                        .join("; "),
                );
                continue;
            }
        };
        let department = r.get(3).unwrap_or("").trim().to_string();
        let mut warnings = Vec::new();
        if !department.eq_ignore_ascii_case(&doctor_department) {
            warnings.push(format!(
                "department {department} differs from doctor {doctor_id}'s {doctor_department}"
            ));
        }
        let legacy = LegacyAppointment {
            appointment_id,
            patient_id,
            doctor_id,
            department,
            slot_start: start,
            slot_end: end,
            status: r.get(6).unwrap_or("").trim().to_string(),
            created_at: created,
        };
        if run.dry_run {
            if end <= start {
                warnings.push("slot_end is not after slot_start".into())
            }
            run.appointments.insert(appointment_id);
            run.appointment_patients.insert(appointment_id, patient_id);
            run.record(F, line, &id, "valid", warnings.join("; "));
            continue;
        }
        let result = run.client.import_appointment(&legacy).await;
        if run.settle(F, line, &id, result, warnings)? {
            run.appointments.insert(appointment_id);
            run.appointment_patients.insert(appointment_id, patient_id);
        }
    }
    pb.finish();
    Ok(())
}

async fn prescriptions(run: &mut Run<'_>, dir: &Path) -> Result<(), Failure> {
    const F: &str = "hms_prescriptions.csv";
    let rows = read(dir, F)?;
    let pb = bar(F, rows.len());
    for (line, r) in rows {
        pb.inc(1);
        let id = r.get(0).unwrap_or("").to_string();
        let nums: Vec<Option<i64>> = [0, 1, 2, 3, 6]
            .iter()
            .map(|&i| r.get(i).and_then(|s| s.trim().parse().ok()))
            .collect();
        let (Some(pid), Some(appointment_id), Some(patient_id), Some(doctor_id), Some(days)) =
            (nums[0], nums[1], nums[2], nums[3], nums[4])
        else {
            run.record(F, line, &id, "rejected", "ids and days must be numbers");
            continue;
        };
        if !run.appointments.contains(&appointment_id) {
            run.record(
                F,
                line,
                &id,
                "rejected",
                format!("unknown appointment {appointment_id}"),
            );
            continue;
        }
        let issued = match when(r.get(7).unwrap_or("")) {
            Ok(t) => t,
            Err(e) => {
                run.record(F, line, &id, "rejected", e);
                continue;
            }
        };
        let new = NewPrescription {
            prescription_id: Some(pid),
            appointment_id,
            patient_id,
            doctor_id: Some(doctor_id),
            medication: r.get(4).unwrap_or("").into(),
            dosage: r.get(5).unwrap_or("").into(),
            days,
            issued_at: Some(issued),
        };
        if run.dry_run {
            run.record(F, line, &id, "valid", "");
            continue;
        }
        let result = match run.client.create_prescription(&new).await {
            Ok(_) => Ok(ImportOutcome {
                outcome: "imported".into(),
                warnings: vec![],
            }),
            Err(ClientError::Api { status: 409, .. }) => Ok(ImportOutcome {
                outcome: "already_present".into(),
                warnings: vec![],
            }),
            Err(e) => Err(e),
        };
        run.settle(F, line, &id, result, Vec::new())?;
    }
    pb.finish();
    Ok(())
}

async fn bills(run: &mut Run<'_>, dir: &Path) -> Result<(), Failure> {
    const F: &str = "hms_bills.csv";
    let rows = read(dir, F)?;
    let pb = bar(F, rows.len());
    for (line, r) in rows {
        pb.inc(1);
        let id = r.get(0).unwrap_or("").to_string();
        let nums: Vec<Option<i64>> = (0..3)
            .map(|i| r.get(i).and_then(|s| s.trim().parse().ok()))
            .collect();
        let (Some(bill_id), Some(patient_id), Some(appointment_id)) = (nums[0], nums[1], nums[2])
        else {
            run.record(
                F,
                line,
                &id,
                "rejected",
                "bill_id, patient_id and appointment_id must be numbers",
            );
            continue;
        };
        let Some(&appointment_patient) = run.appointment_patients.get(&appointment_id) else {
            run.record(
                F,
                line,
                &id,
                "rejected",
                format!("unknown appointment {appointment_id}"),
            );
            continue;
        };
        if !run.patients.contains(&patient_id) {
            run.record(
                F,
                line,
                &id,
                "rejected",
                format!("unknown patient {patient_id}"),
            );
            continue;
        }
        let Ok(amount) = r.get(3).unwrap_or("").trim().parse::<Money>() else {
            run.record(
                F,
                line,
                &id,
                "rejected",
                format!("amount '{}' is not an amount", r.get(3).unwrap_or("")),
            );
            continue;
        };
        let created = match when(r.get(5).unwrap_or("")) {
            Ok(t) => t,
            Err(e) => {
                run.record(F, line, &id, "rejected", e);
                continue;
            }
        };
        let mut warnings = Vec::new();
        if appointment_patient != patient_id {
            warnings.push(format!("bill is for patient {patient_id}, appointment {appointment_id} is patient {appointment_patient}'s"));
        }
        let legacy = LegacyBill {
            bill_id,
            patient_id,
            appointment_id,
            amount,
            status: r.get(4).unwrap_or("").trim().to_string(),
            created_at: created,
        };
        if run.dry_run {
            run.bills.insert(bill_id);
            run.record(F, line, &id, "valid", warnings.join("; "));
            continue;
        }
        let result = run.client.import_bill(&legacy).await;
        if run.settle(F, line, &id, result, warnings)? {
            run.bills.insert(bill_id);
        }
    }
    pb.finish();
    Ok(())
}

async fn payments(run: &mut Run<'_>, dir: &Path) -> Result<(), Failure> {
    const F: &str = "hms_payments.csv";
    let rows = read(dir, F)?;
    let pb = bar(F, rows.len());
    for (line, r) in rows {
        pb.inc(1);
        let id = r.get(0).unwrap_or("").to_string();
        let nums: Vec<Option<i64>> = (0..2)
            .map(|i| r.get(i).and_then(|s| s.trim().parse().ok()))
            .collect();
        let (Some(payment_id), Some(bill_id)) = (nums[0], nums[1]) else {
            run.record(
                F,
                line,
                &id,
                "rejected",
                "payment_id and bill_id must be numbers",
            );
            continue;
        };
        if !run.bills.contains(&bill_id) {
            run.record(F, line, &id, "rejected", format!("unknown bill {bill_id}"));
            continue;
        }
        let Ok(amount) = r.get(2).unwrap_or("").trim().parse::<Money>() else {
            run.record(
                F,
                line,
                &id,
                "rejected",
                format!("amount '{}' is not an amount", r.get(2).unwrap_or("")),
            );
            continue;
        };
        let paid_at = match when(r.get(5).unwrap_or("")) {
            Ok(t) => t,
            Err(e) => {
                run.record(F, line, &id, "rejected", e);
                continue;
            }
        };
        let legacy = LegacyPayment {
            payment_id,
            bill_id,
            amount,
            method: r.get(3).unwrap_or("").trim().to_string(),
            reference: r.get(4).unwrap_or("").trim().to_string(),
            paid_at,
        };
        if run.dry_run {
            run.record(F, line, &id, "valid", "");
            continue;
        }
        let result = run.client.import_payment(&legacy).await;
        run.settle(F, line, &id, result, Vec::new())?;
    }
    pb.finish();
    Ok(())
}

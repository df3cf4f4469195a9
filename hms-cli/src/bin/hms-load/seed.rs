//! `hms-load seed`: volume for the scale runs, written in bulk through the services' own store
//! functions (the same rules and constraints as every other path into the data: each patient
//! through `patient::store::insert`, each appointment through `appointment::store::book` with
//! its slot claims and its place in the doctor's day), thousands per transaction, into the
//! embedded default's SQLite files. Doctors are registered over HTTP (there are few).
//!
//! What it made is written to `<data-dir>/scale.json` for the `search-phone` and `day-list`
//! workflows.

use anyhow::Context;
use chrono::{NaiveDate, TimeZone, Utc};
use hms_client::models::NewPatient;
use hms_client::{HmsClient, Money};
use hms_kit::db::{Db, Open};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Rows per transaction.
const CHUNK: usize = 5_000;
/// Appointments per doctor-day (the default daily cap).
const PER_DAY: usize = 8;
/// Days of appointments per doctor.
const DAYS: usize = 125;

/// What a seed made, for the workflows that read it.
#[derive(Serialize, Deserialize)]
pub struct Scale {
    pub patients: usize,
    pub doctors: Vec<i64>,
    pub first_day: NaiveDate,
    pub days: usize,
}

/// The phone of seeded patient `i` (unique; a 6-digit part of it finds one patient or few).
pub fn phone(i: usize) -> String {
    format!("8{:09}", i)
}

impl Scale {
    /// When each seeded day starts in the clinic's zone `tz` (its first instant, where a
    /// change of clocks skips midnight).
    pub fn day_starts(&self, tz: chrono_tz::Tz) -> anyhow::Result<Vec<chrono::DateTime<Utc>>> {
        (0..self.days.max(1))
            .map(|k| {
                let day = self.first_day + chrono::Duration::days(k as i64);
                (0..24)
                    .find_map(|h| {
                        tz.from_local_datetime(&day.and_hms_opt(h, 0, 0)?)
                            .earliest()
                    })
                    .map(|t| t.with_timezone(&Utc))
                    .with_context(|| format!("{day} has no hour in {tz}"))
            })
            .collect()
    }

    pub fn read(dir: &Path) -> anyhow::Result<Scale> {
        let path = dir.join("scale.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (run `hms-load seed` first)", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
    }
}

async fn open(dir: &Path, service: &'static str) -> anyhow::Result<Db> {
    let file = dir.join(format!("{service}.db"));
    anyhow::ensure!(
        file.exists(),
        "{} does not exist: start hms-daemon on {} once first (it creates and migrates the databases)",
        file.display(),
        dir.display()
    );
    Db::open(
        &format!("sqlite://{}", file.display()),
        Open {
            service,
            max_connections: 1,
            create_missing: false,
        },
    )
    .await
    .with_context(|| format!("opening {}", file.display()))
}

/// Seeds `patients` patients and `appointments` appointments (spread over doctors of
/// `PER_DAY` a day for `DAYS` days each, from `first_day`), clinic time `tz`.
pub async fn seed(
    client: &HmsClient,
    dir: &Path,
    tz: chrono_tz::Tz,
    patients: usize,
    appointments: usize,
) -> anyhow::Result<Scale> {
    anyhow::ensure!(patients > 0, "--patients must be at least 1");
    let started = std::time::Instant::now();
    let doctors_needed = appointments.div_ceil(PER_DAY * DAYS).max(1);
    anyhow::ensure!(
        doctors_needed <= patients,
        "{appointments} appointments need at least {doctors_needed} patients (one per doctor at a time)"
    );
    let mut doctors = Vec::with_capacity(doctors_needed);
    for i in 0..doctors_needed {
        let d = client
            .create_doctor(&super::fixture_doctor())
            .await
            .with_context(|| format!("registering seed doctor {i}"))?;
        doctors.push(d.doctor_id);
    }

    let now = Utc::now();
    let today = now.with_timezone(&tz).date_naive();
    let db = open(dir, "patient").await?;
    let mut ids = Vec::with_capacity(patients);
    for chunk in (0..patients).collect::<Vec<_>>().chunks(CHUNK) {
        let mut tx = db.begin().await.map_err(|e| anyhow::anyhow!(e.message))?;
        for &i in chunk {
            let p = hms_patient::domain::ValidPatient::parse(
                NewPatient {
                    patient_id: None,
                    name: format!("Scale Patient {}", name_part(i)),
                    email: Some(format!("scale{i}@example.org")),
                    phone: phone(i),
                    dob: NaiveDate::from_ymd_opt(1970 + (i % 50) as i32, 1 + (i % 12) as u32, 1)
                        .expect("a date"),
                    created_at: None,
                },
                today,
            )
            .map_err(|e| anyhow::anyhow!(e.message))?;
            let made = hms_patient::store::insert(db.backend(), &mut tx, &p, now)
                .await
                .map_err(|e| anyhow::anyhow!("patient {i}: {}", e.message))?;
            ids.push(made.patient_id);
        }
        tx.commit().await?;
    }
    db.close().await;

    let first_day = today + chrono::Duration::days(2);
    let db = open(dir, "appointment").await?;
    let d = doctors.len();
    for chunk in (0..appointments).collect::<Vec<_>>().chunks(CHUNK) {
        let mut tx = db.begin().await.map_err(|e| anyhow::anyhow!(e.message))?;
        for &i in chunk {
            // Appointment i: doctor i % D, its k-th slot (k = i / D); the D appointments at
            // one time have distinct patients.
            let (doctor, k) = (i % d, i / d);
            let day = first_day + chrono::Duration::days((k / PER_DAY) as i64);
            let minutes = 9 * 60 + 30 * (k % PER_DAY) as u32;
            let start = tz
                .from_local_datetime(
                    &day.and_hms_opt(minutes / 60, minutes % 60, 0)
                        .expect("a time"),
                )
                .earliest()
                .context("a clinic time")?
                .with_timezone(&Utc);
            let booking = hms_appointment::store::Booking {
                patient_id: ids[i % ids.len()],
                doctor_id: doctors[doctor],
                department: "Benchmarking".into(),
                slot: hms_appointment::domain::SlotChoice {
                    start,
                    end: start + chrono::Duration::minutes(30),
                    day,
                },
                fee: Money(50_000),
            };
            hms_appointment::store::book(&mut tx, &booking, PER_DAY as i64, now, |_, _| Ok(()))
                .await
                .map_err(|e| anyhow::anyhow!("appointment {i}: {}", e.message))?;
        }
        tx.commit().await?;
    }
    db.close().await;

    let scale = Scale {
        patients,
        doctors,
        first_day,
        days: DAYS.min(appointments.div_ceil(d * PER_DAY)),
    };
    std::fs::write(
        dir.join("scale.json"),
        serde_json::to_string_pretty(&scale)?,
    )?;
    println!(
        "seeded {patients} patients, {} doctors and {appointments} appointments in {:.1} s",
        scale.doctors.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(scale)
}

/// A name part from `i` in letters (names take letters only).
fn name_part(mut i: usize) -> String {
    let mut s = String::new();
    loop {
        s.push((b'a' + (i % 26) as u8) as char);
        i /= 26;
        if i == 0 {
            break;
        }
    }
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => s,
    }
}

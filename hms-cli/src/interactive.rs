//! Prompts for a person at a terminal: the booking flow asks for whatever the command line
//! did not give — patient (search), department, doctor, date, a free slot — then confirms.

use crate::Failure;
use chrono::{DateTime, Utc};
use dialoguer::{Confirm, Input, Select};
use hms_client::models::{DoctorQuery, NewAppointment, PatientQuery};
use hms_client::HmsClient;

/// A prompt that failed. Ctrl-C at a prompt arrives here (the terminal is in raw mode, so it
/// is a key, not a signal): the cursor the picker hid is shown again, and hmsctl ends as an
/// interrupted program does (130).
pub fn prompt_err(e: dialoguer::Error) -> Failure {
    let _ = console::Term::stderr().show_cursor();
    let dialoguer::Error::IO(io) = &e;
    if io.kind() == std::io::ErrorKind::Interrupted {
        return Failure {
            code: crate::exit::INTERRUPTED,
            message: "interrupted; nothing was changed".into(),
        };
    }
    Failure::usage(format!("prompt failed: {e}"))
}

/// Esc or `q` in a picker: the clerk backed out.
pub fn backed_out() -> Failure {
    Failure {
        code: crate::exit::OTHER,
        message: "backed out; nothing was changed".into(),
    }
}

/// Asks a yes/no question about something that books, charges or cancels: Enter is needed,
/// the answer is No unless given, and Esc or `q` is No.
pub fn confirm(question: &str) -> Result<(), Failure> {
    let ok = Confirm::new()
        .with_prompt(question)
        .default(false)
        .wait_for_newline(true)
        .interact_opt()
        .map_err(prompt_err)?;
    if ok == Some(true) {
        Ok(())
    } else {
        Err(Failure {
            code: crate::exit::OTHER,
            message: "not confirmed; nothing was changed".into(),
        })
    }
}

fn local(t: DateTime<Utc>, tz: Option<chrono_tz::Tz>) -> String {
    match tz {
        Some(tz) => t.with_timezone(&tz).format("%a %d %b %H:%M %Z").to_string(),
        None => t
            .with_timezone(&chrono::Local)
            .format("%a %d %b %H:%M")
            .to_string(),
    }
}

/// Asks for the missing parts of a booking.
pub async fn booking(
    c: &HmsClient,
    tz: Option<chrono_tz::Tz>,
    patient: Option<i64>,
    doctor: Option<i64>,
    department: Option<String>,
    at: Option<DateTime<Utc>>,
) -> Result<NewAppointment, Failure> {
    let patient = match patient {
        Some(p) => c.get_patient(p).await?,
        None => {
            let term: String = Input::new()
                .with_prompt("Patient (part of name, phone or e-mail)")
                .interact_text()
                .map_err(prompt_err)?;
            let t = term.trim();
            let q = if t.contains('@') {
                PatientQuery {
                    email: Some(t.into()),
                    active: Some(true),
                    ..Default::default()
                }
            } else if t.chars().all(|ch| ch.is_ascii_digit() || ch == '+') {
                PatientQuery {
                    phone: Some(t.into()),
                    active: Some(true),
                    ..Default::default()
                }
            } else {
                PatientQuery {
                    name: Some(t.into()),
                    active: Some(true),
                    ..Default::default()
                }
            };
            let found = c.list_patients(&q).await?.items;
            if found.is_empty() {
                return Err(Failure {
                    code: crate::exit::NOT_FOUND,
                    message: format!("no active patient matches '{t}'"),
                });
            }
            let labels: Vec<String> = found
                .iter()
                .map(|p| format!("#{} {} ({}, born {})", p.patient_id, p.name, p.phone, p.dob))
                .collect();
            let i = Select::new()
                .with_prompt("Which patient")
                .items(&labels)
                .default(0)
                .interact_opt()
                .map_err(prompt_err)?
                .ok_or_else(backed_out)?;
            found[i].clone()
        }
    };
    let doctors = c
        .list_doctors(&DoctorQuery {
            active: Some(true),
            limit: Some(500),
            ..Default::default()
        })
        .await?
        .items;
    let department = match department {
        Some(d) => d,
        None => {
            let mut deps: Vec<String> = doctors.iter().map(|d| d.department.clone()).collect();
            deps.sort();
            deps.dedup();
            if deps.is_empty() {
                return Err(Failure {
                    code: crate::exit::NOT_FOUND,
                    message: "no active doctors".into(),
                });
            }
            let i = Select::new()
                .with_prompt("Department")
                .items(&deps)
                .default(0)
                .interact_opt()
                .map_err(prompt_err)?
                .ok_or_else(backed_out)?;
            deps[i].clone()
        }
    };
    let doctor = match doctor {
        Some(d) => c.get_doctor(d).await?,
        None => {
            let in_dep: Vec<_> = doctors
                .iter()
                .filter(|d| d.department.eq_ignore_ascii_case(&department))
                .cloned()
                .collect();
            if in_dep.is_empty() {
                return Err(Failure {
                    code: crate::exit::NOT_FOUND,
                    message: format!("no active doctor in {department}"),
                });
            }
            let labels: Vec<String> = in_dep
                .iter()
                .map(|d| {
                    format!(
                        "#{} {} — {} (fee {})",
                        d.doctor_id, d.name, d.specialization, d.consultation_fee
                    )
                })
                .collect();
            let i = Select::new()
                .with_prompt("Doctor")
                .items(&labels)
                .default(0)
                .interact_opt()
                .map_err(prompt_err)?
                .ok_or_else(backed_out)?;
            in_dep[i].clone()
        }
    };
    let slot_start = match at {
        Some(t) => t,
        None => {
            let zone = tz.unwrap_or(chrono_tz::Asia::Kolkata);
            let tomorrow = (Utc::now().with_timezone(&zone) + chrono::Duration::days(1))
                .date_naive()
                .to_string();
            let date: String = Input::new()
                .with_prompt("Date (YYYY-MM-DD, today or tomorrow)")
                .default(tomorrow)
                .interact_text()
                .map_err(prompt_err)?;
            let date = crate::desk::day(&date, zone)?;
            let free = c.doctor_availability(doctor.doctor_id, date).await?;
            if free.slots.is_empty() {
                return Err(Failure {
                    code: crate::exit::RULE,
                    message: format!(
                        "{} has no free slot on {date} ({})",
                        doctor.name,
                        free.unavailable_reason.unwrap_or_default()
                    ),
                });
            }
            let labels: Vec<String> = free.slots.iter().map(|s| local(s.slot_start, tz)).collect();
            let i = Select::new()
                .with_prompt("Free slot")
                .items(&labels)
                .default(0)
                .interact_opt()
                .map_err(prompt_err)?
                .ok_or_else(backed_out)?;
            free.slots[i].slot_start
        }
    };
    let ok = Confirm::new()
        .with_prompt(format!(
            "Book {} with {} ({}) on {}?",
            patient.name,
            doctor.name,
            department,
            local(slot_start, tz)
        ))
        // Books: Enter is needed, and the answer is No unless given (Esc or q: No).
        .default(false)
        .wait_for_newline(true)
        .interact_opt()
        .map_err(prompt_err)?
        .unwrap_or(false);
    if !ok {
        return Err(Failure {
            code: crate::exit::OTHER,
            message: "not booked".into(),
        });
    }
    Ok(NewAppointment {
        patient_id: patient.patient_id,
        doctor_id: doctor.doctor_id,
        department,
        slot_start,
        slot_end: None,
    })
}

//! `hmsctl appointment …`: booking (guided at a terminal), the day sheet, changes of state.

use super::{instant, Ctx, PageArgs, Yes};
use crate::desk::{self, Names};
use crate::output::{drop, keep, View};
use crate::Failure;
use chrono::Utc;
use clap::Subcommand;
use hms_client::models::*;
use serde::Serialize;

#[derive(Subcommand)]
pub enum AppointmentCmd {
    /// Book a slot. At a terminal, whatever is missing is asked for (patient search,
    /// department, doctor, date, free slots), then confirmed.
    #[command(
        after_help = "Examples:\n  hmsctl appointment book                      (guided, at a terminal)\n  hmsctl appointment book --patient 11 --doctor 3 --department Cardiology --at \"2026-12-01 09:30\""
    )]
    Book {
        /// Patient id (asked for at a terminal: search by name, phone or e-mail).
        #[arg(long)]
        patient: Option<i64>,
        /// Doctor id (picked from the department at a terminal).
        #[arg(long)]
        doctor: Option<i64>,
        /// The doctor's department.
        #[arg(long)]
        department: Option<String>,
        /// Start, in clinic time (or --tz): "YYYY-MM-DD HH:MM", e.g. "2026-12-01 09:30".
        #[arg(long)]
        at: Option<String>,
        /// Idempotency key, to retry a booking safely.
        #[arg(long)]
        key: Option<String>,
    },
    /// Move an appointment to another slot of the same doctor.
    #[command(
        after_help = "Example:\n  hmsctl appointment reschedule 41 --to \"2026-12-02 11:00\""
    )]
    Reschedule {
        /// Appointment id.
        id: i64,
        /// New start, in clinic time (or --tz): "YYYY-MM-DD HH:MM".
        #[arg(long)]
        to: String,
    },
    /// Cancel (asks first, stating any fee, unless --yes).
    Cancel {
        /// Appointment id.
        id: i64,
        #[command(flatten)]
        yes: Yes,
    },
    /// Mark that the patient did not come (the full fee is billed).
    NoShow {
        /// Appointment id.
        id: i64,
    },
    /// Mark the consultation done (the bill is made).
    Complete {
        /// Appointment id.
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

/// An appointment with the names of its people, for people to read (JSON and CSV keep the
/// ids only, as the API gives them).
#[derive(Serialize)]
pub struct Listed {
    #[serde(flatten)]
    a: Appointment,
    #[serde(skip)]
    patient: String,
    #[serde(skip)]
    doctor: String,
}

impl Listed {
    fn new(a: Appointment, names: &Names) -> Self {
        Listed {
            patient: names.patient(a.patient_id),
            doctor: names.doctor(a.doctor_id),
            a,
        }
    }
}

const LISTED: View<Listed> = View {
    id: |l| l.a.appointment_id.into(),
    cols: &[
        keep("ID", "appointment_id", |l| l.a.appointment_id.into()),
        keep("Starts", "slot_start", |l| l.a.slot_start.into()),
        keep("Patient", "patient_id", |l| (&l.patient).into()),
        keep("Doctor", "doctor_id", |l| (&l.doctor).into()),
        drop("Department", "department", |l| (&l.a.department).into()),
        keep("Status", "status", |l| (&l.a.status).into()),
        drop("Fee", "consultation_fee", |l| l.a.consultation_fee.into()),
        drop("Charge", "fee_decision", |l| (&l.a.fee_decision).into()),
    ],
};

pub const APPOINTMENT: View<Appointment> = View {
    id: |a| a.appointment_id.into(),
    cols: &[
        keep("ID", "appointment_id", |a| a.appointment_id.into()),
        keep("Patient", "patient_id", |a| a.patient_id.into()),
        keep("Doctor", "doctor_id", |a| a.doctor_id.into()),
        keep("Department", "department", |a| (&a.department).into()),
        keep("Starts", "slot_start", |a| a.slot_start.into()),
        keep("Status", "status", |a| (&a.status).into()),
        keep("Fee", "consultation_fee", |a| a.consultation_fee.into()),
        keep("Charge", "fee_decision", |a| (&a.fee_decision).into()),
        drop("Version", "version", |a| a.version.into()),
    ],
};

/// Lists appointments with names (a table) or as the API gives them (JSON, CSV).
async fn list(cx: &Ctx, rows: Vec<Appointment>) -> Result<(), Failure> {
    let names = desk::names(
        &cx.c,
        &cx.out,
        rows.iter().map(|a| a.patient_id),
        rows.iter().map(|a| a.doctor_id),
    )
    .await?;
    let listed: Vec<Listed> = rows.into_iter().map(|a| Listed::new(a, &names)).collect();
    cx.out.list(&listed, &LISTED);
    Ok(())
}

pub async fn run(cx: &Ctx, cmd: AppointmentCmd) -> Result<(), Failure> {
    let (c, out) = (&cx.c, &cx.out);
    let show = |a: &Appointment| out.record(a, &APPOINTMENT);
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
                    slot_start: instant(&at, cx.tz)?,
                    slot_end: None,
                },
                (p, d, dep, at) => {
                    if !cx.interactive() {
                        let missing: Vec<&str> = [
                            (p.is_none(), "--patient"),
                            (d.is_none(), "--doctor"),
                            (dep.is_none(), "--department"),
                            (at.is_none(), "--at"),
                        ]
                        .into_iter()
                        .filter_map(|(m, f)| m.then_some(f))
                        .collect();
                        return Err(Failure::usage(format!(
                            "missing {} (no terminal to ask on)",
                            missing.join(", ")
                        )));
                    }
                    let at = at.map(|a| instant(&a, cx.tz)).transpose()?;
                    crate::interactive::booking(c, Some(cx.tz), p, d, dep, at).await?
                }
            };
            show(&c.book_appointment(&new, key.as_deref()).await?);
        }
        AppointmentCmd::Reschedule { id, to } => show(
            &c.reschedule_appointment(
                id,
                &Reschedule {
                    new_slot_start: instant(&to, cx.tz)?,
                    new_slot_end: None,
                },
                None,
            )
            .await?,
        ),
        AppointmentCmd::Cancel { id, yes } => {
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
            cx.confirm(yes, &format!("Cancel appointment {id}{fee}"))?;
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
            let rows = match date {
                Some(date) => {
                    let date = desk::day(&date, cx.tz)?;
                    desk::day_sheet(c, cx.tz, date, patient, doctor, department, status).await?
                }
                None => {
                    let q = AppointmentQuery {
                        patient_id: patient,
                        doctor_id: doctor,
                        department,
                        status,
                        ..Default::default()
                    };
                    desk::rows(page.paging()?, |limit, cursor| {
                        let q = AppointmentQuery {
                            limit: Some(limit),
                            cursor,
                            ..q.clone()
                        };
                        async move { c.list_appointments(&q).await }
                    })
                    .await?
                }
            };
            list(cx, rows).await?;
        }
        AppointmentCmd::Show { id } => show(&c.get_appointment(id).await?),
    }
    Ok(())
}

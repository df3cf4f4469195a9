//! `hmsctl rx …` (prescriptions) and `hmsctl formulary …` (what can be prescribed, at what price).

use super::{Ctx, PageArgs};
use crate::desk;
use crate::output::{drop, keep, View};
use crate::Failure;
use clap::Subcommand;
use hms_client::models::*;

#[derive(Subcommand)]
pub enum RxCmd {
    /// Write a prescription at an appointment.
    #[command(
        after_help = "Examples:\n  hmsctl rx add --appointment 41 --patient 11 --doctor 3 --medication Paracetamol --dosage 1-0-1 --days 5\n  hmsctl rx add --appointment 41 --patient 11 --doctor 3 --medication 2 --dosage 0-0-1 --days 3   (a formulary id)"
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
        /// Doses morning-noon-night, e.g. 1-0-1.
        #[arg(long)]
        dosage: String,
        /// For how many days.
        #[arg(long)]
        days: i64,
    },
    /// List prescriptions (filters optional), a page at a time.
    List {
        /// Written at this appointment.
        #[arg(long)]
        appointment: Option<i64>,
        /// Of this patient.
        #[arg(long)]
        patient: Option<i64>,
        /// By this doctor.
        #[arg(long)]
        doctor: Option<i64>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// One prescription.
    Show {
        /// Prescription id.
        id: i64,
    },
}

#[derive(Subcommand)]
pub enum FormularyCmd {
    /// Medications that can be prescribed, with their unit prices.
    List,
}

/// A prescription in a list, with the names of its people (JSON and CSV keep the ids).
#[derive(serde::Serialize)]
struct Listed {
    #[serde(flatten)]
    p: Prescription,
    #[serde(skip)]
    patient: String,
    #[serde(skip)]
    doctor: String,
}

const LISTED: View<Listed> = View {
    id: |l| l.p.prescription_id.into(),
    cols: &[
        keep("ID", "prescription_id", |l| l.p.prescription_id.into()),
        drop("Appointment", "appointment_id", |l| {
            l.p.appointment_id.into()
        }),
        keep("Patient", "patient_id", |l| (&l.patient).into()),
        drop("Doctor", "doctor_id", |l| (&l.doctor).into()),
        keep("Medication", "medication", |l| (&l.p.medication).into()),
        keep("Dosage", "dosage", |l| (&l.p.dosage).into()),
        keep("Days", "days", |l| l.p.days.into()),
        drop("Quantity", "quantity", |l| l.p.quantity.into()),
    ],
};

const RX: View<Prescription> = View {
    id: |p| p.prescription_id.into(),
    cols: &[
        keep("ID", "prescription_id", |p| p.prescription_id.into()),
        keep("Appointment", "appointment_id", |p| p.appointment_id.into()),
        keep("Patient", "patient_id", |p| p.patient_id.into()),
        keep("Medication", "medication", |p| (&p.medication).into()),
        keep("Dosage", "dosage", |p| (&p.dosage).into()),
        keep("Days", "days", |p| p.days.into()),
        drop("Quantity", "quantity", |p| p.quantity.into()),
        drop("Unit price", "unit_price", |p| p.unit_price.into()),
    ],
};

const MEDICATION: View<Medication> = View {
    id: |m| m.medication_id.into(),
    cols: &[
        keep("ID", "medication_id", |m| m.medication_id.into()),
        keep("Name", "name", |m| (&m.name).into()),
        keep("Form", "form", |m| (&m.form).into()),
        keep("Unit price", "unit_price", |m| m.unit_price.into()),
        drop("Active", "active", |m| m.active.into()),
    ],
};

pub async fn formulary(cx: &Ctx, cmd: FormularyCmd) -> Result<(), Failure> {
    match cmd {
        FormularyCmd::List => cx.out.list(&cx.c.formulary().await?.items, &MEDICATION),
    }
    Ok(())
}

pub async fn run(cx: &Ctx, cmd: RxCmd) -> Result<(), Failure> {
    let (c, out) = (&cx.c, &cx.out);
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
            out.record(&c.create_prescription(&n).await?, &RX);
        }
        RxCmd::List {
            appointment,
            patient,
            doctor,
            page,
        } => {
            let rows = desk::rows(page.paging()?, |limit, cursor| {
                let q = PrescriptionQuery {
                    appointment_id: appointment,
                    patient_id: patient,
                    doctor_id: doctor,
                    limit: Some(limit),
                    cursor,
                };
                async move { c.list_prescriptions(&q).await }
            })
            .await?;
            let names = desk::names(
                c,
                out,
                rows.iter().map(|p| p.patient_id),
                rows.iter().map(|p| p.doctor_id),
            )
            .await?;
            let listed: Vec<Listed> = rows
                .into_iter()
                .map(|p| Listed {
                    patient: names.patient(p.patient_id),
                    doctor: names.doctor(p.doctor_id),
                    p,
                })
                .collect();
            out.list(&listed, &LISTED);
        }
        RxCmd::Show { id } => out.record(&c.get_prescription(id).await?, &RX),
    }
    Ok(())
}

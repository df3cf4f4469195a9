//! `hmsctl patient …`: register, find, show, update, deactivate; the audit trail.

use super::{date_arg, Ctx, PageArgs, Yes};
use crate::desk;
use crate::output::{drop, keep, shrink, View};
use crate::Failure;
use chrono::NaiveDate;
use clap::Subcommand;
use hms_client::models::*;

#[derive(Subcommand)]
pub enum PatientCmd {
    /// Register a patient.
    #[command(
        after_help = "Example:\n  hmsctl patient add --name \"Priya Sharma\" --phone 9876543210 --dob 1990-04-17 --email priya@example.com"
    )]
    Add {
        /// Full name: letters, spaces and . ' - only.
        #[arg(long)]
        name: String,
        /// Phone number (10 digits, or with a + country code).
        #[arg(long)]
        phone: String,
        /// Date of birth, YYYY-MM-DD.
        #[arg(long, value_parser = date_arg)]
        dob: NaiveDate,
        /// E-mail address (optional).
        #[arg(long)]
        email: Option<String>,
    },
    /// List patients (filters optional), a page at a time.
    List {
        /// Whose name contains this (any case).
        #[arg(long)]
        name: Option<String>,
        /// Whose phone contains this.
        #[arg(long)]
        phone: Option<String>,
        /// Whose e-mail contains this (any case).
        #[arg(long)]
        email: Option<String>,
        /// Only active (true) or deactivated (false) patients.
        #[arg(long)]
        active: Option<bool>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Find patients by name, phone or e-mail (any part, any case).
    #[command(
        after_help = "Examples:\n  hmsctl patient search priya\n  hmsctl patient search 98765"
    )]
    Search {
        /// Part of a name, a phone number or an e-mail address.
        term: String,
    },
    /// One patient's record.
    Show {
        /// Patient id.
        id: i64,
    },
    /// Change details; `--if-match` refuses if the record changed since that version.
    #[command(after_help = "Example:\n  hmsctl patient update 11 --phone 9876500000 --if-match 3")]
    Update {
        /// Patient id.
        id: i64,
        /// New full name.
        #[arg(long)]
        name: Option<String>,
        /// New phone number.
        #[arg(long)]
        phone: Option<String>,
        /// New e-mail address.
        #[arg(long)]
        email: Option<String>,
        /// New date of birth, YYYY-MM-DD.
        #[arg(long, value_parser = date_arg)]
        dob: Option<NaiveDate>,
        /// The version you read (`patient show`); the update is refused if it changed since.
        #[arg(long)]
        if_match: Option<i64>,
    },
    /// Deactivate (asks first unless --yes).
    Deactivate {
        /// Patient id.
        id: i64,
        #[command(flatten)]
        yes: Yes,
    },
    /// Who read or changed the record (admin).
    Audit {
        /// Patient id.
        id: i64,
    },
}

pub const PATIENT: View<Patient> = View {
    id: |p| p.patient_id.into(),
    cols: &[
        keep("ID", "patient_id", |p| p.patient_id.into()),
        keep("Name", "name", |p| (&p.name).into()),
        keep("Phone", "phone", |p| (&p.phone).into()),
        shrink("E-mail", "email", |p| (&p.email).into()),
        drop("Born", "dob", |p| p.dob.to_string().into()),
        drop("Active", "active", |p| p.active.into()),
    ],
};

const AUDIT: View<AuditEntry> = View {
    id: |a| a.audit_id.into(),
    cols: &[
        keep("When", "at", |a| a.at.into()),
        shrink("Who", "subject", |a| (&a.subject).into()),
        keep("Role", "role", |a| (&a.role).into()),
        keep("Action", "action", |a| (&a.action).into()),
        shrink("Detail", "detail", |a| (&a.detail).into()),
        drop("Correlation", "correlation_id", |a| {
            (&a.correlation_id).into()
        }),
    ],
};

/// How a search term is read: an e-mail if it has `@`, a phone if it is digits, else a name.
pub fn search_query(term: &str) -> PatientQuery {
    let t = term.trim();
    if t.contains('@') {
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
    }
}

/// The patients `q` finds, a page (or all) at a time.
async fn list(cx: &Ctx, q: PatientQuery, paging: desk::Paging) -> Result<(), Failure> {
    let c = &cx.c;
    let rows = desk::rows(paging, |limit, cursor| {
        let q = PatientQuery {
            limit: Some(limit),
            cursor,
            ..q.clone()
        };
        async move { c.list_patients(&q).await }
    })
    .await?;
    cx.out.list(&rows, &PATIENT);
    Ok(())
}

pub async fn run(cx: &Ctx, cmd: PatientCmd) -> Result<(), Failure> {
    let (c, out) = (&cx.c, &cx.out);
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
            out.record(&p, &PATIENT);
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
            list(cx, q, page.paging()?).await?;
        }
        PatientCmd::Search { term } => {
            list(cx, search_query(&term), desk::Paging::new(50, false)?).await?
        }
        PatientCmd::Show { id } => out.record(&c.get_patient(id).await?, &PATIENT),
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
            out.record(&c.update_patient(id, &u, if_match).await?, &PATIENT);
        }
        PatientCmd::Deactivate { id, yes } => {
            cx.confirm(yes, &format!("Deactivate patient {id}"))?;
            out.record(&c.deactivate_patient(id).await?, &PATIENT);
        }
        PatientCmd::Audit { id } => {
            let rows = desk::rows(desk::Paging::new(500, true)?, |limit, cursor| async move {
                c.patient_audit(id, Some(limit), cursor.as_deref()).await
            })
            .await?;
            out.list(&rows, &AUDIT);
        }
    }
    Ok(())
}

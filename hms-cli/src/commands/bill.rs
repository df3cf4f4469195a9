//! `hmsctl bill …`: bills, their lines and totals, voiding and credit notes.

use super::{Ctx, PageArgs, Yes};
use crate::desk;
use crate::output::{drop, emit, keep, shrink, View};
use crate::Failure;
use clap::Subcommand;
use hms_client::models::*;
use hms_client::Money;

#[derive(Subcommand)]
pub enum BillCmd {
    /// List bills (filters optional), a page at a time.
    #[command(
        after_help = "Examples:\n  hmsctl bill list --status OPEN\n  hmsctl bill list --patient 11 --all"
    )]
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
    Void {
        /// Bill id.
        id: i64,
        #[command(flatten)]
        yes: Yes,
    },
    /// Record a credit note: the amount due drops by it.
    #[command(
        after_help = "Example:\n  hmsctl bill adjust 12 --amount 50.00 --reason \"senior citizen discount\""
    )]
    Adjust {
        /// Bill id.
        id: i64,
        /// The credit, e.g. 50.00.
        #[arg(long)]
        amount: Money,
        /// Why (kept with the credit note).
        #[arg(long)]
        reason: String,
    },
}

/// A bill in a list, with its patient's name for people to read (JSON and CSV keep the id).
#[derive(serde::Serialize)]
struct Listed {
    #[serde(flatten)]
    b: Bill,
    #[serde(skip)]
    patient: String,
}

const LISTED: View<Listed> = View {
    id: |l| l.b.bill_id.into(),
    cols: &[
        keep("ID", "bill_id", |l| l.b.bill_id.into()),
        keep("Patient", "patient_id", |l| (&l.patient).into()),
        drop("Appointment", "appointment_id", |l| {
            l.b.appointment_id.into()
        }),
        shrink("Purpose", "purpose", |l| (&l.b.purpose).into()),
        keep("Status", "status", |l| (&l.b.status).into()),
        keep("Total", "total", |l| l.b.total.into()),
        drop("Paid", "paid", |l| l.b.paid.into()),
        drop("Refunded", "refunded", |l| l.b.refunded.into()),
        keep("Balance", "balance", |l| l.b.balance.into()),
    ],
};

pub const BILL: View<Bill> = View {
    id: |b| b.bill_id.into(),
    cols: &[
        keep("ID", "bill_id", |b| b.bill_id.into()),
        keep("Patient", "patient_id", |b| b.patient_id.into()),
        drop("Appointment", "appointment_id", |b| b.appointment_id.into()),
        shrink("Purpose", "purpose", |b| (&b.purpose).into()),
        keep("Status", "status", |b| (&b.status).into()),
        keep("Total", "total", |b| b.total.into()),
        drop("Paid", "paid", |b| b.paid.into()),
        drop("Refunded", "refunded", |b| b.refunded.into()),
        keep("Balance", "balance", |b| b.balance.into()),
    ],
};

const LINE: View<BillLine> = View {
    id: |l| (&l.description).into(),
    cols: &[
        shrink("Line", "description", |l| (&l.description).into()),
        keep("Qty", "quantity", |l| l.quantity.into()),
        keep("Unit", "unit_price", |l| l.unit_price.into()),
        keep("Amount", "amount", |l| l.amount.into()),
    ],
};

const ADJUSTMENT: View<Adjustment> = View {
    id: |a| a.adjustment_id.into(),
    cols: &[
        keep("ID", "adjustment_id", |a| a.adjustment_id.into()),
        keep("Bill", "bill_id", |a| a.bill_id.into()),
        keep("Amount", "amount", |a| a.amount.into()),
        shrink("Reason", "reason", |a| (&a.reason).into()),
    ],
};

pub async fn run(cx: &Ctx, cmd: BillCmd) -> Result<(), Failure> {
    let (c, out) = (&cx.c, &cx.out);
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
            let names = desk::names(
                c,
                out,
                rows.iter().map(|b| b.patient_id),
                std::iter::empty(),
            )
            .await?;
            let listed: Vec<Listed> = rows
                .into_iter()
                .map(|b| Listed {
                    patient: names.patient(b.patient_id),
                    b,
                })
                .collect();
            out.list(&listed, &LISTED);
        }
        BillCmd::Show { id } => {
            let b = c.get_bill(id).await?;
            out.record(&b, &BILL);
            if out.for_people() {
                out.list(&b.lines, &LINE);
                emit!(
                    "Subtotal {} · Tax {}",
                    out.amount(b.subtotal),
                    out.amount(b.tax)
                );
                desk::totals(out, &b);
            }
        }
        BillCmd::Void { id, yes } => {
            cx.confirm(yes, &format!("VOID bill {id}"))?;
            out.record(&c.void_bill(id).await?, &BILL);
        }
        BillCmd::Adjust { id, amount, reason } => {
            let a = c.adjust_bill(id, &NewAdjustment { amount, reason }).await?;
            out.record(&a, &ADJUSTMENT);
        }
    }
    Ok(())
}

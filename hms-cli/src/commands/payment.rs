//! `hmsctl pay`, `hmsctl refund` and `hmsctl payment …`: money in and out, never twice.

use super::{Ctx, PageArgs, Yes};
use crate::desk;
use crate::output::{drop, emit, keep, shrink, View};
use crate::Failure;
use clap::{Args, Subcommand};
use hms_client::models::*;
use hms_client::Money;
use serde::Serialize;

#[derive(Args)]
pub struct PayArgs {
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
    #[command(flatten)]
    yes: Yes,
}

#[derive(Args)]
pub struct RefundArgs {
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
}

#[derive(Subcommand)]
pub enum PaymentCmd {
    /// The payments of a bill (with what is left of each to refund).
    #[command(after_help = "Example:\n  hmsctl payment list --bill 12")]
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

/// A payment as taken: `replayed` says a retried key charged nothing more.
#[derive(Serialize)]
struct Taken {
    #[serde(flatten)]
    payment: Payment,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replayed: bool,
}

pub const PAYMENT: View<Payment> = View {
    id: |p| p.payment_id.into(),
    cols: &[
        keep("ID", "payment_id", |p| p.payment_id.into()),
        keep("Bill", "bill_id", |p| p.bill_id.into()),
        keep("Amount", "amount", |p| p.amount.into()),
        keep("Refunded", "refunded", |p| p.refunded.into()),
        keep("Method", "method", |p| (&p.method).into()),
        drop("Reference", "reference", |p| (&p.reference).into()),
        keep("Paid at", "paid_at", |p| p.paid_at.into()),
    ],
};

const TAKEN: View<Taken> = View {
    id: |t| t.payment.payment_id.into(),
    cols: &[
        keep("ID", "payment_id", |t| t.payment.payment_id.into()),
        keep("Bill", "bill_id", |t| t.payment.bill_id.into()),
        keep("Amount", "amount", |t| t.payment.amount.into()),
        keep("Method", "method", |t| (&t.payment.method).into()),
        keep("Reference", "reference", |t| (&t.payment.reference).into()),
        keep("Paid at", "paid_at", |t| t.payment.paid_at.into()),
        keep("Replayed", "replayed", |t| t.replayed.into()),
    ],
};

const REFUND: View<Refund> = View {
    id: |r| r.refund_id.into(),
    cols: &[
        keep("ID", "refund_id", |r| r.refund_id.into()),
        keep("Payment", "payment_id", |r| r.payment_id.into()),
        keep("Bill", "bill_id", |r| r.bill_id.into()),
        keep("Amount", "amount", |r| r.amount.into()),
        shrink("Reason", "reason", |r| (&r.reason).into()),
    ],
};

pub async fn pay(cx: &Ctx, a: PayArgs) -> Result<(), Failure> {
    let asks = desk::Asking {
        no_input: !cx.interactive(),
        yes: a.yes.yes,
    };
    let charge = desk::Charge {
        bill_id: a.bill,
        amount: a.amount,
        method: a.method,
        key: a.key,
    };
    let (payment, replayed) = desk::pay(&cx.c, &cx.out, asks, charge).await?;
    cx.out.record(&Taken { payment, replayed }, &TAKEN);
    Ok(())
}

pub async fn refund(cx: &Ctx, a: RefundArgs) -> Result<(), Failure> {
    let payment = match (a.payment, a.bill) {
        (Some(p), _) => p,
        (None, Some(b)) => desk::refundable(&cx.c, &cx.out, !cx.interactive(), b, a.amount).await?,
        (None, None) => {
            return Err(Failure::usage(
                "give the payment to refund from, or --bill to refund from a bill's payments",
            ))
        }
    };
    let key = a.key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    eprintln!("Idempotency-Key: {key}");
    let r =
        cx.c.refund(
            payment,
            &NewRefund {
                amount: a.amount,
                reason: a.reason,
            },
            &key,
        )
        .await?;
    cx.out.record(&r, &REFUND);
    Ok(())
}

pub async fn run(cx: &Ctx, cmd: PaymentCmd) -> Result<(), Failure> {
    let (c, out) = (&cx.c, &cx.out);
    match cmd {
        PaymentCmd::List { bill, page } => {
            let rows = desk::rows(page.paging()?, |_, _| async move {
                c.payments_of_bill(bill).await
            })
            .await?;
            out.list(&rows, &PAYMENT);
            if out.for_people() && !rows.is_empty() {
                emit!("Refund from one: hmsctl refund <payment id> --amount X, or hmsctl refund --bill {bill} --amount X");
            }
        }
        PaymentCmd::Show { id } => out.record(&c.get_payment(id).await?, &PAYMENT),
    }
    Ok(())
}

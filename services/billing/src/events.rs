//! What other services tell billing, each event applied once (inbox) in one transaction with
//! its effect, and what billing announces (outbox).

use crate::domain;
use crate::store::{self, NewLine, Prescribed};
use chrono::{DateTime, Utc};
use hms_client::models::{Bill, Event};
use hms_kit::db::Tx;
use hms_kit::inbox::payload::{int, one_of, text};
use hms_kit::outbox::{NewEvent, Outbox};
use hms_kit::Error;
use serde_json::{json, Value};

fn money(p: &Value, k: &str) -> Result<i64, Error> {
    hms_kit::inbox::payload::money(p, k).map(|m| m.0)
}

/// Announces a bill's state (`bill.created`, `.updated`, `.paid`, `.voided`, `.refunded`).
pub async fn announce(
    tx: &mut Tx,
    outbox: &Outbox,
    b: &Bill,
    event_type: &'static str,
) -> Result<(), Error> {
    announce_as(tx, outbox, b, event_type, false).await
}

/// As [`announce`]; `legacy` marks imported history, which nobody is notified about.
pub async fn announce_as(
    tx: &mut Tx,
    outbox: &Outbox,
    b: &Bill,
    event_type: &'static str,
    legacy: bool,
) -> Result<(), Error> {
    outbox
        .enqueue(
            tx,
            NewEvent {
                aggregate_type: "bill",
                aggregate_id: b.bill_id.to_string(),
                aggregate_seq: b.version,
                event_type,
                payload: json!({
                    "bill_id": b.bill_id,
                    "patient_id": b.patient_id,
                    "appointment_id": b.appointment_id,
                    "purpose": b.purpose,
                    "status": b.status,
                    "total": b.total,
                    "amount_due": b.amount_due,
                    "paid": b.paid,
                    "refunded": b.refunded,
                    "legacy": legacy,
                }),
            },
        )
        .await?;
    Ok(())
}

/// A fee bill (cancellation or no-show) of one line.
async fn fee_bill(
    tx: &mut Tx,
    outbox: &Outbox,
    p: &Value,
    purpose: &str,
    decision: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let fee = money(p, "consultation_fee")?;
    let Some(amount) = domain::fee(fee, decision)? else {
        return Ok(());
    };
    let description = match purpose {
        "no_show_fee" => "No-show fee (100% of the consultation fee)",
        _ => "Cancellation fee (50% of the consultation fee)",
    };
    let line = NewLine {
        kind: "fee",
        description: description.into(),
        quantity: 1,
        unit_price: amount,
        source_ref: purpose.into(),
    };
    if let Some(b) = store::create(
        tx,
        int(p, "patient_id")?,
        int(p, "appointment_id")?,
        purpose,
        &[line],
        now,
    )
    .await?
    {
        announce(tx, outbox, &b, "bill.created").await?;
    }
    Ok(())
}

/// Applies one event inside the inbox transaction.
pub async fn apply(
    tx: &mut Tx,
    outbox: &Outbox,
    ev: &Event,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let p = &ev.payload;
    match ev.event_type.as_str() {
        "appointment.completed" => {
            let appointment_id = int(p, "appointment_id")?;
            let fee = money(p, "consultation_fee")?;
            let mut lines = vec![NewLine {
                kind: "consultation",
                description: "Consultation".into(),
                quantity: 1,
                unit_price: fee,
                source_ref: "consultation".into(),
            }];
            lines.extend(
                store::prescribed_for(tx, appointment_id)
                    .await?
                    .iter()
                    .map(Prescribed::line),
            );
            if let Some(b) = store::create(
                tx,
                int(p, "patient_id")?,
                appointment_id,
                "consultation",
                &lines,
                now,
            )
            .await?
            {
                announce(tx, outbox, &b, "bill.created").await?;
                let ms = (Utc::now() - ev.occurred_at).num_milliseconds().max(0) as f64;
                metrics::histogram!("bill_creation_latency_ms").record(ms);
                tracing::info!(bill_id = b.bill_id, appointment_id, total = %b.total, "bill created on completion");
            }
        }
        "appointment.cancelled" => match one_of(p, "fee_decision", &["none", "half"])? {
            "half" => fee_bill(tx, outbox, p, "cancellation_fee", "half", now).await?,
            _ => {
                // No fee: nothing is owed for this appointment any more.
                for b in store::of_appointment(tx, int(p, "appointment_id")?).await? {
                    if let Some(v) = store::void(tx, b.bill_id, now).await? {
                        announce(tx, outbox, &v, "bill.voided").await?;
                    }
                }
            }
        },
        "appointment.no_show" => fee_bill(tx, outbox, p, "no_show_fee", "full", now).await?,
        "prescription.created" => {
            let rx = Prescribed {
                prescription_id: int(p, "prescription_id")?,
                appointment_id: int(p, "appointment_id")?,
                medication: text(p, "medication")?,
                quantity: int(p, "quantity")?,
                unit_price: money(p, "unit_price")?,
            };
            store::remember_prescription(tx, &rx).await?;
            // Before completion there is no consultation bill yet: it is priced then, from
            // what was remembered. While that bill is OPEN the medicine becomes a line of it.
            // Once it is settled (PAID, refunded, VOID) its lines never change, so the
            // medicine gets a supplementary bill of its own: never left unbilled.
            let consultation = store::of_appointment(tx, rx.appointment_id)
                .await?
                .into_iter()
                .find(|b| b.purpose == "consultation");
            let Some(b) = consultation else {
                return Ok(());
            };
            if store::lock_if_open(tx, b.bill_id).await? {
                if store::add_line(tx, b.bill_id, &rx.line()).await? {
                    let b = store::recompute(tx, b.bill_id, now).await?;
                    announce(tx, outbox, &b, "bill.updated").await?;
                }
            } else {
                let purpose = format!("supplementary:{}", rx.prescription_id);
                let created = store::create(
                    tx,
                    b.patient_id,
                    rx.appointment_id,
                    &purpose,
                    &[rx.line()],
                    now,
                )
                .await?;
                if let Some(s) = created {
                    tracing::info!(
                        bill_id = s.bill_id,
                        settled = b.bill_id,
                        "supplementary bill for a prescription after settlement"
                    );
                    announce(tx, outbox, &s, "bill.created").await?;
                }
            }
        }
        "payment.captured" | "payment.refunded" => {
            let bill_id = int(p, "bill_id")?;
            let (kind, movement) = if ev.event_type == "payment.captured" {
                ("capture", format!("capture:{}", int(p, "payment_id")?))
            } else {
                ("refund", format!("refund:{}", int(p, "refund_id")?))
            };
            let before = store::head(tx, bill_id).await?;
            let Some(before) = before else {
                tracing::warn!(bill_id, "money movement for an unknown bill ignored");
                return Ok(());
            };
            let amount = money(p, "amount")?;
            if store::record_money(tx, &movement, bill_id, kind, amount).await? {
                let mut after = store::recompute(tx, bill_id, now).await?;
                // A refund is credited: the amount due falls by it, so the balance never asks
                // for the refunded money again (the payment service applies the same rule).
                if kind == "refund" && after.status != "VOID" {
                    let credit = hms_kit::money::refund_credit(amount, after.balance.0);
                    if credit > 0 {
                        let reason = format!(
                            "refund {} of payment {}",
                            int(p, "refund_id")?,
                            int(p, "payment_id")?
                        );
                        store::adjust(tx, bill_id, credit, &reason, "service:payment", now).await?;
                        after = store::recompute(tx, bill_id, now).await?;
                    }
                }
                if after.status != before.status {
                    let event = match after.status.as_str() {
                        "PAID" => "bill.paid",
                        "REFUNDED" | "PARTIALLY_REFUNDED" => "bill.refunded",
                        _ => "bill.updated",
                    };
                    announce(tx, outbox, &after, event).await?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

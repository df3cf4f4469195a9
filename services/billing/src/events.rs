//! What other services tell billing, each event applied once (inbox) in one transaction with
//! its effect, and what billing announces (outbox). Both sides speak the typed contract of
//! `hms_client::contract`.

use crate::domain;
use crate::store::{self, NewLine, Prescribed};
use chrono::{DateTime, Utc};
use hms_client::contract::{
    AppointmentEvent, BillEvent, BillFacts, BillStatus, FeeDecision, PaymentEvent,
    PrescriptionEvent,
};
use hms_client::models::{Bill, Event};
use hms_kit::db::{Script, Tx};
use hms_kit::inbox::decode;
use hms_kit::outbox::{NewEvent, Outbox};
use hms_kit::Error;

/// An event billing acts on, decoded by its producer's contract.
#[derive(Debug, Clone)]
pub enum Incoming {
    Appointment(AppointmentEvent),
    Prescription(PrescriptionEvent),
    Payment(PaymentEvent),
}

/// Reads `ev` by its source's contract: `None` for events billing does not act on.
pub fn incoming(ev: &Event) -> Result<Option<Incoming>, Error> {
    Ok(match ev.source.as_str() {
        "appointment" => decode::<AppointmentEvent>(ev)?.map(Incoming::Appointment),
        "prescription" => decode::<PrescriptionEvent>(ev)?.map(Incoming::Prescription),
        "payment" => decode::<PaymentEvent>(ev)?.map(Incoming::Payment),
        _ => None,
    })
}

/// Announces a bill's state (`bill.created`, `.updated`, `.paid`, `.voided`, `.refunded`).
pub async fn announce(
    tx: &mut Tx,
    outbox: &Outbox,
    b: &Bill,
    kind: fn(BillFacts) -> BillEvent,
) -> Result<(), Error> {
    announce_as(tx, outbox, b, kind, false).await
}

/// As [`announce`]; `legacy` marks imported history, which nobody is notified about.
pub async fn announce_as(
    tx: &mut Tx,
    outbox: &Outbox,
    b: &Bill,
    kind: fn(BillFacts) -> BillEvent,
    legacy: bool,
) -> Result<(), Error> {
    let mut script = Script::new();
    announce_in(&mut script, outbox, b, kind, legacy)?;
    script.run(tx).await
}

/// As [`announce_as`], as statements of `script` (sent with the writes of the change it
/// announces: one hand-off to the database).
pub fn announce_in(
    script: &mut Script,
    outbox: &Outbox,
    b: &Bill,
    kind: fn(BillFacts) -> BillEvent,
    legacy: bool,
) -> Result<(), Error> {
    let status = BillStatus::parse(&b.status)
        .ok_or_else(|| Error::internal(anyhow::anyhow!("bill status {:?}", b.status)))?;
    let facts = BillFacts {
        bill_id: b.bill_id,
        patient_id: b.patient_id,
        appointment_id: b.appointment_id,
        purpose: b.purpose.clone(),
        status,
        total: b.total,
        amount_due: b.amount_due,
        paid: b.paid,
        refunded: b.refunded,
        legacy,
    };
    outbox.enqueue_in(
        script,
        NewEvent::of("bill", b.bill_id, b.version, &kind(facts)),
    )?;
    Ok(())
}

/// The statements announcing a new bill, for [`store::create`].
fn created(outbox: &Outbox) -> impl FnOnce(&Bill) -> Result<Script, Error> + '_ {
    move |b| {
        let mut script = Script::new();
        announce_in(&mut script, outbox, b, BillEvent::Created, false)?;
        Ok(script)
    }
}

/// A fee bill (cancellation or no-show) of one line.
async fn fee_bill(
    tx: &mut Tx,
    outbox: &Outbox,
    a: &hms_client::contract::AppointmentFacts,
    purpose: &str,
    decision: FeeDecision,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let Some(amount) = domain::fee(a.consultation_fee.0, decision)? else {
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
    store::create(
        tx,
        a.patient_id,
        a.appointment_id,
        purpose,
        &[line],
        now,
        created(outbox),
    )
    .await?;
    Ok(())
}

/// Applies one event inside the inbox transaction.
pub async fn apply(
    tx: &mut Tx,
    outbox: &Outbox,
    event: Incoming,
    occurred_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    match event {
        Incoming::Appointment(AppointmentEvent::Completed(done)) => {
            let a = &done.appointment;
            let mut lines = vec![NewLine {
                kind: "consultation",
                description: "Consultation".into(),
                quantity: 1,
                unit_price: a.consultation_fee.0,
                source_ref: "consultation".into(),
            }];
            lines.extend(
                store::prescribed_for(tx, a.appointment_id)
                    .await?
                    .iter()
                    .map(Prescribed::line),
            );
            if let Some(b) = store::create(
                tx,
                a.patient_id,
                a.appointment_id,
                "consultation",
                &lines,
                now,
                created(outbox),
            )
            .await?
            {
                let ms = (Utc::now() - occurred_at).num_milliseconds().max(0) as f64;
                metrics::histogram!("bill_creation_latency_ms", "service" => "billing").record(ms);
                tracing::info!(bill_id = b.bill_id, appointment_id = a.appointment_id, total = %b.total, "bill created on completion");
            }
        }
        Incoming::Appointment(AppointmentEvent::Cancelled(c)) => {
            let a = &c.appointment;
            match a.fee_decision {
                Some(FeeDecision::Half) => {
                    fee_bill(tx, outbox, a, "cancellation_fee", FeeDecision::Half, now).await?
                }
                Some(FeeDecision::None) => {
                    // No fee: nothing is owed for this appointment any more.
                    for b in store::of_appointment(tx, a.appointment_id).await? {
                        if let Some(v) = store::void(tx, b.bill_id, now).await? {
                            announce(tx, outbox, &v, BillEvent::Voided).await?;
                        }
                    }
                }
                other => {
                    return Err(Error::validation(
                        "fee_decision",
                        format!(
                            "a cancellation's fee_decision must be none or half, not {other:?}"
                        ),
                    ))
                }
            }
        }
        Incoming::Appointment(AppointmentEvent::NoShow(n)) => {
            fee_bill(
                tx,
                outbox,
                &n.appointment,
                "no_show_fee",
                FeeDecision::Full,
                now,
            )
            .await?
        }
        Incoming::Appointment(_) => {}
        Incoming::Prescription(PrescriptionEvent::Created(p)) => {
            let rx = Prescribed {
                prescription_id: p.prescription_id,
                appointment_id: p.appointment_id,
                medication: p.medication.clone(),
                quantity: p.quantity,
                unit_price: p.unit_price.0,
            };
            // Before completion there is no consultation bill yet: it is priced then, from
            // what was remembered. While that bill is OPEN the medicine becomes a line of it.
            // Once it is settled (PAID, refunded, VOID) its lines never change, so the
            // medicine gets a supplementary bill of its own: never left unbilled.
            let consultation = store::remember_prescription(tx, &rx)
                .await?
                .into_iter()
                .find(|b| b.purpose == "consultation");
            let Some(b) = consultation else {
                return Ok(());
            };
            if let Some(locked) = store::lock_if_open(tx, b.bill_id).await? {
                if store::add_line(tx, b.bill_id, &rx.line()).await? {
                    let b = store::recompute(tx, locked, now).await?;
                    announce(tx, outbox, &b, BillEvent::Updated).await?;
                }
            } else {
                let purpose = format!("supplementary:{}", rx.prescription_id);
                let made = store::create(
                    tx,
                    b.patient_id,
                    rx.appointment_id,
                    &purpose,
                    &[rx.line()],
                    now,
                    created(outbox),
                )
                .await?;
                if let Some(s) = made {
                    tracing::info!(
                        bill_id = s.bill_id,
                        settled = b.bill_id,
                        "supplementary bill for a prescription after settlement"
                    );
                }
            }
        }
        Incoming::Payment(PaymentEvent::Captured(c)) => {
            // A legacy payment is history: recorded, but it moves no legacy status.
            let movement = if c.legacy {
                format!("legacy:{}", c.payment_id)
            } else {
                format!("capture:{}", c.payment_id)
            };
            money_moved(
                tx, outbox, c.bill_id, "capture", &movement, c.amount.0, None, now,
            )
            .await?
        }
        Incoming::Payment(PaymentEvent::Refunded(r)) => {
            let movement = format!("refund:{}", r.refund_id);
            let reason = format!("refund {} of payment {}", r.refund_id, r.payment_id);
            money_moved(
                tx,
                outbox,
                r.bill_id,
                "refund",
                &movement,
                r.amount.0,
                Some(reason),
                now,
            )
            .await?
        }
        Incoming::Payment(PaymentEvent::Failed(_)) => {}
    }
    Ok(())
}

/// A capture or refund recorded against its bill once (by `movement`), the bill recomputed and
/// its change of status announced. A refund is credited (`credit_reason`): the amount due falls
/// by it, so the balance never asks for the refunded money again (payment applies the same rule).
/// A capture is three hand-offs to the database: the bill locked; the movement recorded and the
/// sums read; the figures written with the event.
#[allow(clippy::too_many_arguments)]
async fn money_moved(
    tx: &mut Tx,
    outbox: &Outbox,
    bill_id: i64,
    kind: &str,
    movement: &str,
    amount: i64,
    credit_reason: Option<String>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let Some((locked, before, recorded)) = store::lock_for_movement(tx, bill_id, movement).await?
    else {
        tracing::warn!(bill_id, "money movement for an unknown bill ignored");
        return Ok(());
    };
    if recorded {
        // The same movement again (under another event id): nothing changes.
        return Ok(());
    }
    // A refund's event waits for its credit note; a capture's goes with its figures.
    let refund = credit_reason.is_some();
    let mut after = store::recompute_with(
        tx,
        locked,
        store::record_money(locked, movement, kind, amount),
        now,
        |was, after| {
            let mut then = Script::new();
            if !refund && after.status != was.status {
                announce_in(&mut then, outbox, after, moved_to(after), false)?;
            }
            Ok(then)
        },
    )
    .await?;
    let Some(reason) = credit_reason else {
        return Ok(());
    };
    if after.status != "VOID" {
        let credit = hms_kit::money::refund_credit(amount, after.balance.0);
        if credit > 0 {
            store::adjust(tx, bill_id, credit, &reason, "service:payment", now).await?;
            after = store::recompute(tx, locked, now).await?;
        }
    }
    if after.status != before.status {
        announce(tx, outbox, &after, moved_to(&after)).await?;
    }
    Ok(())
}

/// The event of a bill's new status after a money movement.
fn moved_to(b: &Bill) -> fn(BillFacts) -> BillEvent {
    match b.status.as_str() {
        "PAID" => BillEvent::Paid,
        "REFUNDED" | "PARTIALLY_REFUNDED" => BillEvent::Refunded,
        _ => BillEvent::Updated,
    }
}

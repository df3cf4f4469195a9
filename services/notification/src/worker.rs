//! Beside the API: the reminder scheduler and the delivery loop.
//!
//! Reminders go out exactly once: each due reminder is marked sent by a guarded UPDATE in the
//! same transaction that records its messages, so of two schedulers (replicas, or a restart in
//! between) only one records them. Delivery then sends recorded messages through the configured
//! provider, retrying with back-off; after `notification_max_attempts` the message is marked
//! `failed` with its last error, where staff see it.

use crate::doctors::{self, Named};
use crate::messages::AppointmentFacts;
use crate::providers::{Outgoing, Provider, SentWhenRecorded};
use crate::store::{self, NewNotification, When};
use futures::future::BoxFuture;
use futures::StreamExt;
use hms_client::models::Patient;
use hms_kit::db::Script;
use hms_kit::pii::{Email, Phone};
use hms_kit::server::ServiceCtx;
use hms_kit::Error;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::time::Duration;
use tokio::sync::watch;

/// Messages claimed for sending in one round; a full round is followed by another at once.
const DELIVERY_ROUND: usize = 128;
/// Messages in flight to the providers at once.
const SENDING_AT_ONCE: usize = 16;
/// Due reminders recorded in one round.
const REMINDER_ROUND: usize = 20;

/// Where a patient's messages go: `(channel, recipient)` for each channel they can be reached on.
pub fn channels(p: &Patient) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(e) = p.email.as_deref().filter(|e| !e.is_empty()) {
        out.push(("EMAIL", e.to_string()));
    }
    if !p.phone.is_empty() {
        out.push(("SMS", p.phone.clone()));
    }
    out
}

/// The patient (contact details, read now so a changed phone number is honoured; the read is
/// audited by the patient service).
pub async fn patient(ctx: &ServiceCtx, patient_id: i64) -> Result<Patient, Error> {
    Ok(ctx.downstream.client().get_patient(patient_id).await?)
}

/// The patient and the doctor (kept, see [`doctors`]) of an appointment's message.
pub async fn patient_and_doctor(
    ctx: &ServiceCtx,
    patient_id: i64,
    doctor_id: i64,
) -> Result<(Patient, Named), Error> {
    tokio::try_join!(patient(ctx, patient_id), doctors::named(ctx, doctor_id))
}

/// How messages are recorded now: the time, and the channels whose messages are sent by being
/// recorded.
#[derive(Debug, Clone, Copy)]
pub struct Recording {
    pub now: chrono::DateTime<chrono::Utc>,
    pub sent: SentWhenRecorded,
}

/// A message to record for a patient: what it says, and the event (or reminder) it is for,
/// which keys it (one per source and channel, however often the source is delivered).
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub source_id: &'a str,
    pub event_type: &'a str,
    pub text: &'a str,
    pub metadata: serde_json::Value,
}

/// Records `message` for every channel of `patient`, `when` it applies. The statements of
/// messages sent by being recorded return them (see [`recorded_sent`]).
pub fn record_for(
    script: &mut Script,
    patient: &Patient,
    message: &Message<'_>,
    when: When<'_>,
    recording: Recording,
) {
    for (channel, recipient) in channels(patient) {
        let new = NewNotification {
            source_id: message.source_id,
            event_type: message.event_type,
            channel,
            patient_id: Some(patient.patient_id),
            recipient: &recipient,
            message: message.text,
            metadata: message.metadata.clone(),
        };
        let sent = recording.sent.channel(channel);
        store::insert_notification(script, &new, when, sent, recording.now);
    }
}

/// Counts and logs the messages recorded as sent, from the rows their statements returned
/// (once the transaction that recorded them has committed).
pub fn recorded_sent(rows: Vec<AnyRow>) {
    for r in rows {
        let (Ok(id), Ok(channel), Ok(recipient)) = (
            r.try_get::<i64, _>("notification_id"),
            r.try_get::<String, _>("channel"),
            r.try_get::<String, _>("recipient"),
        ) else {
            // Recorded and committed all the same; only its count and log line are missing.
            tracing::error!(
                "a message recorded as sent came back without its columns; not counted"
            );
            continue;
        };
        sent(id, &channel, &recipient, "record");
    }
}

/// A message has gone out: counted, and logged with its recipient masked.
fn sent(notification_id: i64, channel: &str, recipient: &str, provider: &str) {
    metrics::counter!("notifications_sent_total", "service" => "notification", "channel" => channel.to_string())
        .increment(1);
    tracing::info!(
        notification_id, channel, provider,
        recipient = %masked(channel, recipient), "notification sent"
    );
}

fn masked(channel: &str, recipient: &str) -> String {
    match channel {
        "EMAIL" => Email::parse(recipient)
            .map(|e| e.to_string())
            .unwrap_or_else(|_| "***".into()),
        _ => Phone::parse(recipient)
            .map(|p| p.to_string())
            .unwrap_or_else(|_| "***".into()),
    }
}

/// The service's background loop.
pub fn run(ctx: ServiceCtx, shutdown: watch::Receiver<bool>) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let providers = match (
            Provider::for_channel(&ctx.config, "EMAIL"),
            Provider::for_channel(&ctx.config, "SMS"),
        ) {
            (Ok(e), Ok(s)) => (e, s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "notification providers are misconfigured; nothing will be sent");
                return;
            }
        };
        let mut shutdown = shutdown;
        let poll = Duration::from_millis(ctx.config.outbox_poll_ms.max(50));
        loop {
            if *shutdown.borrow() {
                return;
            }
            let reminded = send_due_reminders(&ctx).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reminder round failed; retrying");
                0
            });
            let delivered = deliver(&ctx, &providers).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "delivery round failed; retrying");
                0
            });
            // A full round means more may be waiting: go again now. Waiting a poll between
            // full rounds sent one round a second, far fewer than a busy desk books.
            if reminded == REMINDER_ROUND || delivered == DELIVERY_ROUND {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
        }
    })
}

/// Records the messages of every due reminder, each exactly once.
pub async fn send_due_reminders(ctx: &ServiceCtx) -> Result<usize, Error> {
    let now = ctx.clock.now();
    let due = store::due_reminders(&ctx.db, now, REMINDER_ROUND as i64).await?;
    let mut reminded = 0;
    for r in due {
        // Contact details are read now, not when booked: a changed phone number is honoured.
        let (patient, doctor) = patient_and_doctor(ctx, r.reminder.patient_id, r.doctor_id).await?;
        let facts = AppointmentFacts {
            appointment_id: r.reminder.appointment_id,
            doctor: &doctor.name,
            department: &doctor.department,
            slot_start: r.reminder.slot_start,
            tz: ctx.config.clinic_tz(),
            currency: &ctx.config.currency,
        };
        let message = facts.reminder(r.reminder.offset_minutes);
        let mut tx = ctx.db.begin().await?;
        if store::mark_reminder_sent(&mut tx, r.reminder.reminder_id, now).await? {
            let recording = Recording {
                now,
                sent: SentWhenRecorded::of(&ctx.config),
            };
            let message = Message {
                source_id: &format!("reminder:{}", r.reminder.reminder_id),
                event_type: "appointment.reminder",
                text: &message,
                metadata: serde_json::json!({
                    "appointment_id": r.reminder.appointment_id,
                    "reminder_id": r.reminder.reminder_id,
                    "offset_minutes": r.reminder.offset_minutes,
                }),
            };
            let mut script = Script::new();
            record_for(&mut script, &patient, &message, When::Always, recording);
            let rows = script.fetch_all(&mut tx).await?;
            tx.commit().await?;
            recorded_sent(rows);
            reminded += 1;
            tracing::info!(
                reminder_id = r.reminder.reminder_id,
                appointment_id = r.reminder.appointment_id,
                "reminder recorded"
            );
        }
    }
    Ok(reminded)
}

/// Sends recorded messages through their channel's provider: a round's messages at once
/// (up to [`SENDING_AT_ONCE`] in flight), those sent marked so in one statement.
pub async fn deliver(ctx: &ServiceCtx, providers: &(Provider, Provider)) -> Result<usize, Error> {
    let claimed = store::claim_pending(
        &ctx.db,
        chrono::Duration::seconds(60),
        DELIVERY_ROUND as i64,
    )
    .await?;
    let n = claimed.len();
    let attempts = futures::stream::iter(claimed)
        .map(|c| async move {
            let provider = if c.channel == "EMAIL" {
                &providers.0
            } else {
                &providers.1
            };
            let out = Outgoing {
                notification_id: c.notification_id,
                channel: c.channel.clone(),
                recipient: c.recipient.clone(),
                event_type: c.event_type.clone(),
                message: c.message.clone(),
            };
            let outcome = provider.send(&out).await;
            (c, provider.name(), outcome)
        })
        .buffer_unordered(SENDING_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
    let mut done = Vec::with_capacity(n);
    for (c, provider, outcome) in attempts {
        match outcome {
            Ok(()) => {
                sent(c.notification_id, &c.channel, &c.recipient, provider);
                done.push(c.notification_id);
            }
            Err(err) => {
                let last = c.attempts >= ctx.config.notification_max_attempts;
                let retry_at = (!last).then(|| {
                    chrono::Utc::now()
                        + hms_kit::outbox::backoff(
                            c.attempts,
                            Duration::from_millis(ctx.config.outbox_max_backoff_ms),
                        )
                });
                store::mark_failed(&ctx.db, c.notification_id, &err, retry_at).await?;
                if last {
                    metrics::counter!("notifications_failed_total", "service" => "notification", "channel" => c.channel.clone())
                        .increment(1);
                    tracing::error!(notification_id = c.notification_id, provider, error = %err, "notification failed for good");
                } else {
                    tracing::warn!(notification_id = c.notification_id, provider, attempts = c.attempts, error = %err, "notification not sent; will retry");
                }
            }
        }
    }
    // A message sent but not yet marked (a crash just here) is sent again after its lease:
    // at least once, as before, the window now a round instead of one message.
    store::mark_sent(&ctx.db, &done).await?;
    Ok(n)
}

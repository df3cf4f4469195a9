//! Beside the API: the reminder scheduler and the delivery loop.
//!
//! Reminders go out exactly once: each due reminder is marked sent by a guarded UPDATE in the
//! same transaction that records its messages, so of two schedulers (replicas, or a restart in
//! between) only one records them. Delivery then sends recorded messages through the configured
//! provider, retrying with back-off; after `notification_max_attempts` the message is marked
//! `failed` with its last error, where staff see it.

use crate::messages::AppointmentFacts;
use crate::providers::{Outgoing, Provider};
use crate::store::{self, NewNotification};
use futures::future::BoxFuture;
use hms_client::models::{Doctor, Patient};
use hms_kit::db::Script;
use hms_kit::pii::{Email, Phone};
use hms_kit::server::ServiceCtx;
use hms_kit::Error;
use std::time::Duration;
use tokio::sync::watch;

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

/// The patient (contact details; the read is audited by the patient service) and the doctor.
pub async fn lookup(
    ctx: &ServiceCtx,
    patient_id: i64,
    doctor_id: Option<i64>,
) -> Result<(Patient, Option<Doctor>), Error> {
    let client = ctx.downstream.client();
    let patient = client.get_patient(patient_id).await?;
    let doctor = match doctor_id {
        Some(d) => Some(client.get_doctor(d).await?),
        None => None,
    };
    Ok((patient, doctor))
}

/// Records `message` for every channel of `patient`, keyed by `source_id`.
pub fn record_for(
    script: &mut Script,
    patient: &Patient,
    source_id: &str,
    event_type: &str,
    message: &str,
    metadata: serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) {
    for (channel, recipient) in channels(patient) {
        let new = NewNotification {
            source_id,
            event_type,
            channel,
            patient_id: Some(patient.patient_id),
            recipient: &recipient,
            message,
            metadata: metadata.clone(),
        };
        store::insert_notification(script, &new, now);
    }
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
            if let Err(e) = send_due_reminders(&ctx).await {
                tracing::warn!(error = %e, "reminder round failed; retrying");
            }
            if let Err(e) = deliver(&ctx, &providers).await {
                tracing::warn!(error = %e, "delivery round failed; retrying");
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
    let due = store::due_reminders(&ctx.db, now, 20).await?;
    let mut sent = 0;
    for r in due {
        // Contact details are read now, not when booked: a changed phone number is honoured.
        let (patient, doctor) = lookup(ctx, r.reminder.patient_id, Some(r.doctor_id)).await?;
        let doctor = doctor.expect("asked for the doctor");
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
            let mut script = Script::new();
            record_for(
                &mut script,
                &patient,
                &format!("reminder:{}", r.reminder.reminder_id),
                "appointment.reminder",
                &message,
                serde_json::json!({
                    "appointment_id": r.reminder.appointment_id,
                    "reminder_id": r.reminder.reminder_id,
                    "offset_minutes": r.reminder.offset_minutes,
                }),
                now,
            );
            script.run(&mut tx).await?;
            tx.commit().await?;
            sent += 1;
            tracing::info!(
                reminder_id = r.reminder.reminder_id,
                appointment_id = r.reminder.appointment_id,
                "reminder recorded"
            );
        }
    }
    Ok(sent)
}

/// Sends recorded messages through their channel's provider.
pub async fn deliver(ctx: &ServiceCtx, providers: &(Provider, Provider)) -> Result<usize, Error> {
    let claimed = store::claim_pending(&ctx.db, chrono::Duration::seconds(60), 32).await?;
    let n = claimed.len();
    for c in claimed {
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
        match provider.send(&out).await {
            Ok(()) => {
                store::mark_sent(&ctx.db, c.notification_id).await?;
                metrics::counter!("notifications_sent_total", "service" => "notification", "channel" => c.channel.clone())
                    .increment(1);
                tracing::info!(
                    notification_id = c.notification_id, channel = %c.channel, provider = provider.name(),
                    recipient = %masked(&c.channel, &c.recipient), "notification sent"
                );
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
                    tracing::error!(notification_id = c.notification_id, provider = provider.name(), error = %err, "notification failed for good");
                } else {
                    tracing::warn!(notification_id = c.notification_id, provider = provider.name(), attempts = c.attempts, error = %err, "notification not sent; will retry");
                }
            }
        }
    }
    Ok(n)
}

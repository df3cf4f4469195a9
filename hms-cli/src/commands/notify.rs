//! `hmsctl notifications …`, `hmsctl reminders …` and `hmsctl alerts`: what patients were told,
//! what they will be reminded of, and a live feed of both.

use super::{instant, Ctx, PageArgs};
use crate::desk;
use crate::output::{csv_row, drop, emit, keep, shrink, Format, View};
use crate::Failure;
use chrono::Utc;
use clap::{Args, Subcommand};
use hms_client::models::*;

#[derive(Subcommand)]
pub enum NotificationsCmd {
    /// Messages sent (or being sent) to patients, newest last, a page at a time.
    #[command(
        after_help = "Examples:\n  hmsctl notifications list --patient 11\n  hmsctl notifications list --since \"2026-12-01 09:00\" --event-type appointment.cancelled"
    )]
    List {
        /// To this patient.
        #[arg(long)]
        patient: Option<i64>,
        /// Of this event, e.g. appointment.created, bill.created, payment.captured.
        #[arg(long)]
        event_type: Option<String>,
        /// pending, sent or failed.
        #[arg(long)]
        status: Option<String>,
        /// Recorded at or after this time (clinic time, "YYYY-MM-DD HH:MM").
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
}

#[derive(Subcommand)]
pub enum RemindersCmd {
    /// Reminders (scheduled, sent, cancelled), optionally of one appointment.
    #[command(after_help = "Example:\n  hmsctl reminders list --status scheduled")]
    List {
        /// Of this appointment.
        #[arg(long)]
        appointment: Option<i64>,
        /// scheduled, sent or cancelled.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
}

#[derive(Args)]
pub struct AlertArgs {
    /// Poll interval in seconds.
    #[arg(long, default_value_t = 2)]
    every: u64,
    /// Stop after this many alerts (scripts, tests).
    #[arg(long)]
    max: Option<usize>,
    /// Show alerts recorded in the last N minutes first.
    #[arg(long, default_value_t = 0)]
    backlog_minutes: i64,
}

const NOTE: View<Notification> = View {
    id: |n| n.notification_id.into(),
    cols: &[
        drop("ID", "notification_id", |n| n.notification_id.into()),
        keep("When", "created_at", |n| n.created_at.into()),
        drop("Event", "event_type", |n| (&n.event_type).into()),
        drop("Channel", "channel", |n| (&n.channel).into()),
        shrink("To", "recipient", |n| (&n.recipient).into()),
        drop("Status", "status", |n| (&n.status).into()),
        shrink("Message", "message", |n| (&n.message).into()),
    ],
};

const REMINDER: View<Reminder> = View {
    id: |r| r.reminder_id.into(),
    cols: &[
        keep("ID", "reminder_id", |r| r.reminder_id.into()),
        keep("Appointment", "appointment_id", |r| r.appointment_id.into()),
        drop("Starts", "slot_start", |r| r.slot_start.into()),
        keep("Due", "due_at", |r| r.due_at.into()),
        keep("Status", "status", |r| (&r.status).into()),
    ],
};

pub async fn notifications(cx: &Ctx, cmd: NotificationsCmd) -> Result<(), Failure> {
    let NotificationsCmd::List {
        patient,
        event_type,
        status,
        since,
        page,
    } = cmd;
    let since = since.map(|s| instant(&s, cx.tz)).transpose()?;
    let c = &cx.c;
    let rows = desk::rows(page.paging()?, |limit, cursor| {
        let q = NotificationQuery {
            patient_id: patient,
            event_type: event_type.clone(),
            status: status.clone(),
            since,
            limit: Some(limit),
            cursor,
            ..Default::default()
        };
        async move { c.list_notifications(&q).await }
    })
    .await?;
    cx.out.list(&rows, &NOTE);
    Ok(())
}

pub async fn reminders(cx: &Ctx, cmd: RemindersCmd) -> Result<(), Failure> {
    let RemindersCmd::List {
        appointment,
        status,
        page,
    } = cmd;
    let c = &cx.c;
    let rows = desk::rows(page.paging()?, |limit, cursor| {
        let q = ReminderQuery {
            appointment_id: appointment,
            status: status.clone(),
            limit: Some(limit),
            cursor,
        };
        async move { c.list_reminders(&q).await }
    })
    .await?;
    cx.out.list(&rows, &REMINDER);
    Ok(())
}

/// Prints notifications as they appear, oldest first, each once: a line each for people,
/// one JSON object per line (`-o json`), or CSV under one header.
pub async fn alerts(cx: &Ctx, a: AlertArgs) -> Result<(), Failure> {
    let out = &cx.out;
    let mut since = Utc::now() - chrono::Duration::minutes(a.backlog_minutes.max(0));
    let mut seen = std::collections::HashSet::new();
    let mut shown = 0usize;
    loop {
        let q = NotificationQuery {
            since: Some(since),
            limit: Some(500),
            ..Default::default()
        };
        let page = cx.c.list_notifications(&q).await?;
        for n in page.items {
            if !seen.insert(n.notification_id) {
                continue;
            }
            since = since.max(n.created_at);
            if out.quiet {
                emit!("{}", n.notification_id);
            } else if out.format == Format::Json {
                emit!("{}", serde_json::to_string(&n).unwrap_or_default());
            } else if out.format == Format::Csv {
                if shown == 0 {
                    emit!(
                        "{}",
                        NOTE.cols
                            .iter()
                            .map(|c| c.key)
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                }
                emit!("{}", csv_row(&n, &NOTE));
            } else {
                let when = n.created_at.with_timezone(&cx.tz).format("%H:%M:%S %Z");
                emit!(
                    "{when}  {:<24} {:<5} {:<28} {}",
                    n.event_type,
                    n.channel,
                    n.recipient,
                    n.message
                );
            }
            shown += 1;
            if a.max.is_some_and(|m| shown >= m) {
                return Ok(());
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(a.every.max(1))).await;
    }
}

//! Notification SQL, written once for SQLite and PostgreSQL.

use chrono::{DateTime, Utc};
use hms_client::models::{Notification, NotificationQuery, Reminder, ReminderQuery};
use hms_kit::db::{ids_in, ids_param, unindexed, Bind, Db, Script, Select, Tx};
use hms_kit::pagination::PageRequest;
use hms_kit::time::{from_db, to_db};
use hms_kit::Error;
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

const N: &str = "notification_id, source_id, event_type, channel, patient_id, recipient, message, \
                 metadata, status, attempts, last_error, created_at, sent_at";
const R: &str = "reminder_id, appointment_id, patient_id, doctor_id, slot_start, due_at, offset_minutes, status, sent_at";

fn opt_time(r: &AnyRow, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    r.try_get::<Option<String>, _>(col)?
        .map(|s| from_db(&s))
        .transpose()
}

fn notification(r: &AnyRow) -> Result<Notification, sqlx::Error> {
    Ok(Notification {
        notification_id: r.try_get("notification_id")?,
        source_id: r.try_get("source_id")?,
        event_type: r.try_get("event_type")?,
        channel: r.try_get("channel")?,
        patient_id: r.try_get("patient_id")?,
        recipient: r.try_get("recipient")?,
        message: r.try_get("message")?,
        metadata: serde_json::from_str(&r.try_get::<String, _>("metadata")?)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
        created_at: from_db(&r.try_get::<String, _>("created_at")?)?,
        sent_at: opt_time(r, "sent_at")?,
    })
}

/// A reminder row, with the doctor it is for.
#[derive(Debug, Clone)]
pub struct DueReminder {
    pub reminder: Reminder,
    pub doctor_id: i64,
}

fn reminder(r: &AnyRow) -> Result<DueReminder, sqlx::Error> {
    Ok(DueReminder {
        reminder: Reminder {
            reminder_id: r.try_get("reminder_id")?,
            appointment_id: r.try_get("appointment_id")?,
            patient_id: r.try_get("patient_id")?,
            slot_start: from_db(&r.try_get::<String, _>("slot_start")?)?,
            due_at: from_db(&r.try_get::<String, _>("due_at")?)?,
            offset_minutes: r.try_get("offset_minutes")?,
            status: r.try_get("status")?,
            sent_at: opt_time(r, "sent_at")?,
        },
        doctor_id: r.try_get("doctor_id")?,
    })
}

/// What an appointment event says.
#[derive(Debug, Clone)]
pub struct AppointmentState {
    pub appointment_id: i64,
    pub patient_id: i64,
    pub doctor_id: i64,
    pub slot_start: DateTime<Utc>,
    pub status: String,
    pub seq: i64,
}

/// When an event's statements take effect: always, or only if its appointment state is the
/// newest recorded (its [`record_appointment`], earlier in the same script, took: a late or
/// repeated event then changes nothing). Decided in each statement, by the database, so an
/// event's effect is statements alone: one script, one hand-off.
#[derive(Debug, Clone, Copy)]
pub enum When<'a> {
    Always,
    Newest(&'a AppointmentState),
}

impl When<'_> {
    fn sql(&self) -> &'static str {
        match self {
            When::Always => "true",
            When::Newest(_) => {
                "EXISTS (SELECT 1 FROM appointment_state WHERE appointment_id = ? AND seq = ?)"
            }
        }
    }

    fn binds(&self) -> Vec<Bind> {
        match self {
            When::Always => Vec::new(),
            When::Newest(s) => vec![Bind::Int(s.appointment_id), Bind::Int(s.seq)],
        }
    }
}

/// Records an appointment's state if `s` is newer than what is known (a statement of
/// `script`; the statements after it guarded by [`When::Newest`] follow whether it took).
pub fn record_appointment(script: &mut Script, s: &AppointmentState) {
    script.push(
        "INSERT INTO appointment_state (appointment_id, patient_id, doctor_id, slot_start, status, seq) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (appointment_id) DO UPDATE SET \
         slot_start = excluded.slot_start, status = excluded.status, seq = excluded.seq \
         WHERE appointment_state.seq < excluded.seq",
        [
            Bind::Int(s.appointment_id),
            Bind::Int(s.patient_id),
            Bind::Int(s.doctor_id),
            Bind::Text(to_db(s.slot_start)),
            Bind::Text(s.status.clone()),
            Bind::Int(s.seq),
        ],
    );
}

/// Cancels an appointment's reminders that have not gone out, if `s` is its newest state.
pub fn cancel_reminders(script: &mut Script, s: &AppointmentState) {
    let when = When::Newest(s);
    script.push(
        &format!(
            "UPDATE reminders SET status = 'cancelled' \
             WHERE appointment_id = ? AND status = 'scheduled' AND {}",
            when.sql()
        ),
        std::iter::once(Bind::Int(s.appointment_id)).chain(when.binds()),
    );
}

/// Schedules the reminders of an appointment (those not already due), if `s` is its newest
/// state, as statements of `script`.
pub fn schedule_reminders(
    script: &mut Script,
    s: &AppointmentState,
    offsets: &[i64],
    now: DateTime<Utc>,
) {
    let when = When::Newest(s);
    for &offset in offsets {
        let due = s.slot_start - chrono::Duration::minutes(offset);
        if due <= now {
            continue;
        }
        let values = [
            Bind::Int(s.appointment_id),
            Bind::Int(s.patient_id),
            Bind::Int(s.doctor_id),
            Bind::Text(to_db(s.slot_start)),
            Bind::Int(offset),
            Bind::Text(to_db(due)),
            Bind::Int(s.seq),
            Bind::Text(to_db(now)),
        ];
        script.push(
            &format!(
                "INSERT INTO reminders (appointment_id, patient_id, doctor_id, slot_start, offset_minutes, due_at, \
                 appointment_seq, status, created_at) SELECT ?, ?, ?, ?, ?, ?, ?, 'scheduled', ? WHERE {} \
                 ON CONFLICT (appointment_id, slot_start, offset_minutes) DO UPDATE SET status = 'scheduled', \
                 appointment_seq = excluded.appointment_seq WHERE reminders.status = 'cancelled'",
                when.sql()
            ),
            values.into_iter().chain(when.binds()),
        );
    }
}

/// A message to record.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub source_id: &'a str,
    pub event_type: &'a str,
    pub channel: &'a str,
    pub patient_id: Option<i64>,
    pub recipient: &'a str,
    pub message: &'a str,
    pub metadata: serde_json::Value,
}

/// Records a message to send, as a statement of `script`, `when` it applies; a second one for
/// the same source and channel is ignored. A message `sent` by being recorded (see
/// `providers::SentWhenRecorded`) is recorded as sent, and the statement returns it
/// ([`SENT_COLUMNS`]) if it was recorded.
pub fn insert_notification(
    script: &mut Script,
    n: &NewNotification<'_>,
    when: When<'_>,
    sent: bool,
    now: DateTime<Utc>,
) {
    let values = [
        Bind::Text(n.source_id.to_string()),
        Bind::Text(n.event_type.to_string()),
        Bind::Text(n.channel.to_string()),
        Bind::OptInt(n.patient_id),
        Bind::Text(n.recipient.to_string()),
        Bind::Text(n.message.to_string()),
        Bind::Text(n.metadata.to_string()),
        Bind::Text(to_db(Utc::now())),
        Bind::Text(to_db(now)),
    ];
    let (status, attempts, sent_at, returning) = if sent {
        ("'sent'", 1, "?", format!(" RETURNING {SENT_COLUMNS}"))
    } else {
        ("'pending'", 0, "NULL", String::new())
    };
    let sent_at_bind = sent.then(|| Bind::Text(to_db(now)));
    let values = values.into_iter().chain(sent_at_bind);
    script.push(
        &format!(
            "INSERT INTO notifications (source_id, event_type, channel, patient_id, recipient, message, metadata, \
             next_attempt_at, created_at, sent_at, status, attempts) \
             SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, {sent_at}, {status}, {attempts} WHERE {} \
             ON CONFLICT (source_id, channel) DO NOTHING{returning}",
            when.sql()
        ),
        values.chain(when.binds()),
    );
}

/// What an insert of a message recorded as sent returns.
pub const SENT_COLUMNS: &str = "notification_id, channel, recipient";

/// Reminders due by `now` that have not gone out.
pub async fn due_reminders(
    db: &Db,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DueReminder>, Error> {
    let rows = sqlx::query(&format!(
        "SELECT {R} FROM reminders WHERE status = 'scheduled' AND due_at <= $1 ORDER BY due_at LIMIT $2"
    ))
    .bind(to_db(now))
    .bind(limit)
    .fetch_all(&mut *db.read().await?)
    .await?;
    Ok(rows.iter().map(reminder).collect::<Result<_, _>>()?)
}

/// Marks a reminder sent, if it still is scheduled: of two schedulers, only one gets `true`.
pub async fn mark_reminder_sent(tx: &mut Tx, id: i64, now: DateTime<Utc>) -> Result<bool, Error> {
    Ok(sqlx::query("UPDATE reminders SET status = 'sent', sent_at = $1 WHERE reminder_id = $2 AND status = 'scheduled'")
        .bind(to_db(now))
        .bind(id)
        .execute(&mut **tx)
        .await?
        .rows_affected()
        == 1)
}

/// A notification claimed for delivery.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub notification_id: i64,
    pub channel: String,
    pub recipient: String,
    pub event_type: String,
    pub message: String,
    pub attempts: i64,
}

/// Claims pending notifications due for an attempt, with a lease (any number of workers).
pub async fn claim_pending(
    db: &Db,
    lease: chrono::Duration,
    batch: i64,
) -> Result<Vec<Claimed>, Error> {
    let now = Utc::now();
    // The oldest due first, in the due index's order (no sort of every due message). A claim
    // moves the message's next attempt to its lease's end: one being sent is then not due, and
    // claims walking the due index pass over none (a claim with thousands recorded took 5.6 ms,
    // reading every leased message to skip it); one whose worker died is due when its lease
    // ends. The lease predicate stays the judge. On SQLite, `+` finds the rows picked by key
    // rather than walking the due index again for the update.
    let plus = unindexed(db.backend());
    let rows = sqlx::query(&format!(
        "UPDATE notifications SET lease_until = $1, next_attempt_at = $1, attempts = attempts + 1 \
         WHERE {plus}status = 'pending' AND {plus}next_attempt_at <= $2 \
           AND ({plus}lease_until IS NULL OR {plus}lease_until < $2) \
         AND notification_id IN (SELECT notification_id FROM notifications WHERE status = 'pending' \
           AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until < $2) \
           ORDER BY next_attempt_at, notification_id LIMIT $3) \
         RETURNING notification_id, channel, recipient, event_type, message, attempts",
    ))
    .bind(to_db(now + lease))
    .bind(to_db(now))
    .bind(batch)
    .fetch_all(&mut *db.write().await?)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Claimed {
                notification_id: r.try_get("notification_id")?,
                channel: r.try_get("channel")?,
                recipient: r.try_get("recipient")?,
                event_type: r.try_get("event_type")?,
                message: r.try_get("message")?,
                attempts: r.try_get("attempts")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Marks every message of `ids` sent, in one statement (a round's sends, however many).
pub async fn mark_sent(db: &Db, ids: &[i64]) -> Result<(), Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "UPDATE notifications SET status = 'sent', sent_at = $1, lease_until = NULL, last_error = NULL \
         WHERE notification_id IN {}",
        ids_in(db.backend(), "$2")
    ))
    .bind(to_db(Utc::now()))
    .bind(ids_param(ids)?)
    .execute(&mut *db.write().await?)
    .await?;
    Ok(())
}

/// A failed attempt: retried at `retry_at`, or marked failed when that is `None`.
pub async fn mark_failed(
    db: &Db,
    id: i64,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> Result<(), Error> {
    let (status, next) = match retry_at {
        Some(t) => ("pending", t),
        None => ("failed", Utc::now()),
    };
    sqlx::query("UPDATE notifications SET status = $1, next_attempt_at = $2, lease_until = NULL, last_error = $3 WHERE notification_id = $4")
        .bind(status)
        .bind(to_db(next))
        .bind(error)
        .bind(id)
        .execute(&mut *db.write().await?)
        .await?;
    Ok(())
}

pub async fn list_notifications<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    q: &NotificationQuery,
    page: PageRequest,
) -> Result<Vec<Notification>, Error> {
    let mut s = Select::new(&format!("SELECT {N} FROM notifications WHERE 1 = 1"));
    s.and("notification_id > ?", Bind::Int(page.after_or_min()));
    if let Some(r) = q
        .recipient
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    {
        s.and("recipient = ?", Bind::Text(r.to_string()));
    }
    if let Some(p) = q.patient_id {
        s.and("patient_id = ?", Bind::Int(p));
    }
    if let Some(t) = q.event_type.as_deref().filter(|t| !t.is_empty()) {
        s.and("event_type = ?", Bind::Text(t.to_string()));
    }
    if let Some(st) = q.status.as_deref().filter(|t| !t.is_empty()) {
        s.and("status = ?", Bind::Text(st.to_lowercase()));
    }
    if let Some(since) = q.since {
        s.and("created_at >= ?", Bind::Text(to_db(since)));
    }
    s.push(
        " ORDER BY notification_id LIMIT ?",
        [Bind::Int(page.fetch())],
    );
    Ok(s.fetch_all(exec)
        .await?
        .iter()
        .map(notification)
        .collect::<Result<_, _>>()?)
}

pub async fn list_reminders<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    q: &ReminderQuery,
    page: PageRequest,
) -> Result<Vec<Reminder>, Error> {
    let mut s = Select::new(&format!("SELECT {R} FROM reminders WHERE 1 = 1"));
    s.and("reminder_id > ?", Bind::Int(page.after_or_min()));
    if let Some(a) = q.appointment_id {
        s.and("appointment_id = ?", Bind::Int(a));
    }
    if let Some(st) = q.status.as_deref().filter(|t| !t.is_empty()) {
        s.and("status = ?", Bind::Text(st.to_lowercase()));
    }
    s.push(" ORDER BY reminder_id LIMIT ?", [Bind::Int(page.fetch())]);
    Ok(s.fetch_all(exec)
        .await?
        .iter()
        .map(|r| reminder(r).map(|d| d.reminder))
        .collect::<Result<_, _>>()?)
}

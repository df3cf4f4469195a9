//! Notification service (8007) models.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A message to a patient on one channel, and what became of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Notification {
    pub notification_id: i64,
    /// The event (or `reminder:<id>`) it was made for.
    pub source_id: String,
    pub event_type: String,
    /// `EMAIL` or `SMS`.
    pub channel: String,
    pub patient_id: Option<i64>,
    pub recipient: String,
    pub message: String,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// `pending`, `sent` or `failed` (gave up after retries; `last_error` says why).
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// Filters of `GET /v1/notifications`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// Exact recipient (an e-mail address or phone number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Created at or after this instant.
    #[serde(
        default,
        with = "crate::time::flexible_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A reminder scheduled for an appointment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Reminder {
    pub reminder_id: i64,
    pub appointment_id: i64,
    pub patient_id: i64,
    pub slot_start: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    /// Minutes before the start (e.g. 1440, 120).
    pub offset_minutes: i64,
    /// `scheduled`, `sent` or `cancelled`.
    pub status: String,
    pub sent_at: Option<DateTime<Utc>>,
}

/// Filters of `GET /v1/reminders`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReminderQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appointment_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

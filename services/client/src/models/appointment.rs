//! Appointment service (8004) models.

use crate::Money;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An appointment: one standard 30-minute slot of a doctor for a patient.
/// Every status an appointment can have.
pub const APPOINTMENT_STATUSES: [&str; 4] = ["SCHEDULED", "CANCELLED", "NO_SHOW", "COMPLETED"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Appointment {
    pub appointment_id: i64,
    pub patient_id: i64,
    pub doctor_id: i64,
    pub department: String,
    pub slot_start: DateTime<Utc>,
    pub slot_end: DateTime<Utc>,
    /// One of [`APPOINTMENT_STATUSES`].
    pub status: String,
    pub reschedule_count: i64,
    /// Bumped on every change; send it as `If-Match` on transitions.
    pub version: i64,
    /// The doctor's fee when booked (what a cancellation or no-show fee is based on).
    pub consultation_fee: Money,
    /// `none`, `half` (cancelled 2 hours or less before start) or `full` (no-show).
    pub fee_decision: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/appointments`. `slot_end` may be omitted (a standard slot is 30 minutes).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAppointment {
    pub patient_id: i64,
    pub doctor_id: i64,
    #[schema(schema_with = crate::schema::text)]
    pub department: String,
    /// RFC 3339; without an offset it is read as UTC.
    #[serde(with = "crate::time::flexible")]
    #[schema(value_type = String, format = DateTime)]
    pub slot_start: DateTime<Utc>,
    #[serde(
        default,
        with = "crate::time::flexible_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub slot_end: Option<DateTime<Utc>>,
}

/// `POST /v1/appointments/{id}/reschedule` (JSON body, or the same as query parameters).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Reschedule {
    #[serde(with = "crate::time::flexible")]
    #[schema(value_type = String, format = DateTime)]
    #[param(value_type = Option<String>, format = DateTime)]
    pub new_slot_start: DateTime<Utc>,
    #[serde(
        default,
        with = "crate::time::flexible_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    #[param(value_type = Option<String>, format = DateTime)]
    pub new_slot_end: Option<DateTime<Utc>>,
}

/// Filters of `GET /v1/appointments`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AppointmentQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doctor_id: Option<i64>,
    /// `SCHEDULED`, `CANCELLED`, `NO_SHOW`, `COMPLETED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(schema_with = crate::schema::appointment_status_opt)]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Slots starting at or after this instant.
    #[serde(
        default,
        with = "crate::time::flexible_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<DateTime<Utc>>,
    /// Slots starting before this instant.
    #[serde(
        default,
        with = "crate::time::flexible_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `POST /v1/appointments/import` (admin): a historical appointment, kept with its id and
/// status. Booking rules are not re-judged; structural problems are fixed with a warning or
/// refused.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegacyAppointment {
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub appointment_id: i64,
    #[schema(minimum = 1)]
    pub patient_id: i64,
    #[schema(minimum = 1)]
    pub doctor_id: i64,
    #[schema(schema_with = crate::schema::text)]
    pub department: String,
    #[serde(with = "crate::time::flexible")]
    #[schema(value_type = String, format = DateTime)]
    pub slot_start: DateTime<Utc>,
    #[serde(with = "crate::time::flexible")]
    #[schema(value_type = String, format = DateTime)]
    pub slot_end: DateTime<Utc>,
    #[schema(schema_with = crate::schema::appointment_status)]
    pub status: String,
    #[serde(with = "crate::time::flexible")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// The fee the old system recorded; omitted → the doctor's current fee (with a warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::price_opt)]
    pub consultation_fee: Option<Money>,
}

/// What an import did with one record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ImportOutcome {
    /// `imported` or `already_present`.
    pub outcome: String,
    pub warnings: Vec<String>,
}

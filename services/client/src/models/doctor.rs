//! Doctor and scheduling service (8002) models.

use crate::Money;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// A doctor of the hospital.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Doctor {
    pub doctor_id: i64,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub department: String,
    pub specialization: String,
    pub consultation_fee: Money,
    pub active: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/doctors`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDoctor {
    /// Only for importing legacy records, which keep their ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub doctor_id: Option<i64>,
    #[schema(schema_with = crate::schema::name)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::email_opt)]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::phone_or_blank)]
    pub phone: Option<String>,
    #[schema(schema_with = crate::schema::text)]
    pub department: String,
    #[schema(schema_with = crate::schema::text)]
    pub specialization: String,
    /// Omitted → the clinic's default fee (`default_consultation_fee`, 500.00 unless configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::price_opt)]
    pub consultation_fee: Option<Money>,
    /// Weekly hours; omitted → Monday to Friday, 09:00–18:00 clinic time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_hours: Option<Vec<WorkingHours>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

/// `PATCH /v1/doctors/{id}`: only the fields given change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct DoctorUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::name_opt)]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::email_opt)]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::phone_or_blank)]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::text_opt)]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::text_opt)]
    pub specialization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::price_opt)]
    pub consultation_fee: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

/// Filters of `GET /v1/doctors`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DoctorQuery {
    /// Department, any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Specialization, any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialization: Option<String>,
    /// Part of the name, any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Hours a doctor works on one weekday, in clinic-local time (`HH:MM`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkingHours {
    /// ISO weekday: 1 = Monday … 7 = Sunday.
    #[schema(minimum = 1, maximum = 7)]
    pub weekday: u8,
    /// e.g. `09:00`.
    #[schema(schema_with = crate::schema::hhmm)]
    pub start: String,
    /// e.g. `18:00`; after `start`.
    #[schema(schema_with = crate::schema::hhmm_end)]
    pub end: String,
}

/// A doctor's whole week; `PUT /v1/doctors/{id}/working-hours` replaces it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeeklyHours {
    pub hours: Vec<WorkingHours>,
}

/// `POST /v1/doctors/{id}/leave`: the doctor is away from `start_date` to `end_date`, inclusive.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLeave {
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A recorded leave.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Leave {
    pub leave_id: i64,
    pub doctor_id: i64,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One free standard slot (30 minutes, UTC on the wire).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Slot {
    pub slot_start: DateTime<Utc>,
    pub slot_end: DateTime<Utc>,
}

/// Free slots of one doctor on one clinic-local date.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DoctorAvailability {
    pub doctor_id: i64,
    pub name: String,
    pub department: String,
    pub date: NaiveDate,
    /// Why there are no slots, when there are none (`on_leave`, `not_working`, `inactive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_reason: Option<String>,
    pub slots: Vec<Slot>,
}

/// Free slots of every active doctor of a department on one date.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DepartmentAvailability {
    pub department: String,
    pub date: NaiveDate,
    pub doctors: Vec<DoctorAvailability>,
}

/// Query of `/v1/availability`: a department's free slots on a clinic-local date.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DepartmentDay {
    /// Clinic-local date, `YYYY-MM-DD`.
    pub date: NaiveDate,
    /// The department (any case).
    #[param(pattern = r"\S", min_length = 1, max_length = 100)]
    pub department: String,
}

/// Query of the availability endpoints.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AvailabilityQuery {
    /// Clinic-local date, `YYYY-MM-DD`.
    pub date: NaiveDate,
    /// Department (required on `/v1/availability`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(schema_with = crate::schema::text_opt)]
    pub department: Option<String>,
}

/// A doctor's day as the booking rules need it: the doctor, whether on leave, and the working
/// periods of that clinic-local date in UTC (`GET /v1/doctors/{id}/schedule?date=`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DoctorSchedule {
    pub doctor: Doctor,
    pub date: NaiveDate,
    pub on_leave: bool,
    pub working: Vec<Slot>,
}

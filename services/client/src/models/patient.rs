//! Patient service (8001) models.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// A registered patient.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Patient {
    pub patient_id: i64,
    pub name: String,
    pub email: Option<String>,
    pub phone: String,
    pub dob: NaiveDate,
    pub active: bool,
    /// Bumped on every change; send it back as `If-Match` to update safely.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/patients`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPatient {
    /// Only for importing legacy records, which keep their ids; omit to have one assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub patient_id: Option<i64>,
    #[schema(schema_with = crate::schema::name)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::email_opt)]
    pub email: Option<String>,
    #[schema(schema_with = crate::schema::phone)]
    pub phone: String,
    /// Date of birth, `YYYY-MM-DD`, not in the future.
    #[schema(schema_with = crate::schema::dob)]
    pub dob: NaiveDate,
    /// Only for importing legacy records: when the record was first created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

/// `PATCH /v1/patients/{id}`: only the fields given change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct PatientUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::name_opt)]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::email_opt)]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::phone_opt)]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::dob_opt)]
    pub dob: Option<NaiveDate>,
}

/// Filters of `GET /v1/patients`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PatientQuery {
    /// These patients, by id (comma-separated, at most 100): each one found is returned, in
    /// the order asked, and recorded in their audit trail as a read, as `GET /v1/patients/{id}`
    /// would record it; ids not found are left out. One answer, without pages: with another
    /// filter, a limit or a cursor beside it the request is refused (422 `lookup_stands_alone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(schema_with = crate::schema::patient_ids)]
    pub ids: Option<String>,
    /// Part of the name, any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Part of the phone number (digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(schema_with = crate::schema::phone_search)]
    pub phone: Option<String>,
    /// Part of the e-mail address, any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Page size, 1–500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// One row of a patient's audit trail: who disclosed or changed the record, and when.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub audit_id: i64,
    pub at: DateTime<Utc>,
    pub patient_id: i64,
    /// The token's subject.
    pub subject: String,
    pub role: String,
    /// `create`, `read`, `search_hit`, `update`, `deactivate`, `audit_read`.
    pub action: String,
    pub route: String,
    pub outcome: String,
    pub correlation_id: String,
    /// Which fields changed, for `update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

//! Prescription service (8005) models.

use crate::Money;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A prescription written at an appointment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Prescription {
    pub prescription_id: i64,
    pub appointment_id: i64,
    pub patient_id: i64,
    pub doctor_id: i64,
    pub medication: String,
    /// `morning-noon-night`, e.g. `1-0-1`.
    pub dosage: String,
    pub days: i64,
    /// Doses per day × days.
    pub quantity: i64,
    /// The formulary price per unit when prescribed.
    pub unit_price: Money,
    pub issued_at: DateTime<Utc>,
}

/// `POST /v1/prescriptions`. A doctor's token may omit `doctor_id` (it is theirs).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrescription {
    /// Only for importing legacy records, which keep their ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub prescription_id: Option<i64>,
    pub appointment_id: i64,
    pub patient_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doctor_id: Option<i64>,
    /// A formulary medication name, any case.
    #[schema(schema_with = crate::schema::text)]
    pub medication: String,
    /// `morning-noon-night`: `1-0-1`, `0-1-1`, `1-1-1`…
    #[schema(schema_with = crate::schema::dosage)]
    pub dosage: String,
    #[schema(minimum = 1, maximum = 365)]
    pub days: i64,
    /// Only for importing legacy records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<DateTime<Utc>>,
}

/// `POST /v1/prescriptions/import` (admin): a prescription from the old system, kept as
/// history. Today's rules are not applied to it: a patient or doctor other than the
/// appointment's, a cancelled appointment, a dosage the live form does not take, a medication
/// no longer dispensed are each kept with a warning.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegacyPrescription {
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub prescription_id: i64,
    pub appointment_id: i64,
    pub patient_id: i64,
    pub doctor_id: i64,
    /// A formulary medication name, any case.
    pub medication: String,
    /// As written; `morning-noon-night` is read, anything else is kept as written.
    pub dosage: String,
    #[schema(minimum = 1, maximum = 365)]
    pub days: i64,
    #[serde(with = "crate::time::flexible")]
    #[schema(value_type = String, format = DateTime)]
    pub issued_at: DateTime<Utc>,
}

/// Filters of `GET /v1/prescriptions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PrescriptionQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appointment_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doctor_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A medication the hospital dispenses, with its price per unit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Medication {
    pub medication_id: i64,
    pub name: String,
    /// e.g. `tablet`, `capsule`, `syrup (5 ml)`.
    pub form: String,
    pub unit_price: Money,
    pub active: bool,
    pub version: i64,
}

/// `POST /v1/formulary`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMedication {
    #[schema(schema_with = crate::schema::text)]
    pub name: String,
    #[schema(schema_with = crate::schema::text)]
    pub form: String,
    #[schema(schema_with = crate::schema::price)]
    pub unit_price: Money,
}

/// `PATCH /v1/formulary/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct MedicationUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::text_opt)]
    pub form: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::price_opt)]
    pub unit_price: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

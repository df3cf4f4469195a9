//! Shapes shared by every service: pages, health.

use serde::{Deserialize, Serialize};

/// The largest id a record may be given from outside (a legacy export): far above any
/// hospital's records, far below the 64-bit limit, so ids made live afterwards never run out.
pub const MAX_LEGACY_ID: i64 = 1_000_000_000_000;

/// One page of a list: `{items, next_cursor}`; `next_cursor` is null on the last page.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque; pass it back as `?cursor=` for the next page.
    pub next_cursor: Option<String>,
}

/// `GET /health` and `GET /ready`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthStatus {
    /// `ok`, or `unavailable` when not ready.
    pub status: String,
    pub service: String,
    pub version: String,
    /// Why the service is not ready, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The clinic's time zone (IANA name): clients show and read times in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clinic_timezone: Option<String>,
}

/// `POST /v1/<records>/import/ids` (admin): ids up to `through` belong to the legacy data,
/// imported or not; no record made live will take one.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdReservation {
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub through: i64,
}

/// What a dry run of `hmsctl import` vouches for, sent as the `Hms-Dry-Run-Context` header
/// (JSON) with a row: the records earlier rows of the same dry run would have written, which
/// the services cannot see because each row's write was rolled back. A service uses it only in
/// a dry run and only for what it cannot find itself, then judges the row by its own rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DryRunContext {
    /// The appointment a prescription refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appointment: Option<VouchedAppointment>,
    /// The bill a payment refers to, with what earlier payments of the run captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill: Option<VouchedBill>,
    /// The bill an earlier row of the run made this bill's appointment's consultation bill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consultation_bill: Option<i64>,
    /// Slots earlier appointments of the run hold at the same time as this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<VouchedClaim>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VouchedAppointment {
    pub patient_id: i64,
    pub doctor_id: i64,
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VouchedBill {
    pub patient_id: i64,
    pub amount_due: crate::Money,
    pub status: String,
    pub captured: crate::Money,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VouchedClaim {
    pub appointment_id: i64,
    pub doctor_id: i64,
    pub patient_id: i64,
    pub slot_start: chrono::DateTime<chrono::Utc>,
}

//! Billing (8003) and payment (8006) models.

use crate::Money;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A bill with its lines and where it stands.
/// Every status a bill can have.
pub const BILL_STATUSES: [&str; 5] = ["OPEN", "PAID", "PARTIALLY_REFUNDED", "REFUNDED", "VOID"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Bill {
    pub bill_id: i64,
    pub patient_id: i64,
    pub appointment_id: i64,
    /// `consultation`, `cancellation_fee`, `no_show_fee`, or `supplementary:<prescription id>`
    /// (medicine prescribed after the consultation bill was settled).
    pub purpose: String,
    /// One of [`BILL_STATUSES`].
    pub status: String,
    pub lines: Vec<BillLine>,
    pub subtotal: Money,
    /// 5% of the subtotal, rounded half-up to the paisa.
    pub tax: Money,
    pub total: Money,
    /// Credit notes against the bill.
    pub credits: Money,
    /// What is owed: total − credits.
    pub amount_due: Money,
    pub paid: Money,
    pub refunded: Money,
    /// amount due − (paid − refunded).
    pub balance: Money,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One line of a bill.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct BillLine {
    /// `consultation`, `medicine` or `fee`.
    pub kind: String,
    pub description: String,
    pub quantity: i64,
    pub unit_price: Money,
    pub amount: Money,
}

/// Filters of `GET /v1/bills`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BillQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appointment_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `POST /v1/bills/{id}/adjustments`: a credit note (positive amount, reduces what is owed).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdjustment {
    #[schema(schema_with = crate::schema::positive_amount)]
    pub amount: Money,
    #[schema(schema_with = crate::schema::reason)]
    pub reason: String,
}

/// A recorded credit note.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Adjustment {
    pub adjustment_id: i64,
    pub bill_id: i64,
    pub amount: Money,
    pub reason: String,
    pub subject: String,
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/payments` (or `/v1/payments/charge`) with an `Idempotency-Key`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPayment {
    pub bill_id: i64,
    #[schema(schema_with = crate::schema::positive_amount)]
    pub amount: Money,
    /// `CASH`, `CARD` or `UPI`.
    #[schema(schema_with = crate::schema::live_method)]
    pub method: String,
}

/// A captured payment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Payment {
    pub payment_id: i64,
    pub bill_id: i64,
    pub amount: Money,
    pub method: String,
    /// Unique, e.g. `HMS20261201-P61XUF`.
    pub reference: String,
    pub refunded: Money,
    pub paid_at: DateTime<Utc>,
}

/// `POST /v1/payments/{id}/refunds` with an `Idempotency-Key`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRefund {
    #[schema(schema_with = crate::schema::positive_amount)]
    pub amount: Money,
    #[serde(default)]
    pub reason: String,
}

/// A refund of (part of) a payment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Refund {
    pub refund_id: i64,
    pub payment_id: i64,
    pub bill_id: i64,
    pub amount: Money,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/bills/import` (admin): a legacy bill, kept with its id; its amount is the total.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegacyBill {
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub bill_id: i64,
    pub patient_id: i64,
    pub appointment_id: i64,
    #[schema(schema_with = crate::schema::legacy_amount)]
    pub amount: Money,
    #[schema(schema_with = crate::schema::bill_status)]
    pub status: String,
    #[serde(with = "crate::time::flexible")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/payments/import` (admin): a legacy payment, kept with its id and reference.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegacyPayment {
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub payment_id: i64,
    pub bill_id: i64,
    #[schema(schema_with = crate::schema::positive_amount)]
    pub amount: Money,
    #[schema(schema_with = crate::schema::text)]
    pub method: String,
    pub reference: String,
    #[serde(with = "crate::time::flexible")]
    #[schema(value_type = String, format = DateTime)]
    pub paid_at: DateTime<Utc>,
}

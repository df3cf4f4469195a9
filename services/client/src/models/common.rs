//! Shapes shared by every service: pages, health.

use serde::{Deserialize, Serialize};

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
}

/// `POST /v1/<records>/import/ids` (admin): ids up to `through` belong to the legacy data,
/// imported or not; no record made live will take one.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdReservation {
    #[schema(minimum = 1)]
    pub through: i64,
}

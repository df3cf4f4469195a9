//! The event envelope the outbox relay delivers to `POST /v1/events`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One event, as delivered to a subscriber. `event_id` is the end-to-end dedup key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub event_id: Uuid,
    /// e.g. `patient.registered`, `appointment.completed`.
    pub event_type: String,
    /// The producing service, e.g. `patient`.
    pub source: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The aggregate's version after this change; read models apply only newer ones.
    pub aggregate_seq: i64,
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: String,
    /// Ids and facts, never contact details.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// Answer of `POST /v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventAck {
    /// True when this event id had been processed before; nothing was done again.
    pub duplicate: bool,
}

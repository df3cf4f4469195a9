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

/// Body of `POST /v1/events/batch`: several events for one subscriber, applied in one
/// transaction, each on its own (one that fails changes nothing and fails alone). The relay
/// sends at most one event of an aggregate per batch, so their order within it is free.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    #[schema(min_items = 1, max_items = 512)]
    pub events: Vec<Event>,
}

/// What became of one event of a batch: `status` is what `POST /v1/events` would have
/// answered for it alone (200, or the error's status with its body in `error`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct EventOutcome {
    pub event_id: Uuid,
    pub status: u16,
    pub duplicate: bool,
    pub error: Option<crate::ErrorBody>,
}

/// Answer of `POST /v1/events/batch`: one outcome per event, in the batch's order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchAck {
    pub results: Vec<EventOutcome>,
}

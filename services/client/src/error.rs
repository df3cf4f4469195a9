//! The standard error body and what a client call can fail with.

use serde::{Deserialize, Serialize};

/// `{code, message, correlationId}` on every 4xx/5xx of every service (API.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable code, e.g. `validation_failed`, `slot_taken`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The request's correlation id, to find its log lines.
    #[serde(rename = "correlationId")]
    pub correlation_id: String,
    /// Optional structured detail, e.g. `{"field": "email"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// Why a call through [`crate::HmsClient`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service answered with an error status and the standard body.
    #[error("{service} answered {status}: {} ({})", body.code, body.message)]
    Api {
        service: String,
        status: u16,
        body: ErrorBody,
    },
    /// The service could not be reached or did not answer in time.
    #[error("{service} is unavailable: {reason}")]
    Unavailable { service: String, reason: String },
    /// The service answered something that is not the contract.
    #[error("{service} answered an unexpected response: {reason}")]
    Protocol { service: String, reason: String },
}

impl ClientError {
    /// The standard error code when the service answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { body, .. } => Some(&body.code),
            _ => None,
        }
    }

    /// The HTTP status when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

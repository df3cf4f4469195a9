//! Routes every service serves outside its API: `/health`, `/ready`, `/metrics`,
//! `/v1/openapi.json` and the offline API page at `/docs`. None needs a token, except
//! `/metrics` when `metrics_public = false`.

use crate::auth::{bearer, Keys, Role};
use crate::db::Db;
use crate::error::Error;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hms_client::models::HealthStatus;
use std::sync::Arc;

pub struct OpsState {
    pub service: &'static str,
    pub db: Db,
    pub openapi_json: String,
    pub keys: Arc<Keys>,
    pub metrics_public: bool,
    /// The clinic's time zone, told to clients (`hmsctl` shows and reads times in it).
    pub clinic_timezone: String,
}

pub fn routes(state: Arc<OpsState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/docs", get(docs))
        .with_state(state)
}

fn status(state: &OpsState, status: &str, reason: Option<String>) -> HealthStatus {
    HealthStatus {
        status: status.to_string(),
        service: state.service.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        reason,
        clinic_timezone: Some(state.clinic_timezone.clone()),
    }
}

async fn health(State(s): State<Arc<OpsState>>) -> axum::Json<HealthStatus> {
    axum::Json(status(&s, "ok", None))
}

async fn ready(State(s): State<Arc<OpsState>>) -> Response {
    match s.db.ping().await {
        Ok(()) => axum::Json(status(&s, "ok", None)).into_response(),
        Err(reason) => Error::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("{} is not ready: {reason}", s.service),
        )
        .with_retry_after(5)
        .into_response(),
    }
}

async fn metrics(State(s): State<Arc<OpsState>>, headers: HeaderMap) -> Response {
    if !s.metrics_public {
        let caller = match bearer(&headers) {
            None => return Error::unauthenticated("/metrics needs a token here").into_response(),
            Some(t) => match s.keys.verify(t) {
                Ok(c) => c,
                Err(e) => return e.into_response(),
            },
        };
        if !matches!(caller.role, Role::Admin | Role::Service) {
            return Error::forbidden("/metrics is for admin and service tokens").into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render_for(s.service),
    )
        .into_response()
}

async fn openapi(State(s): State<Arc<OpsState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        s.openapi_json.clone(),
    )
        .into_response()
}

async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}

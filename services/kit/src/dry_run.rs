//! Validate-only requests. An admin's `Hms-Dry-Run: true` runs a request exactly as it would
//! run — every rule, every constraint, the whole write — and rolls the write back at the commit
//! (`hmsctl import --dry-run` uses it, so a preview judges each row as the real run would).
//! The answer carries `Hms-Dry-Run: true`.

use std::future::Future;

pub const HEADER: &str = "hms-dry-run";

tokio::task_local! {
    static DRY_RUN: bool;
}

/// Whether the request being served is a dry run.
pub fn active() -> bool {
    DRY_RUN.try_with(|d| *d).unwrap_or(false)
}

/// Runs `f` as a dry run (or not).
pub async fn scope<F: Future>(on: bool, f: F) -> F::Output {
    DRY_RUN.scope(on, f).await
}

/// Whether a request asks for a dry run (`true`, any case).
pub fn requested(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// What the caller vouches for in a dry run (`Hms-Dry-Run-Context`), when this is one; see
/// [`hms_client::models::DryRunContext`]. A context that is not valid JSON is ignored (the row
/// is then judged on what the service can see).
pub fn context(headers: &axum::http::HeaderMap) -> Option<hms_client::models::DryRunContext> {
    if !active() {
        return None;
    }
    headers
        .get("hms-dry-run-context")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str(v).ok())
}

//! Request extractors whose rejections are the standard error body, never axum's bare text.

use crate::error::Error;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// JSON body; a bad body is 400 `validation_failed` saying which field and why.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(Error))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query string; a bad parameter is 400 `validation_failed`.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Error))]
pub struct Query<T>(pub T);

/// Path parameters; a bad one (e.g. a non-numeric id) is 400 `validation_failed`.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Error))]
pub struct Path<T>(pub T);

impl From<JsonRejection> for Error {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Error::from_status(status),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::from_status(status),
            _ => {
                let text = r.body_text();
                // "Failed to deserialize the JSON body into the target type: dob: input contains invalid characters at line 1 column 20"
                let detail = text
                    .split_once(": ")
                    .map(|(_, rest)| rest.to_string())
                    .unwrap_or(text);
                let field = field_of(&detail);
                let err = Error::bad_request(format!("invalid JSON body: {detail}"));
                match field {
                    Some(f) => err.with_details(serde_json::json!({ "field": f })),
                    None => err,
                }
            }
        }
    }
}

impl From<QueryRejection> for Error {
    fn from(r: QueryRejection) -> Self {
        let text = r.body_text();
        let detail = text
            .split_once(": ")
            .map(|(_, rest)| rest.to_string())
            .unwrap_or(text);
        let err = Error::bad_request(format!("invalid query parameter: {detail}"));
        match field_of(&detail) {
            Some(f) => err.with_details(serde_json::json!({ "field": f })),
            None => err,
        }
    }
}

impl From<PathRejection> for Error {
    fn from(r: PathRejection) -> Self {
        Error::bad_request(format!("invalid path parameter: {}", r.body_text()))
    }
}

/// The field a serde message names: `dob: premature end` → `dob`; `missing field `name`` → `name`.
fn field_of(detail: &str) -> Option<String> {
    if let Some(rest) = detail.split("missing field `").nth(1) {
        return rest.split('`').next().map(str::to_string);
    }
    if let Some(rest) = detail.split("unknown field `").nth(1) {
        return rest.split('`').next().map(str::to_string);
    }
    let (head, _) = detail.split_once(": ")?;
    let ok = !head.is_empty()
        && head
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '[' || c == ']');
    ok.then(|| head.to_string())
}

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn names_the_field_serde_complains_about() {
        assert_eq!(
            field_of("missing field `name` at line 1 column 2").as_deref(),
            Some("name")
        );
        assert_eq!(
            field_of("dob: input contains invalid characters").as_deref(),
            Some("dob")
        );
        assert_eq!(
            field_of("unknown field `active`, expected one of").as_deref(),
            Some("active")
        );
        assert_eq!(field_of("expected value at line 1 column 1"), None);
    }
}

/// `If-Match: W/"3"` (or `"3"`, or `3`) → `Some(3)`; absent → `None`; anything else → 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get(axum::http::header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let s = v.to_str().unwrap_or("").trim();
        let inner = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
        inner.parse::<i64>().map(|n| IfMatch(Some(n))).map_err(|_| {
            Error::validation(
                "If-Match",
                "If-Match must be the ETag you read, e.g. W/\"3\"",
            )
        })
    }
}

/// A response with `ETag: W/"<version>"`.
pub fn with_etag<T: Serialize>(version: i64, status: StatusCode, body: T) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("W/\"{version}\"")) {
        resp.headers_mut().insert(axum::http::header::ETAG, v);
    }
    resp
}

/// `201 Created` with `Location` and `ETag: W/"<version>"`.
pub fn created<T: Serialize>(location: &str, version: i64, body: T) -> Response {
    let mut resp = with_etag(version, StatusCode::CREATED, body);
    if let Ok(loc) = axum::http::HeaderValue::from_str(location) {
        resp.headers_mut().insert(axum::http::header::LOCATION, loc);
    }
    resp
}

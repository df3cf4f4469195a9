//! Request extractors whose rejections are the standard error body, never axum's bare text.

use crate::error::Error;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// JSON body; a bad body is 400 `validation_failed` saying which field and why.
///
/// A whole number written with a fraction (`5.0`) is read where an integer is expected: JSON
/// Schema counts it an integer, and clients generated from the documents send it. Only a body
/// that fails as written is looked at again, so the common path parses once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Error> {
        if !json_content_type(req.headers()) {
            return Err(Error::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| Error::from_status(r.status()))?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => {
                let whole = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|mut v| whole_numbers(&mut v).then_some(v))
                    .and_then(|v| serde_json::from_value::<T>(v).ok());
                whole.map(Json).ok_or_else(|| rejection.into())
            }
        }
    }
}

/// `application/json`, or a `+json` type, as axum's own extractor requires.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Writes whole numbers with a fraction (`5.0`) as integers; true if any was.
fn whole_numbers(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Number(n) => match n.as_f64() {
            // Within 2^53 a float is exact, so the integer is the one written.
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 => {
                *v = Value::from(f as i64);
                true
            }
            _ => false,
        },
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, i| whole_numbers(i) | any),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |any, i| whole_numbers(i) | any),
        _ => false,
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query string; a bad parameter is 400 `validation_failed`. As in a body, an integer written
/// `5.0` is read as 5 — tried only when the query fails as written, so a text parameter that
/// looks like one (`phone=5.0`) keeps what was sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Error> {
        match axum::extract::Query::<T>::try_from_uri(&parts.uri) {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(rejection) => {
                let whole = parts.uri.query().and_then(|q| {
                    let pairs: Vec<String> = q
                        .split('&')
                        .map(|pair| match pair.split_once('=') {
                            Some((k, v)) => format!("{k}={}", whole_text(v).unwrap_or(v)),
                            None => pair.to_string(),
                        })
                        .collect();
                    let uri: axum::http::Uri = format!("/?{}", pairs.join("&")).parse().ok()?;
                    axum::extract::Query::<T>::try_from_uri(&uri).ok()
                });
                whole
                    .map(|axum::extract::Query(v)| Query(v))
                    .ok_or_else(|| rejection.into())
            }
        }
    }
}

/// `12.0` (`12.00`, `-3.0`) as `12`; anything else is not a whole number written so.
fn whole_text(s: &str) -> Option<&str> {
    let (int, frac) = s.split_once('.')?;
    let digits = int.strip_prefix('-').unwrap_or(int);
    let whole = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !frac.is_empty()
        && frac.bytes().all(|b| b == b'0');
    whole.then_some(int)
}

/// Rewrites path segments written as whole numbers with a fraction (`/v1/patients/12.0`) to the
/// integer before routing: JSON Schema counts `12.0` an integer, and the ids in paths are
/// integers. No route has a segment that is a decimal number.
pub async fn whole_number_path(mut req: axum::extract::Request) -> axum::extract::Request {
    let path = req.uri().path();
    if !path.split('/').any(|seg| whole_text(seg).is_some()) {
        return req;
    }
    let rewritten: Vec<&str> = path
        .split('/')
        .map(|seg| whole_text(seg).unwrap_or(seg))
        .collect();
    let mut target = rewritten.join("/");
    if let Some(q) = req.uri().query() {
        target = format!("{target}?{q}");
    }
    if let Ok(pq) = target.parse::<axum::http::uri::PathAndQuery>() {
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

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

#[cfg(test)]
mod whole_number_tests {
    use super::*;

    #[test]
    fn whole_numbers_written_as_text() {
        assert_eq!(whole_text("12.0"), Some("12"));
        assert_eq!(whole_text("-3.00"), Some("-3"));
        for not in ["12", "12.5", "1.", ".0", "k1.0", "a.0"] {
            assert_eq!(whole_text(not), None, "{not}");
        }
    }

    #[test]
    fn whole_numbers_with_a_fraction_are_integers_and_nothing_else_changes() {
        let mut v =
            serde_json::json!({"days": 5.0, "hours": [{"weekday": 6.0}], "price": 2.5, "n": 7});
        assert!(whole_numbers(&mut v));
        assert_eq!(
            v,
            serde_json::json!({"days": 5, "hours": [{"weekday": 6}], "price": 2.5, "n": 7})
        );
        let mut big = serde_json::json!(1e300);
        assert!(
            !whole_numbers(&mut big),
            "beyond 2^53 a float is not the integer written"
        );
        let mut plain = serde_json::json!({"a": 1, "b": "1.0"});
        assert!(!whole_numbers(&mut plain));
    }
}

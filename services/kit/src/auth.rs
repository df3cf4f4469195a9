//! Bearer JWT auth and role-based access, declared per route in one table per service.
//!
//! Deny by default: a `/v1` route that is not in its service's table refuses to start the
//! service (see [`crate::server`]). No token or a bad one → 401; a role not in the route's
//! list → 403. Doctor tokens carry their `doctor_id`, which handlers use to scope objects.
//! Service tokens (`service:<name>`) may deliver only their own events.

use crate::error::Error;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

pub const ISSUER: &str = "hms";
pub const AUDIENCE: &str = "hms-api";

/// Who may call what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reception,
    Doctor,
    Billing,
    Admin,
    /// Another HMS service (service-to-service calls and event delivery).
    Service,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Reception,
        Role::Doctor,
        Role::Billing,
        Role::Admin,
        Role::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reception => "reception",
            Role::Doctor => "doctor",
            Role::Billing => "billing",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown role '{s}' (one of: reception, doctor, billing, admin, service)")
            })
    }
}

/// The claims of an HMS token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doctor_id: Option<i64>,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

/// The authenticated caller of the current request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub role: Role,
    pub doctor_id: Option<i64>,
}

impl Caller {
    /// For a doctor token: refuses unless it is this doctor's own record (BOLA guard).
    /// Other roles pass; their reach is decided by the route table.
    pub fn require_own_doctor(&self, doctor_id: i64) -> Result<(), Error> {
        match (self.role, self.doctor_id) {
            (Role::Doctor, Some(own)) if own == doctor_id => Ok(()),
            (Role::Doctor, _) => Err(Error::forbidden(
                "a doctor may only change their own schedule and records",
            )),
            _ => Ok(()),
        }
    }

    /// The service name of a service token (`service:patient` → `patient`).
    pub fn service_name(&self) -> Option<&str> {
        (self.role == Role::Service)
            .then(|| self.subject.strip_prefix("service:"))
            .flatten()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Error::unauthenticated("a valid bearer token is required"))
    }
}

/// Signs and verifies tokens with the deployment's shared secrets (HS256, pinned). The current
/// key signs, and its id (`kid`, derived from the key) goes in every token's header; previous
/// keys still verify the tokens they signed until they are dropped from the configuration, so
/// a key is rotated without logging anyone out.
pub struct Keys {
    kid: String,
    encoding: EncodingKey,
    /// Every key that verifies, the current one first, with its id.
    verifying: Vec<(String, DecodingKey)>,
    validation: Validation,
}

/// A key's id: the first 16 hex digits of its SHA-256 (public; says nothing of the key).
pub fn key_id(secret: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

impl Keys {
    pub fn from_secret(secret: &[u8]) -> Self {
        Self::rotated(secret, &[])
    }

    /// The current key and the previous ones that still verify.
    pub fn rotated(secret: &[u8], previous: &[&[u8]]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        // A token not yet valid is refused like an expired one (RFC 7519 §4.1.5).
        validation.validate_nbf = true;
        let verifying = std::iter::once(secret)
            .chain(previous.iter().copied())
            .map(|k| (key_id(k), DecodingKey::from_secret(k)))
            .collect();
        Keys {
            kid: key_id(secret),
            encoding: EncodingKey::from_secret(secret),
            verifying,
            validation,
        }
    }

    /// The id of the key that signs.
    pub fn current_kid(&self) -> &str {
        &self.kid
    }

    /// The key of a deployment: `jwt_secret` if configured, else the key file, created (with
    /// `create_if_missing`) on the first start of the embedded default. Returns whether it
    /// was created just now.
    pub fn load(
        inline: Option<&str>,
        file: &Path,
        create_if_missing: bool,
    ) -> anyhow::Result<(Keys, bool)> {
        Self::load_rotated(inline, file, create_if_missing, &[])
    }

    /// As [`Keys::load`], with the keys rotated out that still verify: `previous` (from the
    /// configuration) and the lines of `<file>.previous`.
    pub fn load_rotated(
        inline: Option<&str>,
        file: &Path,
        create_if_missing: bool,
        previous: &[String],
    ) -> anyhow::Result<(Keys, bool)> {
        let mut old: Vec<String> = previous.iter().map(|p| p.trim().to_string()).collect();
        if let Ok(text) = std::fs::read_to_string(previous_file(file)) {
            old.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
            );
        }
        for k in &old {
            anyhow::ensure!(
                k.len() >= 32,
                "a previous signing key is shorter than 32 characters"
            );
        }
        let old: Vec<&[u8]> = old.iter().map(|k| k.as_bytes()).collect();
        if let Some(secret) = inline {
            anyhow::ensure!(
                secret.len() >= 32,
                "jwt_secret must be at least 32 characters"
            );
            return Ok((Keys::rotated(secret.as_bytes(), &old), false));
        }
        match std::fs::read_to_string(file) {
            Ok(s) => {
                let s = s.trim();
                anyhow::ensure!(s.len() >= 32, "signing key {} is too short", file.display());
                Ok((Keys::rotated(s.as_bytes(), &old), false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create_if_missing => {
                use rand::RngCore;
                let mut raw = [0u8; 32];
                rand::rng().fill_bytes(&mut raw);
                let secret: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                write_private(file, &secret)?;
                Ok((Keys::from_secret(secret.as_bytes()), true))
            }
            Err(e) => Err(anyhow::anyhow!(
                "cannot read signing key {}: {e} (set HMS_JWT_SECRET or HMS_JWT_SECRET_FILE)",
                file.display()
            )),
        }
    }

    /// A signed token for `subject` with `role`, valid for `ttl`.
    pub fn issue(
        &self,
        role: Role,
        subject: &str,
        doctor_id: Option<i64>,
        ttl: chrono::Duration,
    ) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: subject.to_string(),
            role,
            doctor_id,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + ttl.num_seconds(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// Signs `claims` under `header` as given, unchecked: for tests and tools that must make
    /// tokens this system should refuse (wrong `typ`, `nbf` ahead).
    pub fn sign_raw(&self, header: &Header, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// The caller a token proves, or 401 saying why not.
    pub fn verify(&self, token: &str) -> Result<Caller, Error> {
        use jsonwebtoken::errors::ErrorKind as K;
        // Explicit typing (RFC 8725 §3.11): only a token that says it is a plain JWT is taken,
        // so a token minted for another purpose (`at+jwt`, a logout token) cannot pass as ours.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Error::unauthenticated("the token is malformed"))?;
        if !header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("JWT"))
        {
            return Err(Error::unauthenticated(
                "the token's header must say typ \"JWT\"",
            ));
        }
        // The key the token names; a token from before key ids tries each key in turn.
        let candidates: Vec<&DecodingKey> = match header.kid.as_deref() {
            Some(kid) => match self.verifying.iter().find(|(id, _)| id == kid) {
                Some((_, key)) => vec![key],
                None => {
                    return Err(Error::unauthenticated(
                        "the token was signed with a key this deployment no longer accepts",
                    ))
                }
            },
            None => self.verifying.iter().map(|(_, k)| k).collect(),
        };
        let mut result = Err(jsonwebtoken::errors::ErrorKind::InvalidSignature.into());
        for key in candidates {
            result = jsonwebtoken::decode::<Claims>(token, key, &self.validation);
            if !matches!(&result, Err(e) if *e.kind() == K::InvalidSignature) {
                break;
            }
        }
        let data = result.map_err(|e: jsonwebtoken::errors::Error| {
            Error::unauthenticated(match e.kind() {
                K::ExpiredSignature => "the token has expired",
                K::ImmatureSignature => "the token is not valid yet (nbf is in the future)",
                K::InvalidSignature => "the token's signature is not valid",
                K::InvalidAudience | K::InvalidIssuer => "the token is not for this system",
                K::InvalidAlgorithm => "the token's algorithm is not accepted",
                _ => "the token is malformed",
            })
        })?;
        let c = data.claims;
        if c.role == Role::Doctor && c.doctor_id.is_none() {
            return Err(Error::unauthenticated(
                "a doctor token must carry doctor_id",
            ));
        }
        Ok(Caller {
            subject: c.sub,
            role: c.role,
            doctor_id: c.doctor_id,
        })
    }
}

/// Where the keys rotated out of a key file are kept, one per line.
pub fn previous_file(file: &Path) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("{}.previous", file.display()))
}

/// Rotates a key file: its key joins `<file>.previous` (still verifying), a new key signs.
/// Returns the new key's id.
pub fn rotate_file(file: &Path) -> anyhow::Result<String> {
    use rand::RngCore;
    let old = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read signing key {}: {e}", file.display()))?;
    let prev = previous_file(file);
    let mut kept = std::fs::read_to_string(&prev).unwrap_or_default();
    kept.push_str(old.trim());
    kept.push('\n');
    write_private(&prev, &kept)?;
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let secret: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    write_private(file, &secret)?;
    Ok(key_id(secret.as_bytes()))
}

/// Writes a secret readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(contents.as_bytes())?;
    }
    #[cfg(not(unix))]
    std::fs::write(path, contents)?;
    Ok(())
}

/// One row of a service's access table.
#[derive(Debug, Clone)]
pub struct RouteAccess {
    pub method: Method,
    /// The route template as registered, e.g. `/v1/patients/{id}`.
    pub path: &'static str,
    pub roles: &'static [Role],
}

/// A service's access table: every `/v1` route and the roles that may call it.
#[derive(Debug, Clone, Default)]
pub struct AccessTable(pub Vec<RouteAccess>);

impl AccessTable {
    pub fn new(rows: &[(Method, &'static str, &'static [Role])]) -> Self {
        AccessTable(
            rows.iter()
                .map(|(m, p, r)| RouteAccess {
                    method: m.clone(),
                    path: p,
                    roles: r,
                })
                .collect(),
        )
    }

    /// The methods that have a rule on `path`.
    pub fn methods(&self, path: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.method.as_str())
            .collect()
    }

    pub fn roles(&self, method: &Method, path: &str) -> Option<&'static [Role]> {
        self.0
            .iter()
            .find(|r| r.method == method && r.path == path)
            .map(|r| r.roles)
    }
}

/// Per-subject token buckets (in memory, so per instance: abuse protection, not a quota).
pub type Limiter = governor::DefaultKeyedRateLimiter<String>;

/// A limiter of `per_second` with `burst`, or none when `per_second` is 0.
pub fn limiter(per_second: u32, burst: u32) -> Option<Arc<Limiter>> {
    let rate = std::num::NonZeroU32::new(per_second)?;
    let burst = std::num::NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
    Some(Arc::new(governor::RateLimiter::keyed(
        governor::Quota::per_second(rate).allow_burst(burst),
    )))
}

/// What the auth middleware needs.
pub struct AuthState {
    pub keys: Arc<Keys>,
    pub table: AccessTable,
    pub limiter: Option<Arc<Limiter>>,
}

/// The bearer token of a request, if any. The scheme is matched without regard to case, as
/// HTTP authentication schemes are (RFC 9110 §11.1).
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim_start();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Checks the token and the route's roles before the handler runs.
pub async fn middleware(
    State(state): State<Arc<AuthState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(path) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
    else {
        // Unknown routes fall through to the 404 fallback.
        return next.run(req).await;
    };
    if !path.starts_with("/v1/") || path == "/v1/openapi.json" {
        return next.run(req).await;
    }
    let Some(roles) = state.table.roles(req.method(), &path) else {
        let allowed = state.table.methods(&path);
        if allowed.is_empty() {
            // Startup refuses a router with unlisted routes; this is the belt to those braces.
            return Error::forbidden("this route has no access rule").into_response();
        }
        let mut resp = Error::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "{} is not allowed on {path} (allowed: {})",
                req.method(),
                allowed.join(", ")
            ),
        )
        .into_response();
        if let Ok(v) = axum::http::HeaderValue::from_str(&allowed.join(", ")) {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        return resp;
    };
    let caller = match bearer(req.headers()) {
        None => {
            return Error::unauthenticated("send Authorization: Bearer <token>").into_response()
        }
        Some(token) => match state.keys.verify(token) {
            Ok(c) => c,
            Err(e) => return e.into_response(),
        },
    };
    if !roles.contains(&caller.role) {
        let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        return Error::forbidden(format!(
            "role {} may not call {} {path} (allowed: {})",
            caller.role,
            req.method(),
            allowed.join(", ")
        ))
        .into_response();
    }
    if let (Some(limiter), false) = (&state.limiter, caller.role == Role::Service) {
        if let Err(not_until) = limiter.check_key(&caller.subject) {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            return Error::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this token; slow down",
            )
            .with_retry_after(wait.as_secs().max(1))
            .into_response();
        }
    }
    let dry = crate::dry_run::requested(req.headers());
    if dry && caller.role != Role::Admin {
        return Error::forbidden("only an admin may ask for a dry run").into_response();
    }
    crate::log_line::record_subject(&caller.subject);
    req.extensions_mut().insert(caller);
    if !dry {
        return next.run(req).await;
    }
    let mut resp = crate::dry_run::scope(true, next.run(req)).await;
    resp.headers_mut()
        .insert("hms-dry-run", axum::http::HeaderValue::from_static("true"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_key_still_verifies_what_it_signed_until_dropped() {
        let old = b"old-key-0123456789abcdef0123456789abcdef";
        let new = b"new-key-0123456789abcdef0123456789abcdef";
        let before = Keys::from_secret(old);
        let token = before.issue(Role::Reception, "desk", None, chrono::Duration::hours(1));
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key_id(old).as_str()));

        let rotated = Keys::rotated(new, &[old]);
        assert_eq!(
            rotated.verify(&token).unwrap().subject,
            "desk",
            "no 401 after rotation"
        );
        let fresh = rotated.issue(Role::Admin, "admin", None, chrono::Duration::hours(1));
        assert_eq!(
            jsonwebtoken::decode_header(&fresh).unwrap().kid,
            Some(key_id(new))
        );
        assert!(
            before.verify(&fresh).is_err(),
            "the old key alone does not verify the new"
        );

        let dropped = Keys::from_secret(new);
        let err = dropped.verify(&token).unwrap_err();
        assert!(err.message.contains("no longer accepts"), "{}", err.message);
        // A token from before key ids (no kid) is tried against every key.
        let claims = serde_json::json!({"sub": "legacy", "role": "admin", "iss": ISSUER, "aud": AUDIENCE,
            "iat": chrono::Utc::now().timestamp(), "exp": chrono::Utc::now().timestamp() + 600});
        let unmarked = before.sign_raw(&Header::new(Algorithm::HS256), &claims);
        assert_eq!(rotated.verify(&unmarked).unwrap().subject, "legacy");
        assert!(dropped.verify(&unmarked).is_err());
    }

    #[test]
    fn verifies_what_it_issued_and_rejects_the_rest() {
        let keys = Keys::from_secret(b"0123456789abcdef0123456789abcdef");
        let t = keys.issue(Role::Doctor, "dr-1", Some(7), chrono::Duration::hours(1));
        let c = keys.verify(&t).unwrap();
        assert_eq!((c.role, c.doctor_id), (Role::Doctor, Some(7)));

        let other = Keys::from_secret(b"ffffffffffffffffffffffffffffffff");
        assert_eq!(other.verify(&t).unwrap_err().code, "unauthenticated");

        let expired = keys.issue(Role::Admin, "a", None, chrono::Duration::hours(-2));
        assert!(keys
            .verify(&expired)
            .unwrap_err()
            .message
            .contains("expired"));

        // alg:none: header {"alg":"none"} with the same claims and no signature
        let parts: Vec<&str> = t.split('.').collect();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
        assert!(keys.verify(&none).is_err());
    }
}

//! Building and serving a service: the same code path for the embedded default (all services
//! in one process, SQLite) and production (one service per process, PostgreSQL).
//!
//! [`start`] connects the database, applies migrations, builds the service's routes, checks
//! that every `/v1` route has an access rule (and every rule a route), wraps the router in the
//! shared middleware, serves it, and runs the outbox relay beside it. [`Running::stop`] shuts
//! down gracefully: in-flight requests finish, the relay stops between rounds, and whatever is
//! still pending stays in the outbox for the next start.

use crate::auth::{self, AccessTable, AuthState, Keys};
use crate::clock::Clock;
use crate::config::Config;
use crate::db::{Backend, Db};
use crate::downstream::Downstream;
use crate::error::Error;
use crate::logging;
use crate::ops::{self, OpsState};
use crate::outbox::{Outbox, Relay, RelaySettings};
use crate::Service;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::{from_fn_with_state, map_response};
use axum::response::IntoResponse;
use axum::Router;
use sqlx::migrate::Migrator;
use std::collections::HashMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::timeout::TimeoutLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// What a service crate supplies.
pub struct ServiceDef {
    pub service: Service,
    /// One line for the OpenAPI document and the `/docs` page.
    pub description: &'static str,
    /// Who consumes this service's events unless configured otherwise.
    pub subscribers: &'static [Service],
    /// Subscribers that act on only some of this service's events, and on which types: their
    /// deliveries are written for those alone (a delivery of an event its subscriber ignores
    /// costs a round trip, a transaction and an inbox row for nothing). Every other subscriber
    /// takes every event. Applies to a subscriber by name, configured or default.
    pub narrowed: &'static [(Service, &'static [&'static str])],
    /// The service's own migrations for a backend (versions 100 and up).
    pub migrations: fn(Backend) -> Migrator,
    /// The service's API routes (state applied) and its access table.
    pub routes: fn(&ServiceCtx) -> ServiceRoutes,
    /// Work the service does beside serving (schedulers, dispatchers); it must return soon
    /// after the receiver turns true.
    pub background: Option<Background>,
}

/// A service's background loop: started with the service, stopped with it.
pub type Background =
    fn(ServiceCtx, watch::Receiver<bool>) -> futures::future::BoxFuture<'static, ()>;

/// A service's API and who may call each route.
pub struct ServiceRoutes {
    pub api: OpenApiRouter,
    pub access: AccessTable,
}

/// Everything a service's handlers and stores share.
#[derive(Clone, Debug)]
pub struct ServiceCtx {
    pub service: Service,
    pub config: Arc<Config>,
    pub db: Db,
    pub keys: Arc<Keys>,
    pub outbox: Outbox,
    pub downstream: Downstream,
    pub clock: Clock,
}

/// A service being served.
pub struct Running {
    pub service: Service,
    pub addr: SocketAddr,
    pub ctx: ServiceCtx,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    relay: JoinHandle<()>,
    background: Option<JoinHandle<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop: stop accepting, finish in-flight requests, stop the relay, close the pool.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self.relay.await;
        if let Some(b) = self.background {
            let _ = b.await;
        }
        self.ctx.db.close().await;
    }
}

/// Connects, migrates and serves `def` on `listener`.
pub async fn start(
    def: &ServiceDef,
    config: Arc<Config>,
    keys: Arc<Keys>,
    clock: Clock,
    listener: TcpListener,
) -> anyhow::Result<Running> {
    let service = def.service;
    // Install the recorder before the first request is counted.
    let _ = crate::metrics::handle();
    let db = Db::open(
        &config.database_url(service),
        crate::db::Open {
            service: service.name(),
            max_connections: config.db_max_connections,
            create_missing: config.create_missing_databases,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{service}: cannot open its database: {e}"))?;
    db.migrate((def.migrations)(db.backend()))
        .await
        .map_err(|e| anyhow::anyhow!("{service}: migrations failed: {e}"))?;

    let subscribers = config.subscribers(service, def.subscribers);
    let outbox = Outbox::new(service, db.backend(), subscribers.clone(), clock.clone())
        .narrowed(def.narrowed);
    let downstream = Downstream::new(
        service,
        config.service_urls(),
        keys.clone(),
        Duration::from_millis(config.http_timeout_ms),
    );
    let ctx = ServiceCtx {
        service,
        config: config.clone(),
        db: db.clone(),
        keys: keys.clone(),
        outbox: outbox.clone(),
        downstream,
        clock,
    };

    // Before routing: a path segment `12.0` is the id 12 (see `extract::whole_number_path`).
    let app =
        Router::new()
            .fallback_service(router(def, &ctx)?)
            .layer(axum::middleware::map_request(
                crate::extract::whole_number_path,
            ));
    let addr = listener.local_addr()?;
    let (shutdown, rx) = watch::channel(false);

    let mut stop = rx.clone();
    let server = tokio::spawn(
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .into_future(),
    );

    let targets: HashMap<String, String> = subscribers
        .iter()
        .filter_map(|s| config.url(s).map(|u| (s.clone(), u)))
        .collect();
    let relay = Relay::new(
        db,
        &outbox,
        targets,
        keys,
        RelaySettings {
            poll: Duration::from_millis(config.outbox_poll_ms),
            max_attempts: config.outbox_max_attempts,
            max_backoff: Duration::from_millis(config.outbox_max_backoff_ms),
            max_body_bytes: config.max_body_bytes,
            ..RelaySettings::default()
        },
    );
    let background = def
        .background
        .map(|run| tokio::spawn(run(ctx.clone(), rx.clone())));
    let relays = config.outbox_relays.max(1);
    let relay = tokio::spawn(async move {
        let all = relay.split(relays);
        futures::future::join_all(all.into_iter().map(|r| r.run(rx.clone()))).await;
    });
    tracing::info!(service = service.name(), %addr, subscribers = ?subscribers, "service started");
    Ok(Running {
        service,
        addr,
        ctx,
        shutdown,
        server,
        relay,
        background,
    })
}

/// The full router of a service, middleware included.
pub fn router(def: &ServiceDef, ctx: &ServiceCtx) -> anyhow::Result<Router> {
    let ServiceRoutes { api, access } = (def.routes)(ctx);
    let (api, mut doc) = api.split_for_parts();
    check_access(&doc, &access)?;
    describe(&mut doc, def, &access);
    let name: &'static str = def.service.name();
    if let Ok(tz) = ctx.config.clinic_timezone.parse() {
        crate::time::set_clinic_zone(tz);
    }
    let ops_state = Arc::new(OpsState {
        service: name,
        db: ctx.db.clone(),
        openapi_json: serde_json::to_string(&doc)?,
        keys: ctx.keys.clone(),
        metrics_public: ctx.config.metrics_public,
        clinic_timezone: ctx.config.clinic_timezone.clone(),
    });
    let auth_state = Arc::new(AuthState {
        keys: ctx.keys.clone(),
        table: access,
        limiter: auth::limiter(
            ctx.config.rate_limit_per_second,
            ctx.config.rate_limit_burst,
        ),
    });
    Ok(api
        .merge(ops::routes(ops_state))
        .fallback(|| async { Error::not_found("route").into_response() })
        .method_not_allowed_fallback(|| async {
            Error::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed on this route",
            )
            .into_response()
        })
        .layer(from_fn_with_state(auth_state, auth::middleware))
        .layer(DefaultBodyLimit::max(ctx.config.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(ctx.config.request_timeout_ms),
        ))
        .layer(map_response(no_store))
        .layer(from_fn_with_state(name, logging::observe)))
}

/// API answers carry personal data: no cache may keep them.
async fn no_store(mut resp: axum::response::Response) -> axum::response::Response {
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    resp
}

type Op<'a> = (
    &'static str,
    &'a mut Option<utoipa::openapi::path::Operation>,
);

fn operations(item: &mut utoipa::openapi::PathItem) -> [Op<'_>; 5] {
    [
        ("GET", &mut item.get),
        ("POST", &mut item.post),
        ("PUT", &mut item.put),
        ("PATCH", &mut item.patch),
        ("DELETE", &mut item.delete),
    ]
}

/// Deny by default, checked at start: every documented `/v1` operation has an access rule and
/// every rule names a documented operation. A mismatch is a bug; the service refuses to start.
pub fn check_access(doc: &OpenApi, access: &AccessTable) -> anyhow::Result<()> {
    let mut doc = doc.clone();
    let mut documented = Vec::new();
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in operations(item) {
            if op.is_some() && path.starts_with("/v1/") {
                documented.push((method.to_string(), path.clone()));
            }
        }
    }
    for (method, path) in &documented {
        anyhow::ensure!(
            access
                .0
                .iter()
                .any(|r| r.method.as_str() == method && r.path == path),
            "{method} {path} has no access rule"
        );
    }
    for rule in &access.0 {
        anyhow::ensure!(
            documented
                .iter()
                .any(|(m, p)| m == rule.method.as_str() && p == rule.path),
            "access rule {} {} names no documented route",
            rule.method,
            rule.path
        );
    }
    Ok(())
}

/// Title, version, bearer security and each operation's roles (`x-roles`).
fn describe(doc: &mut OpenApi, def: &ServiceDef, access: &AccessTable) {
    doc.info.title = format!("HMS {} service", def.service.name());
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.info.description = Some(def.description.to_string());
    // The project's contact, never a person's address picked up from the build.
    doc.info.contact = Some(
        utoipa::openapi::ContactBuilder::new()
            .name(Some("HMS maintainers"))
            .url(Some("/docs"))
            .build(),
    );
    doc.info.license = Some(utoipa::openapi::License::new("Apache-2.0"));
    let components = doc.components.get_or_insert_with(Default::default);
    // utoipa 5 writes `#[schema(min_properties = n)]` as maxProperties (its generator emits
    // `.max_properties` for both). No HMS schema sets a maximum, so it is moved back to the
    // minimum it was written as (an update must give at least one field).
    for schema in components.schemas.values_mut() {
        if let utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(o)) = schema {
            if let Some(n) = o.max_properties.take() {
                o.min_properties = Some(n);
            }
        }
    }
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in operations(item) {
            let Some(op) = op.as_mut() else { continue };
            let method: axum::http::Method = method.parse().expect("known method");
            if let Some(roles) = access.roles(&method, path) {
                let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                op.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
                let ext = utoipa::openapi::extensions::ExtensionsBuilder::new()
                    .add("x-roles", serde_json::json!(names))
                    .build();
                match op.extensions.as_mut() {
                    Some(e) => e.merge(ext),
                    None => op.extensions = Some(ext),
                }
            }
            declare_standard_responses(op, path, &method, path.starts_with("/v1/"));
        }
    }
}

/// What every operation can answer besides its own outcomes, from the shared middleware and
/// extractors, with the standard error body: a malformed request (an id beyond i64, a bad
/// query, a bad cursor or `If-Match`), no or a bad token, a role that may not, an unknown
/// id, a slow request, a body too large or not JSON, a stale `If-Match`, the rate limit,
/// and the service or a dependency unavailable. Each declared response gets a description.
fn declare_standard_responses(
    op: &mut utoipa::openapi::path::Operation,
    path: &str,
    method: &axum::http::Method,
    api: bool,
) {
    use axum::http::Method;
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    constrain_shared_parameters(op);
    let has_body = op.request_body.is_some();
    let mut add = |code: u16, text: &str| {
        let r = op
            .responses
            .responses
            .entry(code.to_string())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(text)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build(),
                )
            });
        if let RefOr::T(resp) = r {
            if resp.description.trim().is_empty() {
                resp.description = text.to_string();
            }
        }
    };
    if !api {
        return;
    }
    add(400, "validation_failed: the request is malformed or a field is invalid (details.field names it)");
    add(
        401,
        "unauthenticated: no bearer token, or one that is not valid",
    );
    add(
        403,
        "forbidden: the caller's role may not do this, or not for this record",
    );
    add(408, "timeout: the request took too long");
    add(
        429,
        "rate_limited: too many requests from this token; see Retry-After",
    );
    add(
        500,
        "internal_error: quote the correlation id when reporting it",
    );
    add(
        503,
        "storage_unavailable, dependency_unavailable or unavailable: retry after Retry-After",
    );
    if path.contains('{') {
        add(404, "not_found: no such record");
    }
    if has_body {
        add(413, "payload_too_large: the body is over the limit");
        add(
            415,
            "unsupported_media_type: send the body as JSON with Content-Type: application/json",
        );
    }
    if matches!(*method, Method::PATCH | Method::PUT) {
        add(
            412,
            "version_conflict: If-Match names a version that is no longer current",
        );
    }
    // Every response the route declared itself is described too.
    for (code, r) in op.responses.responses.iter_mut() {
        if let RefOr::T(resp) = r {
            if resp.description.trim().is_empty() {
                resp.description = match code.as_str() {
                    "200" => "OK",
                    "201" => "Created",
                    "204" => "No content",
                    "404" => "not_found: no such record",
                    "409" => "A conflict with the current state (the code says which)",
                    "422" => "A business rule refused the request (the code says which)",
                    _ => "See the error code",
                }
                .to_string();
            }
        }
    }
}

/// The parameters every service reads through the shared extractors, with the rules those
/// extractors apply, so the document says what is accepted: `limit` 1–500, an `If-Match`
/// that is an ETag, an `Idempotency-Key` of 1–255 visible ASCII characters.
fn constrain_shared_parameters(op: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{ObjectBuilder, RefOr, Type};
    let Some(params) = op.parameters.as_mut() else {
        return;
    };
    for p in params {
        let schema = match (&p.parameter_in, p.name.as_str()) {
            (ParameterIn::Query, "limit") => ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(crate::pagination::MAX_LIMIT)),
            (ParameterIn::Query, "cursor") => ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(crate::pagination::CURSOR_PATTERN)),
            (ParameterIn::Header, "If-Match") => ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r#"^(W/)?"?[0-9]{1,18}"?$"#)),
            (ParameterIn::Header, "Idempotency-Key") => ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some("^[!-~]+$")),
            _ => continue,
        };
        p.schema = Some(RefOr::T(schema.into()));
    }
}

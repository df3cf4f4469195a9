//! A subscriber built from the kit's real inbox on its own database, standing in for a service
//! that is not part of the build yet: it records each event it processes.

use super::TestApp;
use axum::extract::State;
use axum::routing::post;
use hms_client::models::{BatchAck, Event, EventAck, EventBatch};
use hms_kit::auth::{AccessTable, AuthState, Caller, Role};
use hms_kit::db::Db;
use hms_kit::extract::Json;
use hms_kit::inbox::Effect;
use hms_kit::outbox::Outbox;
use hms_kit::Service;
use sqlx::Row;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Subscriber {
    pub db: Db,
    singles: Arc<AtomicUsize>,
    batches: Arc<AtomicUsize>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct SubState {
    db: Db,
    outbox: Outbox,
    sources: Vec<Service>,
    /// How long each request waits before it is applied (a slow subscriber).
    delay: std::time::Duration,
    /// Requests received: events one by one, and batches.
    singles: Arc<AtomicUsize>,
    batches: Arc<AtomicUsize>,
}

/// Records the event in `received`, with when it was processed (a table's own order is not
/// insertion order on PostgreSQL once rolled-back rows' space is reused).
fn prepare(s: &SubState, caller: &Caller, ev: &Event) -> Result<Effect, hms_kit::Error> {
    hms_kit::inbox::authorise(caller, ev, &s.sources)?;
    let kind = ev.event_type.clone();
    let aggregate = ev.aggregate_id.clone();
    let payload = ev.payload.to_string();
    Ok(hms_kit::inbox::effect(move |tx| {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO received (event_type, aggregate_id, payload, received_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(kind)
            .bind(aggregate)
            .bind(payload)
            .bind(hms_kit::time::to_db(chrono::Utc::now()))
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
    }))
}

async fn receive(
    State(s): State<SubState>,
    caller: Caller,
    Json(ev): Json<Event>,
) -> Result<Json<EventAck>, hms_kit::Error> {
    s.singles.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(s.delay).await;
    let effect = prepare(&s, &caller, &ev)?;
    let ack = hms_kit::inbox::receive(&s.db, &s.outbox, &ev, chrono::Utc::now(), effect).await?;
    Ok(Json(ack))
}

async fn receive_batch(
    State(s): State<SubState>,
    caller: Caller,
    Json(batch): Json<EventBatch>,
) -> Result<Json<BatchAck>, hms_kit::Error> {
    s.batches.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(s.delay).await;
    let ack =
        hms_kit::inbox::receive_batch(&s.db, &s.outbox, batch.events, chrono::Utc::now(), |ev| {
            std::future::ready(prepare(&s, &caller, &ev))
        })
        .await?;
    Ok(Json(ack))
}

impl Subscriber {
    /// Serves `POST /v1/events` and `POST /v1/events/batch` on `port`, taking events from `sources`.
    pub async fn start(app: &TestApp, db_url: &str, port: u16, sources: &[Service]) -> Subscriber {
        Self::serve(app, db_url, port, sources, true, std::time::Duration::ZERO).await
    }

    /// As [`Subscriber::start`], taking `delay` over every request it is sent.
    pub async fn start_slow(
        app: &TestApp,
        db_url: &str,
        port: u16,
        sources: &[Service],
        delay: std::time::Duration,
    ) -> Subscriber {
        Self::serve(app, db_url, port, sources, true, delay).await
    }

    /// As [`Subscriber::start`], without `POST /v1/events/batch`: a subscriber of a release
    /// before batches (during a rolling update), which must be sent events one by one.
    pub async fn start_without_batches(
        app: &TestApp,
        db_url: &str,
        port: u16,
        sources: &[Service],
    ) -> Subscriber {
        Self::serve(app, db_url, port, sources, false, std::time::Duration::ZERO).await
    }

    async fn serve(
        app: &TestApp,
        db_url: &str,
        port: u16,
        sources: &[Service],
        batches: bool,
        delay: std::time::Duration,
    ) -> Subscriber {
        let db = Db::connect(db_url).await.unwrap();
        db.migrate(sqlx::migrate::Migrator::DEFAULT).await.unwrap();
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS received (event_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, payload TEXT NOT NULL, received_at TEXT NOT NULL)",
        )
        .execute(&mut *db.write().await.unwrap())
        .await
        .unwrap();
        let auth = Arc::new(AuthState {
            keys: app.keys.clone(),
            table: AccessTable::new(&[
                (axum::http::Method::POST, "/v1/events", &[Role::Service]),
                (
                    axum::http::Method::POST,
                    "/v1/events/batch",
                    &[Role::Service],
                ),
            ]),
            limiter: None,
        });
        let state = SubState {
            db: db.clone(),
            outbox: Outbox::new(
                Service::Notification,
                db.backend(),
                vec![],
                app.clock.clone(),
            ),
            sources: sources.to_vec(),
            delay,
            singles: Arc::new(AtomicUsize::new(0)),
            batches: Arc::new(AtomicUsize::new(0)),
        };
        let (singles, batched) = (state.singles.clone(), state.batches.clone());
        let mut router = axum::Router::new().route("/v1/events", post(receive));
        if batches {
            router = router.route("/v1/events/batch", post(receive_batch));
        }
        // The services' own body limit (`max_body_bytes`), as a real subscriber has.
        let router = router
            .with_state(state)
            .layer(axum::extract::DefaultBodyLimit::max(
                app.config.max_body_bytes,
            ))
            .layer(axum::middleware::from_fn_with_state(
                auth,
                hms_kit::auth::middleware,
            ));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("subscriber port is free again");
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Subscriber {
            db,
            singles,
            batches: batched,
            stop,
            task,
        }
    }

    /// `(event_type, aggregate_id)` of every event processed, in arrival order.
    /// How many requests it was sent: `(events one by one, batches)`.
    pub fn requests(&self) -> (usize, usize) {
        (
            self.singles.load(Ordering::Relaxed),
            self.batches.load(Ordering::Relaxed),
        )
    }

    pub async fn received(&self) -> Vec<(String, String)> {
        sqlx::query("SELECT event_type, aggregate_id FROM received ORDER BY received_at")
            .fetch_all(self.db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("event_type"), r.get("aggregate_id")))
            .collect()
    }

    /// Payloads of the processed events of one type.
    pub async fn payloads(&self, event_type: &str) -> Vec<serde_json::Value> {
        sqlx::query("SELECT payload FROM received WHERE event_type = $1")
            .bind(event_type)
            .fetch_all(self.db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str(&r.get::<String, _>("payload")).unwrap())
            .collect()
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        self.db.close().await;
    }
}

/// A port nothing listens on: a service that is down. The port stays bound (not listening)
/// for the rest of the test process, so a connection to it is refused and no service another
/// test starts meanwhile is given it (a released port was, and a "down" service then answered
/// 404 for records it did not have). A test may still listen on it itself later (a provider
/// that comes back): both sockets allow address reuse, and only one listens.
pub fn closed_port() -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("a free port");
    let port = socket.local_addr().expect("its address").port();
    // Held until the process ends.
    std::mem::forget(socket);
    port
}

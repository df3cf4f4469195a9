//! Outbox delivery survives a subscriber that is down; the inbox processes an event once.

use crate::both_backends;
use crate::support::*;
use axum::extract::State;
use axum::routing::post;
use hms_client::models::{Event, EventAck};
use hms_kit::auth::{AccessTable, AuthState, Caller, Role};
use hms_kit::db::Db;
use hms_kit::extract::Json;
use hms_kit::outbox::Outbox;
use hms_kit::Service;
use sqlx::Row;
use std::sync::Arc;

/// A subscriber built from the kit's real inbox, on its own database: it records each
/// patient event it processes.
struct Subscriber {
    db: Db,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct SubState {
    db: Db,
    outbox: Outbox,
}

async fn receive(
    State(s): State<SubState>,
    caller: Caller,
    Json(ev): Json<Event>,
) -> Result<Json<EventAck>, hms_kit::Error> {
    hms_kit::inbox::authorise(&caller, &ev, &[Service::Patient])?;
    let id = ev.payload["patient_id"].as_i64().unwrap_or_default();
    let kind = ev.event_type.clone();
    let ack = hms_kit::inbox::receive(&s.db, &s.outbox, &ev, chrono::Utc::now(), move |tx| {
        Box::pin(async move {
            sqlx::query("INSERT INTO received (event_type, patient_id) VALUES ($1, $2)")
                .bind(kind)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            Ok(())
        })
    })
    .await?;
    Ok(Json(ack))
}

async fn start_subscriber(app: &TestApp, db_url: &str, port: u16) -> Subscriber {
    let db = Db::connect(db_url).await.unwrap();
    db.migrate(sqlx::migrate::Migrator::DEFAULT).await.unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS received (event_type TEXT NOT NULL, patient_id BIGINT NOT NULL)")
        .execute(db.pool()).await.unwrap();
    let auth = Arc::new(AuthState {
        keys: app.keys.clone(),
        table: AccessTable::new(&[(axum::http::Method::POST, "/v1/events", &[Role::Service])]),
    });
    let state = SubState {
        db: db.clone(),
        outbox: Outbox::new(Service::Notification, vec![], app.clock.clone()),
    };
    let router = axum::Router::new()
        .route("/v1/events", post(receive))
        .with_state(state)
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
    Subscriber { db, stop, task }
}

async fn received(db: &Db) -> Vec<(String, i64)> {
    sqlx::query("SELECT event_type, patient_id FROM received ORDER BY event_type")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get::<String, _>("event_type"),
                r.get::<i64, _>("patient_id"),
            )
        })
        .collect()
}

both_backends! {
    async fn events_wait_for_a_subscriber_that_is_down_and_are_processed_once(b: Backend) {
        // Reserve a port for the subscriber, then leave it closed: the subscriber is down.
        let port = { let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap(); l.local_addr().unwrap().port() };
        let app = TestApp::spawn_with(&b, &[&hms_patient::SERVICE], hms_kit::clock::Clock::system(), |c| {
            c.service_mut("patient").subscribers = Some(vec!["testsub".into()]);
            c.service_mut("testsub").url = Some(format!("http://127.0.0.1:{port}"));
        }).await;
        let desk = app.client(Role::Reception);
        let p = desk.create_patient(&new_patient("Outbox Person", 900)).await.unwrap();
        assert!(!p.patient_id.to_string().is_empty(), "the write succeeds while the subscriber is down");

        let pool = app.db(Service::Patient).pool().clone();
        eventually(10, "a failed delivery attempt", || { let pool = pool.clone(); async move {
            let r = sqlx::query("SELECT state, attempts, last_error FROM outbox_delivery").fetch_one(&pool).await.ok()?;
            let attempts: i64 = r.get("attempts");
            (attempts >= 2 && r.get::<String, _>("state") == "pending").then_some(())
        }}).await;

        let sub_db = fresh_database(&b, app.dir.path(), "testsub").await;
        let sub = start_subscriber(&app, &sub_db, port).await;
        desk.deactivate_patient(p.patient_id).await.unwrap();
        let got = eventually(15, "both events delivered", || { let db = sub.db.clone(); async move {
            let r = received(&db).await;
            (r.len() == 2).then_some(r)
        }}).await;
        assert_eq!(got, vec![("patient.deactivated".to_string(), p.patient_id), ("patient.registered".to_string(), p.patient_id)]);
        let states: Vec<String> = sqlx::query("SELECT state FROM outbox_delivery").fetch_all(&pool).await.unwrap()
            .iter().map(|r| r.get("state")).collect();
        assert_eq!(states, vec!["delivered", "delivered"]);

        // Deliver the first event again, as a relay that crashed before recording success would.
        let row = sqlx::query("SELECT event_id, aggregate_type, aggregate_id, aggregate_seq, event_type, payload, correlation_id, occurred_at FROM outbox WHERE event_type = 'patient.registered'")
            .fetch_one(&pool).await.unwrap();
        let ev = Event {
            event_id: row.get::<String, _>("event_id").parse().unwrap(),
            event_type: row.get("event_type"),
            source: "patient".into(),
            aggregate_type: row.get("aggregate_type"),
            aggregate_id: row.get("aggregate_id"),
            aggregate_seq: row.get("aggregate_seq"),
            occurred_at: hms_kit::time::from_db(&row.get::<String, _>("occurred_at")).unwrap(),
            correlation_id: row.get("correlation_id"),
            payload: serde_json::from_str(&row.get::<String, _>("payload")).unwrap(),
        };
        let service_token = app.keys.issue(Role::Service, "service:patient", None, chrono::Duration::minutes(5));
        let again = futures::future::join_all((0..5).map(|_| {
            app.http.post(format!("http://127.0.0.1:{port}/v1/events")).bearer_auth(&service_token).json(&ev).send()
        })).await;
        for r in again {
            let r = r.unwrap();
            assert_eq!(r.status(), 200);
            let ack: serde_json::Value = r.json().await.unwrap();
            assert_eq!(ack["duplicate"], true);
        }
        assert_eq!(received(&sub.db).await.len(), 2, "a redelivered event has no second effect");

        // Only the producer itself may deliver its events.
        let imposter = app.keys.issue(Role::Service, "service:doctor", None, chrono::Duration::minutes(5));
        let r = app.http.post(format!("http://127.0.0.1:{port}/v1/events")).bearer_auth(&imposter).json(&ev).send().await.unwrap();
        assert_eq!(r.status(), 403);
        let person = app.token(Role::Admin);
        let r = app.http.post(format!("http://127.0.0.1:{port}/v1/events")).bearer_auth(&person).json(&ev).send().await.unwrap();
        assert_eq!(r.status(), 403);

        let _ = sub.stop.send(());
        let _ = sub.task.await;
        sub.db.close().await;
        if let Backend::Postgres(server) = &b { drop_database(server, &sub_db).await; }
        app.stop().await;
    }

    async fn a_parked_delivery_is_kept_and_can_be_requeued(b: Backend) {
        let app = TestApp::spawn_with(&b, &[&hms_patient::SERVICE], hms_kit::clock::Clock::system(), |c| {
            // A subscriber nobody configured a URL for: nothing can deliver there.
            c.service_mut("patient").subscribers = Some(vec!["nowhere".into()]);
        }).await;
        app.client(Role::Reception).create_patient(&new_patient("Parked Person", 901)).await.unwrap();
        let db = app.db(Service::Patient).clone();
        eventually(10, "the delivery to be parked", || { let db = db.clone(); async move {
            let s = hms_kit::outbox::stats(&db).await.ok()?;
            (s.parked == 1 && s.pending == 0).then_some(())
        }}).await;
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox").fetch_one(db.pool()).await.unwrap();
        assert_eq!(kept, 1, "a parked event is never deleted");
        assert_eq!(hms_kit::outbox::requeue_parked(&db, None).await.unwrap(), 1);
        let metrics = app.http.get(format!("{}/metrics", app.url(Service::Patient))).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("outbox_parked{service=\"patient\"}"), "{metrics}");
        app.stop().await;
    }
}

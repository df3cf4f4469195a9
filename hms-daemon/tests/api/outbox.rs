//! Outbox delivery survives a subscriber that is down; the inbox processes an event once.

use crate::both_backends;
use crate::support::subscriber::{closed_port, Subscriber};
use crate::support::*;
use hms_kit::auth::Role;
use hms_kit::Service;
use sqlx::Row;

/// The patient service, its events going to one subscriber (`testsub`) at `port`.
async fn patient_service_with_subscriber_at(b: &Backend, port: u16) -> TestApp {
    patient_service_tuned(b, port, |_| {}).await
}

/// The patient service, its events going to a subscriber at `port`, with `tweak` applied.
async fn patient_service_tuned(
    b: &Backend,
    port: u16,
    tweak: impl FnOnce(&mut hms_kit::config::Config),
) -> TestApp {
    TestApp::spawn_with(
        b,
        &[&hms_patient::SERVICE],
        hms_kit::clock::Clock::system(),
        |c| {
            c.service_mut("patient").subscribers = Some(vec!["testsub".into()]);
            c.service_mut("testsub").url = Some(format!("http://127.0.0.1:{port}"));
            tweak(c);
        },
    )
    .await
}

/// [`patient_service_tuned`] with its subscriber taking 300 ms over every request, once the
/// relays' first rounds (at start, before the subscriber listened) have passed.
async fn patient_service_with_slow_subscriber(
    b: &Backend,
    tweak: impl FnOnce(&mut hms_kit::config::Config),
) -> (TestApp, Subscriber) {
    let port = closed_port();
    let app = patient_service_tuned(b, port, tweak).await;
    let db = fresh_database(b, app.dir.path(), "testsub").await;
    let slow = std::time::Duration::from_millis(300);
    let sub = Subscriber::start_slow(&app, &db, port, &[Service::Patient], slow).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    (app, sub)
}

both_backends! {
    async fn events_wait_for_a_subscriber_that_is_down_and_are_processed_once(b: Backend) {
        // Reserve a port for the subscriber, then leave it closed: the subscriber is down.
        let port = closed_port();
        let app = patient_service_with_subscriber_at(&b, port).await;
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
        let sub = Subscriber::start(&app, &sub_db, port, &[Service::Patient]).await;
        desk.deactivate_patient(p.patient_id).await.unwrap();
        let got = eventually(15, "both events delivered", || async {
            let r = sub.received().await;
            (r.len() == 2).then_some(r)
        }).await;
        let id = p.patient_id.to_string();
        assert_eq!(got, vec![("patient.registered".to_string(), id.clone()), ("patient.deactivated".to_string(), id)], "in aggregate order");
        // The relay records the delivery right after the subscriber answers.
        eventually(10, "both deliveries recorded", || { let pool = pool.clone(); async move {
            let states: Vec<String> = sqlx::query("SELECT state FROM outbox_delivery").fetch_all(&pool).await.ok()?
                .iter().map(|r| r.get("state")).collect();
            (states == ["delivered", "delivered"]).then_some(())
        }}).await;

        // Deliver the first event again, as a relay that crashed before recording success would.
        let ev = outbox_event(app.db(Service::Patient), "patient", "patient.registered").await;
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
        assert_eq!(sub.received().await.len(), 2, "a redelivered event has no second effect");

        // Only the producer itself may deliver its events.
        let imposter = app.keys.issue(Role::Service, "service:doctor", None, chrono::Duration::minutes(5));
        let r = app.http.post(format!("http://127.0.0.1:{port}/v1/events")).bearer_auth(&imposter).json(&ev).send().await.unwrap();
        assert_eq!(r.status(), 403);
        let person = app.token(Role::Admin);
        let r = app.http.post(format!("http://127.0.0.1:{port}/v1/events")).bearer_auth(&person).json(&ev).send().await.unwrap();
        assert_eq!(r.status(), 403);

        sub.stop().await;
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

both_backends! {
    async fn a_backlog_drains_over_many_rounds_once_each_and_in_aggregate_order(b: Backend) {
        // A subscriber that is down while 150 patients are registered, 30 of them then updated
        // and deactivated: 210 events, more than one round claims.
        let port = closed_port();
        let app = patient_service_with_subscriber_at(&b, port).await;
        let desk = app.client(Role::Reception);
        let mut ids = Vec::new();
        for i in 0..150 {
            ids.push(desk.create_patient(&new_patient("Backlog Person", 2000 + i)).await.unwrap().patient_id);
        }
        for id in &ids[..30] {
            let u = hms_client::models::PatientUpdate { phone: Some("9000000001".into()), ..Default::default() };
            desk.update_patient(*id, &u, None).await.unwrap();
            desk.deactivate_patient(*id).await.unwrap();
        }
        // The lag shows how long the oldest due delivery has waited.
        let db = app.db(Service::Patient).clone();
        let behind = eventually(10, "a lag of a second", || { let db = db.clone(); async move {
            let s = hms_kit::outbox::stats(&db).await.ok()?;
            (s.lag_seconds >= 1.0).then_some(s)
        }}).await;
        assert_eq!(behind.pending, 210);
        let sub_db = fresh_database(&b, app.dir.path(), "testsub").await;
        let sub = Subscriber::start(&app, &sub_db, port, &[Service::Patient]).await;
        let got = eventually(60, "every event delivered", || async {
            let r = sub.received().await;
            (r.len() >= 210).then_some(r)
        }).await;
        assert_eq!(got.len(), 210, "each event once");
        for id in &ids[..30] {
            let kinds: Vec<&str> = got.iter().filter(|(_, a)| *a == id.to_string()).map(|(t, _)| t.as_str()).collect();
            assert_eq!(kinds, ["patient.registered", "patient.updated", "patient.deactivated"], "patient {id}");
        }
        let pool = app.db(Service::Patient).pool().clone();
        eventually(15, "every delivery recorded", || { let pool = pool.clone(); async move {
            let r = sqlx::query("SELECT COUNT(*) AS n FROM outbox_delivery WHERE state = 'delivered'").fetch_one(&pool).await.ok()?;
            (r.get::<i64, _>("n") == 210).then_some(())
        }}).await;
        let caught_up = hms_kit::outbox::stats(&db).await.unwrap();
        assert_eq!((caught_up.pending, caught_up.lag_seconds), (0, 0.0));
        let metrics = app.http.get(format!("{}/metrics", app.url(Service::Patient))).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("outbox_lag_seconds{service=\"patient\"}"), "{metrics}");
        app.stop().await;
    }

    async fn a_commit_wakes_a_relay_of_every_subscriber(b: Backend) {
        // The safety-net poll is a minute away, so only the commits' wake-ups can deliver:
        // each commit wakes one relay of each subscriber (or leaves it a permit when all are
        // busy), and every event reaches both subscribers, from writes made all at once.
        let (one, two) = (closed_port(), closed_port());
        let app = TestApp::spawn_with(&b, &[&hms_patient::SERVICE], hms_kit::clock::Clock::system(), |c| {
            c.outbox_poll_ms = 60_000;
            c.service_mut("patient").subscribers = Some(vec!["testsub".into(), "othersub".into()]);
            c.service_mut("testsub").url = Some(format!("http://127.0.0.1:{one}"));
            c.service_mut("othersub").url = Some(format!("http://127.0.0.1:{two}"));
        }).await;
        let subs = [
            Subscriber::start(&app, &fresh_database(&b, app.dir.path(), "testsub").await, one, &[Service::Patient]).await,
            Subscriber::start(&app, &fresh_database(&b, app.dir.path(), "othersub").await, two, &[Service::Patient]).await,
        ];
        // Let the relays' first rounds (at start, before the subscribers listened) pass.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let desk = app.client(Role::Reception);
        let patients: Vec<_> = (0..40).map(|i| new_patient("Woken Relay", 4000 + i)).collect();
        let made = futures::future::join_all(patients.iter().map(|p| desk.create_patient(p))).await;
        assert!(made.iter().all(|r| r.is_ok()));
        for sub in &subs {
            let got = eventually(20, "every event at each subscriber", || async {
                let r = sub.received().await;
                (r.len() >= 40).then_some(r)
            }).await;
            assert_eq!(got.len(), 40, "each event once");
        }
        app.stop().await;
    }

    async fn a_later_event_held_back_goes_out_once_the_earlier_is_delivered(b: Backend) {
        // A relay whose round was not full waits for the next commit, except when it delivered
        // an event whose aggregate has a later one waiting (held back while the earlier was in
        // flight): then it goes again at once. The poll is a minute away, and nothing commits
        // after the update, so nothing else would send it.
        // Each delivery takes 300 ms, so the update commits while the creation is in flight.
        let (app, sub) = patient_service_with_slow_subscriber(&b, |c| c.outbox_poll_ms = 60_000).await;
        let desk = app.client(Role::Reception);
        let p = desk.create_patient(&new_patient("Held Back", 5000)).await.unwrap();
        let u = hms_client::models::PatientUpdate { phone: Some("+91 98765 43210".into()), ..Default::default() };
        desk.update_patient(p.patient_id, &u, None).await.unwrap();
        let got = eventually(20, "both events of the patient", || async {
            let r = sub.received().await;
            (r.len() >= 2).then_some(r)
        }).await;
        let kinds: Vec<&str> = got.iter().map(|(kind, _)| kind.as_str()).collect();
        assert_eq!(kinds, ["patient.registered", "patient.updated"], "each once, in order");
        app.stop().await;
    }

    async fn a_backlog_over_the_body_limit_goes_in_batches_that_fit(b: Backend) {
        // One relay, a subscriber taking 300 ms a request and a 4 KB body limit on both sides:
        // the first event is in flight while 39 more commit, and those 39 (about 20 KB) are
        // one claim. They go as batches within the limit: none refused as too large, none
        // sent one by one.
        let (app, sub) = patient_service_with_slow_subscriber(&b, |c| {
            c.outbox_relays = 1;
            c.max_body_bytes = 4096;
        }).await;
        let desk = app.client(Role::Reception);
        desk.create_patient(&new_patient("Backlog", 6000)).await.unwrap();
        let made = futures::future::join_all((1..40).map(|i| {
            let desk = desk.clone();
            async move { desk.create_patient(&new_patient("Backlog", 6000 + i)).await }
        })).await;
        assert!(made.iter().all(|r| r.is_ok()));
        let got = eventually(20, "every event at the subscriber", || async {
            let r = sub.received().await;
            (r.len() >= 40).then_some(r)
        }).await;
        assert_eq!(got.len(), 40, "each event once");
        let (singles, batches) = sub.requests();
        assert_eq!(singles, 0, "no event sent one by one");
        assert!((3..40).contains(&batches), "the backlog went in a few batches that fit, not one each: {batches}");
        app.stop().await;
    }

    async fn a_subscriber_without_batches_is_sent_events_one_by_one(b: Backend) {
        // A subscriber of an older release (no batch route) during a rolling update.
        let port = closed_port();
        let app = patient_service_with_subscriber_at(&b, port).await;
        let desk = app.client(Role::Reception);
        for i in 0..5 {
            desk.create_patient(&new_patient("Older Subscriber", 3000 + i)).await.unwrap();
        }
        let sub_db = fresh_database(&b, app.dir.path(), "testsub").await;
        let sub = Subscriber::start_without_batches(&app, &sub_db, port, &[Service::Patient]).await;
        let got = eventually(30, "every event delivered", || async {
            let r = sub.received().await;
            (r.len() >= 5).then_some(r)
        }).await;
        assert_eq!(got.len(), 5, "each event once");
        let db = app.db(Service::Patient).clone();
        eventually(15, "every delivery recorded, none parked", || { let db = db.clone(); async move {
            let s = hms_kit::outbox::stats(&db).await.ok()?;
            (s.pending == 0 && s.parked == 0).then_some(())
        }}).await;
        sub.stop().await;
        if let Backend::Postgres(server) = &b { drop_database(server, &sub_db).await; }
        app.stop().await;
    }
}

both_backends! {
    // A subscriber that takes a connection and never answers holds only its own deliveries:
    // the others' go on at once (each subscriber has its own relays), rather than every relay
    // ending up stuck in a round waiting on it.
    async fn a_hung_subscriber_holds_back_only_its_own_deliveries(b: Backend) {
        let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hung_port = hung.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = hung.accept().await {
                open.push(conn);
            }
        });
        let port = closed_port();
        let app = TestApp::spawn_with(&b, &[&hms_patient::SERVICE], hms_kit::clock::Clock::system(), |c| {
            c.service_mut("patient").subscribers = Some(vec!["hung".into(), "testsub".into()]);
            c.service_mut("hung").url = Some(format!("http://127.0.0.1:{hung_port}"));
            c.service_mut("testsub").url = Some(format!("http://127.0.0.1:{port}"));
        }).await;
        let sub_db = fresh_database(&b, app.dir.path(), "testsub").await;
        let sub = Subscriber::start(&app, &sub_db, port, &[Service::Patient]).await;
        let desk = app.client(Role::Reception);
        for i in 0..12 {
            desk.create_patient(&new_patient("Hung Person", 950 + i)).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // The hung subscriber's deliveries wait out the relay's 10 s timeout; the other
        // subscriber has all twelve well before.
        eventually(4, "every event at the answering subscriber", || async {
            (sub.received().await.len() == 12).then_some(())
        }).await;
        sub.stop().await;
        held.abort();
        if let Backend::Postgres(server) = &b { drop_database(server, &sub_db).await; }
        app.stop().await;
    }
}

both_backends! {
    // A delivery to a subscriber the configuration no longer lists is still taken by a relay
    // and fails with its reason, rather than waiting where no relay looks.
    async fn a_delivery_to_a_subscriber_no_longer_listed_fails_with_its_reason(b: Backend) {
        let app = patient_service_with_subscriber_at(&b, closed_port()).await;
        let desk = app.client(Role::Reception);
        desk.create_patient(&new_patient("Stray Person", 990)).await.unwrap();
        let pool = app.db(Service::Patient).pool().clone();
        let event_id: String = sqlx::query_scalar("SELECT event_id FROM outbox")
            .fetch_one(&pool).await.unwrap();
        sqlx::query("INSERT INTO outbox_delivery (event_id, subscriber, state, attempts, next_attempt_at) \
                     VALUES ($1, 'gone', 'pending', 0, $2)")
            .bind(&event_id).bind(hms_kit::time::to_db(chrono::Utc::now()))
            .execute(&mut *app.db(Service::Patient).write().await.unwrap()).await.unwrap();
        let why = eventually(10, "the stray delivery attempted", || { let pool = pool.clone(); async move {
            let r = sqlx::query("SELECT attempts, last_error FROM outbox_delivery WHERE subscriber = 'gone'")
                .fetch_one(&pool).await.ok()?;
            let attempts: i64 = r.get("attempts");
            (attempts >= 1).then(|| r.get::<Option<String>, _>("last_error")).flatten()
        }}).await;
        assert!(why.contains("no URL is configured for subscriber 'gone'"), "{why}");
        app.stop().await;
    }
}

//! A keyed request whose transaction PostgreSQL undoes to break a deadlock is done again, not
//! answered 503. The deadlock is the one two payment instances can meet: this request claims
//! its key, then waits on a row that another transaction holds; that transaction then inserts
//! the same key. The request began waiting first, so its deadlock check runs first and it is
//! the one undone; the other then gives up its row (as a refused group does), and the second
//! run of the request claims the key and does its work.

mod support;

use axum::http::StatusCode;
use hms_kit::clock::Clock;
use hms_kit::idempotency::{Answer, Idempotent, Outcome};
use hms_kit::outbox::Outbox;
use hms_kit::Service;
use sqlx::{AnyConnection, Connection};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[tokio::test]
async fn a_request_undone_by_a_deadlock_is_run_again_postgres() {
    let Some(server) =
        support::postgres_url("a_request_undone_by_a_deadlock_is_run_again_postgres")
    else {
        return;
    };
    let url = support::fresh_postgres(&server, "conflict").await;
    let db = support::open(&url, "conflict-test").await;
    let mut other = AnyConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(include_str!(
        "../../../migrations/kit/postgres/0002_idempotency.sql"
    ))
    .execute(&mut other)
    .await
    .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, n BIGINT NOT NULL); \
         INSERT INTO accounts (id, n) VALUES (1, 0)",
    )
    .execute(&mut other)
    .await
    .unwrap();

    // The other transaction holds the row first.
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("UPDATE accounts SET n = n + 1 WHERE id = 1")
        .execute(&mut other)
        .await
        .unwrap();

    let runs = Arc::new(AtomicUsize::new(0));
    let request = {
        let (db, runs) = (db.clone(), runs.clone());
        tokio::spawn(async move {
            let outbox = Outbox::new(Service::Payment, db.backend(), Vec::new(), Clock::system());
            let idem = Idempotent::new(
                &db,
                Some("deadlock-key"),
                "accounts.add",
                "1",
                "tester",
                &serde_json::json!({ "n": 10 }),
            )
            .unwrap();
            idem.run(&outbox, chrono::Utc::now(), |mut tx| {
                let runs = runs.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    sqlx::query("UPDATE accounts SET n = n + 10 WHERE id = 1")
                        .execute(&mut *tx)
                        .await?;
                    Ok((tx, Outcome::Done(StatusCode::CREATED, "added".to_string())))
                }
            })
            .await
        })
    };

    // Once the request waits on the row, the other transaction inserts the request's key:
    // each now waits on the other.
    let mut watcher = AnyConnection::connect(&url).await.unwrap();
    let mut seen_waiting = false;
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting == 1 {
            seen_waiting = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(seen_waiting, "the request never waited on the row");
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (key, operation, subject, request_hash, created_at) \
         VALUES ('deadlock-key', 'accounts.add', 'tester', 'other', '2026-01-01') \
         ON CONFLICT DO NOTHING",
    )
    .execute(&mut other)
    .await
    .expect("the request, not this transaction, is the one undone");
    assert_eq!(
        inserted.rows_affected(),
        1,
        "the request's claim was undone"
    );
    // Given up, as a refused group is: the request's second run goes through.
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();

    let answer = request.await.unwrap();
    match answer {
        Ok(Answer::Fresh(status, body)) => {
            assert_eq!((status, body.as_str()), (StatusCode::CREATED, "added"))
        }
        Ok(Answer::Replay(_)) => panic!("nothing had stored an answer"),
        Err(e) => panic!("answered {e:?} instead of running again"),
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2, "undone once, then done");
    let n: i64 = sqlx::query_scalar("SELECT n FROM accounts WHERE id = 1")
        .fetch_one(&mut watcher)
        .await
        .unwrap();
    assert_eq!(n, 10, "the work done once");
    let stored: Option<i64> =
        sqlx::query_scalar("SELECT status_code FROM idempotency_keys WHERE key = 'deadlock-key'")
            .fetch_one(&mut watcher)
            .await
            .unwrap();
    assert_eq!(stored, Some(201), "its answer kept with its key");
    db.close().await;
    let _ = other.close().await;
    let _ = watcher.close().await;
    support::drop_postgres(&server, &url).await;
}

//! A `group_commit::Group` commits the writes waiting together in one transaction, and a
//! refused group keeps nothing: each of its items comes back to be done alone, where only its
//! own refusal refuses it. Both backends, the database judging (a primary key). A `Batcher`
//! whose work panicked answers that batch with an error and goes on serving.

mod support;

use hms_kit::clock::Clock;
use hms_kit::db::{Bind, Script};
use hms_kit::group_commit::{Batcher, Group, Together, Turn, Work};
use hms_kit::outbox::Outbox;
use hms_kit::Service;
use sqlx::Row;
use std::sync::{Arc, Mutex};

async fn groups(url: &str, table: &'static str) {
    let db = support::open(url, "group-test").await;
    for ddl in [
        format!("DROP TABLE IF EXISTS {table}"),
        format!("CREATE TABLE {table} (k BIGINT PRIMARY KEY)"),
    ] {
        sqlx::query(&ddl)
            .execute(&mut *db.write().await.unwrap())
            .await
            .unwrap();
    }
    let insert = format!("INSERT INTO {table} (k) VALUES (?)");
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let seen = sizes.clone();
    let sql = insert.clone();
    let together: Together<i64, i64> = Arc::new(move |tx, _outbox, items: &[i64]| {
        let (seen, sql) = (seen.clone(), sql.clone());
        Box::pin(async move {
            seen.lock().unwrap().push(items.len());
            let mut script = Script::new();
            for &k in items {
                script.push(&sql, [Bind::Int(k)]);
            }
            script.run(tx).await?;
            Ok(items.iter().map(|k| k * 10).collect())
        })
    });
    let group = Group::spawn(
        db.clone(),
        Outbox::new(
            Service::Appointment,
            db.backend(),
            Vec::new(),
            Clock::system(),
        ),
        together,
    );

    // 64 writes at once; keys 0–7 asked twice, so the groups holding a second one are refused.
    let items: Vec<i64> = (0..56).chain(0..8).collect();
    let turns = futures::future::join_all(items.iter().map(|&k| {
        let group = group.clone();
        async move { (k, group.submit(k).await.unwrap()) }
    }))
    .await;
    let (mut done, mut refused) = (0, 0);
    for (k, turn) in turns {
        match turn {
            Turn::Committed(answer) => {
                assert_eq!(answer, k * 10, "each item gets its own answer");
                done += 1;
            }
            // Done alone, as a route does: its own transaction.
            Turn::Alone(item) => {
                assert_eq!(item, k);
                let mut tx = db.begin().await.unwrap();
                match sqlx::query(&insert.replace('?', "$1"))
                    .bind(item)
                    .execute(&mut *tx)
                    .await
                {
                    Ok(_) => {
                        tx.commit().await.unwrap();
                        done += 1;
                    }
                    Err(_) => refused += 1,
                }
            }
        }
    }
    // Had a refused group kept any of its rows, that item's write alone would be refused too.
    assert_eq!((done, refused), (56, 8));
    let row = sqlx::query(&format!(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT k) AS d FROM {table}"
    ))
    .fetch_one(db.pool())
    .await
    .unwrap();
    let (n, d): (i64, i64) = (row.try_get("n").unwrap(), row.try_get("d").unwrap());
    assert_eq!((n, d), (56, 56));
    let sizes = sizes.lock().unwrap().clone();
    assert_eq!(sizes.iter().sum::<usize>(), 64, "every item rode one group");
    assert!(
        sizes.iter().any(|&n| n > 1),
        "writes waiting together commit together: {sizes:?}"
    );
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&mut *db.write().await.unwrap())
        .await
        .unwrap();
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_commits_together_and_a_refused_one_keeps_nothing_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    groups(&support::sqlite_url(dir.path(), "group.db"), "group_t").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_commits_together_and_a_refused_one_keeps_nothing_postgres() {
    let Some(url) =
        support::postgres_url("a_group_commits_together_and_a_refused_one_keeps_nothing_postgres")
    else {
        return;
    };
    groups(&url, "kit_group_test").await;
}

/// Every later patient read's audit row depends on a batcher's one task.
#[tokio::test]
async fn a_batch_whose_work_panicked_is_answered_and_the_next_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::open(
        &support::sqlite_url(dir.path(), "batcher.db"),
        "batcher-test",
    )
    .await;
    sqlx::query("CREATE TABLE seen (k BIGINT PRIMARY KEY)")
        .execute(&mut *db.write().await.unwrap())
        .await
        .unwrap();
    let work: Work<i64, i64> = Arc::new(|tx, items: &[i64], _now| {
        Box::pin(async move {
            for &k in items {
                assert_ne!(k, 13, "the work of item 13 panics");
                sqlx::query("INSERT INTO seen (k) VALUES ($1)")
                    .bind(k)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(items.to_vec())
        })
    });
    let batcher: Batcher<i64, i64> = Batcher::spawn(db.clone(), Clock::system(), work);
    let refused = batcher.submit(13, 1).await;
    assert!(refused.is_err(), "{refused:?}");
    // The task survived: the next batch commits.
    assert_eq!(batcher.submit(7, 1).await, Ok(7));
    let kept: Vec<i64> = sqlx::query_scalar("SELECT k FROM seen ORDER BY k")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(kept, [7]);
}

//! A `db::Script` is all-or-nothing within its transaction, on both backends: when one of its
//! statements is refused, none of the script's writes stay, the transaction's earlier writes
//! do, and the refusal is answered by the mapping of the statement refused (on SQLite the
//! script went as one multi-statement query, so this is what its fallback has to find out).

mod support;

use hms_kit::db::{violation, Bind, Script, Tx, Violation};
use hms_kit::Error;
use sqlx::Row;

async fn keys(tx: &mut Tx) -> Vec<i64> {
    sqlx::query("SELECT k FROM script_t ORDER BY k")
        .fetch_all(&mut **tx)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("k").unwrap())
        .collect()
}

fn insert(script: &mut Script, k: i64, v: &str) {
    script
        .push(
            "INSERT INTO script_t (k, v) VALUES (?, ?)",
            [Bind::Int(k), Bind::Text(v.into())],
        )
        .refusing(move |e| {
            (violation(e) == Some(Violation::Unique))
                .then(|| Error::conflict("key_taken", format!("key {k} is taken")))
        });
}

async fn all_or_nothing(url: &str) {
    let db = support::open(url, "script-test").await;
    let mut tx = db.begin().await.unwrap();
    sqlx::query(
        "CREATE TEMP TABLE script_t (k BIGINT PRIMARY KEY, v TEXT NOT NULL CHECK (v <> 'bad'))",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("INSERT INTO script_t (k, v) VALUES (1, 'before')")
        .execute(&mut *tx)
        .await
        .unwrap();

    // The second statement is refused (key 1 is there): the first one's row goes too.
    let mut s = Script::new();
    insert(&mut s, 2, "two");
    insert(&mut s, 1, "one again");
    insert(&mut s, 3, "three");
    let e = s.run(&mut tx).await.unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        ("key_taken", "key 1 is taken")
    );

    if db.backend() == hms_kit::db::Backend::Sqlite {
        assert_eq!(keys(&mut tx).await, vec![1]);
        // A refusal its statement does not map stays the database's error.
        let mut s = Script::new();
        insert(&mut s, 4, "four");
        insert(&mut s, 5, "bad");
        let e = s.run(&mut tx).await.unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(keys(&mut tx).await, vec![1]);

        // The transaction goes on: a script that is not refused writes every row.
        let mut s = Script::new();
        insert(&mut s, 2, "two");
        insert(&mut s, 3, "three");
        s.run(&mut tx).await.unwrap();
        assert_eq!(keys(&mut tx).await, vec![1, 2, 3]);
    }
    // (On PostgreSQL a refused statement ends the transaction, as any statement's would.)
    tx.rollback().await.unwrap();
    db.close().await;
}

#[tokio::test]
async fn a_refused_script_leaves_nothing_and_says_which_statement_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    all_or_nothing(&support::sqlite_url(dir.path(), "script.db")).await;
}

#[tokio::test]
async fn a_refused_script_leaves_nothing_and_says_which_statement_postgres() {
    let Some(url) =
        support::postgres_url("a_refused_script_leaves_nothing_and_says_which_statement_postgres")
    else {
        return;
    };
    all_or_nothing(&url).await;
}

/// What a script's statements return comes back, every statement's rows in their order, both
/// ways a script runs (alone, and inside a transaction that is undone whole if it fails): a
/// caller counts what its guarded writes did from their `RETURNING` rows.
async fn every_statements_rows(url: &str) {
    let db = support::open(url, "script-rows-test").await;
    let mut tx = db.begin().await.unwrap();
    sqlx::query("CREATE TEMP TABLE script_r (k BIGINT PRIMARY KEY)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let returning = |ks: &[i64]| {
        let mut s = Script::new();
        for &k in ks {
            // A row already there is skipped, and returns nothing.
            s.push(
                "INSERT INTO script_r (k) SELECT ? WHERE true ON CONFLICT (k) DO NOTHING RETURNING k",
                [Bind::Int(k)],
            );
        }
        s
    };
    let got = |rows: Vec<sqlx::any::AnyRow>| -> Vec<i64> {
        rows.iter().map(|r| r.try_get("k").unwrap()).collect()
    };
    let rows = returning(&[3, 1, 2]).fetch_all(&mut tx).await.unwrap();
    assert_eq!(got(rows), vec![3, 1, 2]);
    let rows = returning(&[4, 1, 5])
        .run_undone_with_transaction(&mut tx)
        .await
        .unwrap();
    assert_eq!(got(rows), vec![4, 5]);
    tx.rollback().await.unwrap();
    db.close().await;
}

#[tokio::test]
async fn a_script_answers_the_rows_of_every_statement_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    every_statements_rows(&support::sqlite_url(dir.path(), "script-rows.db")).await;
}

#[tokio::test]
async fn a_script_answers_the_rows_of_every_statement_postgres() {
    let Some(url) = support::postgres_url("a_script_answers_the_rows_of_every_statement_postgres")
    else {
        return;
    };
    every_statements_rows(&url).await;
}

//! The pool never hands out a connection inside a transaction, even one the driver does not
//! know of: a request dropped between sending BEGIN and the transaction taking charge leaves
//! the server in a transaction with the driver's count at zero.

mod support;

use hms_kit::db::{Db, Open};
use sqlx::{Executor, Row};

#[tokio::test]
async fn a_transaction_begun_behind_the_drivers_back_is_never_reused_postgres() {
    let Some(url) = support::postgres_url(
        "a_transaction_begun_behind_the_drivers_back_is_never_reused_postgres",
    ) else {
        return;
    };
    let how = Open {
        service: "pool-test",
        max_connections: 1,
        ..Default::default()
    };
    let db = Db::open(&url, how).await.unwrap();
    for round in 0..20 {
        let mut conn = db.pool().acquire().await.unwrap();
        // Released at once: the transaction is microseconds old.
        conn.execute(sqlx::raw_sql("BEGIN")).await.unwrap();
        drop(conn);
        let mut conn = db.pool().acquire().await.unwrap();
        let row = conn
            .fetch_one(sqlx::raw_sql("SELECT now() = statement_timestamp()"))
            .await
            .unwrap();
        let idle: bool = row.try_get(0).unwrap();
        assert!(
            idle,
            "round {round}: a connection came back inside a transaction"
        );
    }
    db.close().await;
}

/// Every SQLite connection is set up the same way but for its page cache: the writer keeps
/// more of one (every write walks the same hot pages), each reader little.
#[tokio::test]
async fn sqlite_connections_are_set_up_with_their_page_caches() {
    let dir = tempfile::tempdir().unwrap();
    let url = support::sqlite_url(dir.path(), "setup.db");
    let db = support::open(&url, "pool-test").await;
    let pragma = |name: &'static str| format!("PRAGMA {name}");
    for (pool, cache) in [(db.writer(), -512i64), (db.pool(), -256)] {
        let mut conn = pool.acquire().await.unwrap();
        let mode: String = sqlx::query_scalar(&pragma("journal_mode"))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar(&pragma("foreign_keys"))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(fk, 1);
        let size: i64 = sqlx::query_scalar(&pragma("cache_size"))
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(size, cache);
    }
    db.close().await;
}

/// The write-ahead log is copied back into the database file by the checkpoint task, before
/// the writer's own checkpoint at 1,000 pages would: the writer does not stop to copy it, and
/// the file holds what was written within a second or so.
#[tokio::test]
async fn sqlite_checkpoints_are_made_beside_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let url = support::sqlite_url(dir.path(), "checkpoint.db");
    let db = support::open(&url, "pool-test").await;
    sqlx::query("CREATE TABLE filler (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        .execute(db.writer())
        .await
        .unwrap();
    let file = dir.path().join("checkpoint.db");
    let before = std::fs::metadata(&file).unwrap().len();
    // About 2 MB (500 pages) in 50 commits: below the writer's own checkpoint.
    for i in 0..50 {
        sqlx::query(
            "INSERT INTO filler (k, v) SELECT $1 * 1000 + value, printf('%.400c', 'x') \
             FROM json_each((SELECT json_group_array(n) FROM (WITH RECURSIVE c(n) AS \
             (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n < 99) SELECT n FROM c)))",
        )
        .bind(i as i64)
        .execute(db.writer())
        .await
        .unwrap();
    }
    let mut grown = 0;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        grown = std::fs::metadata(&file).unwrap().len() - before;
        if grown >= 2_000_000 {
            break;
        }
    }
    assert!(
        grown >= 2_000_000,
        "the database file grew by {grown} bytes only"
    );
    db.close().await;
}

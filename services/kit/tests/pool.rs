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

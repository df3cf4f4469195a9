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

/// Every SQLite connection is set up the same way but for its page cache and its own
/// checkpoints: the writer keeps more of a cache (every write walks the same hot pages), each
/// reader little, and the writer checkpoints the log itself only when the checkpoint task has
/// let it grow long.
#[tokio::test]
async fn sqlite_connections_are_set_up_with_their_page_caches() {
    let dir = tempfile::tempdir().unwrap();
    let url = support::sqlite_url(dir.path(), "setup.db");
    let db = support::open(&url, "pool-test").await;
    async fn pragma(conn: &mut sqlx::AnyConnection, name: &str) -> String {
        let row = conn
            .fetch_one(format!("PRAGMA {name}").as_str())
            .await
            .unwrap();
        row.try_get::<String, _>(0)
            .or_else(|_| row.try_get::<i64, _>(0).map(|n| n.to_string()))
            .unwrap()
    }
    let mut writer = db.write().await.unwrap();
    let mut reader = db.read().await.unwrap();
    for (conn, cache, autocheckpoint) in [
        (&mut *writer, "-512", "4000"),
        (&mut *reader, "-256", "1000"),
    ] {
        assert_eq!(pragma(conn, "journal_mode").await, "wal");
        assert_eq!(pragma(conn, "foreign_keys").await, "1");
        assert_eq!(pragma(conn, "cache_size").await, cache);
        assert_eq!(pragma(conn, "wal_autocheckpoint").await, autocheckpoint);
    }
    drop((writer, reader));
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
        .execute(&mut *db.write().await.unwrap())
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
        .execute(&mut *db.write().await.unwrap())
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

/// SQLite's writer connection is held by its database, not borrowed from a pool, so nothing
/// checks it on its way back: a transaction its holder left unfinished — dropped, or its task
/// aborted between statements or in the middle of `BEGIN` — is rolled back at once, so it
/// neither keeps its writes nor the file's write lock (another process's writer gets it), and
/// the next write goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_transaction_left_unfinished_is_undone_and_frees_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = support::sqlite_url(dir.path(), "held.db");
    let db = support::open(&url, "pool-test").await;
    // Another process's writer: its own connections to the same file.
    let other = support::open(&url, "pool-test-other").await;
    sqlx::query("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        .execute(&mut *db.write().await.unwrap())
        .await
        .unwrap();
    let count = |db: Db| async move {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(db.pool())
            .await
            .unwrap();
        n
    };
    let other_writes = |k: i64| {
        let other = other.clone();
        async move {
            let wrote = tokio::time::timeout(std::time::Duration::from_secs(3), async {
                sqlx::query("INSERT INTO t (k) VALUES ($1)")
                    .bind(k)
                    .execute(&mut *other.write().await.unwrap())
                    .await
            })
            .await;
            assert!(
                matches!(wrote, Ok(Ok(_))),
                "the other writer got the lock: {wrote:?}"
            );
        }
    };

    // Dropped after a statement, without a commit.
    let mut tx = db.begin().await.unwrap();
    insert(&mut tx, 1).await;
    drop(tx);
    other_writes(100).await;
    assert_eq!(count(db.clone()).await, 1, "only the other writer's row");

    // A task aborted while it holds a transaction, and tasks aborted at every point of a
    // begin, a statement and a commit.
    for round in 0..40u64 {
        let db2 = db.clone();
        let task = tokio::spawn(async move {
            let mut tx = db2.begin().await.unwrap();
            insert(&mut tx, 1_000 + round as i64).await;
            tx.commit().await.unwrap();
            std::future::pending::<()>().await;
        });
        tokio::time::sleep(std::time::Duration::from_micros(round * 37)).await;
        task.abort();
        let _ = task.await;
        // Whatever the abort cut short, the writer is free and clean for the next write.
        let mut tx = tokio::time::timeout(std::time::Duration::from_secs(3), db.begin())
            .await
            .expect("the writer is not stuck")
            .unwrap();
        insert(&mut tx, 10_000 + round as i64).await;
        tx.commit().await.unwrap();
    }
    // Each round's own write kept; an aborted one kept only if it committed.
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t WHERE k >= 10000")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(kept, 40);
    other_writes(101).await;
    other.close().await;
    db.close().await;
}

/// SQLite's readers are held as the writer is (a read gives its connection back without a
/// message to the connection's thread): a read transaction left unfinished — dropped, or its
/// task aborted at any point of its begin or its read — is ended before its reader serves
/// again, so no later read sees that transaction's old snapshot; and more reads at once than
/// there are readers each wait for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_left_unfinished_is_ended_and_later_reads_see_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::open(&support::sqlite_url(dir.path(), "reads.db"), "pool-test").await;
    sqlx::query("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        .execute(&mut *db.write().await.unwrap())
        .await
        .unwrap();
    insert(&mut db.write().await.unwrap(), 0).await;
    for round in 0..40u64 {
        let db2 = db.clone();
        let task = tokio::spawn(async move {
            let mut tx = db2.begin_read().await.unwrap();
            count(&mut tx).await.unwrap();
            if round % 2 == 0 {
                drop(tx);
            }
            std::future::pending::<()>().await;
        });
        tokio::time::sleep(std::time::Duration::from_micros(round * 37)).await;
        task.abort();
        let _ = task.await;
        insert(&mut db.write().await.unwrap(), 1 + round as i64).await;
        // More reads at once than readers: each waits for one, and each sees the new row.
        let reads = futures::future::join_all((0..8).map(|_| {
            tokio::time::timeout(std::time::Duration::from_secs(3), async {
                count(&mut db.read().await.unwrap()).await.unwrap()
            })
        }))
        .await;
        for seen in reads {
            assert_eq!(
                seen.expect("a reader is not stuck"),
                round as i64 + 2,
                "round {round}: a read saw an unfinished read's old snapshot"
            );
        }
    }
    assert_eq!(db.pool().size(), 2, "the readers held are the pool's two");
    db.close().await;
}

/// Closing a database while reads and writes keep coming ends: a connection is never taken
/// from the pool for a reader or the writer once closing began (kept, it would never come back,
/// and the pool's close waits for every connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_closes_while_reads_and_writes_keep_coming() {
    for round in 0..10u64 {
        let dir = tempfile::tempdir().unwrap();
        let db = support::open(&support::sqlite_url(dir.path(), "close.db"), "pool-test").await;
        let busy: Vec<_> = (0..4)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    loop {
                        let _ = match i % 2 {
                            0 => {
                                sqlx::query("SELECT 1")
                                    .execute(&mut *db.read().await?)
                                    .await
                            }
                            _ => {
                                sqlx::query("PRAGMA user_version")
                                    .execute(&mut *db.write().await?)
                                    .await
                            }
                        };
                        tokio::task::yield_now().await;
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), sqlx::Error>(())
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_micros(round * 300)).await;
        let closed = tokio::time::timeout(std::time::Duration::from_secs(20), db.close()).await;
        for task in busy {
            task.abort();
        }
        assert!(closed.is_ok(), "round {round}: the close never ended");
    }
}

async fn count(conn: &mut sqlx::AnyConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM t")
        .fetch_one(conn)
        .await
}

async fn insert(conn: &mut sqlx::AnyConnection, k: i64) {
    sqlx::query("INSERT INTO t (k) VALUES ($1)")
        .bind(k)
        .execute(conn)
        .await
        .unwrap();
}

/// A SQLite database's readers are made when it opens and kept for good: a reader made under
/// load was seen to stall the database's writer for seconds (docs/benchmarks.md, 2026-12-07,
/// second sitting), and one made lazily is made exactly then, when reads first come.
#[tokio::test]
async fn a_sqlite_databases_readers_are_made_when_it_opens_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::open(
        &support::sqlite_url(dir.path(), "readers.db"),
        "readers-test",
    )
    .await;
    assert_eq!(db.pool().size(), 2, "every reader made at open");
    let options = db.pool().options();
    assert_eq!(
        (options.get_idle_timeout(), options.get_max_lifetime()),
        (None, None),
        "none closed for idleness or age, to be made again later"
    );
    db.close().await;
}

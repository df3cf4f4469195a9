//! What the kit's database tests share: a throw-away SQLite file, and the PostgreSQL server
//! of `HMS_TEST_POSTGRES_URL` or a printed reason the test is skipped.

// Each test binary uses its own part of these.
#![allow(dead_code)]

use hms_kit::db::{Db, Open};
use std::path::Path;

/// A SQLite database `file` in `dir`.
pub fn sqlite_url(dir: &Path, file: &str) -> String {
    format!("sqlite://{}/{file}", dir.display())
}

/// The test PostgreSQL server; `None` (and the test named `test` says it is skipped) when
/// `HMS_TEST_POSTGRES_URL` is not set.
pub fn postgres_url(test: &str) -> Option<String> {
    let url = std::env::var("HMS_TEST_POSTGRES_URL").ok();
    if url.is_none() {
        println!("SKIPPED {test}: HMS_TEST_POSTGRES_URL is not set");
    }
    url
}

/// Opens the database at `url` for a test named `service` (two connections on PostgreSQL).
pub async fn open(url: &str, service: &'static str) -> Db {
    Db::open(
        url,
        Open {
            service,
            max_connections: 2,
            ..Open::default()
        },
    )
    .await
    .unwrap()
}

/// A throw-away database on the PostgreSQL `server`, for a test that needs tables of fixed
/// names (the kit's own); its URL. Dropped with [`drop_postgres`].
pub async fn fresh_postgres(server: &str, name: &str) -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let db = format!(
        "hms_k_{name}_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut conn = sqlx::AnyConnection::connect(server).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    hms_kit::db::with_database(server, &db)
}

/// Drops a database made by [`fresh_postgres`], even with connections open.
pub async fn drop_postgres(server: &str, url: &str) {
    use sqlx::Connection;
    let Some(db) = hms_kit::db::database_name(url) else {
        return;
    };
    if let Ok(mut conn) = sqlx::AnyConnection::connect(server).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    }
}

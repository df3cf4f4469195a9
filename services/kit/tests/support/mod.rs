//! What the kit's database tests share: a throw-away SQLite file, and the PostgreSQL server
//! of `HMS_TEST_POSTGRES_URL` or a printed reason the test is skipped.

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

//! Rows bound as one JSON array (`db::json_rows`) come back exactly as they were sent, in
//! their order, on both backends: text with quotes, backslashes, newlines and any script, and
//! integers to the ends of their range.

mod support;

use hms_kit::db::{json_rows, json_rows_param};
use sqlx::Row;

async fn round_trip(url: &str) {
    let db = support::open(url, "json-rows-test").await;
    let rows: Vec<(i64, &str)> = vec![
        (i64::MAX, "plain"),
        (i64::MIN, r#"quote " and \ backslash"#),
        (0, "line\nbreak\ttab"),
        (-1, "Dr. Meera Nair — नायर 😀"),
        (42, ""),
    ];
    let sql = format!(
        "SELECT CAST(j.value ->> 0 AS BIGINT) AS n, j.value ->> 1 AS s FROM {} ORDER BY j.key",
        json_rows(db.backend(), "$1")
    );
    let got = sqlx::query(&sql)
        .bind(json_rows_param(&rows).unwrap())
        .fetch_all(db.pool())
        .await
        .unwrap();
    let got: Vec<(i64, String)> = got
        .iter()
        .map(|r| (r.try_get("n").unwrap(), r.try_get("s").unwrap()))
        .collect();
    let want: Vec<(i64, String)> = rows.iter().map(|(n, s)| (*n, s.to_string())).collect();
    assert_eq!(got, want);
    db.close().await;
}

#[tokio::test]
async fn json_rows_come_back_as_sent_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(&support::sqlite_url(dir.path(), "rows.db")).await;
}

#[tokio::test]
async fn json_rows_come_back_as_sent_postgres() {
    let Some(url) = support::postgres_url("json_rows_come_back_as_sent_postgres") else {
        return;
    };
    round_trip(&url).await;
}

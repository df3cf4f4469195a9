//! `hms-load db-ceiling`: what one SQLite writer connection can do through the services' own
//! database layer (`kit::db::Db`, the same driver and connection setup), with nothing else in
//! the way — no HTTP, no token, no events. Two figures, each from one client in sequence:
//!
//! - a statement's round trip (`SELECT $1`): the driver runs each connection on a thread of its
//!   own, so every statement is a message to that thread and one back;
//! - a transaction shaped like a booking's (`BEGIN IMMEDIATE`, eight single-row inserts,
//!   `COMMIT`: ten round trips). A database has one writer, so this rate bounds every write
//!   path of that shape on it — booking included — however many clients there are.

use crate::Args;
use anyhow::Context;
use hms_kit::db::{Db, Open};
use std::time::{Duration, Instant};

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("making a throw-away directory")?;
    let url = format!("sqlite://{}/ceiling.db", dir.path().display());
    let db = Db::open(
        &url,
        Open {
            service: "db-ceiling",
            ..Open::default()
        },
    )
    .await?;
    sqlx::query("CREATE TABLE rows (id INTEGER PRIMARY KEY, a INTEGER NOT NULL, b TEXT NOT NULL)")
        .execute(&mut *db.write().await?)
        .await?;
    let half = Duration::from_secs(args.duration.max(2)) / 2;

    let (mut trips, started) = (0u64, Instant::now());
    while started.elapsed() < half {
        let _: i64 = sqlx::query_scalar("SELECT $1")
            .bind(trips as i64)
            .fetch_one(&mut *db.write().await?)
            .await?;
        trips += 1;
    }
    let trip_us = started.elapsed().as_micros() as f64 / trips as f64;

    let (mut txs, started) = (0u64, Instant::now());
    while started.elapsed() < half {
        let mut tx = db.begin().await?;
        for i in 0..8 {
            sqlx::query("INSERT INTO rows (a, b) VALUES ($1, $2)")
                .bind(i)
                .bind("a booking's row")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        txs += 1;
    }
    let tx_us = started.elapsed().as_micros() as f64 / txs as f64;
    db.close().await;
    println!(
        "workflow=db-ceiling statement_round_trip={trip_us:.1}us ({trips} in {:.1}s) \
         booking_shaped_transaction={tx_us:.0}us throughput={:.0} tx/s (one writer connection, 10 round trips each)",
        half.as_secs_f64(),
        1e6 / tx_us
    );
    Ok(())
}

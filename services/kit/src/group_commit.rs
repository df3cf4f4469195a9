//! Group commit for appends that must be durable before a request answers — the audit rows of
//! patient reads. Many requests' rows are written by one task in one transaction and committed
//! together, and each request is answered only once its rows are committed: the same guarantee
//! as a transaction per request, for one commit (one fsync, one turn of SQLite's write lock)
//! per batch instead of per request. A failed batch fails every request in it, so nothing is
//! answered unrecorded.

use crate::clock::Clock;
use crate::db::{Db, Tx};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Rows per transaction at most; a batch takes whatever is waiting, up to this.
const MAX_BATCH: usize = 512;

type Waiter = oneshot::Sender<Result<(), String>>;

/// Writes a batch of rows in the transaction given.
pub type Write<R> = Arc<
    dyn for<'t> Fn(&'t mut Tx, &'t [R], DateTime<Utc>) -> BoxFuture<'t, Result<(), sqlx::Error>>
        + Send
        + Sync,
>;

/// The handle requests append through; the writer task ends when the last handle is dropped.
pub struct Appender<R> {
    queue: mpsc::UnboundedSender<(Vec<R>, Waiter)>,
}

impl<R> Clone for Appender<R> {
    fn clone(&self) -> Self {
        Appender {
            queue: self.queue.clone(),
        }
    }
}

impl<R> std::fmt::Debug for Appender<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Appender")
    }
}

impl<R: Send + Sync + 'static> Appender<R> {
    /// Starts the writer task (on the current runtime).
    pub fn spawn(db: Db, clock: Clock, write: Write<R>) -> Self {
        let (queue, mut rx) = mpsc::unbounded_channel::<(Vec<R>, Waiter)>();
        tokio::spawn(async move {
            let service = db.service();
            while let Some(first) = rx.recv().await {
                let mut rows = first.0;
                let mut waiters = vec![first.1];
                while rows.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok((more, w)) => {
                            rows.extend(more);
                            waiters.push(w);
                        }
                        Err(_) => break,
                    }
                }
                let result = commit(&db, &clock, &write, &rows).await;
                metrics::histogram!("group_commit_batch_rows", "service" => service)
                    .record(rows.len() as f64);
                for w in waiters {
                    // A request that went away meanwhile needs no answer.
                    let _ = w.send(result.clone());
                }
            }
        });
        Appender { queue }
    }

    /// Appends `rows`; returns once they are committed (or why they could not be).
    pub async fn append(&self, rows: Vec<R>) -> Result<(), String> {
        if rows.is_empty() {
            return Ok(());
        }
        let (done, answer) = oneshot::channel();
        self.queue
            .send((rows, done))
            .map_err(|_| "the writer has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the writer stopped before committing".to_string())?
    }
}

async fn commit<R>(db: &Db, clock: &Clock, write: &Write<R>, rows: &[R]) -> Result<(), String> {
    let mut tx = db.begin().await.map_err(|e| e.message)?;
    write(&mut tx, rows, clock.now())
        .await
        .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())
}

//! Group commit for work that must be durable before a request answers — the audit rows of
//! patient reads, and the reads themselves. Many requests' work is done by one task in one
//! transaction and committed together, and each request is answered only once that
//! transaction has committed: the same guarantee as a transaction per request, for one commit
//! (one turn of SQLite's writer, one round trip per statement for the whole batch) instead of
//! one per request. A failed batch fails every request in it, so nothing is answered
//! unrecorded.

use crate::clock::Clock;
use crate::db::{Db, Tx};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The weight (rows written) of one transaction at most; a batch takes whatever is waiting, up
/// to this. It bounds the statements' bound values too (SQLite takes at most 32,766 in one).
const MAX_WEIGHT: usize = 512;

/// Does a batch's work in the transaction given: one answer per item, in their order.
pub type Work<Q, A> = Arc<
    dyn for<'t> Fn(&'t mut Tx, &'t [Q], DateTime<Utc>) -> BoxFuture<'t, Result<Vec<A>, sqlx::Error>>
        + Send
        + Sync,
>;

struct Job<Q, A> {
    item: Q,
    weight: usize,
    done: oneshot::Sender<Result<A, String>>,
}

/// The handle requests submit their work through; the task ends when the last handle is
/// dropped.
pub struct Batcher<Q, A> {
    queue: mpsc::UnboundedSender<Job<Q, A>>,
}

impl<Q, A> Clone for Batcher<Q, A> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
        }
    }
}

impl<Q, A> std::fmt::Debug for Batcher<Q, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Batcher")
    }
}

impl<Q: Send + Sync + 'static, A: Send + 'static> Batcher<Q, A> {
    /// Starts the task (on the current runtime).
    pub fn spawn(db: Db, clock: Clock, work: Work<Q, A>) -> Self {
        let (queue, mut rx) = mpsc::unbounded_channel::<Job<Q, A>>();
        tokio::spawn(async move {
            let service = db.service();
            while let Some(first) = rx.recv().await {
                let mut weight = first.weight;
                let mut jobs = vec![first];
                while weight < MAX_WEIGHT {
                    match rx.try_recv() {
                        Ok(job) => {
                            weight += job.weight;
                            jobs.push(job);
                        }
                        Err(_) => break,
                    }
                }
                let (items, waiters): (Vec<Q>, Vec<_>) =
                    jobs.into_iter().map(|j| (j.item, j.done)).unzip();
                let result = commit(&db, &clock, &work, &items).await;
                metrics::histogram!("group_commit_batch_rows", "service" => service)
                    .record(weight as f64);
                // A request that went away meanwhile needs no answer.
                match result {
                    Ok(answers) => {
                        for (w, a) in waiters.into_iter().zip(answers) {
                            let _ = w.send(Ok(a));
                        }
                    }
                    Err(e) => {
                        for w in waiters {
                            let _ = w.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Batcher { queue }
    }

    /// Submits `item` (writing `weight` rows); returns its answer once the batch it rode in
    /// has committed (or why it could not).
    pub async fn submit(&self, item: Q, weight: usize) -> Result<A, String> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Job {
                item,
                weight: weight.max(1),
                done,
            })
            .map_err(|_| "the writer has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the writer stopped before committing".to_string())?
    }
}

async fn commit<Q, A>(
    db: &Db,
    clock: &Clock,
    work: &Work<Q, A>,
    items: &[Q],
) -> Result<Vec<A>, String> {
    let mut tx = db.begin().await.map_err(|e| e.message)?;
    let answers = work(&mut tx, items, clock.now())
        .await
        .map_err(|e| e.to_string())?;
    if answers.len() != items.len() {
        return Err(format!(
            "a batch of {} gave {} answers",
            items.len(),
            answers.len()
        ));
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(answers)
}

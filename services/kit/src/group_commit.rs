//! Group commit for work that must be durable before a request answers.
//!
//! [`Batcher`]: the audit rows of patient reads, and the reads themselves. Many requests' work is done by one task in one
//! transaction and committed together, and each request is answered only once that
//! transaction has committed: the same guarantee as a transaction per request, for one commit
//! (one turn of SQLite's writer, one round trip per statement for the whole batch) instead of
//! one per request. A failed batch fails every request in it, so nothing is answered
//! unrecorded.
//!
//! [`Group`]: writes that a rule can refuse (bookings). A group is done in one transaction;
//! if it is refused, it is undone whole and each request does its own write alone.

use crate::clock::Clock;
use crate::db::{Db, Tx};
use crate::error::Error;
use crate::outbox::Outbox;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
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

/// The handle requests submit their work through (a [`Batcher`] or a [`Group`]); the writer's
/// task ends when the last handle is dropped.
pub struct Writer<J> {
    queue: mpsc::UnboundedSender<J>,
}

impl<J> Clone for Writer<J> {
    fn clone(&self) -> Self {
        Writer {
            queue: self.queue.clone(),
        }
    }
}

impl<J> std::fmt::Debug for Writer<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("group_commit::Writer")
    }
}

/// The next transaction's work: the first to arrive, then whatever else is waiting until
/// `weigh` says it holds `max`; with its weight. `None` once every handle is gone.
async fn take_waiting<J>(
    rx: &mut mpsc::UnboundedReceiver<J>,
    max: usize,
    weigh: impl Fn(&J) -> usize,
) -> Option<(Vec<J>, usize)> {
    let first = rx.recv().await?;
    let mut weight = weigh(&first);
    let mut jobs = vec![first];
    while weight < max {
        match rx.try_recv() {
            Ok(job) => {
                weight += weigh(&job);
                jobs.push(job);
            }
            Err(_) => break,
        }
    }
    Some((jobs, weight))
}

/// A request's work for a [`Batcher`].
pub struct Job<Q, A> {
    item: Q,
    weight: usize,
    done: oneshot::Sender<Result<A, String>>,
}

/// Writes whose batch succeeds or fails whole (audit rows of reads).
pub type Batcher<Q, A> = Writer<Job<Q, A>>;

impl<Q: Send + Sync + 'static, A: Send + 'static> Writer<Job<Q, A>> {
    /// Starts the task (on the current runtime).
    pub fn spawn(db: Db, clock: Clock, work: Work<Q, A>) -> Self {
        let (queue, mut rx) = mpsc::unbounded_channel::<Job<Q, A>>();
        tokio::spawn(async move {
            let service = db.service();
            while let Some((jobs, weight)) = take_waiting(&mut rx, MAX_WEIGHT, |j| j.weight).await {
                let (items, waiters): (Vec<Q>, Vec<_>) =
                    jobs.into_iter().map(|j| (j.item, j.done)).unzip();
                // Work that panicked is answered as a failed batch (its transaction dropped,
                // so rolled back) and the task goes on: every later write depends on it.
                let result = AssertUnwindSafe(commit(&db, &clock, &work, &items))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Err("the batch's work failed unexpectedly".to_string()));
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
        Writer { queue }
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

/// The most items in one [`Group`] transaction.
const MAX_GROUP: usize = 128;

/// Does a group's items in the transaction given (without committing it), writing their events
/// through the outbox given: one answer per item, in their order. An `Err` means some item was refused or a statement failed; nothing of the
/// group is kept and each item is handed back to be done alone ([`Turn::Alone`]).
pub type Together<Q, A> = Arc<
    dyn for<'t> Fn(&'t mut Tx, &'t Outbox, &'t [Q]) -> BoxFuture<'t, Result<Vec<A>, Error>>
        + Send
        + Sync,
>;

/// What became of an item given to a [`Group`].
#[derive(Debug)]
pub enum Turn<Q, A> {
    /// Committed with the rest of its group; this is its answer.
    Committed(A),
    /// Its group was refused, so nothing of it was kept: the item is handed back to be done
    /// in a transaction of its own, where a refusal that is its own is judged and answered.
    Alone(Q),
}

/// A request's write for a [`Group`].
pub struct Entry<Q, A> {
    item: Q,
    done: oneshot::Sender<Result<Turn<Q, A>, Error>>,
}

/// Group commit for writes that can be refused — bookings, whose slot claims and day count the
/// database may refuse. Whatever is waiting when the task is free goes in one transaction (a
/// handful of statements for the whole group, a single commit), so a database with one writer
/// serves a group in about the time it served one. Each item stays all-or-nothing: if the
/// group is refused, it is rolled back whole and every item is done alone, as it would have
/// been without the group, and so judged by the same statements and constraints.
pub type Group<Q, A> = Writer<Entry<Q, A>>;

impl<Q: Send + Sync + 'static, A: Send + 'static> Writer<Entry<Q, A>> {
    /// Starts the task (on the current runtime); groups commit through `outbox`, which wakes
    /// its relays for the events they wrote.
    pub fn spawn(db: Db, outbox: Outbox, together: Together<Q, A>) -> Self {
        let (queue, mut rx) = mpsc::unbounded_channel::<Entry<Q, A>>();
        tokio::spawn(async move {
            let service = db.service();
            while let Some((entries, _)) = take_waiting(&mut rx, MAX_GROUP, |_| 1).await {
                metrics::histogram!("group_commit_batch_rows", "service" => service)
                    .record(entries.len() as f64);
                let (items, waiters): (Vec<Q>, Vec<_>) =
                    entries.into_iter().map(|e| (e.item, e.done)).unzip();
                // A request that went away meanwhile needs no answer. A group whose work
                // panicked is undone like a refused one (its transaction is dropped), and the
                // task goes on serving: every later booking depends on it.
                let done = AssertUnwindSafe(in_one(&db, &outbox, &together, &items))
                    .catch_unwind()
                    .await
                    .unwrap_or(Err(Failed::Refused));
                match done {
                    Ok(answers) => {
                        for (w, a) in waiters.into_iter().zip(answers) {
                            let _ = w.send(Ok(Turn::Committed(a)));
                        }
                    }
                    Err(Failed::Refused) => {
                        metrics::counter!("group_commit_refused_total", "service" => service)
                            .increment(1);
                        for (w, q) in waiters.into_iter().zip(items) {
                            let _ = w.send(Ok(Turn::Alone(q)));
                        }
                    }
                    // Not known to be undone (a commit whose answer was lost may have
                    // committed): said as it is, never done again here.
                    Err(Failed::Commit(e)) => {
                        for w in waiters {
                            let _ = w.send(Err(e.again()));
                        }
                    }
                }
            }
        });
        Writer { queue }
    }

    /// Gives `item` to the next group; returns its answer once that group has committed, or
    /// the item itself if the group was refused.
    pub async fn submit(&self, item: Q) -> Result<Turn<Q, A>, Error> {
        let (done, answer) = oneshot::channel();
        let stopped = || Error::internal(anyhow::anyhow!("the group writer has stopped"));
        self.queue
            .send(Entry { item, done })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

enum Failed {
    /// Rolled back: nothing of the group was kept.
    Refused,
    Commit(Error),
}

async fn in_one<Q, A>(
    db: &Db,
    outbox: &Outbox,
    together: &Together<Q, A>,
    items: &[Q],
) -> Result<Vec<A>, Failed> {
    let mut tx = db.begin().await.map_err(|_| Failed::Refused)?;
    let answers = match together(&mut tx, outbox, items).await {
        Ok(answers) if answers.len() == items.len() => answers,
        // Dropping the transaction rolls it back.
        _ => return Err(Failed::Refused),
    };
    outbox.commit(tx).await.map_err(Failed::Commit)?;
    Ok(answers)
}

//! Coalesced lookups: many requests for records of another service, asked as one call.
//!
//! A consumer that needs a record per event (notification: each message's patient contact
//! details) would make one call per event, each a whole request on both sides (a token, a
//! connection's turn, the answer's JSON, and on the patient service an audited read). A
//! [`Coalescer`] asks for the keys that arrive while its calls are busy in one call, the way
//! group commit writes what arrives while the writer is busy in one transaction: at light load
//! every key is asked for at once and alone; under load a call carries everything that waited
//! for it, so the number of calls stays at about one per call's round trip.

use crate::error::Error;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Looks up a set of keys at once: the records found, by key. A key missing from the answer
/// is one the other service does not have.
pub type Fetch<K, V> =
    Arc<dyn Fn(Vec<K>) -> BoxFuture<'static, Result<HashMap<K, V>, Error>> + Send + Sync>;

/// A [`Fetch`] from an async function of `state` (cloned into each call) and the keys.
pub fn fetch_with<K, V, S, F, Fut>(state: S, f: F) -> Fetch<K, V>
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, Vec<K>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<HashMap<K, V>, Error>> + Send + 'static,
{
    Arc::new(move |keys| Box::pin(f(state.clone(), keys)))
}

type Waiter<K, V> = (K, oneshot::Sender<Result<V, Error>>);

/// The handle lookups go through; its task ends when the last handle is dropped.
pub struct Coalescer<K, V> {
    queue: mpsc::UnboundedSender<Waiter<K, V>>,
}

impl<K, V> Clone for Coalescer<K, V> {
    fn clone(&self) -> Self {
        Coalescer {
            queue: self.queue.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for Coalescer<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("coalesce::Coalescer")
    }
}

impl<K, V> Coalescer<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// Starts the task (on the current runtime): at most `in_flight` calls at once, each for
    /// at most `max_keys` keys; `missing` is the answer for a key a call did not find.
    pub fn spawn(
        max_keys: usize,
        in_flight: usize,
        missing: fn(&K) -> Error,
        fetch: Fetch<K, V>,
    ) -> Self {
        let (queue, mut rx) = mpsc::unbounded_channel::<Waiter<K, V>>();
        let max_keys = max_keys.max(1);
        let calls = Arc::new(Semaphore::new(in_flight.max(1)));
        tokio::spawn(async move {
            loop {
                // A free call first, then what waits: keys that arrive while every call is
                // busy wait together for the next.
                let Ok(permit) = calls.clone().acquire_owned().await else {
                    return;
                };
                let Some(first) = rx.recv().await else {
                    return;
                };
                let mut waiting: HashMap<K, Vec<oneshot::Sender<Result<V, Error>>>> =
                    HashMap::new();
                let mut keys = vec![first.0.clone()];
                waiting.entry(first.0).or_default().push(first.1);
                // Askers that began together (the events of one delivered batch) reach the
                // queue a moment apart: take what waits until a turn of the scheduler brings
                // no more.
                loop {
                    tokio::task::yield_now().await;
                    let mut more = false;
                    while keys.len() < max_keys {
                        let Ok((key, done)) = rx.try_recv() else {
                            break;
                        };
                        more = true;
                        let senders = waiting.entry(key.clone()).or_default();
                        if senders.is_empty() {
                            keys.push(key);
                        }
                        senders.push(done);
                    }
                    if !more || keys.len() >= max_keys {
                        break;
                    }
                }
                let call = fetch(keys);
                tokio::spawn(async move {
                    let answer = call.await;
                    drop(permit);
                    answer_all(waiting, answer, missing);
                });
            }
        });
        Coalescer { queue }
    }

    /// The record of `key`, from the next call that asks for it.
    pub async fn get(&self, key: K) -> Result<V, Error> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send((key, done))
            .map_err(|_| Error::internal(anyhow::anyhow!("the lookup task has stopped")))?;
        // No answer: the call's task ended without one (its lookup panicked).
        answer
            .await
            .map_err(|_| Error::internal(anyhow::anyhow!("the lookup failed unexpectedly")))?
    }
}

fn answer_all<K: Eq + Hash, V: Clone>(
    waiting: HashMap<K, Vec<oneshot::Sender<Result<V, Error>>>>,
    answer: Result<HashMap<K, V>, Error>,
    missing: fn(&K) -> Error,
) {
    match answer {
        Ok(found) => {
            for (key, senders) in waiting {
                for done in senders {
                    let _ = done.send(match found.get(&key) {
                        Some(v) => Ok(v.clone()),
                        None => Err(missing(&key)),
                    });
                }
            }
        }
        Err(e) => {
            for done in waiting.into_values().flatten() {
                let _ = done.send(Err(e.again()));
            }
        }
    }
}

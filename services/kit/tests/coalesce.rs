//! A `coalesce::Coalescer` asks for the keys that arrive while its calls are busy in one call:
//! each asker gets its own record (or the miss, or the call's failure), however many asked for
//! the same key, and no more calls are made at once than it was given.

use hms_kit::coalesce::{Coalescer, Fetch};
use hms_kit::Error;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// A lookup whose calls are recorded and held until `gate` lets one through; keys over 1,000
/// are not found, key 666 fails the whole call.
fn held_lookup(calls: Arc<Mutex<Vec<Vec<u32>>>>, gate: Arc<Semaphore>) -> Fetch<u32, String> {
    Arc::new(move |keys: Vec<u32>| {
        let (calls, gate) = (calls.clone(), gate.clone());
        Box::pin(async move {
            calls.lock().unwrap().push(keys.clone());
            gate.acquire().await.unwrap().forget();
            if keys.contains(&666) {
                return Err(Error::dependency("records", "the call failed"));
            }
            Ok(keys
                .into_iter()
                .filter(|k| *k <= 1000)
                .map(|k| (k, format!("record {k}")))
                .collect::<HashMap<_, _>>())
        })
    })
}

fn missing(k: &u32) -> Error {
    Error::not_found(format!("record {k}"))
}

async fn until_calls(calls: &Mutex<Vec<Vec<u32>>>, n: usize) {
    for _ in 0..500 {
        if calls.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("{n} calls were not made: {:?}", calls.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_wait_for_a_busy_call_are_asked_for_together() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(Semaphore::new(0));
    let c = Coalescer::spawn(64, 1, missing, held_lookup(calls.clone(), gate.clone()));

    // The first key is asked for alone, at once; the call is held.
    let first = tokio::spawn({
        let c = c.clone();
        async move { c.get(1).await }
    });
    until_calls(&calls, 1).await;
    // Meanwhile 100 more ask: keys 2..=51 twice each (one copy over 1,000: a miss).
    let waiting: Vec<_> = (0..100u32)
        .map(|i| {
            let c = c.clone();
            let key = if i == 99 { 5000 } else { 2 + i % 50 };
            tokio::spawn(async move { (key, c.get(key).await) })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(calls.lock().unwrap().len(), 1, "one call at once, as given");
    gate.add_permits(1000);
    assert_eq!(first.await.unwrap().unwrap(), "record 1");
    for w in waiting {
        let (key, got) = w.await.unwrap();
        match key {
            5000 => assert_eq!(got.unwrap_err().code, "not_found"),
            k => assert_eq!(got.unwrap(), format!("record {k}")),
        }
    }
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls[0], vec![1]);
    let later: Vec<u32> = calls[1..].iter().flatten().copied().collect();
    assert_eq!(
        later.len(),
        51,
        "each waiting key asked for once: {calls:?}"
    );
    assert!(
        calls[1..].iter().all(|k| k.len() <= 64),
        "at most 64 keys a call: {calls:?}"
    );
    assert_eq!(calls.len(), 2, "the 51 waiting keys in one call: {calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_call_fails_each_of_its_askers_and_the_next_call_is_made() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(Semaphore::new(0));
    let c = Coalescer::spawn(64, 1, missing, held_lookup(calls.clone(), gate.clone()));
    let blocker = tokio::spawn({
        let c = c.clone();
        async move { c.get(7).await }
    });
    until_calls(&calls, 1).await;
    let doomed: Vec<_> = [666u32, 8, 9]
        .into_iter()
        .map(|k| {
            let c = c.clone();
            tokio::spawn(async move { c.get(k).await })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    gate.add_permits(1000);
    assert_eq!(blocker.await.unwrap().unwrap(), "record 7");
    for d in doomed {
        let e = d.await.unwrap().unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (503, "dependency_unavailable"));
    }
    assert_eq!(
        c.get(8).await.unwrap(),
        "record 8",
        "a later call is made afresh"
    );
}

//! Unit tests of the handle: timeouts, the circuit, kept invalidations, single-flight.

use super::*;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::{async_trait, BreakerSettings, Key};

/// A store whose every operation hangs until the caller's timeout fires.
struct Hanging;

#[async_trait]
impl Backend for Hanging {
    fn name(&self) -> &'static str {
        "hanging"
    }
    async fn get(&self, _: Key<'_>) -> Result<Option<Bytes>, Error> {
        std::future::pending().await
    }
    async fn set(&self, _: Key<'_>, _: Bytes, _: Option<Duration>) -> Result<(), Error> {
        std::future::pending().await
    }
    async fn delete(&self, _: Key<'_>) -> Result<bool, Error> {
        std::future::pending().await
    }
    async fn delete_pattern(&self, _: &str, _: &str) -> Result<u64, Error> {
        std::future::pending().await
    }
    async fn exists(&self, _: Key<'_>) -> Result<bool, Error> {
        std::future::pending().await
    }
    async fn ttl(&self, _: Key<'_>) -> Result<Option<Duration>, Error> {
        std::future::pending().await
    }
    async fn clear(&self, _: &str) -> Result<u64, Error> {
        std::future::pending().await
    }
    async fn ping(&self) -> Result<(), Error> {
        std::future::pending().await
    }
}

/// With tokio's clock paused, time moves only through timers: the
/// measured duration is exact, not a sleep-based guess.
#[tokio::test(start_paused = true)]
async fn a_hanging_store_costs_a_miss_one_op_timeout_not_two() {
    let timeout = Duration::from_millis(200);
    let cache = Cache::builder(Hanging)
        .op_timeout(timeout)
        .breaker(BreakerSettings {
            threshold: 0, // no breaker: every call meets the hanging store
            cooldown: Duration::ZERO,
        })
        .build();
    let started = tokio::time::Instant::now();
    let v: u32 = cache.get_or_set("k", None, || async { 7 }).await.unwrap();
    assert_eq!(v, 7);
    assert_eq!(
        started.elapsed(),
        timeout,
        "the read used the whole budget, so the write is not attempted"
    );
    assert!(cache.stats().errors >= 1);
}

fn hanging_cache(threshold: u32) -> Cache {
    Cache::builder(Hanging)
        .op_timeout(Duration::from_millis(100))
        .bulk_timeout(Duration::from_secs(1))
        .breaker(BreakerSettings {
            threshold,
            cooldown: Duration::from_millis(50),
        })
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_does_not_leave_the_circuit_open_forever() {
    let cache = hanging_cache(1);
    assert!(matches!(
        cache.get::<u8>("k").await,
        Err(Error::Timeout { .. })
    ));
    assert!(matches!(
        cache.get::<u8>("k").await,
        Err(Error::CircuitOpen { .. })
    ));
    tokio::time::sleep(Duration::from_millis(60)).await; // cool-down over
                                                         // The probe is cancelled by the caller before the store answers.
    let cancelled = tokio::time::timeout(Duration::from_millis(10), cache.get::<u8>("k")).await;
    assert!(cancelled.is_err(), "the probe was cut short");
    assert!(matches!(
        cache.get::<u8>("k").await,
        Err(Error::CircuitOpen { .. })
    ));
    // After the next cool-down a new probe reaches the store again.
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(
        matches!(cache.get::<u8>("k").await, Err(Error::Timeout { .. })),
        "a new probe must be admitted"
    );
}

#[tokio::test(start_paused = true)]
async fn bulk_operations_get_the_bulk_timeout() {
    let cache = hanging_cache(0);
    for result in [cache.delete_pattern("x*").await, cache.clear().await] {
        match result {
            Err(Error::Timeout { after, .. }) => assert_eq!(after, Duration::from_secs(1)),
            other => panic!("expected a bulk timeout, got {other:?}"),
        }
    }
    match cache.delete("x").await {
        Err(Error::Timeout { after, .. }) => assert_eq!(after, Duration::from_millis(100)),
        other => panic!("expected the op timeout, got {other:?}"),
    }
}

/// A map-backed store that can be switched down, can hold writes until
/// released, and can return garbage and hang on deletes.
#[derive(Clone, Default)]
struct Switch {
    map: Arc<std::sync::Mutex<std::collections::HashMap<String, Bytes>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
    hold_sets: Arc<std::sync::atomic::AtomicBool>,
    set_started: Arc<tokio::sync::Notify>,
    release_set: Arc<tokio::sync::Notify>,
    garbage_and_hanging_deletes: Arc<std::sync::atomic::AtomicBool>,
}

impl Switch {
    fn check(&self, op: &'static str) -> Result<(), Error> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::Backend {
                backend: "switch",
                op,
                source: "down".into(),
            });
        }
        Ok(())
    }
    fn has(&self, key: &str) -> bool {
        self.map.lock().unwrap().contains_key(key)
    }
}

#[async_trait]
impl Backend for Switch {
    fn name(&self) -> &'static str {
        "switch"
    }
    async fn get(&self, key: Key<'_>) -> Result<Option<Bytes>, Error> {
        self.check("get")?;
        if self.garbage_and_hanging_deletes.load(Ordering::SeqCst) {
            return Ok(Some(Bytes::from_static(b"garbage, not an envelope")));
        }
        Ok(self.map.lock().unwrap().get(key.as_str()).cloned())
    }
    async fn set(&self, key: Key<'_>, value: Bytes, _: Option<Duration>) -> Result<(), Error> {
        self.check("set")?;
        if self.hold_sets.load(Ordering::SeqCst) {
            let released = self.release_set.notified();
            self.set_started.notify_one();
            released.await;
        }
        self.map
            .lock()
            .unwrap()
            .insert(key.as_str().to_owned(), value);
        Ok(())
    }
    async fn delete(&self, key: Key<'_>) -> Result<bool, Error> {
        self.check("delete")?;
        if self.garbage_and_hanging_deletes.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(self.map.lock().unwrap().remove(key.as_str()).is_some())
    }
    async fn delete_pattern(&self, _: &str, _: &str) -> Result<u64, Error> {
        self.check("delete_pattern")?;
        Ok(0)
    }
    async fn exists(&self, key: Key<'_>) -> Result<bool, Error> {
        self.check("exists")?;
        Ok(self.has(key.as_str()))
    }
    async fn ttl(&self, _: Key<'_>) -> Result<Option<Duration>, Error> {
        Ok(None)
    }
    async fn clear(&self, _: &str) -> Result<u64, Error> {
        self.check("clear")?;
        Ok(0)
    }
    async fn ping(&self) -> Result<(), Error> {
        self.check("ping")
    }
}

fn switch_cache(store: &Switch) -> Cache {
    Cache::builder(store.clone())
        .op_timeout(Duration::from_millis(100))
        .breaker(BreakerSettings {
            threshold: 1,
            cooldown: Duration::from_millis(50),
        })
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_delete_skipped_by_the_open_circuit_is_delivered_when_the_store_answers() {
    let store = Switch::default();
    let cache = switch_cache(&store);
    cache.set("k", &1u32, None).await.unwrap();
    store.down.store(true, Ordering::SeqCst);
    assert!(
        cache.get::<u32>("k").await.is_err(),
        "the store is down: circuit opens"
    );
    // The mutation happened; its delete cannot reach the store.
    assert!(matches!(
        cache.delete("k").await,
        Err(Error::CircuitOpen { .. })
    ));
    assert_eq!(cache.stats().invalidations_queued, 1);
    store.down.store(false, Ordering::SeqCst);
    assert_eq!(
        cache.get::<u32>("k").await.unwrap(),
        None,
        "the store still holds the old value: it must not be served"
    );
    tokio::time::sleep(Duration::from_millis(60)).await; // cool-down over
    assert_eq!(
        cache.get::<u32>("k").await.unwrap(),
        None,
        "after the cool-down the stale value must still not be served"
    );
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!store.has("k"), "the kept delete reached the store");
    assert_eq!(cache.stats().invalidations_delivered, 1);
    cache.set("k", &2u32, None).await.unwrap();
    assert_eq!(
        cache.get::<u32>("k").await.unwrap(),
        Some(2),
        "delivered: reads use the store again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_delete_that_lands_while_the_fill_is_in_flight_wins() {
    let store = Switch::default();
    let cache = switch_cache(&store);
    store.hold_sets.store(true, Ordering::SeqCst);
    let started = store.set_started.notified();
    let filler = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get_or_set("k", None, || async { 1u32 }).await })
    };
    started.await; // the leader's write is in flight
    cache.delete("k").await.unwrap(); // the mutation's delete: nothing there yet
    store.hold_sets.store(false, Ordering::SeqCst);
    store.release_set.notify_one();
    assert_eq!(filler.await.unwrap().unwrap(), 1);
    assert!(
        !store.has("k"),
        "the write that raced the delete must be undone: its value predates the mutation"
    );
}

#[tokio::test(start_paused = true)]
async fn an_undecodable_entry_costs_one_op_timeout_in_all() {
    let store = Switch::default();
    store
        .garbage_and_hanging_deletes
        .store(true, Ordering::SeqCst);
    let cache = Cache::builder(store.clone())
        .op_timeout(Duration::from_millis(100))
        .breaker(BreakerSettings {
            threshold: 0,
            cooldown: Duration::ZERO,
        })
        .build();
    let started = tokio::time::Instant::now();
    assert_eq!(
        cache
            .get_or_set("k", None, || async { 5u32 })
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(100),
        "the delete of the bad entry shares the call's budget"
    );
}

#[tokio::test(start_paused = true)]
async fn a_follower_whose_leader_failed_stores_its_own_value() {
    let store = Switch::default();
    let cache = switch_cache(&store);
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_compute("k", None, || async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Err::<u32, &str>("database hiccup")
                })
                .await
        })
    };
    tokio::task::yield_now().await; // the leader is running its body
    let follower: Result<u32, &str> = cache.get_or_compute("k", None, || async { Ok(7) }).await;
    assert_eq!(follower, Ok(7));
    assert_eq!(leader.await.unwrap(), Err("database hiccup"));
    assert_eq!(
        cache.get::<u32>("k").await.unwrap(),
        Some(7),
        "the follower's value is stored: the next caller hits"
    );
}

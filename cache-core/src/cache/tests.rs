//! Unit tests of the handle: timeouts, the circuit, kept invalidations, single-flight.

use super::*;
use crate::testing::{Fault, Faulty, MapStore, Op};
use crate::{BreakerSettings, Key};

/// A store whose every operation hangs until the caller's timeout fires.
fn hanging() -> Faulty<MapStore> {
    let store = Faulty::memory();
    store.inject_all(Fault::Hang);
    store
}

/// With tokio's clock paused, time moves only through timers: the
/// measured duration is exact, not a sleep-based guess.
#[tokio::test(start_paused = true)]
async fn a_hanging_store_costs_a_miss_one_op_timeout_not_two() {
    let timeout = Duration::from_millis(200);
    let cache = Cache::builder(hanging())
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
    Cache::builder(hanging())
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

/// Whether the store behind the faults holds `key`.
async fn holds(store: &Faulty<MapStore>, key: &str) -> bool {
    store.inner().exists(Key::plain(key)).await.unwrap()
}

fn switch_cache(store: &Faulty<MapStore>) -> Cache {
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
    let store = Faulty::memory();
    let cache = switch_cache(&store);
    cache.set("k", &1u32, None).await.unwrap();
    store.inject_all(Fault::Error);
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
    store.clear_faults();
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
    assert!(
        !holds(&store, "k").await,
        "the kept delete reached the store"
    );
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
    let store = Faulty::memory();
    let cache = switch_cache(&store);
    store.inject(Op::Set, Fault::Hang);
    let filler = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get_or_set("k", None, || async { 1u32 }).await })
    };
    store.wait_for_calls(Op::Set, 1).await; // the leader's write is in flight
    cache.delete("k").await.unwrap(); // the mutation's delete: nothing there yet
    store.clear_fault(Op::Set); // releases the held write
    assert_eq!(filler.await.unwrap().unwrap(), 1);
    assert!(
        !holds(&store, "k").await,
        "the write that raced the delete must be undone: its value predates the mutation"
    );
}

#[tokio::test(start_paused = true)]
async fn an_undecodable_entry_costs_one_op_timeout_in_all() {
    let store = Faulty::memory();
    store.inject(Op::Get, Fault::Garbage);
    store.inject(Op::Delete, Fault::Hang);
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
    let store = Faulty::memory();
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

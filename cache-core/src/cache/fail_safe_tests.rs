//! Unit tests of fail-safe, on tokio's paused clock (the entry freshness and
//! the tier follow it in this crate's tests: see `crate::clock`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::tier_tests::TierStore;
use super::*;
use crate::testing::{Fault, Faulty, MapStore, Op};
use crate::{LocalSettings, TierUse, Typed};

const TTL: Duration = Duration::from_secs(60);
const MAX: Duration = Duration::from_secs(3600);
const THROTTLE: Duration = Duration::from_secs(10);

fn fail_safe() -> FailSafe {
    FailSafe::new(MAX).throttle(THROTTLE)
}

/// A cache over a shared-store stand-in (fencing, not in-process tier).
fn over_store(store: impl Backend) -> Cache {
    Cache::builder(store)
        .default_ttl(TTL)
        .fail_safe(fail_safe())
        .build()
}

/// One read of `key`: the body counts its runs and answers `answer`.
async fn call(
    cache: &Cache,
    key: &str,
    runs: &AtomicUsize,
    answer: Result<u32, &'static str>,
) -> Result<u32, &'static str> {
    cache
        .get_or_compute(key, None, || async {
            runs.fetch_add(1, Ordering::SeqCst);
            answer
        })
        .await
}

async fn each_store(check: impl AsyncFn(Cache, &'static str)) {
    check(over_store(MapStore::default()), "map store").await;
    check(over_store(TierStore::default()), "in-process tier store").await;
    let fronted = Cache::builder(MapStore::default())
        .default_ttl(TTL)
        .fail_safe(fail_safe())
        .local(LocalSettings {
            max_entries: 100,
            max_bytes: 1 << 20,
            ttl: Duration::from_secs(30),
        })
        .build();
    check(fronted, "map store under a local tier").await;
}

#[tokio::test(start_paused = true)]
async fn an_error_after_expiry_is_answered_with_the_stale_value_and_the_body_throttled() {
    each_store(async |cache, what| {
        let runs = AtomicUsize::new(0);
        assert_eq!(call(&cache, "k", &runs, Ok(1)).await, Ok(1));
        tokio::time::advance(TTL + Duration::from_secs(1)).await;
        // Expired: the body runs, fails, and the stale value answers.
        assert_eq!(
            call(&cache, "k", &runs, Err("db down")).await,
            Ok(1),
            "{what}"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2, "{what}");
        assert_eq!(cache.stats().stale_served, 1, "{what}");
        // Within the throttle the fallback is fresh: the failing body is not asked.
        tokio::time::advance(THROTTLE - Duration::from_secs(1)).await;
        assert_eq!(
            call(&cache, "k", &runs, Err("db down")).await,
            Ok(1),
            "{what}"
        );
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "{what}: the body ran within the throttle"
        );
        // After it, the body is tried again.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            call(&cache, "k", &runs, Err("db down")).await,
            Ok(1),
            "{what}"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 3, "{what}");
        // The source is back: its value replaces the stale one.
        tokio::time::advance(THROTTLE + Duration::from_secs(1)).await;
        assert_eq!(call(&cache, "k", &runs, Ok(2)).await, Ok(2), "{what}");
        assert_eq!(
            call(&cache, "k", &runs, Err("unused")).await,
            Ok(2),
            "{what}"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 4, "{what}");
        assert_eq!(cache.stats().stale_served, 2, "{what}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn past_fail_safe_max_or_without_fail_safe_the_error_goes_through() {
    let runs = AtomicUsize::new(0);
    let plain = Cache::builder(MapStore::default()).default_ttl(TTL).build();
    assert_eq!(call(&plain, "k", &runs, Ok(1)).await, Ok(1));
    tokio::time::advance(TTL + Duration::from_secs(1)).await;
    assert_eq!(
        call(&plain, "k", &runs, Err("db down")).await,
        Err("db down")
    );
    assert_eq!(plain.stats().stale_served, 0);

    each_store(async |cache, what| {
        assert_eq!(call(&cache, "k", &runs, Ok(1)).await, Ok(1));
        tokio::time::advance(TTL + MAX).await;
        assert_eq!(
            call(&cache, "k", &runs, Err("db down")).await,
            Err("db down"),
            "{what}"
        );
        assert_eq!(cache.stats().stale_served, 0, "{what}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_invalidated_entry_is_never_a_fallback() {
    each_store(async |cache, what| {
        let runs = AtomicUsize::new(0);
        assert_eq!(call(&cache, "k", &runs, Ok(1)).await, Ok(1));
        tokio::time::advance(TTL + Duration::from_secs(1)).await;
        cache.delete("k").await.unwrap();
        assert_eq!(
            call(&cache, "k", &runs, Err("db down")).await,
            Err("db down"),
            "{what}"
        );
        // And a stale entry is a miss to the provider API.
        assert_eq!(call(&cache, "j", &runs, Ok(5)).await, Ok(5));
        assert_eq!(cache.get::<u32>("j").await.unwrap(), Some(5), "{what}");
        tokio::time::advance(TTL + Duration::from_secs(1)).await;
        assert_eq!(cache.get::<u32>("j").await.unwrap(), None, "{what}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_body_is_answered_with_the_stale_value_and_without_one_it_unwinds() {
    each_store(async |cache, what| {
        let runs = AtomicUsize::new(0);
        assert_eq!(call(&cache, "k", &runs, Ok(1)).await, Ok(1));
        tokio::time::advance(TTL + Duration::from_secs(1)).await;
        let out: Result<u32, &str> = cache
            .get_or_compute("k", None, || async { panic!("the body panicked") })
            .await;
        assert_eq!(out, Ok(1), "{what}");
        // No stale value: the panic is the caller's, as without fail-safe.
        let cache2 = cache.clone();
        let unwound = tokio::spawn(async move {
            let _: Result<u32, &str> = cache2
                .get_or_compute("never-cached", None, || async {
                    panic!("the body panicked")
                })
                .await;
        })
        .await;
        assert!(unwound.is_err_and(|e| e.is_panic()), "{what}");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_store_with_a_stale_local_value_answers_without_running_the_body() {
    let store = Faulty::memory();
    let cache = Cache::builder(store.clone())
        .default_ttl(TTL)
        .fail_safe(fail_safe())
        .local(LocalSettings::default())
        .build();
    let runs = AtomicUsize::new(0);
    let typed: TierUse<u32> = TierUse {
        typed: Some(Typed::new()),
        ttl: None,
    };
    let read = |answer: u32| {
        let full = cache.full_key("k").into_owned();
        let runs = &runs;
        let cache = &cache;
        async move {
            let (out, _): (Plain<u32>, _) = cache
                .read_through(
                    &full,
                    Salt::NONE,
                    async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Plain(answer)
                    },
                    Policy {
                        fail_safe: Some(fail_safe()),
                        ..Policy::new(TTL, typed)
                    },
                )
                .await;
            out.0
        }
    };
    assert_eq!(read(1).await, 1);
    tokio::time::advance(TTL + Duration::from_secs(1)).await;
    store.inject(Op::Get, Fault::Error);
    assert_eq!(read(2).await, 1, "the stale local value answers");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body did not run");
    assert_eq!(cache.stats().stale_served, 1);
    // Throttled locally: no store read either, until it ends.
    let gets = store.calls(Op::Get);
    assert_eq!(read(2).await, 1);
    assert_eq!(
        store.calls(Op::Get),
        gets,
        "served by the tier within the throttle"
    );
    store.clear_faults();
    tokio::time::advance(THROTTLE + Duration::from_secs(1)).await;
    // The store answers again: it still holds the stale entry, the body runs.
    assert_eq!(read(2).await, 2);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_of_a_stale_entry_does_not_land_over_an_invalidation() {
    let store = MapStore::default();
    let a = over_store(store.clone());
    let b = over_store(store.clone());
    let runs = AtomicUsize::new(0);
    assert_eq!(call(&a, "k", &runs, Ok(1)).await, Ok(1));
    tokio::time::advance(TTL + Duration::from_secs(1)).await;
    // A reads the stale entry and runs a slow body; B invalidates meanwhile.
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let slow = a.get_or_compute("k", None, || async {
        held.await.unwrap();
        Ok::<u32, &str>(2)
    });
    let mutate = async {
        tokio::task::yield_now().await;
        b.delete("k").await.unwrap();
        release.send(()).unwrap();
    };
    let (out, ()) = tokio::join!(slow, mutate);
    assert_eq!(out, Ok(2), "the caller gets what its body computed");
    assert_eq!(
        a.stats().fenced_fills,
        1,
        "the refresh was refused by the fence"
    );
    assert_eq!(
        b.get::<u32>("k").await.unwrap(),
        None,
        "nothing landed over the delete"
    );
}

#[tokio::test(start_paused = true)]
async fn followers_of_a_failing_leader_get_the_fallback_too() {
    let cache = over_store(MapStore::default());
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    assert_eq!(call(&cache, "k", &runs, Ok(1)).await, Ok(1));
    tokio::time::advance(TTL + Duration::from_secs(1)).await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (cache, runs) = (cache.clone(), runs.clone());
        calls.spawn(async move {
            cache
                .get_or_compute("k", None, || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err::<u32, &str>("db down")
                })
                .await
        });
    }
    while let Some(out) = calls.join_next().await {
        assert_eq!(out.expect("no panic"), Ok(1));
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the fill, then one leader for the eight callers"
    );
}

/// The scenario: the database fails for 30 s under 64 tasks on 100
/// keys cached before the failure. Every caller gets the right value, and
/// the body runs at most once per key per throttle period.
#[tokio::test(start_paused = true)]
async fn a_database_down_for_30_s_under_64_tasks_costs_no_error_and_one_body_run_per_key_per_throttle(
) {
    const KEYS: u32 = 100;
    const THROTTLE_5S: Duration = Duration::from_secs(5);
    let cache = Cache::builder(MapStore::default())
        .default_ttl(Duration::from_secs(10))
        .fail_safe(FailSafe::new(MAX).throttle(THROTTLE_5S))
        .local(LocalSettings::default())
        .build();
    let down = std::sync::Arc::new(AtomicBool::new(false));
    let runs: std::sync::Arc<Mutex<HashMap<u32, Vec<tokio::time::Instant>>>> = Default::default();
    let read =
        |cache: Cache,
         key: u32,
         down: std::sync::Arc<AtomicBool>,
         runs: std::sync::Arc<Mutex<HashMap<u32, Vec<tokio::time::Instant>>>>| async move {
            cache
                .get_or_compute(&format!("w:{key}"), None, || async move {
                    if down.load(Ordering::SeqCst) {
                        runs.lock()
                            .unwrap()
                            .entry(key)
                            .or_default()
                            .push(tokio::time::Instant::now());
                        Err("database down")
                    } else {
                        Ok(key * 10)
                    }
                })
                .await
        };
    for key in 0..KEYS {
        assert_eq!(
            read(cache.clone(), key, down.clone(), runs.clone()).await,
            Ok(key * 10)
        );
    }
    tokio::time::advance(Duration::from_secs(11)).await;
    down.store(true, Ordering::SeqCst);
    let start = tokio::time::Instant::now();
    let errors = std::sync::Arc::new(AtomicUsize::new(0));
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..64u32 {
        let (cache, down, runs, errors, calls) = (
            cache.clone(),
            down.clone(),
            runs.clone(),
            errors.clone(),
            calls.clone(),
        );
        tasks.spawn(async move {
            let mut i = 0u32;
            while start.elapsed() < Duration::from_secs(30) {
                let key = (task * 37 + i * 11) % KEYS;
                match read(cache.clone(), key, down.clone(), runs.clone()).await {
                    Ok(v) => assert_eq!(v, key * 10, "a wrong value for key {key}"),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
                calls.fetch_add(1, Ordering::SeqCst);
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a task panicked");
    }
    let calls = calls.load(Ordering::SeqCst);
    assert!(calls > 10_000, "the load ran: {calls} calls");
    assert_eq!(errors.load(Ordering::SeqCst), 0, "callers saw errors");
    let runs = runs.lock().unwrap();
    for (key, times) in runs.iter() {
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= THROTTLE_5S,
                "key {key}: the body ran twice within the throttle: {times:?}"
            );
        }
        assert!(times.len() <= 7, "key {key}: {} runs in 30 s", times.len());
    }
    assert_eq!(
        runs.len(),
        KEYS as usize,
        "every key was tried once its throttle ended"
    );
    assert!(cache.stats().stale_served >= u64::from(KEYS));
}

// --- TTL from the value, and jitter (the other expiry options of a read) ----

#[test]
fn jitter_spreads_within_its_bounds_and_zero_or_nan_is_exact() {
    let ttl = Duration::from_secs(100);
    for j in [0.0, -1.0, f64::NAN] {
        assert_eq!(super::read_through::jittered_for_tests(ttl, j), ttl);
    }
    let draws: Vec<Duration> = (0..1000)
        .map(|_| super::read_through::jittered_for_tests(ttl, 0.2))
        .collect();
    assert!(
        draws
            .iter()
            .all(|d| (80.0..120.0).contains(&d.as_secs_f64())),
        "{draws:?}"
    );
    let low = draws.iter().filter(|d| d.as_secs_f64() < 90.0).count();
    let high = draws.iter().filter(|d| d.as_secs_f64() >= 110.0).count();
    // A uniform spread puts about 250 of 1000 in each outer quarter.
    assert!(
        low > 150 && high > 150,
        "not spread: {low} low, {high} high"
    );
    let wide = super::read_through::jittered_for_tests(ttl, 7.0);
    assert!(wide <= ttl * 2, "a jitter above 1 is clamped: {wide:?}");
}

#[tokio::test(start_paused = true)]
async fn fills_live_their_jittered_ttl_in_the_store() {
    let store = MapStore::default();
    let cache = Cache::builder(store.clone()).jitter(0.2).build();
    let mut ttls = Vec::new();
    for i in 0..200 {
        let key = format!("j{i}");
        let v: u32 = cache
            .get_or_set(&key, Some(Duration::from_secs(100)), || async { 1 })
            .await
            .unwrap();
        assert_eq!(v, 1);
        ttls.push(
            store
                .ttl(Key::plain(&key))
                .await
                .unwrap()
                .unwrap()
                .as_secs_f64(),
        );
    }
    assert!(ttls.iter().all(|t| (80.0..=120.0).contains(t)), "{ttls:?}");
    let spread = ttls.iter().cloned().fold(f64::MIN, f64::max)
        - ttls.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        spread > 20.0,
        "entries written together expire together: spread {spread} s"
    );
    // An explicit `set` keeps the TTL it names.
    cache
        .set("exact", &1u32, Some(Duration::from_secs(100)))
        .await
        .unwrap();
    assert_eq!(
        store.ttl(Key::plain("exact")).await.unwrap(),
        Some(Duration::from_secs(100))
    );
}

#[tokio::test(start_paused = true)]
async fn the_ttl_from_the_value_replaces_the_calls_and_zero_is_not_stored() {
    #[derive(Clone, serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Quote {
        price: u32,
        valid_secs: u64,
    }
    fn valid_for(q: &Quote) -> Duration {
        Duration::from_secs(q.valid_secs)
    }
    let store = MapStore::default();
    let cache = Cache::builder(store.clone()).build();
    let runs = AtomicUsize::new(0);
    let read = |key: &'static str, q: Quote| {
        let (cache, runs) = (&cache, &runs);
        async move {
            let full = cache.full_key(key).into_owned();
            let (out, _): (Plain<Quote>, _) = cache
                .read_through(
                    &full,
                    Salt::NONE,
                    async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Plain(q)
                    },
                    Policy {
                        ttl_of: Some(valid_for),
                        ..Policy::new(Duration::from_secs(3600), TierUse::OFF)
                    },
                )
                .await;
            out.0
        }
    };
    let short = Quote {
        price: 5,
        valid_secs: 7,
    };
    assert_eq!(read("short", short.clone()).await, short);
    assert_eq!(
        store.ttl(Key::plain("short")).await.unwrap(),
        Some(Duration::from_secs(7))
    );
    let never = Quote {
        price: 6,
        valid_secs: 0,
    };
    assert_eq!(read("never", never.clone()).await, never);
    assert_eq!(read("never", never.clone()).await, never);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "a zero TTL is not stored: the body ran each time"
    );
    assert_eq!(store.get(Key::plain("never")).await.unwrap(), None);
}

// --- early refresh and soft timeout (the hand-back mode) ---------------------

fn refreshing(after: Option<f64>, beta: Option<f64>) -> Policy<u32> {
    Policy {
        refresh: Some(Refresh { after, beta }),
        ..Policy::new(
            Duration::from_secs(100),
            TierUse {
                typed: Some(Typed::new()),
                ttl: None,
            },
        )
    }
}

/// One read in hand-back mode: the answer, and whether the body came back for a refresh.
async fn hand_back_read(
    cache: &Cache,
    policy: &Policy<u32>,
    answer: u32,
    body_time: Duration,
) -> (u32, bool) {
    let full = cache.full_key("hot").into_owned();
    let body = async move {
        tokio::time::sleep(body_time).await;
        Plain(answer)
    };
    match cache
        .read_through_or_hand_back::<Plain<u32>, _>(&full, Salt::NONE, body, policy.clone())
        .await
    {
        Served::Done { out, refresh, .. } => (out.0, refresh.is_some()),
        Served::HandedBack { .. } | Served::Nothing => panic!("no soft timeout here"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_hit_past_refresh_after_is_due_once_and_the_refresh_restarts_the_ttl() {
    let fronted = || {
        Cache::builder(MapStore::default())
            .local(LocalSettings::default())
            .build()
    };
    for (what, cache) in [
        ("map store", Cache::builder(MapStore::default()).build()),
        (
            "in-process tier store",
            Cache::builder(TierStore::default()).build(),
        ),
        ("map store under a local tier", fronted()),
    ] {
        let policy = refreshing(Some(0.8), None);
        assert_eq!(
            hand_back_read(&cache, &policy, 1, Duration::ZERO).await,
            (1, false),
            "{what}"
        );
        tokio::time::advance(Duration::from_secs(79)).await;
        assert_eq!(
            hand_back_read(&cache, &policy, 2, Duration::ZERO).await,
            (1, false),
            "{what}: not yet due"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            hand_back_read(&cache, &policy, 2, Duration::ZERO).await,
            (1, true),
            "{what}: due at 80 %"
        );
        // The refresh itself: runs the body although the entry is fresh, and replaces it.
        let full = cache.full_key("hot").into_owned();
        cache
            .refresh::<Plain<u32>, _>(&full, Salt::NONE, async { Plain(2) }, policy.clone())
            .await;
        assert_eq!(cache.stats().refreshes, 1, "{what}");
        assert_eq!(
            hand_back_read(&cache, &policy, 3, Duration::ZERO).await,
            (2, false),
            "{what}: the TTL restarted"
        );
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(
            hand_back_read(&cache, &policy, 3, Duration::ZERO).await,
            (2, false),
            "{what}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_refresh_overtaken_by_an_invalidation_or_failing_leaves_no_trace() {
    let store = MapStore::default();
    let a = Cache::builder(store.clone()).build();
    let b = Cache::builder(store.clone()).build();
    let policy = refreshing(Some(0.5), None);
    assert_eq!(
        hand_back_read(&a, &policy, 1, Duration::ZERO).await,
        (1, false)
    );
    let full = a.full_key("hot").into_owned();
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let slow = a.refresh::<Plain<u32>, _>(
        &full,
        Salt::NONE,
        async move {
            held.await.unwrap();
            Plain(2)
        },
        policy.clone(),
    );
    let mutate = async {
        tokio::task::yield_now().await;
        b.delete("hot").await.unwrap();
        release.send(()).unwrap();
    };
    tokio::join!(slow, mutate);
    assert_eq!(
        b.get::<u32>("hot").await.unwrap(),
        None,
        "the refresh landed over the delete"
    );
    // A failing refresh keeps the entry.
    assert_eq!(
        hand_back_read(&a, &policy, 5, Duration::ZERO).await,
        (5, false)
    );
    let failing = Policy {
        refresh: policy.refresh,
        ..Policy::new(policy.ttl, TierUse::OFF)
    };
    a.refresh::<Result<u32, &str>, _>(&full, Salt::NONE, async { Err("down") }, failing)
        .await;
    assert_eq!(a.get::<u32>("hot").await.unwrap(), Some(5));
}

#[tokio::test(start_paused = true)]
async fn xfetch_refreshes_near_the_expiry_in_proportion_to_the_body_time() {
    let cache = Cache::builder(TierStore::default()).build();
    let policy = refreshing(None, Some(1.0));
    // The fill records a 2 s body.
    assert_eq!(
        hand_back_read(&cache, &policy, 1, Duration::from_secs(2)).await,
        (1, false)
    );
    let due_share = |cache: Cache| {
        let policy = policy.clone();
        async move {
            let mut due = 0;
            for _ in 0..400 {
                due += usize::from(hand_back_read(&cache, &policy, 1, Duration::ZERO).await.1);
            }
            due
        }
    };
    // 90 s left against δ = 2 s: P = e^(−45), never.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(due_share(cache.clone()).await, 0);
    // 1 s left: P = e^(−0.5) ≈ 0.61.
    tokio::time::advance(Duration::from_secs(89)).await;
    let due = due_share(cache.clone()).await;
    assert!(
        (180..=310).contains(&due),
        "{due} of 400 due near the expiry"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stale_miss_under_a_soft_timeout_hands_the_body_back_with_the_fallback() {
    let cache = Cache::builder(MapStore::default()).build();
    let policy = Policy {
        fail_safe: Some(fail_safe()),
        soft_timeout: Some(Duration::from_millis(50)),
        ..Policy::new(TTL, TierUse::OFF)
    };
    let full = cache.full_key("slow").into_owned();
    let read = |answer: u32| {
        cache.read_through_or_hand_back::<Plain<u32>, _>(
            &full,
            Salt::NONE,
            async move { Plain(answer) },
            policy.clone(),
        )
    };
    assert!(
        matches!(read(1).await, Served::Done { out: Plain(1), .. }),
        "a miss without a fallback runs the body"
    );
    assert!(
        matches!(read(2).await, Served::Done { out: Plain(1), .. }),
        "a hit"
    );
    tokio::time::advance(TTL + Duration::from_secs(1)).await;
    match read(2).await {
        Served::HandedBack { stale, body } => {
            assert_eq!(stale, 1);
            assert_eq!(body.await, Plain(2));
        }
        _ => panic!("a stale miss under a soft timeout hands the body back"),
    }
}

// --- single-flight across processes (leases) ----------------------------------

#[tokio::test(start_paused = true)]
async fn two_caches_on_one_store_run_the_body_once_with_a_lease() {
    let store = MapStore::default();
    let leased = |store: &MapStore| {
        Cache::builder(store.clone())
            .lease(Duration::from_secs(2))
            .build()
    };
    let (a, b) = (leased(&store), leased(&store));
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let read = |cache: Cache, runs: std::sync::Arc<AtomicUsize>| async move {
        cache
            .get_or_set("k", None, || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                7u32
            })
            .await
            .unwrap()
    };
    let (x, y) = tokio::join!(read(a.clone(), runs.clone()), read(b.clone(), runs.clone()));
    assert_eq!((x, y), (7, 7));
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one body for two processes");
    assert_eq!(a.stats().coalesced + b.stats().coalesced, 1);
    // The lease was given back: a later miss leads at once.
    a.delete("k").await.unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(read(b.clone(), runs.clone()).await, 7);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(300),
        "no wait on a released lease"
    );
}

#[tokio::test(start_paused = true)]
async fn a_store_that_refuses_leases_fails_open_to_running_the_body() {
    let store = Faulty::memory();
    store.inject(Op::Set, Fault::Error);
    let cache = Cache::builder(store.clone())
        .lease(Duration::from_secs(2))
        .build();
    let v: u32 = cache.get_or_set("k", None, || async { 3 }).await.unwrap();
    assert_eq!(v, 3, "the body ran although no lease could be taken");
    // A store without leases at all (the trait's default): the same, said once.
    let plain = Cache::builder(crate::NullBackend)
        .lease(Duration::from_secs(2))
        .build();
    let v: u32 = plain.get_or_set("k", None, || async { 4 }).await.unwrap();
    assert_eq!(v, 4);
}

#[test]
fn jitter_of_a_ttl_too_large_to_scale_up_does_not_panic() {
    for _ in 0..200 {
        let ttl = super::read_through::jittered_for_tests(Duration::MAX, 0.5);
        assert!(ttl >= Duration::MAX / 2 - Duration::from_secs(1), "{ttl:?}");
    }
}

/// A store whose lease is held by another process at the first try, and
/// which that process fills and releases just before the second: the race
/// between a waiter's read and its next lease.
#[derive(Clone)]
struct FilledBeforeSecondLease {
    inner: MapStore,
    filler: Cache,
    leases: std::sync::Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Backend for FilledBeforeSecondLease {
    fn name(&self) -> &'static str {
        "filled-before-second-lease"
    }
    fn is_in_process(&self) -> bool {
        self.inner.is_in_process()
    }
    async fn get(&self, key: Key<'_>) -> Result<Option<bytes::Bytes>, Error> {
        self.inner.get(key).await
    }
    async fn set(
        &self,
        key: Key<'_>,
        value: bytes::Bytes,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        self.inner.set(key, value, ttl).await
    }
    async fn delete(&self, key: Key<'_>) -> Result<bool, Error> {
        self.inner.delete(key).await
    }
    async fn delete_pattern(&self, namespace: &str, pattern: &str) -> Result<u64, Error> {
        self.inner.delete_pattern(namespace, pattern).await
    }
    async fn exists(&self, key: Key<'_>) -> Result<bool, Error> {
        self.inner.exists(key).await
    }
    async fn ttl(&self, key: Key<'_>) -> Result<Option<Duration>, Error> {
        self.inner.ttl(key).await
    }
    async fn clear(&self, namespace: &str) -> Result<u64, Error> {
        self.inner.clear(namespace).await
    }
    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }
    async fn lease(&self, key: Key<'_>, token: &[u8], ttl: Duration) -> Result<bool, Error> {
        match self.leases.fetch_add(1, Ordering::SeqCst) {
            0 => Ok(false),
            1 => {
                self.filler.set("k", &9u32, None).await?;
                self.inner.lease(key, token, ttl).await
            }
            _ => self.inner.lease(key, token, ttl).await,
        }
    }
    async fn release(&self, key: Key<'_>, token: &[u8]) -> Result<(), Error> {
        self.inner.release(key, token).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_lease_won_after_waiting_reads_the_value_its_holder_left_first() {
    let inner = MapStore::default();
    let store = FilledBeforeSecondLease {
        filler: Cache::builder(inner.clone()).build(),
        inner,
        leases: Default::default(),
    };
    let cache = Cache::builder(store.clone())
        .lease(Duration::from_secs(2))
        .build();
    let ran = AtomicBool::new(false);
    let v: u32 = cache
        .get_or_set("k", None, || async {
            ran.store(true, Ordering::SeqCst);
            1
        })
        .await
        .unwrap();
    assert_eq!(
        store.leases.load(Ordering::SeqCst),
        2,
        "waited, then won the lease"
    );
    assert_eq!(v, 9, "the holder's value, read after the lease was won");
    assert!(!ran.load(Ordering::SeqCst), "the body did not run again");
    assert_eq!(cache.stats().coalesced, 1);
    // The lease taken to check was given back: the next miss leads at once.
    cache.delete("k").await.unwrap();
    let v: u32 = cache.get_or_set("k", None, || async { 2 }).await.unwrap();
    assert_eq!(v, 2);
}

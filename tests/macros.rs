//! `#[cache]` and `#[invalidate]` against the in-memory store: the shared
//! behaviour suite (`macro_suite/`) plus fail-open cases that need special backends.

mod common;
mod macro_suite;

use std::sync::OnceLock;
use std::time::Duration;

use cache_core::testing::{Fault, Faulty, Op};
use cacheside::backends::MemoryBackend;
use cacheside::{Cache, Error};
use common::{broken, Calls};
use macro_suite::seed;

const PATTERNS: bool = true;

/// The global cache of this test binary (each test uses its own keys).
async fn global() -> &'static Cache {
    macro_suite::global_over(|| async { MemoryBackend::new(10_000) }).await
}

#[cacheside::invalidate(key = "np:{id}", extra = ["np:count"], patterns = ["np:page:*"], cache = "no-patterns")]
async fn invalidate_without_patterns(id: u32) {}

#[tokio::test]
async fn a_backend_without_patterns_still_deletes_exact_keys() {
    // A memory store that cannot delete by pattern, like Memcached.
    let store = Faulty::new(MemoryBackend::new(100));
    store.inject(Op::DeletePattern, Fault::Unsupported);
    let cache = Cache::builder(store).build();
    cacheside::register("no-patterns", cache.clone());
    seed(&cache, &["np:1", "np:count", "np:page:1"]).await;
    invalidate_without_patterns(1).await;
    assert!(!cache.exists("np:1").await.unwrap());
    assert!(!cache.exists("np:count").await.unwrap());
    assert!(
        cache.exists("np:page:1").await.unwrap(),
        "pattern unsupported: left to expire"
    );
    assert!(matches!(
        cache.delete_pattern("np:*").await,
        Err(Error::PatternNotSupported { .. })
    ));
}

// --- fail-open -------------------------------------------------------------

static FAILOPEN: OnceLock<Calls> = OnceLock::new();

#[cacheside::cache(key = "fo:{id}", cache = "broken-errors")]
async fn on_erroring_store(id: u32) -> u32 {
    FAILOPEN.get_or_init(Calls::default).hit();
    id + 1
}

#[cacheside::cache(key = "fo:{id}", cache = "broken-hangs")]
async fn on_hanging_store(id: u32) -> u32 {
    id + 2
}

#[tokio::test]
async fn a_failing_store_fails_open() {
    let backend = broken(Fault::Error);
    let cache = Cache::builder(backend.clone()).build();
    cacheside::register("broken-errors", cache.clone());
    for _ in 0..20 {
        assert_eq!(on_erroring_store(1).await, 2);
    }
    assert_eq!(FAILOPEN.get_or_init(Calls::default).get(), 20);
    let stats = cache.stats();
    assert!(stats.errors >= 20, "{stats:?}");
    // The circuit opened: the store saw far fewer calls than the 40 (get + set) made.
    assert!(
        backend.total_calls() < 20,
        "breaker did not open: {} store calls",
        backend.total_calls()
    );
    assert!(matches!(
        cache.get::<u32>("fo:1").await,
        Err(Error::CircuitOpen { .. })
    ));
}

#[tokio::test]
async fn a_hanging_store_is_bounded_by_the_op_timeout() {
    let cache = Cache::builder(broken(Fault::Hang))
        .op_timeout(Duration::from_millis(20))
        .build();
    cacheside::register("broken-hangs", cache.clone());
    assert_eq!(on_hanging_store(1).await, 3);
    assert!(cache.stats().errors >= 1);
    assert!(matches!(
        cache.get::<u32>("x").await,
        Err(Error::Timeout { .. } | Error::CircuitOpen { .. })
    ));
}

#[cacheside::cache(key = "unregistered", cache = "never-registered")]
async fn uses_unregistered_cache() -> u8 {
    5
}

#[tokio::test]
async fn an_unregistered_named_cache_runs_uncached() {
    assert_eq!(uses_unregistered_cache().await, 5);
}

/// cacheside re-exported under another path, as a framework crate would.
mod reexport {
    pub use cacheside as cache_lib;
}

#[cacheside::cache(key = "crate-override:{id}", crate = "crate::reexport::cache_lib")]
async fn via_reexport(id: u32) -> u32 {
    id + 100
}

#[cacheside::invalidate(key = "crate-override:{id}", crate = "crate::reexport::cache_lib")]
async fn invalidate_via_reexport(id: u32) {}

#[tokio::test]
async fn the_crate_argument_points_the_expansion_at_a_reexport() {
    let cache = global().await;
    assert_eq!(via_reexport(1).await, 101);
    assert!(cache.exists("crate-override:1").await.unwrap());
    invalidate_via_reexport(1).await;
    assert!(!cache.exists("crate-override:1").await.unwrap());
}

#[cacheside::invalidate(key = "slow:{id}", extra = ["slow:count"], cache = "slow-deletes")]
async fn mutate_then_invalidate(id: u32) -> Result<(), String> {
    let _ = id;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_caller_dropped_during_invalidation_does_not_leave_stale_entries() {
    let store = Faulty::new(MemoryBackend::new(100));
    store.inject(Op::Delete, Fault::Delay(Duration::from_millis(50)));
    let cache = Cache::builder(store).build();
    cacheside::register("slow-deletes", cache.clone());
    seed(&cache, &["slow:1", "slow:count"]).await;
    // The caller gives up while the first delete is under way.
    let dropped = tokio::time::timeout(Duration::from_millis(10), mutate_then_invalidate(1)).await;
    assert!(dropped.is_err(), "the call was cancelled mid-invalidation");
    // The remaining deletes finish in a task (paused clock: exact, no sleeps guessed).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!cache.exists("slow:1").await.unwrap());
    assert!(!cache.exists("slow:count").await.unwrap());
}

// --- a read that started before a mutation --------------------------------

static RACE_DB: std::sync::Mutex<&'static str> = std::sync::Mutex::new("v1");
static RACE_GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();
static RACE_FIRST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

#[cacheside::cache(key = "race:{id}")]
async fn racing_read(id: u32) -> String {
    let _ = id;
    let seen = *RACE_DB.lock().unwrap();
    if RACE_FIRST.swap(false, std::sync::atomic::Ordering::SeqCst) {
        RACE_GATE.notified().await; // the first reader is slow
    }
    seen.to_string()
}

#[cacheside::invalidate(key = "race:{id}")]
async fn racing_write(id: u32) -> Result<(), String> {
    let _ = id;
    *RACE_DB.lock().unwrap() = "v2";
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_started_before_an_invalidation_is_neither_shared_nor_stored() {
    let cache = global().await;
    let slow = tokio::spawn(racing_read(1)); // reads "v1", then waits
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while RACE_FIRST.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow read did not start"
        );
        tokio::task::yield_now().await;
    }
    racing_write(1).await.unwrap(); // commits "v2" and invalidates race:1
                                    // A read after the mutation must not join the slow read's flight.
    let fresh = tokio::time::timeout(Duration::from_secs(5), racing_read(1))
        .await
        .expect("a read after the mutation waited on the read that started before it");
    assert_eq!(fresh, "v2");
    RACE_GATE.notify_one();
    assert_eq!(
        slow.await.unwrap(),
        "v1",
        "the slow caller gets what it read"
    );
    assert_eq!(
        cache.get::<String>("race:1").await.unwrap().as_deref(),
        Some("v2"),
        "the stale value must not overwrite the fresh one"
    );
}

/// Parameters named like the wrapper's own variables do not collide with them.
#[cacheside::cache(key = "hygiene:{__cacheside_key}:{__cacheside_kind}:{__cacheside_key_out}")]
async fn hygienic(
    __cacheside_key: u32,
    __cacheside_body: u32,
    __cacheside_kind: u32,
    __cacheside_key_out: u32,
    __cacheside_value: u32,
) -> u32 {
    __cacheside_key + __cacheside_body + __cacheside_kind + __cacheside_key_out + __cacheside_value
}

#[tokio::test]
async fn generated_locals_cannot_shadow_parameters() {
    let cache = global().await;
    assert_eq!(hygienic(2, 3, 4, 5, 6).await, 20);
    assert_eq!(hygienic(2, 3, 4, 5, 6).await, 20);
    assert_eq!(cache.get::<u32>("hygiene:2:4:5").await.unwrap(), Some(20));
}

// --- a hot key crossing its expiry, with and without early refresh -----------

static HOT_PLAIN_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static HOT_REFRESHED_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// What the database takes per call in these two.
const BODY: Duration = Duration::from_millis(600);

#[cacheside::cache(key = "hot-plain:{id}", expire = 3, cache = "hot-keys")]
async fn hot_plain(id: u32) -> u32 {
    HOT_PLAIN_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(BODY).await;
    id
}

#[cacheside::cache(
    key = "hot-refreshed:{id}",
    expire = 3,
    refresh_after = 0.3,
    cache = "hot-keys"
)]
async fn hot_refreshed(id: u32) -> u32 {
    HOT_REFRESHED_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(BODY).await;
    id
}

/// 64 tasks call `f` for `span`; the slowest call's duration.
async fn hammer<F, Fut>(span: Duration, f: F) -> Duration
where
    F: Fn() -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = u32> + Send,
{
    let until = std::time::Instant::now() + span;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        tasks.spawn(async move {
            let mut slowest = Duration::ZERO;
            while std::time::Instant::now() < until {
                let started = std::time::Instant::now();
                assert_eq!(f().await, 7);
                slowest = slowest.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            slowest
        });
    }
    let mut slowest = Duration::ZERO;
    while let Some(t) = tasks.join_next().await {
        slowest = slowest.max(t.expect("a task panicked"));
    }
    slowest
}

/// The scenario: a hot key under 64 tasks crosses its expiry
/// (3 s; the body takes 600 ms). Without early refresh some callers wait for
/// the body; with `refresh_after = 0.3` none does (a call as slow as the
/// body would have waited for it), and the body runs once per refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_crossing_its_expiry_makes_no_caller_wait_with_early_refresh() {
    use std::sync::atomic::Ordering::SeqCst;
    let cache = Cache::builder(MemoryBackend::new(1_000)).build();
    cacheside::register("hot-keys", cache.clone());

    assert_eq!(hot_plain(7).await, 7);
    let slowest = hammer(Duration::from_millis(3_700), || hot_plain(7)).await;
    assert!(
        slowest >= BODY - Duration::from_millis(50),
        "without refresh, callers at the expiry wait for the body: slowest {slowest:?}"
    );
    assert_eq!(
        HOT_PLAIN_RUNS.load(SeqCst),
        2,
        "the fill and one single-flight run at the expiry"
    );

    assert_eq!(hot_refreshed(7).await, 7);
    let before = cache.stats();
    let refreshes = before.refreshes;
    let slowest = hammer(Duration::from_millis(6_500), || hot_refreshed(7)).await;
    // No caller went through a fill: none missed or joined one (what a wait
    // for the body would be). Counted, not timed: a loaded machine can make
    // any one call slow.
    let after = cache.stats();
    eprintln!("with refresh: slowest call {slowest:?}; {before:?} -> {after:?}");
    assert_eq!(
        (after.misses, after.coalesced),
        (before.misses, before.coalesced),
        "a caller missed or waited on a fill: {before:?} -> {after:?}"
    );
    let runs = HOT_REFRESHED_RUNS.load(SeqCst);
    let refreshed = cache.stats().refreshes - refreshes;
    assert!(
        (2..=5).contains(&refreshed),
        "{refreshed} refreshes in 6.5 s of a 3 s TTL refreshed at 0.9 s"
    );
    assert_eq!(runs as u64, 1 + refreshed, "the body ran once per refresh");
}

//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod logs;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_core::testing::{Fault, Faulty};
use cacheside::backend::NullBackend;
use cacheside::Cache;

/// Runs `fut` on the one runtime this test binary shares: store connections
/// (Redis, Memcached) are driven by the runtime that opened them, so every
/// test of a binary must use the same one.
pub fn run<F: std::future::Future>(fut: F) -> F::Output {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime")
    })
    .block_on(fut)
}

/// Polls `probe` every 20 ms until it returns true; fails after `limit` with `what`.
/// (Bounded polling: the test waits for an outcome, it never asserts a duration.)
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if probe().await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A cache over a store that does not answer fails open: the body's value comes back.
pub async fn fails_open(cache: &Cache) {
    assert_eq!(
        cache
            .get_or_set("k", None, || async { 5u8 })
            .await
            .expect("fails open"),
        5
    );
}

/// Waits (bounded) until `cache` writes and reads its store again.
pub async fn used_again(cache: &Cache, what: &str, limit: Duration) {
    eventually(what, limit, || {
        let cache = cache.clone();
        async move {
            cache.set("k", &9u8, None).await.is_ok()
                && matches!(cache.get::<u8>("k").await, Ok(Some(9)))
        }
    })
    .await;
}

/// `fut`'s output, or a failure naming `what` when it has not finished
/// within 20 s (a hang, where the test expects an answer or an error).
pub async fn finishes<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(20), fut).await {
        Ok(out) => out,
        Err(_) => panic!("{what} hung for 20 s"),
    }
}

/// After a frozen store is resumed: `clear` works again (bounded poll) and
/// removes an entry written after the resume (one written before could have
/// been removed by the clear that was waiting in the socket).
pub async fn clear_works_again(cache: &Cache, key: &str) {
    eventually("clear after SIGCONT", Duration::from_secs(10), || {
        let cache = cache.clone();
        async move { cache.clear().await.is_ok() }
    })
    .await;
    cache.set(key, &2u32, None).await.expect("set after resume");
    assert_eq!(cache.get::<u32>(key).await.unwrap(), Some(2));
    cache.clear().await.expect("clear after resume");
    assert_eq!(cache.get::<u32>(key).await.unwrap(), None);
}

/// Counts how often a body ran.
#[derive(Clone, Debug, Default)]
pub struct Calls(Arc<AtomicUsize>);

impl Calls {
    pub fn hit(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A store that never works, for fail-open tests: every operation meets
/// `fault` ([`Fault::Error`]: fails at once; [`Fault::Hang`]: until the op
/// timeout). Its counters show what reached it.
pub fn broken(fault: Fault) -> Faulty<NullBackend> {
    let store = Faulty::new(NullBackend);
    store.inject_all(fault);
    store
}

/// This binary's global cache (the one `#[cache]` uses when it names none):
/// the first call builds it with `build` (which starts or connects the
/// binary's store) and installs it with [`cacheside::init`]; every call
/// returns that one.
pub async fn global_cache<F, Fut>(build: F) -> &'static Cache
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Cache>,
{
    static CACHE: tokio::sync::OnceCell<Cache> = tokio::sync::OnceCell::const_new();
    CACHE
        .get_or_init(|| async {
            let cache = build().await;
            cacheside::init(cache.clone()).expect("first init in this binary");
            cache
        })
        .await
}

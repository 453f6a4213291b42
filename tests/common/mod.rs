//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod logs;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cacheside::Error;

use cacheside::backend::{async_trait, Backend, Bytes, Key};

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
pub async fn fails_open(cache: &cacheside::Cache) {
    assert_eq!(
        cache
            .get_or_set("k", None, || async { 5u8 })
            .await
            .expect("fails open"),
        5
    );
}

/// Waits (bounded) until `cache` writes and reads its store again.
pub async fn used_again(cache: &cacheside::Cache, what: &str, limit: Duration) {
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
pub async fn clear_works_again(cache: &cacheside::Cache, key: &str) {
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

/// How a [`BrokenBackend`] misbehaves.
#[derive(Clone, Copy, Debug)]
pub enum Breakage {
    /// Every call returns a store error at once.
    Errors,
    /// Every call hangs until the runtime's timeout fires.
    Hangs,
}

/// A store that never works: for fail-open tests.
#[derive(Clone, Debug)]
pub struct BrokenBackend {
    pub how: Breakage,
    pub calls: Calls,
}

impl BrokenBackend {
    pub fn new(how: Breakage) -> Self {
        BrokenBackend {
            how,
            calls: Calls::default(),
        }
    }
    async fn fail<T>(&self, op: &'static str) -> Result<T, Error> {
        self.calls.hit();
        match self.how {
            Breakage::Errors => Err(Error::backend(
                "broken",
                op,
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
            )),
            Breakage::Hangs => {
                std::future::pending::<()>().await;
                unreachable!("pending never completes")
            }
        }
    }
}

#[async_trait]
impl Backend for BrokenBackend {
    fn name(&self) -> &'static str {
        "broken"
    }
    async fn get(&self, _key: Key<'_>) -> Result<Option<Bytes>, Error> {
        self.fail("get").await
    }
    async fn set(&self, _key: Key<'_>, _v: Bytes, _ttl: Option<Duration>) -> Result<(), Error> {
        self.fail("set").await
    }
    async fn delete(&self, _key: Key<'_>) -> Result<bool, Error> {
        self.fail("delete").await
    }
    async fn delete_pattern(&self, _ns: &str, _p: &str) -> Result<u64, Error> {
        self.fail("delete_pattern").await
    }
    async fn exists(&self, _key: Key<'_>) -> Result<bool, Error> {
        self.fail("exists").await
    }
    async fn ttl(&self, _key: Key<'_>) -> Result<Option<Duration>, Error> {
        self.fail("ttl").await
    }
    async fn clear(&self, _ns: &str) -> Result<u64, Error> {
        self.fail("clear").await
    }
    async fn ping(&self) -> Result<(), Error> {
        self.fail("ping").await
    }
}

/// A memory store with two knobs: no pattern matching (like Memcached), and
/// deletes that take `delete_delay` (tokio time) before they happen.
#[derive(Clone)]
pub struct TweakedMemory {
    pub inner: cacheside::backends::MemoryBackend,
    pub patterns: bool,
    pub delete_delay: Duration,
}

impl TweakedMemory {
    pub fn new(inner: cacheside::backends::MemoryBackend) -> Self {
        TweakedMemory {
            inner,
            patterns: true,
            delete_delay: Duration::ZERO,
        }
    }
}

#[async_trait]
impl Backend for TweakedMemory {
    fn name(&self) -> &'static str {
        "tweaked-memory"
    }
    fn is_in_process(&self) -> bool {
        true
    }
    async fn get(&self, key: Key<'_>) -> Result<Option<Bytes>, Error> {
        self.inner.get(key).await
    }
    async fn set(&self, key: Key<'_>, v: Bytes, ttl: Option<Duration>) -> Result<(), Error> {
        self.inner.set(key, v, ttl).await
    }
    async fn delete(&self, key: Key<'_>) -> Result<bool, Error> {
        if !self.delete_delay.is_zero() {
            tokio::time::sleep(self.delete_delay).await;
        }
        self.inner.delete(key).await
    }
    async fn delete_pattern(&self, ns: &str, p: &str) -> Result<u64, Error> {
        if !self.patterns {
            return Err(Error::PatternNotSupported {
                backend: "tweaked-memory",
            });
        }
        self.inner.delete_pattern(ns, p).await
    }
    async fn exists(&self, key: Key<'_>) -> Result<bool, Error> {
        self.inner.exists(key).await
    }
    async fn ttl(&self, key: Key<'_>) -> Result<Option<Duration>, Error> {
        self.inner.ttl(key).await
    }
    async fn clear(&self, ns: &str) -> Result<u64, Error> {
        self.inner.clear(ns).await
    }
    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }
}

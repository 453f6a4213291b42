//! [`MemoryBackend`]: the embedded default store, on moka's async cache.
//!
//! About 600 lines, 220 of them unit tests of the bounds and expiry.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::env::Vars;
use cache_core::{pattern, Backend, Error, Key};
use moka::future::Cache as Moka;
use moka::Expiry;

/// What the environment says about the in-memory store.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `CACHE_MEMORY_MAX_ENTRIES` | `10000` | entries at most |
/// | `CACHE_MEMORY_MAX_BYTES` | `268435456` (256 MiB) | bytes of keys and values at most |
///
/// ```
/// use cache_backends::MemoryConfig;
/// use cache_core::env::Vars;
/// let lookup = |name: &str| (name == "CACHE_MEMORY_MAX_ENTRIES").then(|| "500".to_string());
/// let config = MemoryConfig::from_vars(&Vars::new(&lookup))?;
/// assert_eq!((config.max_entries, config.max_bytes), (500, 256 * 1024 * 1024));
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// `CACHE_MEMORY_MAX_ENTRIES`.
    pub max_entries: u64,
    /// `CACHE_MEMORY_MAX_BYTES`: bytes of keys and values the store holds at most.
    pub max_bytes: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            max_entries: 10_000,
            max_bytes: MemoryBackend::DEFAULT_MAX_BYTES,
        }
    }
}

impl MemoryConfig {
    /// Reads `CACHE_MEMORY_*`; a malformed value is an [`Error::Config`] naming it.
    pub fn from_vars(vars: &Vars<'_>) -> Result<Self, Error> {
        let mut c = MemoryConfig::default();
        if let Some(n) = vars.num(
            "CACHE_MEMORY_MAX_ENTRIES",
            "a whole number of entries, e.g. 10000",
        )? {
            c.max_entries = n;
        }
        if let Some(n) = vars.num(
            "CACHE_MEMORY_MAX_BYTES",
            "a whole number of bytes, e.g. 268435456 (256 MiB)",
        )? {
            c.max_bytes = n;
        }
        Ok(c)
    }
}

#[derive(Clone)]
struct Stored {
    value: Bytes,
    /// `None`: no expiry.
    expires_at: Option<Instant>,
}

impl Stored {
    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.expires_at.map(|at| at.saturating_duration_since(now))
    }
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

struct PerEntryTtl;

impl Expiry<String, Stored> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Stored,
        created_at: Instant,
    ) -> Option<Duration> {
        value.remaining(created_at)
    }
    fn expire_after_update(
        &self,
        _key: &String,
        value: &Stored,
        updated_at: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        value.remaining(updated_at)
    }
}

/// An in-process store: moka's concurrent cache (TinyLFU admission, LRU
/// eviction), bounded by entry count and by bytes, with a TTL per entry.
///
/// # Bounds
///
/// [`new(max_entries)`](Self::new) holds at most `max_entries` entries and
/// at most [`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES) (256 MiB) of keys
/// and values; [`with_max_bytes`](Self::with_max_bytes) sets the byte bound
/// (`CACHE_MEMORY_MAX_BYTES` from the environment). Both hold at once: each
/// entry weighs the bytes of its key and value, but at least
/// `max_bytes / max_entries`, and the weights of all entries stay within
/// `max_bytes`. So 10,000 small entries fit a 10,000-entry store, while
/// large values leave room for fewer entries; a single entry larger than
/// `max_bytes` is not kept. (Bytes counted are the stored bytes, not moka's
/// own bookkeeping of a few dozen bytes per entry.) Eviction runs in moka's
/// maintenance, so the bounds may be passed briefly under a burst of writes.
///
/// Entries live in this process only: each replica of a service has its own,
/// and a restart empties it. Use Redis or Memcached to share entries.
///
/// ```
/// use cache_backends::MemoryBackend;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
/// let cache = cache_core::Cache::builder(MemoryBackend::new(10_000)).build();
/// cache.set("widget:7", "spanner", None).await?;
/// assert_eq!(cache.get::<String>("widget:7").await?.as_deref(), Some("spanner"));
/// assert_eq!(cache.delete_pattern("widget:*").await?, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryBackend {
    entries: Moka<String, Stored>,
    max_entries: u64,
    max_bytes: u64,
    /// Where a `Cache` over this store (or a clone) keeps its entries.
    tier: cache_core::SharedTier,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("entries", &self.entries.entry_count())
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl MemoryBackend {
    /// The byte bound of [`new`](Self::new): 256 MiB (also the default of
    /// `CACHE_MEMORY_MAX_BYTES`).
    ///
    /// ```
    /// assert_eq!(cache_backends::MemoryBackend::DEFAULT_MAX_BYTES, 256 * 1024 * 1024);
    /// ```
    pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

    /// A store holding at most about `max_entries` entries (least
    /// recently/frequently used go first) and
    /// [`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES) of keys and values.
    ///
    /// ```
    /// let store = cache_backends::MemoryBackend::new(10_000);
    /// ```
    pub fn new(max_entries: u64) -> Self {
        Self::bounded(max_entries, Self::DEFAULT_MAX_BYTES)
    }

    /// The same store bounded by `max_bytes` of keys and values instead
    /// (see [Bounds](Self#bounds)). Returns an empty store: call it where
    /// the store is built, before any use or clone.
    ///
    /// ```
    /// use cache_backends::MemoryBackend;
    /// let store = MemoryBackend::new(10_000).with_max_bytes(64 * 1024 * 1024);
    /// let cache = cache_core::Cache::builder(store).build();
    /// ```
    pub fn with_max_bytes(self, max_bytes: u64) -> Self {
        Self::bounded(self.max_entries, max_bytes)
    }

    /// The store `config` asks for (`CACHE_MEMORY_MAX_ENTRIES`, `CACHE_MEMORY_MAX_BYTES`).
    ///
    /// ```
    /// use cache_backends::{MemoryBackend, MemoryConfig};
    /// let store = MemoryBackend::from_config(&MemoryConfig::default());
    /// # let _ = store;
    /// ```
    pub fn from_config(config: &MemoryConfig) -> Self {
        Self::new(config.max_entries).with_max_bytes(config.max_bytes)
    }

    fn bounded(max_entries: u64, max_bytes: u64) -> Self {
        // Weights count in `unit` bytes so that they fit moka's u32 even for
        // bounds past 4 GiB; rounding every weight up keeps both bounds.
        let unit = max_bytes.div_ceil(u64::from(u32::MAX)).max(1);
        let floor = max_bytes.div_ceil(max_entries.max(1));
        let capacity = if max_entries == 0 {
            0
        } else {
            max_bytes / unit
        };
        MemoryBackend {
            entries: Moka::builder()
                .max_capacity(capacity)
                .weigher(move |key: &String, value: &Stored| {
                    let bytes = (key.len() as u64 + value.value.len() as u64).max(floor);
                    u32::try_from(bytes.div_ceil(unit)).unwrap_or(u32::MAX)
                })
                .expire_after(PerEntryTtl)
                .build(),
            max_entries,
            max_bytes,
            tier: cache_core::SharedTier::new(cache_core::LocalSettings {
                max_entries: usize::try_from(max_entries).unwrap_or(usize::MAX),
                max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
                ttl: std::time::Duration::MAX,
            }),
        }
    }

    /// Approximate number of live entries (moka updates it lazily).
    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    async fn remove_where(&self, pred: impl Fn(&str) -> bool) -> u64 {
        let doomed: Vec<String> = self
            .entries
            .iter()
            .filter(|(k, _)| pred(k))
            .map(|(k, _)| String::clone(&k))
            .collect();
        let mut removed = 0;
        let now = Instant::now();
        for key in doomed {
            if let Some(v) = self.entries.remove(&key).await {
                if v.is_live(now) {
                    removed += 1;
                }
            }
        }
        removed
    }

    async fn live(&self, key: &str) -> Option<Stored> {
        self.entries
            .get(key)
            .await
            .filter(|s| s.is_live(Instant::now()))
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn is_in_process(&self) -> bool {
        true
    }

    /// A [`Cache`](cache_core::Cache) over this store keeps its entries in
    /// its own local tier, with this store's bounds: decoded values, so a
    /// hit decodes nothing. The store itself then holds only counters.
    fn local_tier(&self) -> Option<cache_core::SharedTier> {
        Some(self.tier.clone())
    }

    async fn get(&self, key: Key<'_>) -> Result<Option<Bytes>, Error> {
        Ok(self.live(key.as_str()).await.map(|s| s.value))
    }

    async fn set(&self, key: Key<'_>, value: Bytes, ttl: Option<Duration>) -> Result<(), Error> {
        let expires_at = ttl.and_then(|t| Instant::now().checked_add(t));
        self.entries
            .insert(key.as_str().to_owned(), Stored { value, expires_at })
            .await;
        Ok(())
    }

    async fn delete(&self, key: Key<'_>) -> Result<bool, Error> {
        Ok(self
            .entries
            .remove(key.as_str())
            .await
            .is_some_and(|s| s.is_live(Instant::now())))
    }

    async fn delete_pattern(&self, namespace: &str, glob: &str) -> Result<u64, Error> {
        Ok(self
            .remove_where(|k| {
                k.strip_prefix(namespace)
                    .is_some_and(|local| pattern::matches(glob, local))
            })
            .await)
    }

    async fn exists(&self, key: Key<'_>) -> Result<bool, Error> {
        Ok(self.live(key.as_str()).await.is_some())
    }

    async fn ttl(&self, key: Key<'_>) -> Result<Option<Duration>, Error> {
        Ok(self
            .live(key.as_str())
            .await
            .and_then(|s| s.remaining(Instant::now())))
    }

    async fn clear(&self, namespace: &str) -> Result<u64, Error> {
        Ok(self.remove_where(|k| k.starts_with(namespace)).await)
    }

    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Exact under any concurrency: moka's `and_compute_with` runs the
    /// read-add-write of one key under that key's lock. Counters are stored
    /// as ASCII decimal (as Redis and Memcached do), with the expiry set at
    /// creation and kept by later increments.
    async fn increment(
        &self,
        key: Key<'_>,
        delta: i64,
        ttl: Duration,
        peek: Option<Key<'_>>,
    ) -> Result<(u64, u64), Error> {
        let mut outcome: Result<u64, &'static str> = Err("the counter was not computed");
        self.entries
            .entry_by_ref(key.as_str())
            .and_compute_with(|current| {
                let now = Instant::now();
                let live = current.map(|e| e.into_value()).filter(|s| s.is_live(now));
                let op = match live {
                    // A refund never creates a counter.
                    None if delta <= 0 => {
                        outcome = Ok(0);
                        moka::ops::compute::Op::Nop
                    }
                    None => {
                        outcome = Ok(delta.unsigned_abs());
                        moka::ops::compute::Op::Put(Stored {
                            value: Bytes::from(delta.to_string()),
                            expires_at: now.checked_add(ttl),
                        })
                    }
                    Some(stored) => match parse_counter(&stored.value)
                        .ok_or("the key holds a value that is not a counter")
                        .and_then(|n| {
                            if delta < 0 {
                                Ok(n.saturating_sub(delta.unsigned_abs()))
                            } else {
                                n.checked_add(delta.unsigned_abs())
                                    .ok_or("the counter would overflow")
                            }
                        }) {
                        Ok(next) => {
                            outcome = Ok(next);
                            moka::ops::compute::Op::Put(Stored {
                                value: Bytes::from(next.to_string()),
                                expires_at: stored.expires_at,
                            })
                        }
                        Err(why) => {
                            outcome = Err(why);
                            moka::ops::compute::Op::Nop
                        }
                    },
                };
                std::future::ready(op)
            })
            .await;
        let value = outcome.map_err(|why| Error::backend("memory", "increment", why))?;
        let peeked = match peek {
            Some(p) => self
                .live(p.as_str())
                .await
                .and_then(|s| parse_counter(&s.value))
                .unwrap_or(0),
            None => 0,
        };
        Ok((value, peeked))
    }
}

/// A counter's ASCII decimal value.
fn parse_counter(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Key<'_> {
        Key::plain(s)
    }

    #[tokio::test]
    async fn bounded_by_entry_count() {
        let b = MemoryBackend::new(100);
        for i in 0..1_000 {
            b.set(k(&format!("k{i}")), Bytes::from_static(b"v"), None)
                .await
                .unwrap();
        }
        b.entries.run_pending_tasks().await;
        assert!(b.entry_count() <= 100, "{}", b.entry_count());
    }

    /// Bytes of the keys and values `b` holds.
    fn stored_bytes(b: &MemoryBackend) -> u64 {
        b.entries
            .iter()
            .map(|(k, v)| (k.len() + v.value.len()) as u64)
            .sum()
    }

    #[tokio::test]
    async fn bounded_by_bytes() {
        // Junk keys of 64 KiB values, as a response cache fed random queries gets.
        let b = MemoryBackend::new(10_000).with_max_bytes(1 << 20);
        let value = Bytes::from(vec![7u8; 64 * 1024]);
        for i in 0..200 {
            b.set(k(&format!("http:GET:/x?junk={i}")), value.clone(), None)
                .await
                .unwrap();
        }
        b.entries.run_pending_tasks().await;
        let bytes = stored_bytes(&b);
        assert!(bytes <= 1 << 20, "{bytes} bytes kept");
        assert!(
            b.entry_count() > 0 && b.entry_count() <= 16,
            "{}",
            b.entry_count()
        );
    }

    #[tokio::test]
    async fn new_is_bounded_by_the_default_bytes() {
        // 300 entries of 1 MiB under a 10,000-entry bound (one shared buffer,
        // so the test itself stays small): more than the 256 MiB default.
        let b = MemoryBackend::new(10_000);
        let value = Bytes::from(vec![1u8; 1 << 20]);
        for i in 0..300 {
            b.set(k(&format!("http:GET:/x?junk={i}")), value.clone(), None)
                .await
                .unwrap();
        }
        b.entries.run_pending_tasks().await;
        let bytes = stored_bytes(&b);
        assert!(bytes <= 256 << 20, "{} MiB kept", bytes >> 20);
        assert!(bytes >= 1 << 20, "nothing kept");
    }

    #[tokio::test]
    async fn both_bounds_hold_together() {
        // Small values: the entry bound binds.
        let b = MemoryBackend::new(100).with_max_bytes(1 << 30);
        for i in 0..1_000 {
            b.set(k(&format!("k{i}")), Bytes::from_static(b"v"), None)
                .await
                .unwrap();
        }
        b.entries.run_pending_tasks().await;
        assert!(b.entry_count() <= 100, "{}", b.entry_count());
        // A value over the byte bound is not kept; the others stay.
        let b = MemoryBackend::new(100).with_max_bytes(10_000);
        b.set(k("small"), Bytes::from_static(b"v"), None)
            .await
            .unwrap();
        b.set(k("huge"), Bytes::from(vec![0u8; 20_000]), None)
            .await
            .unwrap();
        b.entries.run_pending_tasks().await;
        assert!(!b.exists(k("huge")).await.unwrap());
        assert!(b.exists(k("small")).await.unwrap());
        // Bounds past moka's u32 weights still count bytes.
        let b = MemoryBackend::new(2).with_max_bytes(16 << 30);
        for i in 0..5 {
            b.set(k(&format!("k{i}")), Bytes::from_static(b"v"), None)
                .await
                .unwrap();
        }
        b.entries.run_pending_tasks().await;
        assert!(b.entry_count() <= 2, "{}", b.entry_count());
        // Zero of either stores nothing.
        for b in [
            MemoryBackend::new(0),
            MemoryBackend::new(10).with_max_bytes(0),
        ] {
            b.set(k("a"), Bytes::from_static(b"v"), None).await.unwrap();
            b.entries.run_pending_tasks().await;
            assert_eq!(b.entry_count(), 0);
        }
    }

    #[test]
    fn bounds_come_from_the_config() {
        let lookup = |v: &str| match v {
            "CACHE_MEMORY_MAX_ENTRIES" => Some("50".into()),
            "CACHE_MEMORY_MAX_BYTES" => Some("123456".into()),
            _ => None,
        };
        let config = MemoryConfig::from_vars(&Vars::new(&lookup)).unwrap();
        let b = MemoryBackend::from_config(&config);
        assert_eq!((b.max_entries, b.max_bytes), (50, 123_456));
        let defaults = MemoryBackend::from_config(&MemoryConfig::default());
        assert_eq!(defaults.max_bytes, MemoryBackend::DEFAULT_MAX_BYTES);
    }

    #[tokio::test]
    async fn ttl_is_per_entry_and_reported() {
        let b = MemoryBackend::new(100);
        b.set(
            k("short"),
            Bytes::from_static(b"1"),
            Some(Duration::from_secs(5)),
        )
        .await
        .unwrap();
        b.set(k("forever"), Bytes::from_static(b"2"), None)
            .await
            .unwrap();
        let short = b.ttl(k("short")).await.unwrap().unwrap();
        assert!(short <= Duration::from_secs(5) && short > Duration::from_secs(3));
        assert_eq!(b.ttl(k("forever")).await.unwrap(), None);
        assert!(b.exists(k("forever")).await.unwrap());
    }

    #[tokio::test]
    async fn zero_ttl_entry_is_never_visible() {
        let b = MemoryBackend::new(100);
        b.set(k("gone"), Bytes::from_static(b"1"), Some(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(b.get(k("gone")).await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn increment_is_exact_under_concurrency() {
        let b = MemoryBackend::new(100);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let b = b.clone();
            tasks.spawn(async move {
                b.increment(k("n"), 1, Duration::from_secs(60), None)
                    .await
                    .unwrap()
                    .0
            });
        }
        let mut seen: Vec<u64> = tasks.join_all().await;
        seen.sort_unstable();
        assert_eq!(seen, (1..=32).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn increment_creates_with_ttl_and_keeps_it() {
        let b = MemoryBackend::new(100);
        let day = Duration::from_secs(86_400);
        assert_eq!(
            b.increment(k("c"), 5, Duration::from_secs(10), None)
                .await
                .unwrap(),
            (5, 0)
        );
        assert_eq!(
            b.increment(k("c"), 2, day, Some(k("c"))).await.unwrap(),
            (7, 7)
        );
        let ttl = b.ttl(k("c")).await.unwrap().unwrap();
        assert!(ttl <= Duration::from_secs(10), "expiry moved: {ttl:?}");
        assert_eq!(b.get(k("c")).await.unwrap().as_deref(), Some(&b"7"[..]));
        // Refunds subtract, stop at 0 and never create.
        assert_eq!(b.increment(k("c"), -3, day, None).await.unwrap().0, 4);
        assert_eq!(b.increment(k("c"), -9, day, None).await.unwrap().0, 0);
        assert_eq!(b.increment(k("c"), 1, day, None).await.unwrap().0, 1);
        assert_eq!(
            b.increment(k("absent"), -1, day, None).await.unwrap(),
            (0, 0)
        );
        assert!(!b.exists(k("absent")).await.unwrap());
        // Expired counters start over.
        b.increment(k("z"), 3, Duration::ZERO, None).await.unwrap();
        assert_eq!(b.increment(k("z"), 1, day, None).await.unwrap().0, 1);
        // A cached value is not a counter.
        b.set(k("v"), Bytes::from_static(b"\x01x"), None)
            .await
            .unwrap();
        assert!(b.increment(k("v"), 1, day, None).await.is_err());
        assert_eq!(
            b.increment(k("w"), 1, day, Some(k("v"))).await.unwrap(),
            (1, 0)
        );
    }

    #[tokio::test]
    async fn patterns_respect_namespaces() {
        let b = MemoryBackend::new(100);
        for full in ["a:page:1", "a:page:2", "b:page:1", "a:other"] {
            b.set(Key::new(full, 2), Bytes::from_static(b"v"), None)
                .await
                .unwrap();
        }
        assert_eq!(b.delete_pattern("a:", "page:*").await.unwrap(), 2);
        assert!(b.exists(k("b:page:1")).await.unwrap());
        assert!(b.exists(k("a:other")).await.unwrap());
        assert_eq!(b.clear("a:").await.unwrap(), 1);
        assert!(b.exists(k("b:page:1")).await.unwrap());
    }
}

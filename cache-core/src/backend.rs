//! The [`Backend`] trait: what a store implements so that a [`Cache`](crate::Cache) can use it.
//!
//! A backend moves bytes. It knows nothing of codecs, envelopes, TTL defaults,
//! fail-open or single-flight: the [`Cache`](crate::Cache) does all of that, so a
//! new store is a few dozen lines. The conformance suite
//! (`cacheside::testing::conformance`) checks that a backend behaves like the
//! built-in ones.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::Error;

/// A full store key, with the cache's namespace in front of the caller's key.
///
/// `Key::as_str()` is what goes to the store (`"myapp:widget:7"`);
/// [`namespace`](Key::namespace) (`"myapp:"`, or `""` without a namespace) and
/// [`local`](Key::local) (`"widget:7"`) are there for stores that treat
/// namespaces specially (Memcached keeps a generation number per namespace).
///
/// ```
/// use cache_core::Key;
/// let full = "myapp:widget:7";
/// let key = Key::new(full, "myapp:".len());
/// assert_eq!(key.namespace(), "myapp:");
/// assert_eq!(key.local(), "widget:7");
/// assert_eq!(key.as_str(), full);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    full: &'a str,
    namespace_len: usize,
}

impl<'a> Key<'a> {
    /// A key whose first `namespace_len` bytes are the namespace (with its `:` separator).
    ///
    /// # Panics
    /// If `namespace_len` is not a char boundary of `full` (a programming error).
    pub fn new(full: &'a str, namespace_len: usize) -> Self {
        assert!(
            full.is_char_boundary(namespace_len),
            "namespace length must fall on a char boundary"
        );
        Key {
            full,
            namespace_len,
        }
    }

    /// A key without namespace.
    pub fn plain(full: &'a str) -> Self {
        Key {
            full,
            namespace_len: 0,
        }
    }

    /// The whole key as stored.
    pub fn as_str(&self) -> &'a str {
        self.full
    }

    /// The namespace part, separator included (`"myapp:"`), or `""`.
    pub fn namespace(&self) -> &'a str {
        &self.full[..self.namespace_len]
    }

    /// The caller's part of the key (`"widget:7"`).
    pub fn local(&self) -> &'a str {
        &self.full[self.namespace_len..]
    }
}

/// What a fenced read found under a key, for the conditional fill after it
/// (see [`Backend::get_fenced`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// The store does not fence: the fill is a plain write.
    None,
    /// The key was absent: the fill lands only if it still is.
    Absent,
    /// The key held this tombstone (or another store-specific token, such as
    /// a Memcached CAS value): the fill lands only if it still does.
    Token(Bytes),
}

/// First bytes of every tombstone; no encoded entry starts with them (an
/// entry's first byte is the envelope's magic `0xC5`).
pub const TOMBSTONE_PREFIX: &[u8] = b"\xC6cacheside:tombstone:";

/// A new tombstone: [`TOMBSTONE_PREFIX`] and 32 hex digits unique to this
/// call (a per-process random seed and a counter), so two invalidations of
/// one key never leave equal tombstones.
///
/// ```
/// use cache_core::backend::{is_tombstone, tombstone};
/// let (a, b) = (tombstone(), tombstone());
/// assert!(is_tombstone(&a) && is_tombstone(&b));
/// assert_ne!(a, b);
/// ```
pub fn tombstone() -> Bytes {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static SEED: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(t.as_nanos());
        }
        h.finish()
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut out = Vec::with_capacity(TOMBSTONE_PREFIX.len() + 32);
    out.extend_from_slice(TOMBSTONE_PREFIX);
    out.extend_from_slice(format!("{seed:016x}{n:016x}").as_bytes());
    Bytes::from(out)
}

/// True when `bytes` is a tombstone (see [`tombstone`]).
pub fn is_tombstone(bytes: &[u8]) -> bool {
    bytes.starts_with(TOMBSTONE_PREFIX)
}

/// A store that holds bytes under string keys, with optional expiry.
///
/// Implement it to plug your own store into cacheside (this is the whole
/// contract; the built-in memory, Redis and Memcached backends use nothing
/// more). All methods must be cancel-safe: the runtime wraps them in a timeout
/// and drops the future when it fires.
///
/// * Keys arrive as [`Key`]s, namespace included. A backend may reject keys it
///   cannot store with [`Error::InvalidKey`], or map them to a safe form.
/// * `ttl = None` in [`set`](Backend::set) means "no expiry"; the cache has
///   already applied its default TTL.
/// * Patterns in [`delete_pattern`](Backend::delete_pattern) are globs over the
///   local part: `*` matches any run of characters, `?` one character, `\`
///   escapes the next one (see [`crate::pattern`]). A store that cannot match
///   patterns returns [`Error::PatternNotSupported`].
/// * [`clear`](Backend::clear) removes only keys under the given namespace.
///
/// ```
/// use std::{collections::HashMap, sync::Mutex, time::Duration};
/// use cache_core::{async_trait, Backend, Bytes, Error, Key, pattern};
///
/// /// A tiny backend without expiry, for illustration.
/// #[derive(Default)]
/// struct MapBackend(Mutex<HashMap<String, Bytes>>);
///
/// #[async_trait]
/// impl Backend for MapBackend {
///     fn name(&self) -> &'static str { "map" }
///     async fn get(&self, key: Key<'_>) -> Result<Option<Bytes>, Error> {
///         Ok(self.0.lock().unwrap().get(key.as_str()).cloned())
///     }
///     async fn set(&self, key: Key<'_>, value: Bytes, _ttl: Option<Duration>) -> Result<(), Error> {
///         self.0.lock().unwrap().insert(key.as_str().to_owned(), value);
///         Ok(())
///     }
///     async fn delete(&self, key: Key<'_>) -> Result<bool, Error> {
///         Ok(self.0.lock().unwrap().remove(key.as_str()).is_some())
///     }
///     async fn delete_pattern(&self, namespace: &str, glob: &str) -> Result<u64, Error> {
///         let mut map = self.0.lock().unwrap();
///         let before = map.len();
///         map.retain(|k, _| !k.strip_prefix(namespace).is_some_and(|l| pattern::matches(glob, l)));
///         Ok((before - map.len()) as u64)
///     }
///     async fn exists(&self, key: Key<'_>) -> Result<bool, Error> {
///         Ok(self.0.lock().unwrap().contains_key(key.as_str()))
///     }
///     async fn ttl(&self, _key: Key<'_>) -> Result<Option<Duration>, Error> { Ok(None) }
///     async fn clear(&self, namespace: &str) -> Result<u64, Error> {
///         let mut map = self.0.lock().unwrap();
///         let before = map.len();
///         map.retain(|k, _| !k.starts_with(namespace));
///         Ok((before - map.len()) as u64)
///     }
///     async fn ping(&self) -> Result<(), Error> { Ok(()) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = cache_core::Cache::builder(MapBackend::default()).build();
/// cache.set("greeting", "hello", None).await.unwrap();
/// assert_eq!(cache.get::<String>("greeting").await.unwrap().as_deref(), Some("hello"));
/// # }
/// ```
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name for logs and errors (`"memory"`, `"redis"`, …).
    fn name(&self) -> &'static str;

    /// True for stores that live in this process and never wait on I/O.
    ///
    /// The runtime skips the operation timeout and the circuit breaker for
    /// them, which keeps a hit to a few hundred nanoseconds.
    fn is_in_process(&self) -> bool {
        false
    }

    /// For an in-process store: the local tier that holds the cache's
    /// entries (decoded values, no encoding on a hit), the same one for
    /// every cache built over this store or its clones. The store then keeps
    /// only what the cache does not (counters). `None` (the default):
    /// entries go to this store.
    fn local_tier(&self) -> Option<crate::SharedTier> {
        None
    }

    /// The largest value (in bytes, envelope included) the store accepts, if it has a limit.
    ///
    /// Larger values are skipped by the runtime (logged and counted in
    /// [`Stats::skipped`](crate::Stats::skipped)) instead of being sent.
    fn max_value_size(&self) -> Option<usize> {
        None
    }

    /// Reads the bytes under `key`; `None` when absent or expired.
    async fn get(&self, key: Key<'_>) -> Result<Option<Bytes>, Error>;

    /// Writes `value` under `key`, replacing what was there, expiring after `ttl` (never when `None`).
    async fn set(&self, key: Key<'_>, value: Bytes, ttl: Option<Duration>) -> Result<(), Error>;

    /// Removes `key`; true when something was removed.
    async fn delete(&self, key: Key<'_>) -> Result<bool, Error>;

    /// Removes every key under `namespace` whose local part matches the glob `pattern`; returns how many.
    async fn delete_pattern(&self, namespace: &str, pattern: &str) -> Result<u64, Error>;

    /// True when `key` holds a live entry.
    async fn exists(&self, key: Key<'_>) -> Result<bool, Error>;

    /// Remaining time to live of `key`: `None` when absent or without expiry.
    async fn ttl(&self, key: Key<'_>) -> Result<Option<Duration>, Error>;

    /// Removes every key under `namespace` (`""`: every key this backend can see); returns how many, if known.
    async fn clear(&self, namespace: &str) -> Result<u64, Error>;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), Error>;

    /// Reads `key` like [`get`](Backend::get), and says what a later
    /// [`set_fenced`](Backend::set_fenced) of the same key must still find
    /// there to land.
    ///
    /// The default does not fence ([`Fence::None`]): fills are plain writes.
    /// A fencing store answers [`Fence::Absent`] for a missing key and
    /// [`Fence::Token`] for a key that holds a tombstone left by
    /// [`invalidate`](Backend::invalidate). For a live value it answers
    /// [`Fence::Token`] too (Redis: the value itself; Memcached: its CAS),
    /// or [`Fence::None`]: the cache refreshes a stale entry kept for
    /// fail-safe with that fence, so that the refresh cannot land over an
    /// invalidation that came after its read (with `None` it writes
    /// unconditionally). Tombstones are never returned as values, by this
    /// method or by `get`, `exists` and `ttl`.
    async fn get_fenced(&self, key: Key<'_>) -> Result<(Option<Bytes>, Fence), Error> {
        Ok((self.get(key).await?, Fence::None))
    }

    /// Writes `value` only if `key` is still as the read that returned
    /// `fence` found it (absent, or the same tombstone); `Ok(false)` when it
    /// is not (an invalidation or a newer write overtook this fill) and
    /// nothing was written. One atomic step in the store, so a fill that
    /// started before an invalidation in any process cannot land after it.
    ///
    /// The default (and [`Fence::None`]) writes unconditionally.
    async fn set_fenced(
        &self,
        key: Key<'_>,
        value: Bytes,
        ttl: Option<Duration>,
        fence: &Fence,
    ) -> Result<bool, Error> {
        let _ = fence;
        self.set(key, value, ttl).await.map(|()| true)
    }

    /// Invalidates `key`: like [`delete`](Backend::delete) (true when a live
    /// entry was there), but a fencing store leaves a fresh
    /// [`tombstone`] for `window`, so that fills
    /// whose read came before this call do not land. The default deletes.
    async fn invalidate(&self, key: Key<'_>, window: Duration) -> Result<bool, Error> {
        let _ = window;
        self.delete(key).await
    }

    /// Counts: atomically adds `delta` to the counter under `key` and returns
    /// its new value, together with the current value of the counter under
    /// `peek` (when given) read in the same round trip.
    ///
    /// A negative `delta` is a refund: it subtracts, never below 0, and never
    /// creates a missing key (the answer is then 0).
    ///
    /// Returns `(new value of key, value of peek)`; the second is `0` when
    /// `peek` is `None`, absent, expired or not a counter.
    ///
    /// Contract for backend authors:
    ///
    /// * **Atomic increment.** Concurrent calls on one key, from any number of
    ///   tasks or processes, each see a distinct result: 32 calls with
    ///   `delta = 1` on an absent key return exactly `1..=32` in some order.
    /// * **Creation sets the expiry, increments keep it.** An absent (or
    ///   expired) key is created holding `delta` (when positive) and expiring after `ttl`;
    ///   later increments do not move that expiry (a fixed window stays
    ///   fixed). A `ttl` under the store's resolution is rounded up.
    /// * **The peek is a plain read.** It need not be atomic with the
    ///   increment; it only saves a round trip. Callers that want both keys on
    ///   one Redis Cluster slot give them a common `{hash tag}`; stores that
    ///   shard keys should keep such keys together too (the memcached backend
    ///   does), or read them separately.
    /// * **Representation.** Counters may share the keyspace with cached
    ///   values but are not envelopes: do not read them with
    ///   [`get`](Backend::get) through a [`Cache`](crate::Cache). Incrementing a
    ///   key that holds a non-counter value is an error; overflow past
    ///   `i64::MAX` may be an error.
    /// * Results are clamped to `0..` (a counter is never reported negative).
    /// * Used by the HTTP rate limiter (`cacheside::http::RateLimitLayer`),
    ///   which calls it through [`Cache::increment`](crate::Cache::increment)
    ///   (namespace, op timeout and circuit breaker applied).
    ///
    /// The default body returns [`Error::Unsupported`], so backends written
    /// before this method existed keep compiling; the rate limiter then fails
    /// open (or closed, as configured) with that error in its log.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Backend, Error, Key, NullBackend};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// // NullBackend keeps nothing: every counter reads as freshly created.
    /// let (now, before) = NullBackend
    ///     .increment(Key::plain("hits:{ip}:2"), 1, Duration::from_secs(60), Some(Key::plain("hits:{ip}:1")))
    ///     .await
    ///     .unwrap();
    /// assert_eq!((now, before), (1, 0));
    /// # }
    /// ```
    async fn increment(
        &self,
        key: Key<'_>,
        delta: i64,
        ttl: Duration,
        peek: Option<Key<'_>>,
    ) -> Result<(u64, u64), Error> {
        let _ = (key, delta, ttl, peek);
        Err(Error::Unsupported {
            backend: self.name(),
            op: "increment",
        })
    }

    /// Takes the lease `key` for `ttl`, holding `token`, if nobody holds it:
    /// `Ok(true)` taken, `Ok(false)` held by another (cross-process
    /// single-flight: the holder runs the body, the others wait for its
    /// value). One atomic step in the store (Redis `SET NX PX`; Memcached
    /// `ms … ME`). A holder that dies blocks the others at most `ttl`.
    ///
    /// The default answers [`Error::Unsupported`]: the cache then runs the
    /// body in every process that misses (in-process single-flight only).
    async fn lease(&self, key: Key<'_>, token: &[u8], ttl: Duration) -> Result<bool, Error> {
        let _ = (key, token, ttl);
        Err(Error::Unsupported {
            backend: self.name(),
            op: "lease",
        })
    }

    /// Gives the lease `key` back if it still holds `token` (a lease that
    /// expired and was taken by another is left alone).
    async fn release(&self, key: Key<'_>, token: &[u8]) -> Result<(), Error> {
        let _ = (key, token);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::{Cache, Error};

    /// Records the keys it is asked to count.
    ///
    /// Not a `testing::Faulty`: this test checks the arguments `increment`
    /// receives (both keys, the namespace split of `Key`, the delta), which
    /// the wrapper passes on without recording.
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<(String, Option<String>, i64)>>,
    }

    struct Shared(std::sync::Arc<Recorder>);

    #[async_trait]
    impl Backend for Shared {
        fn name(&self) -> &'static str {
            "recorder"
        }
        async fn get(&self, _key: Key<'_>) -> Result<Option<Bytes>, Error> {
            Ok(None)
        }
        async fn set(&self, _: Key<'_>, _: Bytes, _: Option<Duration>) -> Result<(), Error> {
            Ok(())
        }
        async fn delete(&self, _key: Key<'_>) -> Result<bool, Error> {
            Ok(false)
        }
        async fn delete_pattern(&self, _: &str, _: &str) -> Result<u64, Error> {
            Ok(0)
        }
        async fn exists(&self, _key: Key<'_>) -> Result<bool, Error> {
            Ok(false)
        }
        async fn ttl(&self, _key: Key<'_>) -> Result<Option<Duration>, Error> {
            Ok(None)
        }
        async fn clear(&self, _namespace: &str) -> Result<u64, Error> {
            Ok(0)
        }
        async fn ping(&self) -> Result<(), Error> {
            Ok(())
        }
        async fn increment(
            &self,
            key: Key<'_>,
            delta: i64,
            _ttl: Duration,
            peek: Option<Key<'_>>,
        ) -> Result<(u64, u64), Error> {
            assert_eq!(key.namespace(), "app:");
            self.0.seen.lock().unwrap().push((
                key.as_str().to_owned(),
                peek.map(|p| p.as_str().to_owned()),
                delta,
            ));
            Ok((delta.max(0) as u64, 0))
        }
    }

    #[tokio::test]
    async fn cache_increment_applies_the_namespace_to_both_keys() {
        let rec = std::sync::Arc::new(Recorder::default());
        let cache = Cache::builder(Shared(rec.clone())).namespace("app").build();
        let minute = Duration::from_secs(60);
        assert_eq!(
            cache.increment("a", 2, minute, Some("b")).await.unwrap(),
            (2, 0)
        );
        cache.increment("a", -1, minute, None).await.unwrap();
        assert_eq!(
            *rec.seen.lock().unwrap(),
            [
                ("app:a".to_owned(), Some("app:b".to_owned()), 2),
                ("app:a".to_owned(), None, -1)
            ]
        );
    }

    /// A backend written before `increment` existed (it keeps the default body).
    ///
    /// Not a `testing::Faulty`: the wrapper implements every method, so
    /// `Fault::Unsupported` would test its own error, not the trait's default
    /// body that this test is about.
    struct Legacy;

    #[async_trait]
    impl Backend for Legacy {
        fn name(&self) -> &'static str {
            "legacy"
        }
        async fn get(&self, _key: Key<'_>) -> Result<Option<Bytes>, Error> {
            Ok(None)
        }
        async fn set(&self, _: Key<'_>, _: Bytes, _: Option<Duration>) -> Result<(), Error> {
            Ok(())
        }
        async fn delete(&self, _key: Key<'_>) -> Result<bool, Error> {
            Ok(false)
        }
        async fn delete_pattern(&self, _: &str, _: &str) -> Result<u64, Error> {
            Ok(0)
        }
        async fn exists(&self, _key: Key<'_>) -> Result<bool, Error> {
            Ok(false)
        }
        async fn ttl(&self, _key: Key<'_>) -> Result<Option<Duration>, Error> {
            Ok(None)
        }
        async fn clear(&self, _namespace: &str) -> Result<u64, Error> {
            Ok(0)
        }
        async fn ping(&self) -> Result<(), Error> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn default_increment_is_unsupported_with_a_helpful_message() {
        let cache = Cache::builder(Legacy).build();
        let err = cache
            .increment("k", 1, Duration::from_secs(1), None)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            Error::Unsupported {
                backend: "legacy",
                op: "increment"
            }
        ));
        assert_eq!(
            err.to_string(),
            "the legacy backend does not support increment; implement `Backend::increment` for it, or use a built-in store (memory, redis, redis-cluster, memcached)"
        );
        assert!(!err.is_store_failure());
        assert_eq!(cache.stats().errors, 1);
    }
}

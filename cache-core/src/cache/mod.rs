//! [`Cache`]: the handle every cached call and every provider call goes through.
//!
//! The module is laid out by concern: this file holds the handle and the
//! provider API; [`builder`] the options; `stats` the counters;
//! `read_through` the cache-aside path and the entry I/O under it; `kept`
//! the delivery of invalidations the store did not take; [`outcome`] which
//! part of a return value is cached. Whether the store may be used at all
//! is asked of [`crate::guard::StoreGate`].

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use crate::backend::{Backend, Key};
use crate::backplane::{Backplane, Invalidation};
use crate::codec::{Codec, Salt, Storable};
use crate::flight::Flights;
use crate::guard::{Bound, OncePerBurst, StoreGate};
use crate::local::LocalTier;
use crate::pending::{Pending, Target};
use crate::Error;

pub mod builder;
mod coherence;
mod fail_safe;
#[cfg(test)]
mod fail_safe_tests;
mod kept;
pub mod outcome;
mod read_through;
pub mod report;
mod stats;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tier_tests;

pub use builder::{CacheBuilder, DEFAULT_FENCE_WINDOW};
pub use fail_safe::FailSafe;
pub use outcome::{NoneCached, Outcome, Plain};
pub use read_through::{Policy, Refresh, RefreshGuard, Served, TierUse};
pub use report::Report;
use stats::{bump, Counters};
pub use stats::{Counter, Stats};

/// Default time to live when neither the call nor the builder names one (`DEFAULT_CACHE_EXPIRATION`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Default bound on one store operation (`CACHE_OP_TIMEOUT_MS`).
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(250);
/// Default bound on `delete_pattern` and `clear`, which scan the store.
pub const DEFAULT_BULK_TIMEOUT: Duration = Duration::from_secs(30);
/// Default largest encoded value the cache writes (4 MiB).
pub const DEFAULT_MAX_VALUE_SIZE: usize = 4 * 1024 * 1024;

/// A cheap-to-clone handle to one store, with its namespace, codec, default TTL and counters.
///
/// Build one with [`Cache::builder`], register it with `cacheside::init`, and
/// the annotated functions use it; or call its methods directly (the
/// "provider API"): they reach the same entries the macros write.
///
/// ```
/// use std::time::Duration;
/// use cache_core::{Cache, NullBackend};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
/// let cache = Cache::builder(NullBackend) // use cacheside::backends::MemoryBackend in real code
///     .namespace("shop")
///     .default_ttl(Duration::from_secs(600))
///     .build();
/// assert_eq!(cache.namespace(), "shop");
/// assert_eq!(cache.get::<u32>("widget:7").await?, None);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    backend: Box<dyn Backend>,
    codec: Box<dyn Codec>,
    /// The namespace as given (for [`Cache::namespace`]).
    namespace: String,
    /// `"{encoded ns}:"` or `""`.
    prefix: String,
    default_ttl: Duration,
    bulk_timeout: Duration,
    /// Largest entry stored (the builder's bound, or the backend's when lower).
    max_value_size: usize,
    /// Largest entry before compression, and largest payload a read inflates (the builder's bound).
    max_payload: usize,
    #[cfg(feature = "compression")]
    compression: Option<crate::codec::Compression>,
    counters: Counters,
    flights: Flights,
    gate: StoreGate,
    warn: OncePerBurst,
    pending: Pending,
    tier: Tier,
    fence_window: Duration,
    /// The default fail-safe of this cache's calls.
    fail_safe: Option<FailSafe>,
    /// The default TTL jitter of this cache's calls.
    jitter: f64,
    /// The default lease of single-flight across processes (`None`: off).
    lease: Option<Duration>,
    /// Whether spans record keys ([`CacheBuilder::record_keys`]).
    record_keys: bool,
    /// Keys whose early refresh runs in this process.
    refreshing: std::sync::Mutex<std::collections::HashSet<String>>,
    backplane: Option<Box<dyn Backplane>>,
    /// This cache's id on the backplane (its own messages come back to it).
    origin: u64,
    subscribed: std::sync::Once,
    /// Set by the backplane's first `connected()`.
    backplane_up: tokio::sync::watch::Sender<bool>,
}

/// A cache's local tier, and what it is to the store.
pub(super) enum Tier {
    /// No local tier.
    Off,
    /// In front of a network store (`CacheBuilder::local`): typed values only.
    Front(Arc<LocalTier>),
    /// The in-process store's own ([`Backend::local_tier`]): it holds the entries.
    Store(Arc<LocalTier>),
}

impl Tier {
    /// The tier, whichever role it has.
    pub(super) fn any(&self) -> Option<&LocalTier> {
        match self {
            Tier::Off => None,
            Tier::Front(t) | Tier::Store(t) => Some(t),
        }
    }

    /// The tier when it holds the entries (over the in-process store).
    pub(super) fn store(&self) -> Option<&LocalTier> {
        match self {
            Tier::Store(t) => Some(t),
            _ => None,
        }
    }
}

/// A random id per cache value, for the backplane.
pub(super) fn origin_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.backend.name())
            .field("codec", &self.inner.codec.name())
            .field("namespace", &self.namespace())
            .field("default_ttl", &self.inner.default_ttl)
            .field("op_timeout", &self.inner.gate.op_timeout())
            .finish()
    }
}

impl Cache {
    /// Starts a [`CacheBuilder`] over `backend`, the one option without a default.
    pub fn builder(backend: impl Backend) -> CacheBuilder {
        CacheBuilder::new(Box::new(backend))
    }

    /// [`builder`](Cache::builder) for a store already boxed (code that
    /// picks the backend at run time).
    pub fn builder_boxed(backend: Box<dyn Backend>) -> CacheBuilder {
        CacheBuilder::new(backend)
    }

    /// Runs one store operation through the [`StoreGate`] (may the cache
    /// use its store now, and for how long). A store that answers kicks the
    /// delivery of kept invalidations; an invalidation kicks it itself, once
    /// it has settled what it supersedes (see [`Cache::settle`]).
    pub(super) async fn call_store<T>(
        &self,
        op: &'static str,
        bound: Bound,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let inner = &*self.inner;
        inner
            .gate
            .run(inner.backend.name(), op, bound, fut, || {
                let invalidation = matches!(op, "delete" | "delete_pattern" | "clear");
                if !invalidation && !inner.pending.is_empty() {
                    self.deliver_pending();
                }
            })
            .await
    }

    /// The namespace given to the builder (without separator), or `""`.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The backend's name (`"memory"`, `"redis"`, …).
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// The TTL used when a write names none.
    pub fn default_ttl(&self) -> Duration {
        self.inner.default_ttl
    }

    /// What this cache compresses ([`CacheBuilder::compress`]; `None`: nothing).
    #[cfg(feature = "compression")]
    pub fn compression(&self) -> Option<crate::codec::Compression> {
        self.inner.compression
    }

    /// The fail-safe of calls that do not choose their own (`None`: off).
    pub fn fail_safe(&self) -> Option<FailSafe> {
        self.inner.fail_safe
    }

    /// The TTL jitter of calls that do not choose their own (0: none).
    pub fn jitter(&self) -> f64 {
        self.inner.jitter
    }

    /// How many invalidations this cache has seen (made here, or received
    /// over the backplane): a write prepared before and made after it
    /// changed may predate an invalidation, and is skipped.
    #[doc(hidden)] // for the facade's HTTP layer, not API
    pub fn invalidation_epoch(&self) -> u64 {
        self.inner.flights.epoch()
    }

    /// The lease of single-flight across processes, for calls that do not choose their own.
    pub fn lease(&self) -> Option<Duration> {
        self.inner.lease
    }

    /// Whether tracing spans record keys ([`CacheBuilder::record_keys`]).
    pub fn records_keys(&self) -> bool {
        self.inner.record_keys
    }

    /// The store key of `tag` in this cache (`{namespace}%tag:{tag}`): what
    /// entries carrying the tag record, and what holds when it was last
    /// invalidated. Encoded key values never hold `%t`, so it is no entry's key.
    ///
    /// ```
    /// # use cache_core::{Cache, NullBackend};
    /// let cache = Cache::builder(NullBackend).namespace("app").build();
    /// assert_eq!(cache.tag_key("user:7"), "app:%tag:user:7");
    /// ```
    pub fn tag_key(&self, tag: &str) -> String {
        format!("{}%tag:{tag}", self.inner.prefix)
    }

    /// Invalidates every entry carrying `tag`, in every process and on every
    /// store: one store write (the time of the invalidation, under
    /// [`tag_key`](Cache::tag_key)), whatever the number of entries; a read
    /// of an entry whose tag was invalidated after the entry's read began is
    /// a miss. This process's local tier drops its tagged entries at once,
    /// the others' when the backplane message arrives. Over the in-process
    /// store the tier is the store: its tagged entries are dropped (a scan).
    ///
    /// ```
    /// # use cache_core::{Cache, NullBackend};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
    /// let cache = Cache::builder(NullBackend).build();
    /// cache.invalidate_tag("user:7").await?;
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_tag(&self, tag: &str) -> Result<(), Error> {
        self.invalidate_tags(&[tag]).await
    }

    /// [`invalidate_tag`](Cache::invalidate_tag) for each of `tags`; the
    /// first store error is returned after every tag was tried. A tag the
    /// store does not take is kept like a failed [`delete`](Cache::delete):
    /// this process reads its entries as misses until it is delivered.
    pub async fn invalidate_tags(&self, tags: &[&str]) -> Result<(), Error> {
        let mut first_error = None;
        for tag in tags {
            let stored = self.tag_key(tag);
            let what = Invalidation::Tag(stored.clone());
            bump(&self.inner.counters.tag_invalidations);
            if self.begin_invalidation(&what).is_some() {
                // The in-process store: its tier took it.
                continue;
            }
            let upto = self.inner.pending.seq();
            let version = crate::clock::unix_ms().to_string();
            let key = Key::new(&stored, self.inner.prefix.len());
            let written = self
                .call_store(
                    "set",
                    Bound::Op,
                    self.inner.backend.set(
                        key,
                        version.into_bytes().into(),
                        Some(read_through::TAG_TTL),
                    ),
                )
                .await;
            // Not taken: kept and delivered when the store answers; until
            // then this process reads the tag's entries as misses.
            self.settle(
                written.as_ref().map(|_| ()),
                Target::Tag(&stored),
                upto,
                "tag invalidation",
            );
            if let Err(e) = written {
                first_error.get_or_insert(e);
            }
            self.spread(what).await;
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The provider API's read-through policy: this cache's defaults.
    fn policy<V>(&self, ttl: Option<Duration>) -> Policy<V> {
        Policy {
            fail_safe: self.inner.fail_safe,
            jitter: self.inner.jitter,
            lease: self.inner.lease,
            ..Policy::new(self.resolve_ttl(ttl), TierUse::OFF)
        }
    }

    /// The store key for `key`: the (encoded) namespace in front.
    ///
    /// ```
    /// # use cache_core::{Cache, NullBackend};
    /// let cache = Cache::builder(NullBackend).namespace("app").build();
    /// assert_eq!(cache.full_key("widget:7"), "app:widget:7");
    /// let nested = Cache::builder(NullBackend).namespace("app:eu").build();
    /// assert_eq!(nested.full_key("widget:7"), "app%3Aeu:widget:7");
    /// ```
    pub fn full_key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        if self.inner.prefix.is_empty() {
            Cow::Borrowed(key)
        } else {
            let mut s = String::with_capacity(self.inner.prefix.len() + key.len());
            s.push_str(&self.inner.prefix);
            s.push_str(key);
            Cow::Owned(s)
        }
    }

    fn key<'k>(&self, full: &'k str) -> Key<'k> {
        Key::new(full, self.inner.prefix.len())
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            // A local hit bumps one counter, not two.
            hits: c.hits.load() + c.local_hits.load(),
            misses: c.misses.load(),
            errors: c.errors.load(),
            coalesced: c.coalesced.load(),
            skipped: c.skipped.load(),
            invalidations_queued: c.invalidations_queued.load(),
            invalidations_delivered: c.invalidations_delivered.load(),
            invalidation_overflows: c.invalidation_overflows.load(),
            local_hits: c.local_hits.load(),
            local_evictions: self.tier_counter(|t| &t.evictions),
            local_flushes: self.tier_counter(|t| &t.flushes),
            fenced_fills: c.fenced_fills.load() + self.tier_counter(|t| &t.refused),
            backplane_disconnects: c.backplane_disconnects.load(),
            backplane_failures: c.backplane_failures.load(),
            stale_served: c.stale_served.load(),
            refreshes: c.refreshes.load(),
            tag_invalidations: c.tag_invalidations.load(),
        }
    }

    /// Logs a fail-open event (at most once per burst) and counts it.
    #[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
    pub fn note_failure(&self, what: &str, key: &str, err: &Error) {
        bump(&self.inner.counters.errors);
        if let Some(suppressed) = self.inner.warn.should_log() {
            tracing::warn!(backend = self.backend_name(), key, error = %err, suppressed, "cache {what} failed; serving without the cache (fail-open)");
        }
    }

    pub(crate) fn resolve_ttl(&self, ttl: Option<Duration>) -> Duration {
        ttl.unwrap_or(self.inner.default_ttl)
    }

    /// Reads `key` as a `T`.
    ///
    /// `Ok(None)` when absent, expired, or not a valid `T` (such an entry is
    /// deleted and counted in [`Stats::errors`]). `Err` when the store fails.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.read_entry(
            &self.full_key(key),
            self.inner.gate.call_deadline(),
            Salt::NONE,
        )
        .await
        .inspect_err(|_| bump(&self.inner.counters.errors))
    }

    /// Writes `value` under `key` for `ttl` (the default TTL when `None`).
    ///
    /// The entry's fingerprint is the shape of the type readers ask for:
    /// `T` itself, `String` for a `str`, `Vec<T>` for a `[T]` (see
    /// [`Storable`]). A value over the size limit is an
    /// [`Error::ValueTooLarge`] here (the annotated functions skip such
    /// values instead).
    pub async fn set<T: Storable + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        self.set_salted(key, value, ttl, Salt::NONE).await
    }

    /// Removes `key`; true when it was there.
    ///
    /// Also marks a miss in flight for `key` stale (single-flight in this
    /// process): callers after this point do not receive, and the stale body
    /// does not store, a value computed before the mutation.
    ///
    /// When the store does not take the delete (circuit open, timeout,
    /// error), the error is returned **and** the delete is kept: reads of
    /// `key` miss until it is delivered, which happens as soon as the store
    /// answers again ([`Stats::invalidations_queued`]).
    pub async fn delete(&self, key: &str) -> Result<bool, Error> {
        let full = self.full_key(key);
        let what = Invalidation::Key(full.to_string());
        if let Some(removed) = self.begin_invalidation(&what) {
            return Ok(removed > 0);
        }
        let upto = self.inner.pending.seq();
        let result = self
            .call_store(
                "delete",
                Bound::Op,
                self.inner
                    .backend
                    .invalidate(self.key(&full), self.inner.fence_window),
            )
            .await;
        self.settle(
            result.as_ref().map(|_| ()),
            Target::Key(&full),
            upto,
            "delete",
        );
        self.spread(what).await;
        result
    }

    /// Removes every key of this namespace matching the glob (`*`, `?`; see [`crate::pattern`]); returns how many.
    ///
    /// [`Error::PatternNotSupported`] on stores that cannot match (Memcached).
    /// A pattern the store does not take is kept like a failed [`delete`](Cache::delete).
    pub async fn delete_pattern(&self, pattern: &str) -> Result<u64, Error> {
        let what = Invalidation::Pattern {
            namespace: self.inner.prefix.clone(),
            glob: pattern.to_owned(),
        };
        if let Some(removed) = self.begin_invalidation(&what) {
            return Ok(removed);
        }
        let upto = self.inner.pending.seq();
        let result = self
            .call_store(
                "delete_pattern",
                Bound::Within(self.inner.bulk_timeout),
                self.inner
                    .backend
                    .delete_pattern(&self.inner.prefix, pattern),
            )
            .await;
        self.settle(
            result.as_ref().map(|_| ()),
            Target::Pattern(pattern),
            upto,
            "pattern delete",
        );
        self.spread(what).await;
        result
    }

    /// True when `key` holds a live entry.
    pub async fn exists(&self, key: &str) -> Result<bool, Error> {
        let full = self.full_key(key);
        if let Some(t) = self.tier_store() {
            return Ok(t.remaining(&full).is_some());
        }
        self.call_store(
            "exists",
            Bound::Op,
            self.inner.backend.exists(self.key(&full)),
        )
        .await
    }

    /// Remaining time to live of `key`; `None` when absent.
    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>, Error> {
        let full = self.full_key(key);
        if let Some(t) = self.tier_store() {
            // Entries of the in-process tier always expire (no TTL is `DEFAULT_TTL`'s or longer).
            return Ok(t.remaining(&full).map(|life| life.fresh));
        }
        self.call_store("ttl", Bound::Op, self.inner.backend.ttl(self.key(&full)))
            .await
    }

    /// Removes every entry of this cache's namespace (all entries when it has none); other namespaces stay.
    ///
    /// A clear the store does not take is kept like a failed [`delete`](Cache::delete).
    pub async fn clear(&self) -> Result<u64, Error> {
        let what = Invalidation::Clear {
            namespace: self.inner.prefix.clone(),
        };
        if let Some(removed) = self.begin_invalidation(&what) {
            return Ok(removed);
        }
        let upto = self.inner.pending.seq();
        let result = self
            .call_store(
                "clear",
                Bound::Within(self.inner.bulk_timeout),
                self.inner.backend.clear(&self.inner.prefix),
            )
            .await;
        self.settle(result.as_ref().map(|_| ()), Target::Clear, upto, "clear");
        self.spread(what).await;
        result
    }

    /// Checks that the store answers.
    pub async fn ping(&self) -> Result<(), Error> {
        self.call_store("ping", Bound::Op, self.inner.backend.ping())
            .await
    }

    /// Atomically adds `delta` to the counter under `key` (created at `delta`,
    /// expiring after `ttl`, when absent; later increments keep that expiry)
    /// and reads the counter under `peek` in the same round trip. A negative
    /// `delta` subtracts (never below 0, never creating the key).
    ///
    /// Returns `(new value of key, value of peek)`, the second `0` when
    /// `peek` is `None` or absent. Both keys get the namespace, like
    /// [`get`](Cache::get). Runs under the op timeout and the circuit breaker
    /// (a failing store costs nothing while the circuit is open:
    /// [`Error::CircuitOpen`]). Counters are raw integers, not cached values:
    /// read them with this method (`delta = 0`), not with `get`. See
    /// [`Backend::increment`] for the exact contract; backends that do not
    /// implement it answer [`Error::Unsupported`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use cache_core::{Cache, NullBackend};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
    /// # let cache = Cache::builder(NullBackend).build(); // use MemoryBackend in real code
    /// let minute = Duration::from_secs(60);
    /// let (hits, previous) = cache.increment("hits:{ip}:2", 1, minute, Some("hits:{ip}:1")).await?;
    /// assert_eq!((hits, previous), (1, 0));
    /// # Ok(()) }
    /// ```
    pub async fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Duration,
        peek: Option<&str>,
    ) -> Result<(u64, u64), Error> {
        let full = self.full_key(key);
        let peek_full = peek.map(|p| self.full_key(p));
        let result = self
            .call_store(
                "increment",
                Bound::Op,
                self.inner.backend.increment(
                    self.key(&full),
                    delta,
                    ttl,
                    peek_full.as_deref().map(|p| self.key(p)),
                ),
            )
            .await;
        if result.is_err() {
            bump(&self.inner.counters.errors);
        }
        result
    }

    /// Returns the cached `T` under `key`, or runs `make`, stores its value and returns it.
    ///
    /// Concurrent callers that miss the same key wait for the first one
    /// (single-flight) and get its value. Store failures fail open: `make`
    /// runs and its value is returned. `Err` only when the value cannot be
    /// encoded by the codec (a bug in its `Serialize` impl, e.g. a map with
    /// non-string keys under [`Json`](crate::codec::Json)); the annotated
    /// functions log that case and return the value instead.
    ///
    /// ```
    /// # use cache_core::{Cache, NullBackend};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
    /// # let cache = Cache::builder(NullBackend).build();
    /// let n: u64 = cache.get_or_set("answer", None, || async { 42 }).await?;
    /// assert_eq!(n, 42);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_set<T, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        make: F,
    ) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let full = self.full_key(key);
        let (out, encode_error) = self
            .read_through(
                &full,
                Salt::NONE,
                async { Plain(make().await) },
                self.policy(ttl),
            )
            .await;
        match encode_error {
            Some(e) => Err(e),
            None => Ok(out.0),
        }
    }

    /// Like [`get_or_set`](Cache::get_or_set) for values that are not always
    /// worth caching: `make` returns an [`Outcome`] and only its
    /// [`cacheable`](Outcome::cacheable) part is stored (`Ok` of a `Result`,
    /// `Some` of an `Option`, everything of a [`Plain`]). Single-flight and
    /// fail-open as `get_or_set`; never fails (an encode error is logged and
    /// counted, and the value is returned).
    ///
    /// ```
    /// # use cache_core::{Cache, NullBackend};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let cache = Cache::builder(NullBackend).build();
    /// // An HTTP response: store 200s, pass anything else through uncached.
    /// let out: Result<String, u16> = cache
    ///     .get_or_compute("page:/", None, || async { Err(503) })
    ///     .await;
    /// assert_eq!(out, Err(503));
    /// # }
    /// ```
    pub async fn get_or_compute<O, F, Fut>(&self, key: &str, ttl: Option<Duration>, make: F) -> O
    where
        O: Outcome,
        F: FnOnce() -> Fut,
        Fut: Future<Output = O>,
    {
        let full = self.full_key(key);
        let (out, encode_error) = self
            .read_through(&full, Salt::NONE, async { make().await }, self.policy(ttl))
            .await;
        if let Some(e) = encode_error {
            self.note_failure("encode", &full, &e);
        }
        out
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync + Clone>() {}
    is::<Cache>();
}

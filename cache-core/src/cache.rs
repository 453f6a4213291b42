//! [`Cache`]: the handle every cached call and every provider call goes through.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use crate::backend::{Backend, Key};
use crate::codec::{self, Codec, MsgPack, Salt, Storable};
use crate::flight::{self, Flights, Role};
use crate::guard::{Admit, Breaker, Circuit, WarnOnce};
use crate::pending::{Batch, Pending, Pushed, Target};
use crate::Error;

/// Default time to live when neither the call nor the builder names one (`DEFAULT_CACHE_EXPIRATION`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Default bound on one store operation (`CACHE_OP_TIMEOUT_MS`).
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(250);
/// Default bound on `delete_pattern` and `clear`, which scan the store.
pub const DEFAULT_BULK_TIMEOUT: Duration = Duration::from_secs(30);
/// Default largest encoded value the cache writes (4 MiB).
pub const DEFAULT_MAX_VALUE_SIZE: usize = 4 * 1024 * 1024;

/// Counters of one [`Cache`], read with [`Cache::stats`].
///
/// ```
/// let s = cache_core::Stats::default();
/// assert_eq!(s.hit_ratio(), 0.0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Reads that found a valid entry.
    pub hits: u64,
    /// Reads that found nothing (or an entry that did not decode).
    pub misses: u64,
    /// Store failures, timeouts, undecodable entries, skipped-by-breaker calls.
    pub errors: u64,
    /// Callers that waited for another caller's miss instead of running the body.
    pub coalesced: u64,
    /// Values not written because they were over the size limit.
    pub skipped: u64,
    /// Invalidations the store did not take (circuit open, timeout, error),
    /// kept to be delivered when it answers again.
    pub invalidations_queued: u64,
    /// Kept invalidations delivered later.
    pub invalidations_delivered: u64,
    /// Times more than 1,024 kept invalidations collapsed into one `clear()`
    /// of the namespace (logged as an error).
    pub invalidation_overflows: u64,
}

impl Stats {
    /// `hits / (hits + misses)`, or 0 before any read.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// One statistic, striped over cache-line-sized shards so that threads
/// counting hits at the same time do not fight over one cache line.
struct Counter([Shard; SHARDS]);

const SHARDS: usize = 8;

#[repr(align(128))]
#[derive(Default)]
struct Shard(AtomicU64);

impl Default for Counter {
    fn default() -> Self {
        Counter(std::array::from_fn(|_| Shard::default()))
    }
}

impl Counter {
    fn load(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// This thread's shard index (threads are numbered as they first count).
fn shard_index() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static INDEX: usize = (NEXT.fetch_add(1, Ordering::Relaxed) as usize) % SHARDS;
    }
    INDEX.with(|i| *i)
}

#[derive(Default)]
struct Counters {
    hits: Counter,
    misses: Counter,
    errors: Counter,
    coalesced: Counter,
    skipped: Counter,
    invalidations_queued: Counter,
    invalidations_delivered: Counter,
    invalidation_overflows: Counter,
}

fn bump(c: &Counter) {
    c.0[shard_index()].0.fetch_add(1, Ordering::Relaxed);
}

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
/// let cache = Cache::builder()
///     .backend(NullBackend) // use cacheside::backends::MemoryBackend in real code
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

struct Inner {
    backend: Box<dyn Backend>,
    codec: Box<dyn Codec>,
    /// The namespace as given (for [`Cache::namespace`]).
    namespace: String,
    /// `"{encoded ns}:"` or `""`.
    prefix: String,
    default_ttl: Duration,
    op_timeout: Duration,
    bulk_timeout: Duration,
    max_value_size: usize,
    counters: Counters,
    flights: Flights,
    circuit: Circuit,
    warn: WarnOnce,
    pending: Pending,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.backend.name())
            .field("codec", &self.inner.codec.name())
            .field("namespace", &self.namespace())
            .field("default_ttl", &self.inner.default_ttl)
            .field("op_timeout", &self.inner.op_timeout)
            .finish()
    }
}

/// Builds a [`Cache`]; every option has a default but the backend.
///
/// ```
/// use std::time::Duration;
/// use cache_core::{codec::Json, Breaker, Cache, NullBackend};
/// let cache = Cache::builder()
///     .backend(NullBackend)
///     .codec(Json)
///     .op_timeout(Duration::from_millis(50))
///     .max_value_size(512 * 1024)
///     .breaker(Breaker { threshold: 3, cooldown: Duration::from_secs(1) })
///     .build();
/// assert_eq!(cache.backend_name(), "none");
/// ```
#[must_use]
pub struct CacheBuilder {
    backend: Option<Box<dyn Backend>>,
    codec: Box<dyn Codec>,
    namespace: String,
    default_ttl: Duration,
    op_timeout: Duration,
    bulk_timeout: Duration,
    max_value_size: usize,
    breaker: Breaker,
}

impl Default for CacheBuilder {
    fn default() -> Self {
        CacheBuilder {
            backend: None,
            codec: Box::new(MsgPack),
            namespace: String::new(),
            default_ttl: DEFAULT_TTL,
            op_timeout: DEFAULT_OP_TIMEOUT,
            bulk_timeout: DEFAULT_BULK_TIMEOUT,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            breaker: Breaker::default(),
        }
    }
}

impl CacheBuilder {
    /// The store (required).
    pub fn backend(mut self, backend: impl Backend) -> Self {
        self.backend = Some(Box::new(backend));
        self
    }

    /// The store, already boxed (for code that picks a backend at run time).
    pub fn boxed_backend(mut self, backend: Box<dyn Backend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// A prefix for every key (`"{namespace}:{key}"`); empty means none.
    ///
    /// The namespace is encoded like a key value (see [`crate::keys`]), so no
    /// namespace can reach into another: `app` and `app:eu` are stored as
    /// `app:…` and `app%3Aeu:…`, and `clear()` of one leaves the other. A
    /// cache without a namespace is the root of the store: its keys are
    /// stored as given and its `clear()` removes every entry.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_owned();
        self
    }

    /// TTL for writes that name none (default one hour).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The value codec (default [`MsgPack`]).
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.codec = Box::new(codec);
        self
    }

    /// Upper bound on each store operation (default 250 ms); in-process stores are not bounded.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Upper bound on [`Cache::delete_pattern`] and [`Cache::clear`], which
    /// scan the store (default 30 s).
    pub fn bulk_timeout(mut self, timeout: Duration) -> Self {
        self.bulk_timeout = timeout;
        self
    }

    /// Largest encoded value written (default 4 MiB); the backend's own limit applies if lower.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Circuit breaker settings (default: 5 consecutive failures, 2 s cool-down).
    pub fn breaker(mut self, breaker: Breaker) -> Self {
        self.breaker = breaker;
        self
    }

    /// Finishes the cache.
    ///
    /// # Panics
    /// When no backend was given: that is a programming error, not a runtime condition.
    pub fn build(self) -> Cache {
        let backend = self.backend.expect(
            "CacheBuilder::build: call .backend(…) first (for example MemoryBackend::new(10_000))",
        );
        let max_value_size = backend
            .max_value_size()
            .map_or(self.max_value_size, |b| b.min(self.max_value_size));
        let prefix = if self.namespace.is_empty() {
            String::new()
        } else {
            format!("{}:", crate::keys::part(&self.namespace))
        };
        Cache {
            inner: Arc::new(Inner {
                backend,
                codec: self.codec,
                namespace: self.namespace,
                prefix,
                default_ttl: self.default_ttl,
                op_timeout: self.op_timeout,
                bulk_timeout: self.bulk_timeout,
                max_value_size,
                counters: Counters::default(),
                flights: Flights::default(),
                circuit: Circuit::new(self.breaker),
                warn: WarnOnce::default(),
                pending: Pending::default(),
            }),
        }
    }
}

/// `limit` from now; an op timeout too large to add is "about 30 years", as in `tokio::time::timeout`.
fn deadline_after(limit: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(limit)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

/// Reports a cancelled probe as a failed one (see `Cache::guarded_for`).
struct ProbeGuard<'a> {
    circuit: &'a Circuit,
    armed: bool,
}

impl ProbeGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.circuit.failure(&Admit::Probe);
        }
    }
}

impl Cache {
    /// Starts a [`CacheBuilder`].
    pub fn builder() -> CacheBuilder {
        CacheBuilder::default()
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

    /// The store key for `key`: the (encoded) namespace in front.
    ///
    /// ```
    /// # use cache_core::{Cache, NullBackend};
    /// let cache = Cache::builder().backend(NullBackend).namespace("app").build();
    /// assert_eq!(cache.full_key("widget:7"), "app:widget:7");
    /// let nested = Cache::builder().backend(NullBackend).namespace("app:eu").build();
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
            hits: c.hits.load(),
            misses: c.misses.load(),
            errors: c.errors.load(),
            coalesced: c.coalesced.load(),
            skipped: c.skipped.load(),
            invalidations_queued: c.invalidations_queued.load(),
            invalidations_delivered: c.invalidations_delivered.load(),
            invalidation_overflows: c.invalidation_overflows.load(),
        }
    }

    /// Runs one store operation under the op timeout and the circuit breaker.
    async fn guarded<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        self.guarded_for(op, self.inner.op_timeout, fut).await
    }

    /// Like `guarded`, with an explicit bound (bulk operations get a longer one).
    ///
    /// A timeout under a bound shorter than the op timeout (the remainder of a
    /// call's budget) is the budget running out, not evidence that the store
    /// is failing: it does not count towards opening the circuit.
    async fn guarded_for<T>(
        &self,
        op: &'static str,
        limit: Duration,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        if self.inner.backend.is_in_process() {
            return fut.await;
        }
        self.guarded_until(op, limit, deadline_after(limit), fut)
            .await
    }

    /// `guarded_for` with the deadline already taken (`limit` from now):
    /// a read-through call takes one clock reading for its read and its write.
    async fn guarded_until<T>(
        &self,
        op: &'static str,
        limit: Duration,
        deadline: tokio::time::Instant,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let inner = &*self.inner;
        let backend = inner.backend.name();
        let admitted = inner.circuit.admit();
        if matches!(admitted, Admit::Skip) {
            return Err(Error::CircuitOpen { backend });
        }
        // If this call is the probe and gets cancelled (the caller's future is
        // dropped), the guard reports a failed probe: the circuit must not stay
        // "probing" forever.
        let probe = ProbeGuard {
            circuit: &inner.circuit,
            armed: matches!(admitted, Admit::Probe),
        };
        let (result, budget_ran_out) = match tokio::time::timeout_at(deadline, fut).await {
            Ok(r) => (r, false),
            Err(_) => (
                Err(Error::Timeout {
                    backend,
                    op,
                    after: limit,
                }),
                limit < inner.op_timeout,
            ),
        };
        probe.disarm();
        match &result {
            Err(_) if budget_ran_out && !matches!(admitted, Admit::Probe) => {}
            Err(e) if e.is_store_failure() => {
                if inner.circuit.failure(&admitted) {
                    tracing::warn!(backend, "cache store keeps failing; circuit opened, calls skip the store until a probe succeeds");
                }
            }
            _ => {
                inner.circuit.success(&admitted);
                // An invalidation kicks delivery itself, once it has
                // settled what it supersedes (see `settle`).
                let invalidation = matches!(op, "delete" | "delete_pattern" | "clear");
                if !invalidation && !inner.pending.is_empty() {
                    self.deliver_pending();
                }
            }
        }
        result
    }

    /// After an invalidation: kept when the store did not take it; when it
    /// did, it supersedes what was kept before it started.
    fn settle(&self, result: Result<(), &Error>, target: Target<'_>, upto: u64, what: &str) {
        match result {
            Ok(()) => {
                // First drop what this one made redundant, then deliver the
                // rest: a delivery started before would send a superseded
                // clear after a fresh write and wipe it.
                self.inner
                    .pending
                    .superseded(target, upto, self.inner.prefix.len());
                if !self.inner.pending.is_empty() {
                    self.deliver_pending();
                }
            }
            Err(e) if e.is_store_failure() => self.keep_invalidation(target, what, e),
            Err(_) => {}
        }
    }

    /// Keeps an invalidation the store did not take (see [`crate::pending`]).
    fn keep_invalidation(&self, target: Target<'_>, what: &str, err: &Error) {
        bump(&self.inner.counters.invalidations_queued);
        if self.inner.pending.push(target) == Pushed::Collapsed {
            bump(&self.inner.counters.invalidation_overflows);
            tracing::error!(
                backend = self.backend_name(),
                namespace = self.namespace(),
                "more than 1024 invalidations are waiting for the store; they collapse into one clear() \
                 of the namespace, delivered when the store answers again (until then every read misses)"
            );
        }
        if let Some(suppressed) = self.inner.warn.should_log() {
            tracing::warn!(backend = self.backend_name(), error = %err, suppressed, "cache {what} failed; kept, and delivered when the store answers again (until then reads of what it covers miss)");
        }
    }

    /// Starts delivering kept invalidations in a task (one at a time).
    fn deliver_pending(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(batch) = self.inner.pending.take() else {
            return;
        };
        let cache = self.clone();
        handle.spawn(async move { cache.deliver(batch).await });
    }

    async fn deliver(&self, batch: Batch) {
        let inner = &*self.inner;
        let prefix = inner.prefix.as_str();
        let mut sent = 0u64;
        for full in batch.keys.keys() {
            if !inner.pending.holds(&Target::Key(full)) {
                continue; // superseded since the batch was taken
            }
            let key = Key::new(full, prefix.len().min(full.len()));
            if self
                .guarded("delete", inner.backend.delete(key))
                .await
                .is_err()
            {
                return inner.pending.failed();
            }
            sent += 1;
        }
        for pattern in batch.patterns.keys() {
            if !inner.pending.holds(&Target::Pattern(pattern)) {
                continue;
            }
            match self
                .guarded_for(
                    "delete_pattern",
                    inner.bulk_timeout,
                    inner.backend.delete_pattern(prefix, pattern),
                )
                .await
            {
                Ok(_) | Err(Error::PatternNotSupported { .. }) => sent += 1,
                Err(_) => return inner.pending.failed(),
            }
        }
        if batch.clear.is_some() && inner.pending.holds(&Target::Clear) {
            let cleared = self
                .guarded_for("clear", inner.bulk_timeout, inner.backend.clear(prefix))
                .await;
            if cleared.is_err() {
                return inner.pending.failed();
            }
            sent += 1;
        }
        inner.pending.delivered(&batch);
        for _ in 0..sent {
            bump(&inner.counters.invalidations_delivered);
        }
        tracing::info!(
            backend = self.backend_name(),
            delivered = sent,
            "the cache store answers again; kept invalidations delivered"
        );
    }

    /// Logs a fail-open event (at most once per burst) and counts it.
    pub(crate) fn note_failure(&self, what: &str, key: &str, err: &Error) {
        bump(&self.inner.counters.errors);
        if let Some(suppressed) = self.inner.warn.should_log() {
            tracing::warn!(backend = self.backend_name(), key, error = %err, suppressed, "cache {what} failed; serving without the cache (fail-open)");
        }
    }

    /// Reads and decodes the entry under `full`. An entry that does not
    /// decode as `T` is a miss: it is deleted and counted as an error. Store
    /// failures are returned (uncounted) for the caller to propagate or fail open on.
    async fn read<T: DeserializeOwned>(&self, full: &str) -> Result<Option<T>, Error> {
        self.read_by(full, self.call_deadline(), Salt::NONE).await
    }

    /// The op timeout from now, for a store outside the process (`None`:
    /// an in-process store is not bounded). One reading of the clock serves
    /// a read-through call's read and its write.
    fn call_deadline(&self) -> Option<tokio::time::Instant> {
        (!self.inner.backend.is_in_process()).then(|| deadline_after(self.inner.op_timeout))
    }

    /// `read`, bounded by `deadline` from [`Cache::call_deadline`].
    async fn read_by<T: DeserializeOwned>(
        &self,
        full: &str,
        deadline: Option<tokio::time::Instant>,
        salt: Salt,
    ) -> Result<Option<T>, Error> {
        let key = self.key(full);
        if self.inner.pending.covers(full, self.inner.prefix.len()) {
            // A kept invalidation covers this key: the store may still hold
            // the old value. A miss, and another try at delivering.
            bump(&self.inner.counters.misses);
            self.deliver_pending();
            return Ok(None);
        }
        let get = self.inner.backend.get(key);
        let got = match deadline {
            Some(deadline) => {
                self.guarded_until("get", self.inner.op_timeout, deadline, get)
                    .await
            }
            None => get.await,
        };
        let Some(bytes) = got? else {
            bump(&self.inner.counters.misses);
            return Ok(None);
        };
        match codec::open_salted::<T>(&*self.inner.codec, &bytes, salt) {
            Ok(v) => {
                bump(&self.inner.counters.hits);
                Ok(Some(v))
            }
            Err(reason) => {
                bump(&self.inner.counters.misses);
                bump(&self.inner.counters.errors);
                tracing::warn!(key = full, expected = std::any::type_name::<T>(), %reason, "cache entry does not decode; treating as a miss and deleting it");
                // The delete shares the call's one budget: a store that
                // answers the read and then hangs costs one op timeout, not two.
                let delete = self.inner.backend.delete(key);
                match deadline {
                    Some(deadline) => {
                        self.guarded_until("delete", self.inner.op_timeout, deadline, delete)
                            .await?
                    }
                    None => delete.await?,
                };
                Ok(None)
            }
        }
    }

    /// The envelope plus the encoded value; a value over the size limit is
    /// counted in `skipped` and refused with [`Error::ValueTooLarge`].
    fn encode<T: Storable + ?Sized>(&self, value: &T, salt: Salt) -> Result<Bytes, Error> {
        let bytes =
            codec::seal_salted(&*self.inner.codec, value, salt).map_err(|e| Error::Encode {
                codec: self.inner.codec.name(),
                message: e.0,
            })?;
        if bytes.len() > self.inner.max_value_size {
            bump(&self.inner.counters.skipped);
            return Err(Error::ValueTooLarge {
                size: bytes.len(),
                limit: self.inner.max_value_size,
            });
        }
        Ok(Bytes::from(bytes))
    }

    /// [`encode`](Cache::encode) for the cache-aside path: an oversize value
    /// is skipped (logged), not an error. `Ok(None)` = skipped.
    fn seal<T: Storable + ?Sized>(
        &self,
        full: &str,
        value: &T,
        salt: Salt,
    ) -> Result<Option<Bytes>, Error> {
        match self.encode(value, salt) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(Error::ValueTooLarge { size, limit }) => {
                tracing::warn!(
                    key = full,
                    size,
                    limit,
                    "value over the cache's size limit; not stored"
                );
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) fn resolve_ttl(&self, ttl: Option<Duration>) -> Duration {
        ttl.unwrap_or(self.inner.default_ttl)
    }

    async fn store(&self, full: &str, bytes: Bytes, ttl: Duration) -> Result<(), Error> {
        self.store_within(full, bytes, ttl, self.inner.op_timeout)
            .await
    }

    async fn store_within(
        &self,
        full: &str,
        bytes: Bytes,
        ttl: Duration,
        limit: Duration,
    ) -> Result<(), Error> {
        let key = self.key(full);
        let upto = self.inner.pending.seq();
        let result = self
            .guarded_for("set", limit, self.inner.backend.set(key, bytes, Some(ttl)))
            .await;
        if result.is_ok() {
            // A fresh value replaced whatever a kept delete of this key was for.
            self.inner
                .pending
                .superseded(Target::Key(full), upto, self.inner.prefix.len());
        }
        result
    }

    /// Reads `key` as a `T`.
    ///
    /// `Ok(None)` when absent, expired, or not a valid `T` (such an entry is
    /// deleted and counted in [`Stats::errors`]). `Err` when the store fails.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.read(&self.full_key(key))
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

    /// [`set`](Cache::set) with the fingerprint salt of an annotated function.
    pub(crate) async fn set_salted<T: Storable + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
        salt: Salt,
    ) -> Result<(), Error> {
        let bytes = self.encode(value, salt)?;
        let full = self.full_key(key);
        self.store(&full, bytes, self.resolve_ttl(ttl)).await
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
        self.inner.flights.invalidate_where(|k| k == full.as_ref());
        let upto = self.inner.pending.seq();
        let result = self
            .guarded("delete", self.inner.backend.delete(self.key(&full)))
            .await;
        self.settle(
            result.as_ref().map(|_| ()),
            Target::Key(&full),
            upto,
            "delete",
        );
        result
    }

    /// Removes every key of this namespace matching the glob (`*`, `?`; see [`crate::pattern`]); returns how many.
    ///
    /// [`Error::PatternNotSupported`] on stores that cannot match (Memcached).
    /// A pattern the store does not take is kept like a failed [`delete`](Cache::delete).
    pub async fn delete_pattern(&self, pattern: &str) -> Result<u64, Error> {
        let prefix = &self.inner.prefix;
        self.inner.flights.invalidate_where(|k| {
            k.strip_prefix(prefix.as_str())
                .is_some_and(|local| crate::pattern::matches(pattern, local))
        });
        let upto = self.inner.pending.seq();
        let result = self
            .guarded_for(
                "delete_pattern",
                self.inner.bulk_timeout,
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
        result
    }

    /// True when `key` holds a live entry.
    pub async fn exists(&self, key: &str) -> Result<bool, Error> {
        let full = self.full_key(key);
        self.guarded("exists", self.inner.backend.exists(self.key(&full)))
            .await
    }

    /// Remaining time to live of `key`; `None` when absent.
    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>, Error> {
        let full = self.full_key(key);
        self.guarded("ttl", self.inner.backend.ttl(self.key(&full)))
            .await
    }

    /// Removes every entry of this cache's namespace (all entries when it has none); other namespaces stay.
    ///
    /// A clear the store does not take is kept like a failed [`delete`](Cache::delete).
    pub async fn clear(&self) -> Result<u64, Error> {
        let prefix = &self.inner.prefix;
        self.inner
            .flights
            .invalidate_where(|k| k.starts_with(prefix.as_str()));
        let upto = self.inner.pending.seq();
        let result = self
            .guarded_for(
                "clear",
                self.inner.bulk_timeout,
                self.inner.backend.clear(&self.inner.prefix),
            )
            .await;
        self.settle(result.as_ref().map(|_| ()), Target::Clear, upto, "clear");
        result
    }

    /// Checks that the store answers.
    pub async fn ping(&self) -> Result<(), Error> {
        self.guarded("ping", self.inner.backend.ping()).await
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
    /// # let cache = Cache::builder().backend(NullBackend).build(); // use MemoryBackend in real code
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
            .guarded(
                "increment",
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
    /// # let cache = Cache::builder().backend(NullBackend).build();
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
            .read_through(&full, self.resolve_ttl(ttl), Salt::NONE, async {
                Plain(make().await)
            })
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
    /// # let cache = Cache::builder().backend(NullBackend).build();
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
            .read_through(&full, self.resolve_ttl(ttl), Salt::NONE, async {
                make().await
            })
            .await;
        if let Some(e) = encode_error {
            self.note_failure("encode", &full, &e);
        }
        out
    }

    /// The cache-aside path shared by [`get_or_set`](Cache::get_or_set) and the macros:
    /// lookup; on a miss, single-flight; run `body`; store what is cacheable.
    ///
    /// Never fails: store errors fall back to `body`. An encode error is
    /// returned beside the value so each caller decides how loud to be.
    pub(crate) async fn read_through<O, Fut>(
        &self,
        full: &str,
        ttl: Duration,
        salt: Salt,
        body: Fut,
    ) -> (O, Option<Error>)
    where
        O: Outcome,
        Fut: Future<Output = O>,
    {
        // One store budget per call: the write after the body gets what the
        // read left of the op timeout, so a hanging store costs a call at most
        // one timeout plus the body's own time.
        let deadline = self.call_deadline();
        match self.read_by::<O::Value>(full, deadline, salt).await {
            Ok(Some(v)) => return (O::from_cached(v), None),
            Ok(None) => {}
            Err(e) => self.note_failure("read", full, &e),
        }
        let write_budget = deadline.map_or(self.inner.op_timeout, |d| {
            d.saturating_duration_since(tokio::time::Instant::now())
        });
        match self.inner.flights.join(full) {
            Role::Leader(guard) => {
                let out = body.await;
                let (sealed, encode_error) = self.seal_outcome(full, &out, salt);
                guard.land(sealed.clone());
                if let Some(bytes) = sealed {
                    // Invalidated while the body ran: its value may predate the mutation.
                    if !guard.is_stale() {
                        self.fill(full, bytes, ttl, write_budget, || guard.is_stale())
                            .await;
                    }
                }
                drop(guard);
                (out, encode_error)
            }
            Role::Follower(rx) => {
                // An invalidation from here on makes what this caller computes stale too.
                let epoch = self.inner.flights.epoch();
                if let Some(bytes) = flight::follow(rx).await {
                    if let Ok(v) = codec::open_salted::<O::Value>(&*self.inner.codec, &bytes, salt)
                    {
                        bump(&self.inner.counters.coalesced);
                        return (O::from_cached(v), None);
                    }
                }
                // The leader had nothing to share (error, None, cancelled):
                // run our own body, and store what it gives like a leader would.
                let out = body.await;
                let (sealed, encode_error) = self.seal_outcome(full, &out, salt);
                let stale = || self.inner.flights.epoch() != epoch;
                if let Some(bytes) = sealed {
                    if !stale() {
                        self.fill(full, bytes, ttl, write_budget, stale).await;
                    }
                }
                (out, encode_error)
            }
        }
    }

    /// The sealed cacheable part of `out` (`None`: nothing to store), and an encode error.
    fn seal_outcome<O: Outcome>(
        &self,
        full: &str,
        out: &O,
        salt: Salt,
    ) -> (Option<Bytes>, Option<Error>) {
        match out.cacheable() {
            Some(v) => match self.seal(full, v, salt) {
                Ok(b) => (b, None),
                Err(e) => (None, Some(e)),
            },
            None => (None, None),
        }
    }

    /// Writes a miss's value, unless the read used the whole budget (the
    /// store hangs or is down, already counted) or the circuit is open.
    /// When `stale()` turns true while the write is in flight (an
    /// invalidation landed meanwhile), the write is undone: the delete that
    /// raced it must win.
    async fn fill(
        &self,
        full: &str,
        bytes: Bytes,
        ttl: Duration,
        budget: Duration,
        stale: impl Fn() -> bool,
    ) {
        if budget.is_zero() || self.inner.circuit.is_open() {
            return;
        }
        if let Err(e) = self.store_within(full, bytes, ttl, budget).await {
            self.note_failure("write", full, &e);
        }
        if stale() {
            let undo = self
                .guarded("delete", self.inner.backend.delete(self.key(full)))
                .await;
            if let Err(e) = undo {
                if e.is_store_failure() {
                    self.keep_invalidation(Target::Key(full), "undo of a stale write", &e);
                }
            }
        }
    }

    /// [`get`](Cache::get) with the fingerprint salt of an annotated function.
    pub(crate) async fn get_salted<T: DeserializeOwned>(
        &self,
        key: &str,
        salt: Salt,
    ) -> Result<Option<T>, Error> {
        self.read_by(&self.full_key(key), self.call_deadline(), salt)
            .await
            .inspect_err(|_| bump(&self.inner.counters.errors))
    }
}

/// How a function's return value maps to what is cached.
///
/// Implemented for [`Plain`] (cache every value), `Result<T, E>` (cache `Ok`),
/// `Option<T>` (cache `Some`) and [`CacheNone`] (cache `Some` and `None`). The
/// `#[cache]` macro picks the impl from the written return type.
///
/// ```
/// use cache_core::Outcome;
/// let ok: Result<u8, String> = Ok(1);
/// assert_eq!(ok.cacheable(), Some(&1));
/// let err: Result<u8, String> = Err("no".into());
/// assert_eq!(err.cacheable(), None);
/// assert_eq!(<Option<u8> as Outcome>::from_cached(3), Some(3));
/// ```
pub trait Outcome: Sized {
    /// The stored type.
    type Value: Serialize + DeserializeOwned;
    /// The part worth caching, if any.
    fn cacheable(&self) -> Option<&Self::Value>;
    /// Rebuilds the return value from a cached one.
    fn from_cached(value: Self::Value) -> Self;
}

/// A return value cached as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plain<T>(pub T);

impl<T> From<T> for Plain<T> {
    fn from(value: T) -> Self {
        Plain(value)
    }
}

impl<T> From<Option<T>> for CacheNone<T> {
    fn from(value: Option<T>) -> Self {
        CacheNone(value)
    }
}

impl<T: Serialize + DeserializeOwned> Outcome for Plain<T> {
    type Value = T;
    fn cacheable(&self) -> Option<&T> {
        Some(&self.0)
    }
    fn from_cached(value: T) -> Self {
        Plain(value)
    }
}

impl<T: Serialize + DeserializeOwned, E> Outcome for Result<T, E> {
    type Value = T;
    fn cacheable(&self) -> Option<&T> {
        self.as_ref().ok()
    }
    fn from_cached(value: T) -> Self {
        Ok(value)
    }
}

impl<T: Serialize + DeserializeOwned> Outcome for Option<T> {
    type Value = T;
    fn cacheable(&self) -> Option<&T> {
        self.as_ref()
    }
    fn from_cached(value: T) -> Self {
        Some(value)
    }
}

/// An `Option` whose `None` is cached too (`#[cache(cache_none = true)]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheNone<T>(pub Option<T>);

impl<T: Serialize + DeserializeOwned> Outcome for CacheNone<T> {
    type Value = Option<T>;
    fn cacheable(&self) -> Option<&Option<T>> {
        Some(&self.0)
    }
    fn from_cached(value: Option<T>) -> Self {
        CacheNone(value)
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync + Clone>() {}
    is::<Cache>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{async_trait, Key};

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
        let cache = Cache::builder()
            .backend(Hanging)
            .op_timeout(timeout)
            .breaker(Breaker {
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
        Cache::builder()
            .backend(Hanging)
            .op_timeout(Duration::from_millis(100))
            .bulk_timeout(Duration::from_secs(1))
            .breaker(Breaker {
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
        Cache::builder()
            .backend(store.clone())
            .op_timeout(Duration::from_millis(100))
            .breaker(Breaker {
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
        let cache = Cache::builder()
            .backend(store.clone())
            .op_timeout(Duration::from_millis(100))
            .breaker(Breaker {
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
}

//! [`RateLimitLayer`]: per-client request limits with a sliding-window
//! counter, kept in any cacheside store, answered with the IETF `RateLimit-*`
//! fields and `429 Too Many Requests`.
//!
//! # Algorithm: sliding-window counter
//!
//! Time is cut into fixed windows of length `W` (aligned on the Unix epoch,
//! so every process agrees). Each client has one counter per window. A
//! request at `e` milliseconds into window `n` estimates the requests of the
//! last `W` as
//!
//! ```text
//! estimate = count(n) + ⌊count(n − 1) × (W − e) / W⌋
//! ```
//!
//! i.e. the previous window's count weighted by how much of it still overlaps
//! the trailing window, assuming its requests were spread evenly. The request
//! passes when the estimate (itself included) is at most the limit `L`.
//!
//! One store round trip per request: [`Cache::increment`] adds 1 to
//! `count(n)` (created with a TTL of `2W + 1 s`, so it is still there while it
//! is the previous window) and reads `count(n − 1)` in the same call (both
//! keys share a `{hash tag}`, so they live on one Redis Cluster slot and one
//! Memcached server). A rejected request gives its unit back (a second call
//! with `delta = −1`): **only requests that pass count**, so a client that
//! keeps retrying too fast is not locked out for ever, it gets through as
//! soon as capacity frees.
//!
//! **Error bound.** Counting is exact (an atomic increment per request: with
//! 32 simultaneous requests and `L = 10`, exactly 10 pass, on every store), and
//! in every aligned window at most `L` requests pass. Over an arbitrary
//! interval of length `W` the estimate can be off in the lenient direction
//! when the previous window's requests were bunched at its end: the worst case
//! lets `2L` requests through in a trailing `W` (`L` at the very end of
//! window `n − 1`, then `L` more spread over window `n`; no interval of length
//! `W` can hold more, as it meets at most two aligned windows); with evenly
//! spread traffic it is exact, and in practice the error is small (Cloudflare
//! measured 0.003 % of requests misjudged with this scheme). Clocks of
//! different processes should agree to well under `W`.
//!
//! # Headers
//!
//! Every limited response carries (draft-ietf-httpapi-ratelimit-headers):
//!
//! * `RateLimit-Limit`: `L`;
//! * `RateLimit-Remaining`: `L − estimate`, at least 0;
//! * `RateLimit-Reset`: seconds (rounded up) until capacity frees: when
//!   nothing remains, until the next request would pass (the same value as
//!   `Retry-After`); otherwise until the current window ends, when its count
//!   starts to decay.
//!
//! A request over the limit gets `429 Too Many Requests` with those fields
//! and `Retry-After` (seconds, at least 1), without reaching the inner service.
//!
//! # Where counters live
//!
//! Counters must not compete with cached data for room: an in-memory cache
//! full of hot entries would evict them (or refuse to admit them), and every
//! lost counter lets a client through again. So:
//!
//! * given an in-process cache (`memory`, or `none`, which stores nothing),
//!   [`RateLimitLayer::new`] keeps the counters in **its own in-process
//!   store**, apart from the cache: it admits every counter, holds
//!   [`DEFAULT_MAX_COUNTERS`] of them (two per active client; change it with
//!   [`max_counters`](RateLimitLayer::max_counters)), and when full drops the
//!   counters closest to expiry first (counted in
//!   [`RateLimitStats::evicted`] and logged). Limits are then per process. A
//!   `none` cache does not switch rate limiting off: the limiter says so at
//!   WARN and counts on its own;
//! * given any other store (Redis, Redis Cluster, Memcached, your own
//!   [`Backend`](crate::Backend)), counters go to that store, shared by every
//!   process. Such a store evicts by its own policy: give Redis a `maxmemory`
//!   policy that spares keys with a TTL (`volatile-*`, or `noeviction`), or a
//!   store of their own (`RATE_LIMIT_STORAGE_URI`, [`RateLimitLayer::from_uri`]).
//!
//! Counter keys never hold the client key itself (an API key from
//! [`key_fn`](RateLimitLayer::key_fn), an IP address): they hold its stable
//! 128-bit hash (SipHash-1-3, the same in every process, so a fleet shares
//! counters), see [`key_prefix`](RateLimitLayer::key_prefix).
//!
//! # Store failures
//!
//! The check goes through the cache's op timeout and circuit breaker (a dead
//! store costs microseconds once the circuit is open). With
//! [`fail_open(true)`](RateLimitLayer::fail_open) (the default) requests pass
//! unlimited, **without** `RateLimit-*` fields (a guess would mislead
//! clients); with `fail_open(false)` they get `503 Service Unavailable` with
//! `Retry-After: 1`. Either way the limiter is never silent about it: when the
//! layer is applied to a service it checks its store once (in the background)
//! and logs a WARN (an ERROR for a store that cannot count at all, a
//! [`Backend`](crate::Backend) without `increment`) naming what to fix; every
//! failed check is counted ([`RateLimitLayer::stats`]) and logged at most
//! once per 10 s, with the number of failures held back since.
//!
//! No error, log line or `Debug` output of the limiter holds the password of
//! a storage URI: it appears as `***`.

mod counters;
mod redact;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::{BackendKind, Cache, Config, Error};

use counters::{CounterStore, Evictions};

/// The environment variable [`RateLimitLayer::from_env`] reads.
///
/// ```
/// assert_eq!(cacheside::http::RATE_LIMIT_STORAGE_URI, "RATE_LIMIT_STORAGE_URI");
/// ```
pub const RATE_LIMIT_STORAGE_URI: &str = "RATE_LIMIT_STORAGE_URI";

/// The key shared by every request whose client cannot be identified (no
/// `ConnectInfo`, no trusted `X-Forwarded-For`): such requests are limited
/// together, as one client.
///
/// ```
/// assert_eq!(cacheside::http::RATE_LIMIT_FALLBACK_KEY, "unknown");
/// ```
pub const RATE_LIMIT_FALLBACK_KEY: &str = "unknown";

/// `RateLimit-Limit`.
///
/// ```
/// assert_eq!(cacheside::http::RATELIMIT_LIMIT.as_str(), "ratelimit-limit");
/// ```
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`.
///
/// ```
/// assert_eq!(cacheside::http::RATELIMIT_REMAINING.as_str(), "ratelimit-remaining");
/// ```
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`.
///
/// ```
/// assert_eq!(cacheside::http::RATELIMIT_RESET.as_str(), "ratelimit-reset");
/// ```
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

const URI_ALLOWED: &str = "memory://, redis://host:port[/db], rediss://… (feature tls), redis-cluster://host:port,host:port, memcached://host:port[,host:port]";

/// Counters held by the limiter's own in-process store (two per active
/// client: the current window and the previous one), unless
/// [`RateLimitLayer::max_counters`] says otherwise.
///
/// ```
/// assert_eq!(cacheside::http::DEFAULT_MAX_COUNTERS, 100_000);
/// ```
pub const DEFAULT_MAX_COUNTERS: u64 = 100_000;

/// How often a failing store is logged at most.
const BURST_MS: u64 = 10_000;

/// Logs at most once per burst window (10 s on tokio's clock, so a paused
/// test runtime controls it), counting what it held back.
#[derive(Debug, Default)]
struct Burst {
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Burst {
    /// `Some(held back since the last line)` when this call should log.
    fn should_log(&self) -> Option<u64> {
        // Offset so that the first call always logs (0 means "never logged").
        let now = burst_clock_ms() + BURST_MS;
        let last = self.last_ms.load(Ordering::Relaxed);
        if (last != 0 && now.saturating_sub(last) < BURST_MS)
            || self
                .last_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// Milliseconds on tokio's clock from a process-wide anchor, biased so that a
/// paused runtime's clock standing before the anchor still moves (as in the
/// core's circuit breaker).
fn burst_clock_ms() -> u64 {
    const BIAS: u64 = 1 << 40;
    static ANCHOR: OnceLock<std::time::Instant> = OnceLock::new();
    let anchor = *ANCHOR.get_or_init(std::time::Instant::now);
    let now = tokio::time::Instant::now().into_std();
    match now.checked_duration_since(anchor) {
        Some(after) => BIAS.saturating_add(after.as_millis() as u64),
        None => BIAS.saturating_sub(anchor.duration_since(now).as_millis() as u64),
    }
}

/// What a [`RateLimitLayer`] has done since it was built, read with
/// [`RateLimitLayer::stats`]: what it let through, refused, and could not
/// decide.
///
/// ```
/// let s = cacheside::http::RateLimitStats::default();
/// assert_eq!((s.allowed, s.limited, s.failed_open), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitStats {
    /// Checks within the limit.
    pub allowed: u64,
    /// Checks over the limit (`429`).
    pub limited: u64,
    /// Checks the store could not answer (failures, timeouts, open circuit,
    /// no `increment`), startup check included.
    pub store_errors: u64,
    /// Requests let through unlimited because the store failed (`fail_open(true)`).
    pub failed_open: u64,
    /// Requests answered `503` because the store failed (`fail_open(false)`).
    pub failed_closed: u64,
    /// Counters the limiter's own in-process store dropped because it was
    /// full (those clients were limited leniently; see
    /// [`RateLimitLayer::max_counters`]).
    pub evicted: u64,
}

#[derive(Debug, Default)]
struct Counts {
    allowed: AtomicU64,
    limited: AtomicU64,
    store_errors: AtomicU64,
    failed_open: AtomicU64,
    failed_closed: AtomicU64,
}

fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

/// Where the counters live.
#[derive(Clone)]
enum Counters {
    /// The limiter's own in-process store.
    Own {
        capacity: u64,
        evictions: Arc<Evictions>,
    },
    /// The store of the cache given to the limiter (shared by every process that uses it).
    Given,
}

/// A cache over a fresh in-process counter store.
fn own_counters(namespace: &str, capacity: u64) -> (Cache, Counters) {
    let capacity = capacity.max(1);
    let evictions = Arc::new(Evictions::default());
    let store = CounterStore::new(capacity, Arc::clone(&evictions));
    let cache = Cache::builder(store).namespace(namespace).build();
    (
        cache,
        Counters::Own {
            capacity,
            evictions,
        },
    )
}

type KeyFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

/// A tower [`Layer`] that limits each client to `limit` requests per sliding
/// `window`, with counters in a cacheside [`Cache`] (see the [module
/// docs](self) for the algorithm, headers and failure behaviour).
///
/// The client is, in order: what [`key_fn`](RateLimitLayer::key_fn) returns
/// when one is set; else the last address of `X-Forwarded-For` when
/// [`trust_forwarded_for(true)`](RateLimitLayer::trust_forwarded_for); else
/// the peer IP from axum's `ConnectInfo<SocketAddr>` (serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`); else the shared
/// [`RATE_LIMIT_FALLBACK_KEY`] (logged once).
///
/// ```
/// use std::{net::SocketAddr, time::Duration};
/// use axum::{body::Body, extract::ConnectInfo, routing::get, Router};
/// use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache};
/// use http::{Request, StatusCode};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = Cache::builder(MemoryBackend::new(10_000)).build();
/// let app = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(RateLimitLayer::new(cache, 2, Duration::from_secs(60)));
///
/// let call = || {
///     let mut req = Request::get("/").body(Body::empty()).unwrap();
///     req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 4321))));
///     app.clone().oneshot(req)
/// };
/// let first = call().await.unwrap();
/// assert_eq!(first.status(), StatusCode::OK);
/// assert_eq!(first.headers()["ratelimit-remaining"], "1");
/// assert_eq!(call().await.unwrap().status(), StatusCode::OK);
/// let third = call().await.unwrap();
/// assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert!(third.headers().contains_key("retry-after"));
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RateLimitLayer {
    settings: Arc<Settings>,
}

#[derive(Clone)]
struct Settings {
    cache: Cache,
    counters: Counters,
    /// The storage URI, password masked, when the layer was built from one.
    source: Option<String>,
    limit: u64,
    window_ms: u64,
    key_fn: Option<Arc<KeyFn>>,
    trust_forwarded_for: bool,
    fail_open: bool,
    prefix: String,
    counts: Arc<Counts>,
    /// Store failures: one log line per burst.
    store_burst: Arc<Burst>,
    /// Whether the startup check of a shared store has been started.
    probed: Arc<AtomicBool>,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &*self.settings;
        let mut d = f.debug_struct("RateLimitLayer");
        d.field("backend", &s.cache.backend_name());
        match &s.counters {
            Counters::Own { capacity, .. } => d.field(
                "counters",
                &format_args!("own in-process store of {capacity}"),
            ),
            Counters::Given => d.field("counters", &format_args!("in the given store")),
        };
        if let Some(source) = &s.source {
            d.field("storage_uri", source);
        }
        d.field("limit", &s.limit)
            .field("window", &Duration::from_millis(s.window_ms))
            .field("key_fn", &s.key_fn.is_some())
            .field("trust_forwarded_for", &s.trust_forwarded_for)
            .field("fail_open", &s.fail_open)
            .field("key_prefix", &s.prefix)
            .finish()
    }
}

/// The outcome of one [`RateLimitLayer::check`].
///
/// ```
/// # use std::time::Duration;
/// # use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
/// # let cache = Cache::builder(MemoryBackend::new(100)).build();
/// let limiter = RateLimitLayer::new(cache, 5, Duration::from_secs(60));
/// let decision = limiter.check("api-key-1").await?;
/// assert!(decision.allowed);
/// assert_eq!((decision.limit, decision.remaining), (5, 4));
/// assert_eq!(decision.retry_after, None);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// True when the request is within the limit.
    pub allowed: bool,
    /// The limit (`RateLimit-Limit`).
    pub limit: u64,
    /// Requests left in the trailing window (`RateLimit-Remaining`).
    pub remaining: u64,
    /// Time until capacity frees (`RateLimit-Reset`, rounded up to seconds).
    pub reset: Duration,
    /// For a rejected request: when the next one would pass (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// Writes `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`
    /// (and `Retry-After` for a rejection) into `headers`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
    /// # let cache = Cache::builder(MemoryBackend::new(100)).build();
    /// let limiter = RateLimitLayer::new(cache, 5, Duration::from_secs(60));
    /// let mut headers = http::HeaderMap::new();
    /// limiter.check("client").await?.write_headers(&mut headers);
    /// assert_eq!(headers["ratelimit-limit"], "5");
    /// assert_eq!(headers["ratelimit-remaining"], "4");
    /// # Ok(()) }
    /// ```
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_LIMIT, HeaderValue::from(self.limit));
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from(self.remaining));
        headers.insert(RATELIMIT_RESET, HeaderValue::from(ceil_secs(self.reset)));
        if let Some(after) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(ceil_secs(after).max(1)));
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl RateLimitLayer {
    /// At most `limit` requests per client per sliding `window`, counted in
    /// the store of `cache`, or in the limiter's own in-process store when
    /// `cache` is in-process (`memory`, `none`): counters never compete with
    /// cached entries for room (see [Where counters live](self#where-counters-live)).
    ///
    /// `window` is used with millisecond precision (at least 1 ms); memcached
    /// rounds counter TTLs up to whole seconds, which only keeps them longer.
    /// `limit = 0` rejects every request. A `none` cache is logged at WARN
    /// (the limiter counts on its own, per process); a shared store is
    /// checked once when the layer is applied to a service (see [Store
    /// failures](self#store-failures)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache, NullBackend};
    /// let cache = Cache::builder(MemoryBackend::new(10_000)).build();
    /// let layer = RateLimitLayer::new(cache, 100, Duration::from_secs(60));
    /// assert_eq!(layer.limit(), 100);
    /// // Counters are kept apart from the cached entries, in the limiter's own store.
    /// assert_eq!(layer.counter_capacity(), Some(cacheside::http::DEFAULT_MAX_COUNTERS));
    ///
    /// // A cache that stores nothing does not turn rate limiting off.
    /// let none = Cache::builder(NullBackend).build();
    /// assert_eq!(RateLimitLayer::new(none, 100, Duration::from_secs(60)).cache().backend_name(), "memory");
    /// ```
    pub fn new(cache: Cache, limit: u64, window: Duration) -> Self {
        let given = cache.backend_name();
        let (cache, counters) = match given {
            "memory" | "none" => {
                let (own, counters) = own_counters(cache.namespace(), DEFAULT_MAX_COUNTERS);
                if given == "none" {
                    tracing::warn!(
                        capacity = DEFAULT_MAX_COUNTERS,
                        "rate limiter: the cache it was given stores nothing (CACHE_BACKEND=none), so it counts in its own in-process store instead: limits hold per process, not across replicas; to share them, set {RATE_LIMIT_STORAGE_URI}=redis://… and build the layer with RateLimitLayer::from_env"
                    );
                } else {
                    tracing::info!(
                        capacity = DEFAULT_MAX_COUNTERS,
                        "rate limiter: counters in its own in-process store, apart from the memory cache (cached entries cannot evict them); limits hold per process"
                    );
                }
                (own, counters)
            }
            _ => (cache, Counters::Given),
        };
        Self::with_store(cache, counters, limit, window)
    }

    /// At most `limit` requests per client per sliding `window`, counted in
    /// the limiter's own in-process store of [`DEFAULT_MAX_COUNTERS`]
    /// counters (what `RATE_LIMIT_STORAGE_URI=memory://` builds). Limits
    /// hold per process.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cacheside::http::RateLimitLayer;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
    /// let limiter = RateLimitLayer::in_process(1, Duration::from_secs(60));
    /// assert!(limiter.check("client").await?.allowed);
    /// assert!(!limiter.check("client").await?.allowed);
    /// # Ok(()) }
    /// ```
    pub fn in_process(limit: u64, window: Duration) -> Self {
        let (cache, counters) = own_counters("", DEFAULT_MAX_COUNTERS);
        Self::with_store(cache, counters, limit, window)
    }

    fn with_store(cache: Cache, counters: Counters, limit: u64, window: Duration) -> Self {
        let window_ms = u64::try_from(window.as_millis())
            .unwrap_or(u64::MAX / 4)
            .clamp(1, u64::MAX / 4);
        RateLimitLayer {
            settings: Arc::new(Settings {
                cache,
                counters,
                source: None,
                limit,
                window_ms,
                key_fn: None,
                trust_forwarded_for: false,
                fail_open: true,
                prefix: "ratelimit".to_owned(),
                counts: Arc::default(),
                store_burst: Arc::default(),
                probed: Arc::default(),
            }),
        }
    }

    /// Like [`new`](RateLimitLayer::new), with the store named by a
    /// `RATE_LIMIT_STORAGE_URI`-style URI:
    ///
    /// | URI | store |
    /// |---|---|
    /// | `memory://` | the limiter's own in-process store ([`in_process`](RateLimitLayer::in_process): each process limits on its own) |
    /// | `redis://[[user]:password@]host:port[/db]`, `rediss://…` (feature `tls`) | one Redis server (features `redis`) |
    /// | `redis-cluster://host:port,host:port,…` | a Redis Cluster (feature `redis-cluster`; plain TCP without password: for those build a `RedisClusterBackend` and use [`new`](RateLimitLayer::new)) |
    /// | `memcached://host:port[,host:port…]` | Memcached (feature `memcached`) |
    ///
    /// Anything else is an [`Error::Config`] naming `RATE_LIMIT_STORAGE_URI`;
    /// a store that is not compiled in is [`Error::BackendNotCompiled`]. A
    /// password in the URI appears as `***` in every error, log line and
    /// `Debug` output of the limiter. A Redis server that does not answer yet
    /// does not fail (the limiter fails open until it does, and says so);
    /// Memcached must answer at least once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cacheside::http::RateLimitLayer;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
    /// let layer = RateLimitLayer::from_uri("memory://", 100, Duration::from_secs(60)).await?;
    /// assert_eq!(layer.cache().backend_name(), "memory");
    ///
    /// let err = RateLimitLayer::from_uri("mongodb://app:s3cret@db:27017", 100, Duration::from_secs(60)).await.unwrap_err();
    /// assert!(err.to_string().contains("RATE_LIMIT_STORAGE_URI"));
    /// assert!(err.to_string().contains("mongodb://app:***@db:27017"));
    /// assert!(!format!("{err} {err:?}").contains("s3cret"));
    /// # Ok(()) }
    /// ```
    pub async fn from_uri(uri: &str, limit: u64, window: Duration) -> Result<Self, Error> {
        let shown = redact::redact_uri(uri.trim());
        let config = config_for_uri(uri).map_err(|e| redact::scrub(e, uri))?;
        let mut layer = if config.backend == BackendKind::Memory {
            tracing::info!(
                capacity = DEFAULT_MAX_COUNTERS,
                "rate limits stored in memory ({RATE_LIMIT_STORAGE_URI}={shown}): the limiter's own in-process store, limits hold per process"
            );
            Self::in_process(limit, window)
        } else {
            let cache = cache_backends::connect(&config)
                .await
                .map_err(|e| redact::scrub(e, uri))?;
            tracing::info!(
                backend = cache.backend_name(),
                "rate limits stored in {} ({RATE_LIMIT_STORAGE_URI}={shown})",
                cache.backend_name()
            );
            Self::new(cache, limit, window)
        };
        Arc::make_mut(&mut layer.settings).source = Some(shown);
        Ok(layer)
    }

    /// [`from_uri`](RateLimitLayer::from_uri) with `RATE_LIMIT_STORAGE_URI`;
    /// when it is unset (or empty), uses Redis on 127.0.0.1:6379 if it
    /// answers, else Memcached on 127.0.0.1:11211, else the limiter's own
    /// in-process store (each only when compiled in; 200 ms per probe). Logs
    /// the choice at `info`.
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
    /// let layer = cacheside::http::RateLimitLayer::from_env(100, Duration::from_secs(60)).await?;
    /// println!("rate limits in {}", layer.cache().backend_name());
    /// # Ok(()) }
    /// ```
    pub async fn from_env(limit: u64, window: Duration) -> Result<Self, Error> {
        match std::env::var(RATE_LIMIT_STORAGE_URI) {
            Ok(uri) if !uri.trim().is_empty() => Self::from_uri(&uri, limit, window).await,
            _ => {
                let mut config = Config::default();
                config.backend = BackendKind::Auto;
                // Only a probe: an in-process choice gets the limiter's own store.
                config.memory_max_entries = 1;
                let cache = cache_backends::connect(&config).await?;
                tracing::info!(
                    backend = cache.backend_name(),
                    "{RATE_LIMIT_STORAGE_URI} is unset: rate limits stored in {} (auto-detected)",
                    cache.backend_name()
                );
                Ok(Self::new(cache, limit, window))
            }
        }
    }

    /// Derives the client key from the request head (an API key header, a
    /// user id an earlier layer put in the extensions, …) instead of the IP.
    /// `None` means "not limited": the request passes without `RateLimit-*`
    /// fields (use it for health checks or trusted callers).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache};
    /// let cache = Cache::builder(MemoryBackend::new(10_000)).build();
    /// let layer = RateLimitLayer::new(cache, 1_000, Duration::from_secs(3600))
    ///     .key_fn(|parts| {
    ///         parts.headers.get("x-api-key")?.to_str().ok().map(str::to_owned)
    ///     });
    /// # let _ = layer;
    /// ```
    pub fn key_fn<F>(mut self, key_fn: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.settings).key_fn = Some(Arc::new(key_fn));
        self
    }

    /// Takes the client IP from the last `X-Forwarded-For` entry (the one
    /// your proxy appended) before `ConnectInfo`. Only enable it behind a
    /// proxy that sets the header: otherwise clients choose their own key.
    /// With several proxies in a chain, use [`key_fn`](RateLimitLayer::key_fn).
    /// Default `false`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache};
    /// # let cache = Cache::builder(MemoryBackend::new(100)).build();
    /// let layer = RateLimitLayer::new(cache, 10, Duration::from_secs(1)).trust_forwarded_for(true);
    /// # let _ = layer;
    /// ```
    pub fn trust_forwarded_for(mut self, trust: bool) -> Self {
        Arc::make_mut(&mut self.settings).trust_forwarded_for = trust;
        self
    }

    /// What happens when the store fails: `true` (default) lets requests
    /// through unlimited (logged at most once per 10 s), `false` answers
    /// `503 Service Unavailable`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache};
    /// # let cache = Cache::builder(MemoryBackend::new(100)).build();
    /// let strict = RateLimitLayer::new(cache, 10, Duration::from_secs(1)).fail_open(false);
    /// # let _ = strict;
    /// ```
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        Arc::make_mut(&mut self.settings).fail_open = fail_open;
        self
    }

    /// First part of every counter key (default `"ratelimit"`): give two
    /// limiters sharing a store different prefixes so their counts stay
    /// apart (limiters with different windows are apart anyway). Counter keys
    /// look like `ratelimit:{<32 hex digits>}:60000:29401234`
    /// (prefix; in braces, as the hash tag, 32 hex digits of the client
    /// key's stable 128-bit hash, never the client key itself; window in ms;
    /// window number), under the cache's namespace. The hash is the same in
    /// every process and version, so replicas share counters; it is not a
    /// secret (an IPv4 address can be found again by trying them all), it
    /// keeps API keys and the like out of the store's key names.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache};
    /// # let cache = Cache::builder(MemoryBackend::new(100)).build();
    /// let login = RateLimitLayer::new(cache, 5, Duration::from_secs(60)).key_prefix("login");
    /// # let _ = login;
    /// ```
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        Arc::make_mut(&mut self.settings).prefix = prefix.to_owned();
        self
    }

    /// The limit per window.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache};
    /// # let cache = Cache::builder(MemoryBackend::new(100)).build();
    /// assert_eq!(RateLimitLayer::new(cache, 7, Duration::from_secs(1)).limit(), 7);
    /// ```
    pub fn limit(&self) -> u64 {
        self.settings.limit
    }

    /// The window length (millisecond precision).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache};
    /// # let cache = Cache::builder(MemoryBackend::new(100)).build();
    /// let layer = RateLimitLayer::new(cache, 7, Duration::from_secs(30));
    /// assert_eq!(layer.window(), Duration::from_secs(30));
    /// ```
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.settings.window_ms)
    }

    /// The cache holding the counters: the given one, or the limiter's own
    /// in-process store (named `"memory"`; it holds counters only) when the
    /// given one was in-process.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
    /// let shared = Cache::builder(MemoryBackend::new(100)).build();
    /// let layer = RateLimitLayer::new(shared.clone(), 7, Duration::from_secs(30));
    /// assert_eq!(layer.cache().backend_name(), "memory");
    /// layer.check("10.0.0.1").await?;
    /// // The counter is in the limiter's store, not in the shared cache.
    /// assert_eq!(layer.cache().delete_pattern("ratelimit:*").await?, 1);
    /// assert_eq!(shared.delete_pattern("ratelimit:*").await?, 0);
    /// # Ok(()) }
    /// ```
    pub fn cache(&self) -> &Cache {
        &self.settings.cache
    }

    /// Size (at least 1) of the limiter's own in-process counter store (default
    /// [`DEFAULT_MAX_COUNTERS`], two counters per client active in the last
    /// two windows). When it is full, expired counters go first, then the
    /// ones closest to expiry: those clients are limited leniently, counted
    /// in [`RateLimitStats::evicted`] and logged once per burst. No effect
    /// (and a WARN) when counters live in a shared store (Redis, Memcached):
    /// that store's memory policy applies.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use cacheside::http::RateLimitLayer;
    /// let layer = RateLimitLayer::in_process(10, Duration::from_secs(60)).max_counters(1_000_000);
    /// assert_eq!(layer.counter_capacity(), Some(1_000_000));
    /// ```
    pub fn max_counters(mut self, capacity: u64) -> Self {
        let settings = Arc::make_mut(&mut self.settings);
        match &settings.counters {
            Counters::Own { .. } => {
                let (cache, counters) = own_counters(settings.cache.namespace(), capacity);
                settings.cache = cache;
                settings.counters = counters;
            }
            Counters::Given => tracing::warn!(
                backend = settings.cache.backend_name(),
                "RateLimitLayer::max_counters has no effect: counters live in the shared {} store, whose own memory policy applies",
                settings.cache.backend_name()
            ),
        }
        self
    }

    /// `Some(capacity)` when counters live in the limiter's own in-process
    /// store, `None` when they live in the given (shared) store.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use cacheside::http::{RateLimitLayer, DEFAULT_MAX_COUNTERS};
    /// let layer = RateLimitLayer::in_process(10, Duration::from_secs(60));
    /// assert_eq!(layer.counter_capacity(), Some(DEFAULT_MAX_COUNTERS));
    /// ```
    pub fn counter_capacity(&self) -> Option<u64> {
        match &self.settings.counters {
            Counters::Own { capacity, .. } => Some(*capacity),
            Counters::Given => None,
        }
    }

    /// What the limiter has done so far (shared by every clone of the layer
    /// and every service built from it): a limiter whose store fails shows it
    /// here as well as in the log.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use cacheside::http::RateLimitLayer;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
    /// let limiter = RateLimitLayer::in_process(1, Duration::from_secs(60));
    /// limiter.check("a").await?;
    /// limiter.check("a").await?;
    /// let stats = limiter.stats();
    /// assert_eq!((stats.allowed, stats.limited, stats.store_errors), (1, 1, 0));
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> RateLimitStats {
        let s = &*self.settings;
        let c = &s.counts;
        RateLimitStats {
            allowed: c.allowed.load(Ordering::Relaxed),
            limited: c.limited.load(Ordering::Relaxed),
            store_errors: c.store_errors.load(Ordering::Relaxed),
            failed_open: c.failed_open.load(Ordering::Relaxed),
            failed_closed: c.failed_closed.load(Ordering::Relaxed),
            evicted: match &s.counters {
                Counters::Own { evictions, .. } => evictions.count.load(Ordering::Relaxed),
                Counters::Given => 0,
            },
        }
    }

    /// Counts one request of `client` and decides on it (what the service
    /// does per request, usable outside HTTP). `Err` when the store fails.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
    /// # let cache = Cache::builder(MemoryBackend::new(100)).build();
    /// let limiter = RateLimitLayer::new(cache, 1, Duration::from_secs(60));
    /// assert!(limiter.check("job:42").await?.allowed);
    /// let second = limiter.check("job:42").await?;
    /// assert!(!second.allowed);
    /// assert!(second.retry_after.unwrap() <= Duration::from_secs(120));
    /// # Ok(()) }
    /// ```
    pub async fn check(&self, client: &str) -> Result<Decision, Error> {
        self.settings.check(client, unix_ms()).await
    }
}

impl Settings {
    async fn check(&self, client: &str, now_ms: u64) -> Result<Decision, Error> {
        let w = self.window_ms;
        let index = now_ms / w;
        let elapsed = now_ms % w;
        let base = format!("{}:{{{}}}:{w}:", self.prefix, client_tag(client));
        let current = format!("{base}{index}");
        // Window 0 (a window longer than the time since 1970) has no predecessor.
        let previous = index.checked_sub(1).map(|p| format!("{base}{p}"));
        let ttl = Duration::from_millis(w.saturating_mul(2)) + Duration::from_secs(1);
        let (count, prev) = match self
            .cache
            .increment(&current, 1, ttl, previous.as_deref())
            .await
        {
            Ok(counts) => counts,
            Err(e) => {
                bump(&self.counts.store_errors);
                return Err(e);
            }
        };
        let window = Window {
            limit: self.limit,
            w,
            elapsed,
            prev,
        };
        if window.estimate(count) <= self.limit {
            bump(&self.counts.allowed);
            return Ok(window.decision(true, count));
        }
        bump(&self.counts.limited);
        // Rejected: give the unit back, so that only requests that pass count.
        let count = match self.cache.increment(&current, -1, ttl, None).await {
            Ok((after, _)) => after,
            Err(e) => {
                tracing::debug!(error = %e, "rate limit refund failed; the window over-counts by one");
                count
            }
        };
        Ok(window.decision(false, count))
    }

    /// The client key of a request; `None`: not limited.
    fn client_key(&self, parts: &Parts) -> Option<String> {
        if let Some(key_fn) = &self.key_fn {
            return key_fn(parts);
        }
        if self.trust_forwarded_for {
            if let Some(ip) = forwarded_for(&parts.headers) {
                return Some(ip.to_string());
            }
        }
        if let Some(ConnectInfo(addr)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            return Some(addr.ip().to_string());
        }
        static ONCE: OnceLock<()> = OnceLock::new();
        ONCE.get_or_init(|| {
            tracing::warn!("rate limiter: request without a client address (serve with into_make_service_with_connect_info::<SocketAddr>(), enable trust_forwarded_for behind a proxy, or set key_fn); such requests share the key {RATE_LIMIT_FALLBACK_KEY:?}");
        });
        Some(RATE_LIMIT_FALLBACK_KEY.to_owned())
    }

    /// Counts a request the store could not decide on and logs it, once per burst.
    fn store_failed(&self, e: &Error) {
        let total = if self.fail_open {
            bump(&self.counts.failed_open)
        } else {
            bump(&self.counts.failed_closed)
        };
        if let Some(suppressed) = self.store_burst.should_log() {
            self.log_store_failure(e, suppressed, total, "a request");
        }
    }

    fn log_store_failure(&self, e: &Error, suppressed: u64, total: u64, during: &str) {
        let backend = self.cache.backend_name();
        let outcome = if self.fail_open {
            "requests pass unlimited (fail_open(true), the default)"
        } else {
            "requests are answered 503 (fail_open(false))"
        };
        if matches!(e, Error::Unsupported { .. }) {
            tracing::error!(
                backend,
                error = %e,
                suppressed,
                total,
                "rate limiter cannot limit: its {backend} store does not count (no Backend::increment), so {outcome}; implement Backend::increment for it, or give the limiter a built-in store (RateLimitLayer::from_env with {RATE_LIMIT_STORAGE_URI}=redis://…)"
            );
        } else {
            tracing::warn!(
                backend,
                error = %e,
                suppressed,
                total,
                "rate limiter cannot limit: its {backend} store failed during {during}, so {outcome} until it answers; check the server and {RATE_LIMIT_STORAGE_URI} (or the URL of the cache given to RateLimitLayer::new)"
            );
        }
    }

    /// Checks once that a shared store counts (in the background, when a runtime is at hand).
    fn probe_in_background(self: &Arc<Self>) {
        if !matches!(self.counters, Counters::Given) || self.probed.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // The first request reports a failing store instead.
        };
        if self.probed.swap(true, Ordering::AcqRel) {
            return;
        }
        let settings = Arc::clone(self);
        runtime.spawn(async move { settings.probe().await });
    }

    /// One counter operation that changes nothing (`delta = 0` on a probe key).
    async fn probe(&self) {
        let key = format!("{}:{{probe}}:0", self.prefix);
        if let Err(e) = self
            .cache
            .increment(&key, 0, Duration::from_secs(1), None)
            .await
        {
            let total = bump(&self.counts.store_errors);
            if let Some(suppressed) = self.store_burst.should_log() {
                self.log_store_failure(&e, suppressed, total, "the startup check");
            }
        }
    }
}

/// One client's sliding window at the time of a request.
#[derive(Debug, Clone, Copy)]
struct Window {
    limit: u64,
    /// Window length, ms.
    w: u64,
    /// Time since the current window began, ms (`< w`).
    elapsed: u64,
    /// Count of the previous window.
    prev: u64,
}

impl Window {
    /// Estimated requests in the trailing window with `count` in the current one.
    fn estimate(&self, count: u64) -> u64 {
        count.saturating_add(weighted(self.prev, self.w - self.elapsed, self.w))
    }

    /// The estimate `t` ms from now if no request comes meanwhile.
    fn estimate_after(&self, count: u64, t: u64) -> u64 {
        let at = self.elapsed.saturating_add(t);
        if at < self.w {
            count.saturating_add(weighted(self.prev, self.w - at, self.w))
        } else if at < 2 * self.w {
            // The current window has become the previous one.
            weighted(count, 2 * self.w - at, self.w)
        } else {
            0
        }
    }

    /// Milliseconds until one more request would pass (`None`: never, for limit 0).
    fn wait_for_room(&self, count: u64) -> Option<u64> {
        let fits = |t: u64| self.estimate_after(count, t) < self.limit;
        let end = 2 * self.w - self.elapsed;
        if !fits(end) {
            return None;
        }
        let (mut lo, mut hi) = (0, end);
        if fits(lo) {
            return Some(0);
        }
        // `fits` is monotone in t: find the first t where it holds.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    }

    fn decision(&self, allowed: bool, count: u64) -> Decision {
        let estimate = self.estimate(count);
        let remaining = if allowed {
            self.limit.saturating_sub(estimate)
        } else {
            0
        };
        let until_room = Duration::from_millis(self.wait_for_room(count).unwrap_or(self.w).max(1));
        let reset = if remaining == 0 {
            until_room
        } else {
            Duration::from_millis(self.w - self.elapsed)
        };
        Decision {
            allowed,
            limit: self.limit,
            remaining,
            reset,
            retry_after: (!allowed).then_some(until_room),
        }
    }
}

/// `⌊count × part / whole⌋` without overflow.
fn weighted(count: u64, part: u64, whole: u64) -> u64 {
    (u128::from(count) * u128::from(part) / u128::from(whole.max(1))) as u64
}

/// The client as it appears in counter keys: 32 hex digits of its stable
/// 128-bit hash, never the key itself (it may be an API key), and never
/// braces (they would break the `{hash tag}`).
fn client_tag(client: &str) -> String {
    format!("{:032x}", crate::hash::bytes128(client.as_bytes()))
}

/// The last address of `X-Forwarded-For` (all header lines together), if it parses.
fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|v| !v.is_empty())?;
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The store [`Config`] of a `RATE_LIMIT_STORAGE_URI`.
fn config_for_uri(uri: &str) -> Result<Config, Error> {
    let bad = || Error::Config {
        var: RATE_LIMIT_STORAGE_URI,
        value: redact::redact_uri(uri),
        allowed: URI_ALLOWED,
    };
    let trimmed = uri.trim();
    let (scheme, rest) = trimmed.split_once("://").ok_or_else(bad)?;
    let mut config = Config::default();
    let list = |rest: &str| -> Vec<String> {
        rest.trim_end_matches('/')
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match scheme.to_ascii_lowercase().as_str() {
        "memory" if rest.trim_end_matches('/').is_empty() => config.backend = BackendKind::Memory,
        "redis" | "rediss" if !rest.is_empty() => {
            config.backend = BackendKind::Redis;
            config.redis_url = trimmed.to_owned();
        }
        "redis-cluster" | "redis+cluster" => {
            let nodes = list(rest);
            if nodes.is_empty() {
                return Err(bad());
            }
            config.backend = BackendKind::RedisCluster;
            config.redis_cluster_nodes =
                nodes.into_iter().map(|n| format!("redis://{n}")).collect();
        }
        "memcached" => {
            let servers = list(rest);
            if servers.is_empty() {
                return Err(bad());
            }
            config.backend = BackendKind::Memcached;
            config.memcached_servers = servers;
        }
        _ => return Err(bad()),
    }
    Ok(config)
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.settings.probe_in_background();
        RateLimit {
            inner,
            settings: Arc::clone(&self.settings),
        }
    }
}

/// The [`Service`] of a [`RateLimitLayer`]: checks the client, then calls
/// the inner service or answers 429 (or 503 when the store fails and
/// `fail_open(false)`).
///
/// ```
/// use std::{convert::Infallible, time::Duration};
/// use axum::body::Body;
/// use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache};
/// use http::{Request, Response};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = Cache::builder(MemoryBackend::new(100)).build();
/// let layer = RateLimitLayer::new(cache, 1, Duration::from_secs(60))
///     .key_fn(|_| Some("everyone".into()));
/// let svc = layer.layer(service_fn(|_req: Request<Body>| async {
///     Ok::<_, Infallible>(Response::new(Body::from("ok")))
/// }));
/// let res = svc.clone().oneshot(Request::new(Body::empty())).await.unwrap();
/// assert_eq!(res.status(), 200);
/// let res = svc.oneshot(Request::new(Body::empty())).await.unwrap();
/// assert_eq!(res.status(), 429);
/// # }
/// ```
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("limit", &self.settings.limit)
            .field("window", &Duration::from_millis(self.settings.window_ms))
            .finish_non_exhaustive()
    }
}

/// The response future of [`RateLimit`].
///
/// ```
/// use std::convert::Infallible;
/// use axum::body::Body;
/// use cacheside::http::{RateLimit, RateLimitFuture};
/// use http::{Request, Response};
/// use tower::Service;
///
/// fn future_of<S>(svc: &mut RateLimit<S>, req: Request<Body>) -> RateLimitFuture<Infallible>
/// where
///     S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
///     S::Future: Send,
/// {
///     svc.call(req)
/// }
/// ```
pub struct RateLimitFuture<E> {
    inner: Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>,
}

impl<E> fmt::Debug for RateLimitFuture<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitFuture").finish_non_exhaustive()
    }
}

impl<E> Future for RateLimitFuture<E> {
    type Output = Result<Response<Body>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = RateLimitFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone is not ready; the instance that was polled ready serves this call.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let settings = Arc::clone(&self.settings);
        RateLimitFuture {
            inner: Box::pin(async move {
                let (parts, body) = req.into_parts();
                let client = settings.client_key(&parts);
                let req = Request::from_parts(parts, body);
                let Some(client) = client else {
                    return Ok(inner.call(req).await?.map(Body::new));
                };
                match settings.check(&client, unix_ms()).await {
                    Ok(decision) if decision.allowed => {
                        let mut res = inner.call(req).await?.map(Body::new);
                        decision.write_headers(res.headers_mut());
                        Ok(res)
                    }
                    Ok(decision) => {
                        let mut res = plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n");
                        decision.write_headers(res.headers_mut());
                        Ok(res)
                    }
                    Err(e) => {
                        settings.store_failed(&e);
                        if settings.fail_open {
                            Ok(inner.call(req).await?.map(Body::new))
                        } else {
                            let mut res = plain(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "Rate limit unavailable, retry shortly\n",
                            );
                            res.headers_mut()
                                .insert(RETRY_AFTER, HeaderValue::from(1u64));
                            Ok(res)
                        }
                    }
                }
            }),
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut res = Response::new(Body::from(text));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win(limit: u64, w: u64, elapsed: u64, prev: u64) -> Window {
        Window {
            limit,
            w,
            elapsed,
            prev,
        }
    }

    #[test]
    fn estimate_weights_the_previous_window_by_overlap() {
        assert_eq!(win(10, 1000, 0, 8).estimate(1), 9);
        assert_eq!(win(10, 1000, 500, 8).estimate(1), 5);
        assert_eq!(win(10, 1000, 999, 8).estimate(1), 1);
        assert_eq!(win(10, 1000, 250, 0).estimate(3), 3);
    }

    #[test]
    fn decisions_and_headers() {
        // Fresh window, 3 of 10 used.
        let d = win(10, 60_000, 15_000, 0).decision(true, 3);
        assert_eq!((d.allowed, d.remaining, d.retry_after), (true, 7, None));
        assert_eq!(d.reset, Duration::from_millis(45_000));
        // Exactly at the limit: nothing remains, reset = when room frees.
        let d = win(2, 60_000, 0, 0).decision(true, 2);
        assert_eq!(d.remaining, 0);
        // Room once this window's 2 requests weigh less than 2: 1 ms into the next window.
        assert_eq!(d.reset, Duration::from_millis(60_001));
        // Rejected with a previous window twice over: room once its weight halves.
        let d = win(10, 1000, 0, 20).decision(false, 0);
        assert!(!d.allowed);
        let after = d.retry_after.unwrap();
        assert_eq!(after, Duration::from_millis(501));
        assert_eq!(d.reset, after);
        let mut h = HeaderMap::new();
        d.write_headers(&mut h);
        assert_eq!(h[RATELIMIT_LIMIT], "10");
        assert_eq!(h[RATELIMIT_REMAINING], "0");
        assert_eq!(h[RATELIMIT_RESET], "1");
        assert_eq!(h[RETRY_AFTER], "1");
    }

    #[test]
    fn wait_for_room_is_the_first_fitting_instant() {
        for (limit, w, elapsed, prev, count) in [
            (5, 1000, 100, 7, 3),
            (1, 60_000, 59_999, 1, 1),
            (100, 3_600_000, 1_000, 250, 99),
            (3, 10, 9, 3, 3),
        ] {
            let win = win(limit, w, elapsed, prev);
            let t = win.wait_for_room(count).unwrap();
            assert!(win.estimate_after(count, t) < limit);
            if t > 0 {
                assert!(win.estimate_after(count, t - 1) >= limit);
            }
            assert!(t <= 2 * w - elapsed);
        }
        assert_eq!(win(0, 1000, 0, 0).wait_for_room(0), None);
    }

    #[test]
    fn client_tags_are_stable_hashes_never_the_key() {
        // Pinned: every process and version must agree, or a fleet stops sharing counters.
        assert_eq!(
            client_tag("10.0.0.1"),
            format!("{:032x}", crate::hash::bytes128(b"10.0.0.1"))
        );
        for client in [
            "10.0.0.1",
            "2001:db8::1",
            "",
            "a}b",
            "{x}",
            "with space",
            "é",
            "sk_live_secret",
            &"k".repeat(200),
        ] {
            let tag = client_tag(client);
            assert_eq!(tag.len(), 32, "{client:?} → {tag}");
            assert!(
                tag.bytes().all(|b| b.is_ascii_hexdigit()),
                "{client:?} → {tag}"
            );
            assert!(
                client.len() < 3 || !tag.contains(client),
                "{client:?} → {tag}"
            );
        }
        assert_ne!(client_tag("a}b"), client_tag("a{b"));
    }

    #[test]
    fn forwarded_for_takes_the_last_entry() {
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 10.0.0.2"),
        );
        h.append("x-forwarded-for", HeaderValue::from_static("198.51.100.7"));
        assert_eq!(forwarded_for(&h), Some("198.51.100.7".parse().unwrap()));
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("[2001:db8::1]:443"),
        );
        assert_eq!(forwarded_for(&h), Some("2001:db8::1".parse().unwrap()));
        h.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(forwarded_for(&h), None);
    }

    #[test]
    fn storage_uris() {
        let c = config_for_uri("memory://").unwrap();
        assert_eq!(c.backend, BackendKind::Memory);
        let c = config_for_uri("redis://:pw@10.0.0.1:6379/2").unwrap();
        assert_eq!(
            (c.backend, c.redis_url.as_str()),
            (BackendKind::Redis, "redis://:pw@10.0.0.1:6379/2")
        );
        let c = config_for_uri("redis-cluster://a:7000, b:7001").unwrap();
        assert_eq!(c.redis_cluster_nodes, ["redis://a:7000", "redis://b:7001"]);
        let c = config_for_uri("memcached://a:11211,b:11211").unwrap();
        assert_eq!(
            (c.backend, c.memcached_servers.len()),
            (BackendKind::Memcached, 2)
        );
        for bad in [
            "",
            "memory",
            "mongodb://x:1",
            "memcached://",
            "redis://",
            "memory://x",
            "http://x",
        ] {
            let err = config_for_uri(bad).unwrap_err();
            assert!(
                matches!(&err, Error::Config { var: RATE_LIMIT_STORAGE_URI, value, .. } if value == bad),
                "{bad:?}: {err}"
            );
        }
        for (bad, shown) in [
            ("mongodb://app:hunter2@db:1", "mongodb://app:***@db:1"),
            ("memory://u:hunter2@x", "memory://u:***@x"),
            ("redis:hunter2@x", "redis:***@x"),
        ] {
            let err = config_for_uri(bad).unwrap_err();
            assert!(
                matches!(&err, Error::Config { var: RATE_LIMIT_STORAGE_URI, value, .. } if value == shown),
                "{bad:?}: {err}"
            );
            assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
        }
    }
}

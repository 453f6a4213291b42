//! [`RateLimitLayer`]: the limiter's configuration (limit, window, where
//! counters live, who the client is, what a store failure does) and the
//! [`Layer`] that builds a [`RateLimit`] from it.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use tower::Layer;

use super::counters::{CounterStore, Evictions};
use super::window::unix_ms;
use super::{
    Counts, Decision, RateLimit, RateLimitStats, DEFAULT_MAX_COUNTERS, RATE_LIMIT_STORAGE_URI,
};
use crate::backend::OncePerBurst;
use crate::{Cache, Error};

/// Where the counters live.
#[derive(Clone)]
pub(super) enum Counters {
    /// The limiter's own in-process store.
    Own {
        capacity: u64,
        evictions: Arc<Evictions>,
    },
    /// The store of the cache given to the limiter (shared by every process that uses it).
    Given,
}

/// A cache over a fresh in-process counter store.
pub(super) fn own_counters(namespace: &str, capacity: u64) -> (Cache, Counters) {
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
/// docs](super) for the algorithm, headers and failure behaviour).
///
/// The client is, in order: what [`key_fn`](RateLimitLayer::key_fn) returns
/// when one is set; else the last address of `X-Forwarded-For` when
/// [`trust_forwarded_for(true)`](RateLimitLayer::trust_forwarded_for); else
/// the peer IP from axum's `ConnectInfo<SocketAddr>` (feature `axum`; serve
/// with `into_make_service_with_connect_info::<SocketAddr>()`); else the
/// shared [`RATE_LIMIT_FALLBACK_KEY`](super::RATE_LIMIT_FALLBACK_KEY)
/// (logged once). In another tower stack, return the peer address from
/// `key_fn`, read from wherever the server puts it in the request.
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
    pub(super) settings: Arc<Settings>,
}

/// What a [`RateLimitLayer`] was configured with, shared by its clones and
/// the services it builds.
#[derive(Clone)]
pub(super) struct Settings {
    pub(super) cache: Cache,
    pub(super) counters: Counters,
    /// The storage URI, password masked, when the layer was built from one.
    pub(super) source: Option<String>,
    pub(super) limit: u64,
    pub(super) window_ms: u64,
    pub(super) key_fn: Option<Arc<KeyFn>>,
    pub(super) trust_forwarded_for: bool,
    pub(super) fail_open: bool,
    pub(super) prefix: String,
    pub(super) counts: Arc<Counts>,
    /// Store failures: one log line per burst.
    pub(super) store_burst: Arc<OncePerBurst>,
    /// Whether the startup check of a shared store has been started.
    pub(super) probed: Arc<AtomicBool>,
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

impl RateLimitLayer {
    /// At most `limit` requests per client per sliding `window`, counted in
    /// the store of `cache`, or in the limiter's own in-process store when
    /// `cache` is in-process (`memory`, `none`): counters never compete with
    /// cached entries for room (see [Where counters live](super#where-counters-live)).
    ///
    /// `window` is used with millisecond precision (at least 1 ms); memcached
    /// rounds counter TTLs up to whole seconds, which only keeps them longer.
    /// `limit = 0` rejects every request. A `none` cache is logged at WARN
    /// (the limiter counts on its own, per process); a shared store is
    /// checked once when the layer is applied to a service (see [Store
    /// failures](super#store-failures)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache};
    /// use cacheside::backend::{NullBackend};
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

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.settings.probe_in_background();
        RateLimit::new(inner, Arc::clone(&self.settings))
    }
}

//! [`ResponseCacheLayer`]: the configuration of the response cache (what to
//! store, for how long, under which keys) and the [`Layer`] that builds a
//! [`ResponseCache`] from it.
//!
//! Longer than tower-http's `layer.rs` files: the type's docs are the
//! reference of what the response cache stores and how it keys it.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tower::Layer;

use super::key::{parse_authority, AllowedHost};
use super::ResponseCache;
use crate::Cache;

/// Default [`ResponseCacheLayer::max_body_bytes`]: 1 MiB.
///
/// ```
/// assert_eq!(cacheside::http::DEFAULT_MAX_BODY_BYTES, 1 << 20);
/// ```
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Which response statuses are stored by default: 200, 203, 204, 301 and 308
/// (the statuses RFC 9110 calls heuristically cacheable, minus 404, 405, 410,
/// 414 and 501, which any client can produce at will for as many URLs as it
/// likes, and 206, which needs range handling).
///
/// To store 404s too (only behind routes you trust not to be scanned, see
/// [`ResponseCacheLayer::cache_status`]):
///
/// ```
/// use http::StatusCode;
/// use cacheside::http::default_cache_status;
/// assert!(default_cache_status(StatusCode::OK));
/// assert!(!default_cache_status(StatusCode::NOT_FOUND));
/// assert!(!default_cache_status(StatusCode::INTERNAL_SERVER_ERROR));
/// let with_404 = |s: StatusCode| default_cache_status(s) || s == StatusCode::NOT_FOUND;
/// assert!(with_404(StatusCode::NOT_FOUND));
/// ```
pub fn default_cache_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 200 | 203 | 204 | 301 | 308)
}

/// A tower [`Layer`] that caches whole responses of `GET` requests in a [`Cache`]
/// (any backend), cache-aside and single-flight: a shared cache in the sense
/// of RFC 9111, keyed on the target URI.
///
/// # What is cached
///
/// * Only `GET` (stored) and `HEAD` (answered from the `GET` entry when there
///   is one, with `Content-Length` of the stored body and no body; otherwise
///   the handler runs and its response is returned with `X-Cache: MISS` and
///   not stored). Other methods pass through with `X-Cache: BYPASS`.
/// * Responses whose status passes [`cache_status`](Self::cache_status)
///   (default [`default_cache_status`]: 200, 203, 204, 301, 308; not 404),
///   whose body has a known length (an exact size hint, as bodies built
///   from bytes or strings have, or a `Content-Length`) of at most
///   [`max_body_bytes`](Self::max_body_bytes), and that have no
///   `Set-Cookie`, no `Cache-Control: private`, `no-store`, `no-cache`,
///   `max-age=0` or `s-maxage=0`, no `Vary: *` and no trailers. Anything
///   else is returned as is with `X-Cache: MISS`.
/// * Bodies of unknown length (streams, server-sent events, anything without
///   a size hint or `Content-Length`) are passed through at once, uncached:
///   the status line and headers go out before the body ends. A body longer
///   than it said is passed through after at most `max_body_bytes` (plus one
///   chunk) were read.
/// * How long: the layer's [`ttl`](Self::ttl), capped by the handler's
///   `Cache-Control: s-maxage` (the directive for shared caches), or by its
///   `max-age` when there is no `s-maxage`. An entry is never served fresh
///   past the TTL it was stored with.
/// * RFC 5861, from the handler's `Cache-Control`: within
///   `stale-while-revalidate=N` seconds past that TTL the stored response
///   is served at once (`X-Cache: STALE`, with its `Age`) while the handler
///   runs again on a task of its own and its response replaces the entry;
///   within `stale-if-error=N` it is served in place of a handler that
///   fails (an error, a 5xx). The entry is stored that much longer.
/// * Hop-by-hop headers (`Connection` and the headers it names,
///   `Keep-Alive`, `Transfer-Encoding`, `TE`, `Trailer`, `Upgrade`,
///   `Proxy-*`) are not stored.
///
/// # Requests
///
/// * No authority (neither in the target URI nor in exactly one valid `Host`
///   header), or one outside [`allowed_hosts`](Self::allowed_hosts) →
///   `X-Cache: BYPASS` (no read, no write).
/// * `Authorization` or `Cookie` → `BYPASS`, unless
///   [`vary_caller`](Self::vary_caller) is set and returns `Some`: then the
///   response is cached under that caller's key.
/// * `Cache-Control: no-store` → `BYPASS`. `Cache-Control: no-cache` (or
///   `Pragma: no-cache` without `Cache-Control`) → the handler runs, its
///   response replaces the stored one, `X-Cache: MISS`.
/// * Caching switched off for the process ([`cacheside::set_enabled(false)`](crate::set_enabled),
///   which `CACHE_ENABLED=false` sets) → `BYPASS`, no store is touched.
/// * Concurrent misses on one key run the handler once (through
///   [`Cache::get_or_compute`]); the others get the stored response with
///   `X-Cache: HIT`.
/// * Clients can force handler runs with `no-cache`; put a rate limit in
///   front when that matters.
///
/// # Keys
///
/// The base key of a request is `{key_prefix}:GET:{scheme}://{authority}{path}`
/// + `?{query}` (parameters sorted by name, the order of repeated names kept)
/// + `#c={hash of the caller}` when [`vary_caller`](Self::vary_caller) names one.
///
/// * The scheme is the target URI's (HTTP/2, absolute-form requests), else
///   `http` (HTTP/1.1 sends none; the layer cannot see whether the
///   connection was TLS).
/// * The authority is the target URI's, else the `Host` header's; its host
///   is lower-cased and the scheme's default port (80, 443) dropped, so
///   `Host: Example.com:80` and `Host: example.com` share an entry, while
///   `example.com:8080` is another origin.
///
/// With the default prefix, `GET /items?b=2&a=1` with `Host: example.com` is
/// stored under `http:GET:http://example.com/items?a=1&b=2` (plus the cache's
/// namespace), so `cache.delete_pattern("http:GET:http://example.com/items*")`
/// invalidates every page of it on that host (`http:GET:*/items*` on every
/// host, and any path ending in `/items`).
///
/// The base key holds a [`ResponseEntry`](super::ResponseEntry): the response itself when it has
/// no `Vary` (one store read per hit), or a small *vary index* listing the
/// `Vary` header names (lower-case, sorted). Each variant is then a
/// [`StoredResponse`](super::StoredResponse) under `{base}#v={32 hex}`, the hash covering the
/// values of those request headers (a header that is absent and one that is
/// present but empty are different variants), so `Vary: Accept-Language`
/// keeps `en` and `fr` apart. `Vary: *` is never stored. When the handler's
/// `Vary` changes, the index is rewritten.
///
/// # Headers added
///
/// `X-Cache: HIT | MISS | BYPASS`; on stored responses an `ETag` (a strong
/// `"` + 32 hex digits of [`crate::backend::hash::bytes128`] of the body + `"`,
/// identical in every process) unless the handler set one; `Cache-Control:
/// max-age=<remaining TTL>` (`private, max-age=…` for per-caller entries)
/// unless the handler set a `Cache-Control`; `Age`
/// (seconds since stored) on hits. A request whose `If-None-Match` matches
/// the ETag (weak comparison, `*` and lists allowed) gets `304 Not Modified`
/// without a body.
///
/// A store that fails is skipped (fail-open): the handler's response comes
/// back with `X-Cache: MISS`.
///
/// # Where to put it
///
/// On the routes worth caching, with axum's [`Router::route_layer`](https://docs.rs/axum/0.8/axum/struct.Router.html#method.route_layer)
/// rather than `layer`: `layer` also wraps the router's fallback, so every
/// unknown URL a scanner tries would go through the cache.
///
/// ```
/// use std::time::Duration;
/// use axum::{routing::get, Router, body::Body};
/// use http::Request;
/// use tower::ServiceExt;
/// use cacheside::{backends::MemoryBackend, http::ResponseCacheLayer, Cache};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = Cache::builder(MemoryBackend::new(10_000)).build();
/// let app = Router::new()
///     .route("/items", get(|| async { "[1, 2, 3]" }))
///     .route_layer(ResponseCacheLayer::new(cache).ttl(Duration::from_secs(60)));
///
/// let get = || Request::get("/items?page=1").header("host", "example.com").body(Body::empty()).unwrap();
/// let first = app.clone().oneshot(get()).await.unwrap();
/// assert_eq!(first.headers()["x-cache"], "MISS");
/// assert_eq!(first.headers()["cache-control"], "max-age=60");
/// let second = app.clone().oneshot(get()).await.unwrap();
/// assert_eq!(second.headers()["x-cache"], "HIT");
/// assert_eq!(second.headers()["etag"], first.headers()["etag"]);
/// // Unknown URLs are the fallback's: not under the layer.
/// let unknown = Request::get("/zzz").header("host", "example.com").body(Body::empty()).unwrap();
/// let unknown = app.oneshot(unknown).await.unwrap();
/// assert_eq!(unknown.status(), 404);
/// assert!(unknown.headers().get("x-cache").is_none());
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct ResponseCacheLayer {
    settings: Settings,
}

/// What a [`ResponseCacheLayer`] was configured with, shared by the services it builds.
#[derive(Clone)]
pub(super) struct Settings {
    pub(super) cache: Cache,
    pub(super) ttl: Duration,
    pub(super) max_body_bytes: usize,
    pub(super) cache_status: fn(StatusCode) -> bool,
    pub(super) key_prefix: String,
    pub(super) vary_caller: Option<fn(&http::request::Parts) -> Option<String>>,
    /// `None`: every authority is stored.
    pub(super) allowed_hosts: Option<Vec<AllowedHost>>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCacheLayer")
            .field("cache", &self.cache)
            .field("ttl", &self.ttl)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("key_prefix", &self.key_prefix)
            .field("vary_caller", &self.vary_caller.is_some())
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

impl ResponseCacheLayer {
    /// A layer storing responses in `cache`, for the cache's default TTL.
    ///
    /// ```
    /// # use cacheside::{backends::MemoryBackend, http::ResponseCacheLayer, Cache};
    /// let layer = ResponseCacheLayer::new(Cache::builder(MemoryBackend::new(100)).build());
    /// let app: axum::Router = axum::Router::new().layer(layer);
    /// ```
    pub fn new(cache: Cache) -> Self {
        let ttl = cache.default_ttl();
        ResponseCacheLayer {
            settings: Settings {
                cache,
                ttl,
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                cache_status: default_cache_status,
                key_prefix: "http".to_owned(),
                vary_caller: None,
                allowed_hosts: None,
            },
        }
    }

    /// How long responses are stored (default: the cache's default TTL).
    /// `Duration::ZERO` stores nothing: every request is a `BYPASS`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use cacheside::{backends::MemoryBackend, http::ResponseCacheLayer, Cache};
    /// # let cache = Cache::builder(MemoryBackend::new(100)).build();
    /// let layer = ResponseCacheLayer::new(cache).ttl(Duration::from_secs(30));
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = ttl;
        self
    }

    /// Largest body stored (default [`DEFAULT_MAX_BODY_BYTES`], 1 MiB). A body
    /// whose announced length (exact size hint or `Content-Length`) is larger,
    /// or that announces none, is streamed through uncached at once; a body
    /// longer than it announced is streamed through after at most the limit
    /// (plus the chunk that crosses it) was held.
    ///
    /// ```
    /// # use cacheside::{backends::MemoryBackend, http::ResponseCacheLayer, Cache};
    /// # let cache = Cache::builder(MemoryBackend::new(100)).build();
    /// let layer = ResponseCacheLayer::new(cache).max_body_bytes(64 * 1024);
    /// ```
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.settings.max_body_bytes = limit;
        self
    }

    /// Which statuses are stored (default [`default_cache_status`]).
    ///
    /// ```
    /// # use cacheside::{backends::MemoryBackend, http::ResponseCacheLayer, Cache};
    /// # let cache = Cache::builder(MemoryBackend::new(100)).build();
    /// let layer = ResponseCacheLayer::new(cache).cache_status(|s| s.is_success());
    /// ```
    pub fn cache_status(mut self, predicate: fn(StatusCode) -> bool) -> Self {
        self.settings.cache_status = predicate;
        self
    }

    /// The first part of every key (default `"http"`).
    ///
    /// ```
    /// # use cacheside::{backends::MemoryBackend, http::ResponseCacheLayer, Cache};
    /// # let cache = Cache::builder(MemoryBackend::new(100)).build();
    /// let layer = ResponseCacheLayer::new(cache).key_prefix("pages");
    /// ```
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        self.settings.key_prefix = prefix.to_owned();
        self
    }

    /// Keys responses per caller: `f` names the caller of a request (a user
    /// id from a verified token, a tenant, …), and that name becomes part of
    /// the key (`…#c={hash of the caller}`: the caller itself never reaches a key name).
    ///
    /// With `vary_caller` set, requests with `Authorization` or `Cookie` are
    /// cached under their caller's key instead of bypassing the cache; when
    /// `f` returns `None` for such a request it bypasses. Requests without
    /// those headers for which `f` returns `None` share the anonymous entry.
    /// Per-caller responses go out with `Cache-Control: private, max-age=…`
    /// (when the handler set none), so that shared caches downstream do not
    /// keep them.
    /// `f` must only return names it has verified: it decides who sees
    /// which stored response.
    ///
    /// ```
    /// # use cacheside::{backends::MemoryBackend, http::ResponseCacheLayer, Cache};
    /// # let cache = Cache::builder(MemoryBackend::new(100)).build();
    /// let layer = ResponseCacheLayer::new(cache).vary_caller(|parts| {
    ///     // Real code verifies the token; this reads a trusted proxy's header.
    ///     parts.headers.get("x-user-id")?.to_str().ok().map(str::to_owned)
    /// });
    /// ```
    pub fn vary_caller(mut self, f: fn(&http::request::Parts) -> Option<String>) -> Self {
        self.settings.vary_caller = Some(f);
        self
    }

    /// Stores responses only for requests whose authority is one of `hosts`;
    /// requests for any other authority pass through with `X-Cache: BYPASS`
    /// (default: every authority is stored, each under its own key).
    ///
    /// An entry is a host (`example.com`), which covers that host on the
    /// scheme's default port, or a host and port (`example.com:8080`); case
    /// does not matter. Without a list, a client that sends made-up `Host`
    /// headers gets its own entries: they cannot reach other hosts' callers,
    /// but they take room in the store.
    ///
    /// # Panics
    ///
    /// When an entry is not a valid authority (`host` or `host:port`, no
    /// user info): the list is written in code, so this is a programming
    /// error found at startup.
    ///
    /// ```
    /// use axum::{body::Body, routing::get, Router};
    /// use http::Request;
    /// use tower::ServiceExt;
    /// # use cacheside::{backends::MemoryBackend, http::ResponseCacheLayer, Cache};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let cache = Cache::builder(MemoryBackend::new(100)).build();
    /// let layer = ResponseCacheLayer::new(cache).allowed_hosts(["example.com", "api.example.com:8443"]);
    /// let app = Router::new().route("/", get(|| async { "hi" })).route_layer(layer);
    /// let req = |host: &str| Request::get("/").header("host", host).body(Body::empty()).unwrap();
    /// let res = app.clone().oneshot(req("Example.com")).await.unwrap();
    /// assert_eq!(res.headers()["x-cache"], "MISS");
    /// let res = app.oneshot(req("evil.example")).await.unwrap();
    /// assert_eq!(res.headers()["x-cache"], "BYPASS");
    /// # }
    /// ```
    pub fn allowed_hosts<I>(mut self, hosts: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let parsed = hosts
            .into_iter()
            .map(|h| {
                let h = h.as_ref();
                parse_authority(h.as_bytes()).unwrap_or_else(|| {
                    panic!(
                        "ResponseCacheLayer::allowed_hosts: {h:?} is not an authority; \
                         write a host (\"example.com\") or a host and port (\"example.com:8080\")"
                    )
                })
            })
            .map(|(host, port)| AllowedHost { host, port })
            .collect();
        self.settings.allowed_hosts = Some(parsed);
        self
    }
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseCache::new(inner, Arc::new(self.settings.clone()))
    }
}

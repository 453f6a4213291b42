//! [`ResponseCacheLayer`]: a tower layer that caches whole HTTP responses
//! (status, headers, body) in a [`Cache`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes, HttpBody};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tower::{Layer, Service};

use cache_core::Outcome;

use crate::Cache;

/// Default [`ResponseCacheLayer::max_body_bytes`]: 1 MiB.
///
/// ```
/// assert_eq!(cacheside::http::DEFAULT_MAX_BODY_BYTES, 1 << 20);
/// ```
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The name of the header that says how a response was served: `HIT`, `MISS` or `BYPASS`.
///
/// ```
/// assert_eq!(cacheside::http::X_CACHE.as_str(), "x-cache");
/// ```
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

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
///   `max-age` when there is no `s-maxage`. An entry is never served past
///   the TTL it was stored with.
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
/// The base key holds a [`ResponseEntry`]: the response itself when it has
/// no `Vary` (one store read per hit), or a small *vary index* listing the
/// `Vary` header names (lower-case, sorted). Each variant is then a
/// [`StoredResponse`] under `{base}#v={32 hex}`, the hash covering the
/// values of those request headers (a header that is absent and one that is
/// present but empty are different variants), so `Vary: Accept-Language`
/// keeps `en` and `fr` apart. `Vary: *` is never stored. When the handler's
/// `Vary` changes, the index is rewritten.
///
/// # Headers added
///
/// `X-Cache: HIT | MISS | BYPASS`; on stored responses an `ETag` (a strong
/// `"` + 32 hex digits of [`crate::hash::bytes128`] of the body + `"`,
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
/// On the routes worth caching, with [`Router::route_layer`](axum::Router::route_layer)
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

#[derive(Clone)]
struct Settings {
    cache: Cache,
    ttl: Duration,
    max_body_bytes: usize,
    cache_status: fn(StatusCode) -> bool,
    key_prefix: String,
    vary_caller: Option<fn(&http::request::Parts) -> Option<String>>,
    /// `None`: every authority is stored.
    allowed_hosts: Option<Vec<AllowedHost>>,
}

/// One entry of [`ResponseCacheLayer::allowed_hosts`]: a lower-case host and,
/// when given, a port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AllowedHost {
    host: String,
    port: Option<u16>,
}

impl AllowedHost {
    /// Whether a request for `host` (lower-case) on `port` (`None`: the
    /// scheme's default, `default_port`) is covered by this entry.
    fn covers(&self, host: &str, port: Option<u16>, default_port: Option<u16>) -> bool {
        self.host == host
            && match self.port {
                None => port.is_none(),
                Some(p) => port.or(default_port) == Some(p),
            }
    }
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
        ResponseCache {
            inner,
            settings: Arc::new(self.settings.clone()),
        }
    }
}

/// The service [`ResponseCacheLayer`] wraps around an inner service (usually
/// an axum `Router`'s routes).
///
/// ```
/// use axum::{body::Body, routing::get, Router};
/// use http::Request;
/// use tower::{Layer, ServiceExt};
/// use cacheside::{backends::MemoryBackend, http::ResponseCacheLayer, Cache};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = Cache::builder(MemoryBackend::new(100)).build();
/// let routes = Router::new().route("/", get(|| async { "hi" }));
/// let svc = ResponseCacheLayer::new(cache).layer(routes);
/// let req = Request::get("/").header("host", "example.com").body(Body::empty()).unwrap();
/// let res = svc.oneshot(req).await.unwrap();
/// assert_eq!(res.headers()["x-cache"], "MISS");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ResponseCache<S> {
    inner: S,
    settings: Arc<Settings>,
}

/// The future [`ResponseCache`] returns (boxed: it owns the inner service,
/// the request and the store calls).
///
/// ```
/// use axum::{body::Body, routing::get, Router};
/// use http::Request;
/// use tower::{Layer, Service, ServiceExt};
/// use cacheside::{backends::MemoryBackend, http::{ResponseCacheLayer, ResponseFuture}, Cache};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = Cache::builder(MemoryBackend::new(100)).build();
/// let mut svc = ResponseCacheLayer::new(cache).layer(Router::new().route("/", get(|| async { "hi" })));
/// let ready = ServiceExt::<Request<Body>>::ready(&mut svc).await.unwrap();
/// let fut: ResponseFuture<_> = ready.call(Request::get("/").body(Body::empty()).unwrap());
/// assert_eq!(fut.await.unwrap().status(), 200);
/// # }
/// ```
pub struct ResponseFuture<E> {
    inner: Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>,
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response<Body>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<E> std::fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ResponseCache<S>
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
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The ready service goes into the future; a fresh clone stays behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let settings = Arc::clone(&self.settings);
        ResponseFuture {
            inner: Box::pin(handle(settings, inner, req)),
        }
    }
}

/// One stored response, as it sits in the cache (MessagePack by default).
///
/// A variant of a `Vary` response is stored as is; a response without
/// `Vary` is stored as [`ResponseEntry::Response`] under its base key, e.g.
/// `cache.get::<ResponseEntry>("http:GET:http://example.com/items")` with the provider API.
///
/// ```
/// use cacheside::http::StoredResponse;
/// let s = StoredResponse { status: 200, headers: vec![], body: b"hi".to_vec(), stored_at: 0, ttl: 60 };
/// assert_eq!(s.body, b"hi");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// The status code.
    pub status: u16,
    /// End-to-end headers in order (names lower-case), including the `ETag` the layer added.
    #[serde(with = "bin_pairs")]
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    #[serde(with = "bin")]
    pub body: Vec<u8>,
    /// When it was stored, in seconds since the Unix epoch.
    pub stored_at: u64,
    /// The TTL it was stored with, in seconds: the layer's, or less when the
    /// handler's `s-maxage`/`max-age` said so. Used for the `Cache-Control:
    /// max-age` the layer adds; an entry older than this is not served.
    pub ttl: u64,
}

/// What a response cache's base key holds (see [the key layout](ResponseCacheLayer#keys)).
///
/// ```
/// use cacheside::http::{ResponseEntry, StoredResponse};
/// let index = ResponseEntry::Vary(vec!["accept-language".to_string()]);
/// assert!(matches!(index, ResponseEntry::Vary(ref names) if names.len() == 1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseEntry {
    /// The response, which has no `Vary` header.
    Response(StoredResponse),
    /// The vary index: the response varies on these request headers
    /// (lower-case, sorted), and each variant is a [`StoredResponse`] under
    /// `{base}#v={hash of their values}`.
    Vary(Vec<String>),
}

/// `Vec<u8>` as a MessagePack `bin` (a JSON array of numbers under a JSON codec).
mod bin {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    pub struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            Ok(v.as_bytes().to_vec())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }

    /// A byte slice that serializes as `bin`.
    pub struct Ser<'a>(pub &'a [u8]);

    impl serde::Serialize for Ser<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    /// Owned bytes that deserialize from `bin` (or a sequence).
    pub struct De(pub Vec<u8>);

    impl<'de> serde::Deserialize<'de> for De {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_byte_buf(BytesVisitor).map(De)
        }
    }
}

/// `Vec<(String, Vec<u8>)>` with the values as `bin`.
mod bin_pairs {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[(String, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for (name, value) in v {
            seq.serialize_element(&(name, super::bin::Ser(value)))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(String, Vec<u8>)>, D::Error> {
        let pairs = Vec::<(String, super::bin::De)>::deserialize(d)?;
        Ok(pairs.into_iter().map(|(n, v)| (n, v.0)).collect())
    }
}

/// What the single-flight read-through returns when the response is not the stored one.
enum PassThrough<E> {
    /// Not cacheable: returned as is.
    Response(Response<Body>),
    /// Stored under another key than the one being computed (its `Vary` changed).
    Stored(StoredResponse),
    /// The inner service failed.
    Error(E),
}

/// What [`classify`] decided for a request.
enum Plan {
    Bypass,
    Cache {
        base: String,
        revalidate: bool,
        head: bool,
        /// Keyed per caller: the added `Cache-Control` says `private`.
        private: bool,
    },
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Lower-cased directive names of every `Cache-Control` value in `headers`.
fn directives(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| {
            d.split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

fn has_directive(headers: &HeaderMap, names: &[&str]) -> bool {
    directives(headers).any(|d| names.contains(&d.as_str()))
}

/// The query with its parameters sorted by name (stable: repeated names keep their order).
fn sorted_query(query: &str) -> String {
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    params.sort_by(|a, b| {
        let name = |p: &str| p.split('=').next().unwrap_or("").to_owned();
        name(a).cmp(&name(b))
    });
    params.join("&")
}

/// A host and optional port from an authority's bytes: the host lower-cased,
/// an empty port (`example.com:`) read as none. `None` when the bytes are not
/// an authority, carry user info, or have a port that is not a number.
fn parse_authority(bytes: &[u8]) -> Option<(String, Option<u16>)> {
    let authority = http::uri::Authority::try_from(bytes).ok()?;
    let text = authority.as_str();
    if text.contains('@') {
        return None;
    }
    let host = authority.host();
    if host.is_empty() {
        return None;
    }
    let port = match text.strip_prefix(host)? {
        "" | ":" => None,
        rest => Some(rest.strip_prefix(':')?.parse::<u16>().ok()?),
    };
    Some((host.to_ascii_lowercase(), port))
}

/// `{scheme}://{authority}` of the request's target, normalised (lower-case
/// scheme and host, no default port); `None` when the request names no
/// usable authority or one outside `allowed`.
fn origin(parts: &http::request::Parts, allowed: Option<&[AllowedHost]>) -> Option<String> {
    let scheme = parts
        .uri
        .scheme_str()
        .unwrap_or("http")
        .to_ascii_lowercase();
    let (host, port) = match parts.uri.authority() {
        Some(authority) => parse_authority(authority.as_str().as_bytes())?,
        None => {
            let mut hosts = parts.headers.get_all(header::HOST).iter();
            let host = hosts.next()?;
            if hosts.next().is_some() {
                return None;
            }
            parse_authority(host.as_bytes())?
        }
    };
    let default_port = match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    let port = port.filter(|p| Some(*p) != default_port);
    if let Some(allowed) = allowed {
        if !allowed.iter().any(|a| a.covers(&host, port, default_port)) {
            return None;
        }
    }
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

fn classify(settings: &Settings, parts: &http::request::Parts) -> Plan {
    // `CACHE_ENABLED=false`: the process runs uncached, this layer included.
    if !cache_core::is_enabled() {
        return Plan::Bypass;
    }
    let head = match parts.method {
        Method::GET => false,
        Method::HEAD => true,
        _ => return Plan::Bypass,
    };
    if settings.ttl.is_zero() || has_directive(&parts.headers, &["no-store"]) {
        return Plan::Bypass;
    }
    let credentials = parts.headers.contains_key(header::AUTHORIZATION)
        || parts.headers.contains_key(header::COOKIE);
    let caller = settings.vary_caller.and_then(|f| f(parts));
    if credentials && caller.is_none() {
        return Plan::Bypass;
    }
    let revalidate = if parts.headers.contains_key(header::CACHE_CONTROL) {
        has_directive(&parts.headers, &["no-cache"])
    } else {
        parts
            .headers
            .get_all(header::PRAGMA)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"))
    };
    let Some(origin) = origin(parts, settings.allowed_hosts.as_deref()) else {
        return Plan::Bypass;
    };
    let mut base = format!("{}:GET:{origin}{}", settings.key_prefix, parts.uri.path());
    if let Some(q) = parts.uri.query() {
        let q = sorted_query(q);
        if !q.is_empty() {
            base.push('?');
            base.push_str(&q);
        }
    }
    let private = caller.is_some();
    if let Some(c) = caller {
        // A hash, not the caller itself: a caller key (often a token) never
        // reaches store key names, and no caller can spell another's `#v=` part.
        base.push_str("#c=");
        base.push_str(&format!(
            "{:032x}",
            cache_core::hash::bytes128(c.as_bytes())
        ));
    }
    Plan::Cache {
        base,
        revalidate,
        head,
        private,
    }
}

/// The key of the variant of `base` selected by the request headers `names`.
fn variant_key(base: &str, names: &[String], request: &HeaderMap) -> String {
    if names.is_empty() {
        return base.to_owned();
    }
    let mut material = Vec::new();
    // One line per name: `name` alone when the request has no such header,
    // `name:` + its values when it has (even empty ones). Names hold no `:`
    // and values no newline, so distinct requests give distinct material.
    for name in names {
        material.extend_from_slice(name.as_bytes());
        if !request.contains_key(name.as_str()) {
            material.push(b'\n');
            continue;
        }
        material.push(b':');
        for (i, v) in request.get_all(name.as_str()).iter().enumerate() {
            if i > 0 {
                material.push(b',');
            }
            material.extend_from_slice(v.as_bytes());
        }
        material.push(b'\n');
    }
    format!("{base}#v={:032x}", crate::hash::bytes128(&material))
}

/// The `Vary` names of a response, lower-cased, sorted, deduplicated; `None` for `Vary: *`.
fn vary_names(headers: &HeaderMap) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for v in headers.get_all(header::VARY) {
        let Ok(v) = v.to_str() else { return None };
        for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return None;
            }
            names.push(name.to_ascii_lowercase());
        }
    }
    names.sort();
    names.dedup();
    Some(names)
}

fn stored_vary_names(entry: &StoredResponse) -> Vec<String> {
    let mut map = HeaderMap::new();
    for (n, v) in &entry.headers {
        if n == "vary" {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                map.append(header::VARY, v);
            }
        }
    }
    vary_names(&map).unwrap_or_default()
}

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus those `Connection` names) and
/// the headers this layer sets itself are not stored.
fn not_stored(name: &HeaderName, connection: &[String]) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "age"
            | "x-cache"
    ) || connection.iter().any(|c| c == name.as_str())
}

/// A body that yields some frames already read, then (maybe) an error, then the rest.
struct Replay {
    head: std::collections::VecDeque<Frame<Bytes>>,
    error: Option<axum::Error>,
    rest: Option<Body>,
}

impl HttpBody for Replay {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Some(f) = self.head.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        if let Some(e) = self.error.take() {
            self.rest = None;
            return Poll::Ready(Some(Err(e)));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }
}

/// The handler's response, turned into a stored entry when it qualifies.
enum Prepared {
    Store(StoredResponse),
    Pass(Response<Body>),
}

/// How long a shared cache may keep a response whose headers are `headers`,
/// at most `ttl`: `s-maxage` when present, else `max-age`, else `ttl`.
/// `None` when a directive the response carries has no valid number of
/// seconds (RFC 9111 §4.2.1: treat it as stale). Of repeated directives the
/// smallest counts.
fn freshness(headers: &HeaderMap, ttl: Duration) -> Option<Duration> {
    let mut s_maxage: Option<u64> = None;
    let mut max_age: Option<u64> = None;
    for d in headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let (name, value) = d.split_once('=').unwrap_or((d, ""));
        let slot = match name.trim().to_ascii_lowercase().as_str() {
            "s-maxage" => &mut s_maxage,
            "max-age" => &mut max_age,
            _ => continue,
        };
        let secs: u64 = value.trim().trim_matches('"').parse().ok()?;
        *slot = Some(slot.map_or(secs, |s| s.min(secs)));
    }
    Some(match s_maxage.or(max_age) {
        Some(secs) => ttl.min(Duration::from_secs(secs)),
        None => ttl,
    })
}

/// The body length a response announces: its exact size hint, else its
/// `Content-Length`. `None`: unknown (a stream).
fn known_length(res: &Response<Body>) -> Option<u64> {
    res.body().size_hint().exact().or_else(|| {
        let mut values = res.headers().get_all(header::CONTENT_LENGTH).iter();
        let first = values.next()?;
        if values.next().is_some() {
            return None;
        }
        first.to_str().ok()?.trim().parse().ok()
    })
}

async fn prepare(settings: &Settings, res: Response<Body>) -> Prepared {
    let storable = (settings.cache_status)(res.status())
        && !res.headers().contains_key(header::SET_COOKIE)
        && !has_directive(res.headers(), &["private", "no-store", "no-cache"])
        && vary_names(res.headers()).is_some();
    if !storable {
        return Prepared::Pass(res);
    }
    let ttl = match freshness(res.headers(), settings.ttl) {
        Some(ttl) if !ttl.is_zero() => ttl,
        _ => return Prepared::Pass(res),
    };
    let limit = settings.max_body_bytes;
    // Only a body that says how long it is, and fits, is read before the
    // response goes on: a stream (unknown length) passes at once, so its
    // status line and headers are not held back until it ends.
    match known_length(&res) {
        Some(len) if len <= limit as u64 => {}
        _ => return Prepared::Pass(res),
    }
    let (parts, mut body) = res.into_parts();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    let give_up = |parts, chunks: Vec<Bytes>, extra: Option<Frame<Bytes>>, error, body| {
        let mut head: std::collections::VecDeque<Frame<Bytes>> =
            chunks.into_iter().map(Frame::data).collect();
        head.extend(extra);
        Prepared::Pass(Response::from_parts(
            parts,
            Body::new(Replay {
                head,
                error,
                rest: Some(body),
            }),
        ))
    };
    loop {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return give_up(parts, chunks, None, Some(e), body),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    total += data.len();
                    chunks.push(data);
                    if total > limit {
                        return give_up(parts, chunks, None, None, body);
                    }
                }
                // Trailers: not stored; pass everything through.
                Err(frame) => return give_up(parts, chunks, Some(frame), None, body),
            },
        }
    }
    let mut bytes = Vec::with_capacity(total);
    for c in &chunks {
        bytes.extend_from_slice(c);
    }
    let connection: Vec<String> = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let mut headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .filter(|(n, _)| !not_stored(n, &connection))
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    if !parts.headers.contains_key(header::ETAG) {
        let tag = format!("\"{:032x}\"", crate::hash::bytes128(&bytes));
        headers.push(("etag".to_owned(), tag.into_bytes()));
    }
    Prepared::Store(StoredResponse {
        status: parts.status.as_u16(),
        headers,
        body: bytes,
        stored_at: now_secs(),
        ttl: ttl.as_secs(),
    })
}

/// The store TTL of an entry just prepared: the layer's, or the shorter one
/// the handler asked for (whole seconds, as [`StoredResponse::ttl`] keeps it).
fn store_ttl(settings: &Settings, entry: &StoredResponse) -> Duration {
    let own = Duration::from_secs(entry.ttl);
    if entry.ttl == 0 || own >= settings.ttl {
        settings.ttl
    } else {
        own
    }
}

/// Whether a stored entry is past the TTL it was stored with (the store's
/// own expiry normally removes it first; this covers a store that kept it
/// longer, e.g. an entry written with the layer's TTL before the handler
/// asked for less). TTL 0 (a layer TTL under a second): the store decides.
fn expired(entry: &StoredResponse) -> bool {
    entry.ttl > 0 && now_secs().saturating_sub(entry.stored_at) >= entry.ttl
}

/// True when `If-None-Match` in `request` matches `etag` (weak comparison).
fn not_modified(request: &HeaderMap, etag: Option<&HeaderValue>) -> bool {
    let Some(etag) = etag.and_then(|e| e.to_str().ok()) else {
        return false;
    };
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let ours = opaque(etag);
    if ours.is_empty() {
        return false;
    }
    // Empty list elements (`"a", , "b"`) are ignored (RFC 9110 §5.6.1).
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|t| !t.trim().is_empty())
        .any(|t| t.trim() == "*" || opaque(t) == ours)
}

/// How a stored response is being served.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Served {
    Hit,
    Miss,
}

/// The request as [`render`] needs it.
struct View {
    headers: HeaderMap,
    private: bool,
}

fn render(entry: StoredResponse, served: Served, head: bool, view: &View) -> Response<Body> {
    let request = &view.headers;
    let mut headers = HeaderMap::with_capacity(entry.headers.len() + 4);
    for (n, v) in &entry.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            headers.append(n, v);
        }
    }
    let age = match served {
        Served::Hit => now_secs().saturating_sub(entry.stored_at),
        Served::Miss => 0,
    };
    if !headers.contains_key(header::CACHE_CONTROL) {
        let remaining = entry.ttl.saturating_sub(age);
        let v = if view.private {
            format!("private, max-age={remaining}")
        } else {
            format!("max-age={remaining}")
        };
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&v).expect("ascii"),
        );
    }
    if served == Served::Hit {
        headers.insert(header::AGE, HeaderValue::from(age));
    }
    headers.insert(
        X_CACHE,
        HeaderValue::from_static(match served {
            Served::Hit => "HIT",
            Served::Miss => "MISS",
        }),
    );
    // RFC 9110 §13.2.1: If-None-Match is evaluated only for responses that
    // would be 2xx; a stored 404 or 301 is served as is, never as a 304.
    let success = (200..300).contains(&entry.status);
    if success && not_modified(request, headers.get(header::ETAG)) {
        // RFC 9110 §15.4.5: keep the validators and caching headers only.
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        for name in [
            header::ETAG,
            header::CACHE_CONTROL,
            header::AGE,
            header::VARY,
            header::EXPIRES,
            header::DATE,
            header::CONTENT_LOCATION,
            header::LAST_MODIFIED,
            X_CACHE,
        ] {
            for v in headers.get_all(&name) {
                res.headers_mut().append(name.clone(), v.clone());
            }
        }
        return res;
    }
    let status = StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK);
    let body = if head {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
        Body::empty()
    } else {
        Body::from(entry.body)
    };
    let mut res = Response::new(body);
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    res
}

/// Fuzzing hook (`fuzz/`), not API: what a hit makes of the bytes a store holds.
#[doc(hidden)]
pub mod __fuzz {
    use super::*;

    /// Opens `stored` with `codec` as a base key's [`ResponseEntry`] (or, with
    /// `variant`, a variant's [`StoredResponse`]) and renders the hit for a
    /// request with `request` headers; `None` when it does not open, and for a
    /// vary index (whose variant key is computed).
    pub fn serve_stored(
        codec: &dyn cache_core::codec::Codec,
        stored: &[u8],
        variant: bool,
        request: &HeaderMap,
        head: bool,
        private: bool,
    ) -> Option<Response<Body>> {
        let entry = if variant {
            cache_core::codec::open::<StoredResponse>(codec, stored).ok()?
        } else {
            match cache_core::codec::open::<ResponseEntry>(codec, stored).ok()? {
                ResponseEntry::Response(entry) => entry,
                ResponseEntry::Vary(names) => {
                    let _ = variant_key("http:GET:/", &names, request);
                    return None;
                }
            }
        };
        let view = View {
            headers: request.clone(),
            private,
        };
        Some(render(entry, Served::Hit, head, &view))
    }
}

fn mark(mut res: Response<Body>, label: &'static str) -> Response<Body> {
    res.headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(label));
    res
}

/// Writes `entry` for a request with `request` headers: under the base key
/// when it has no `Vary`, else under its variant key plus the vary index at
/// the base key. Failures are ignored: the cache logs and counts them (fail-open).
async fn write(settings: &Settings, base: &str, entry: &StoredResponse, request: &HeaderMap) {
    let cache = &settings.cache;
    let names = stored_vary_names(entry);
    let ttl = Some(store_ttl(settings, entry));
    if names.is_empty() {
        let _ = cache
            .set(base, &ResponseEntry::Response(entry.clone()), ttl)
            .await;
    } else {
        let _ = cache
            .set(&variant_key(base, &names, request), entry, ttl)
            .await;
        let _ = cache
            .set(base, &ResponseEntry::Vary(names), Some(settings.ttl))
            .await;
    }
}

/// Runs the handler and stores what it answered in place of what `base`
/// (or its variant) held: for requests that ask to revalidate, and for
/// stored entries past their own TTL.
async fn refresh<S, ReqBody, ResBody>(
    settings: &Settings,
    mut inner: S,
    req: Request<ReqBody>,
    base: &str,
    view: &View,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    let res = inner.call(req).await?;
    Ok(match prepare(settings, res.map(Body::new)).await {
        Prepared::Store(entry) => {
            write(settings, base, &entry, &view.headers).await;
            render(entry, Served::Miss, false, view)
        }
        Prepared::Pass(res) => mark(res, "MISS"),
    })
}

/// After a read-through whose handler run stored `entry` under `key` with
/// the layer's TTL: when the handler asked for less, store it again with
/// that TTL (readers in between are protected by [`expired`]).
async fn shorten<V: cache_core::codec::Storable>(
    settings: &Settings,
    key: &str,
    value: &V,
    entry: &StoredResponse,
) {
    let ttl = store_ttl(settings, entry);
    if ttl < settings.ttl {
        let _ = settings.cache.set(key, value, Some(ttl)).await;
    }
}

/// What the read-through of a base key yields.
enum BaseOutcome<E> {
    /// What the base key holds, plus the leader's own response when that is a vary index.
    Entry(ResponseEntry, Option<StoredResponse>),
    /// Nothing to store.
    Pass(PassThrough<E>),
}

impl<E> Outcome for BaseOutcome<E> {
    type Value = ResponseEntry;

    fn cacheable(&self) -> Option<&ResponseEntry> {
        match self {
            BaseOutcome::Entry(entry, _) => Some(entry),
            BaseOutcome::Pass(_) => None,
        }
    }

    fn from_cached(value: ResponseEntry) -> Self {
        BaseOutcome::Entry(value, None)
    }
}

async fn handle<S, ReqBody, ResBody>(
    settings: Arc<Settings>,
    mut inner: S,
    req: Request<ReqBody>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    let (parts, body) = req.into_parts();
    let (base, revalidate, head, private) = match classify(&settings, &parts) {
        Plan::Bypass => {
            let res = inner.call(Request::from_parts(parts, body)).await?;
            return Ok(mark(res.map(Body::new), "BYPASS"));
        }
        Plan::Cache {
            base,
            revalidate,
            head,
            private,
        } => (base, revalidate, head, private),
    };
    let view = View {
        headers: parts.headers.clone(),
        private,
    };
    let request_headers = &view.headers;
    let cache = &settings.cache;
    let ttl = Some(settings.ttl);

    if head {
        if !revalidate {
            let entry = match cache.get::<ResponseEntry>(&base).await {
                Ok(Some(ResponseEntry::Response(entry))) => Some(entry),
                Ok(Some(ResponseEntry::Vary(names))) => cache
                    .get::<StoredResponse>(&variant_key(&base, &names, request_headers))
                    .await
                    .ok()
                    .flatten(),
                _ => None,
            };
            if let Some(entry) = entry.filter(|e| !expired(e)) {
                return Ok(render(entry, Served::Hit, true, &view));
            }
        }
        let res = inner.call(Request::from_parts(parts, body)).await?;
        return Ok(mark(res.map(Body::new), "MISS"));
    }

    if revalidate {
        return refresh(
            &settings,
            inner,
            Request::from_parts(parts, body),
            &base,
            &view,
        )
        .await;
    }

    // The handler call, taken by whichever read-through needs it (at most one).
    let mut job = Some((inner, Request::from_parts(parts, body)));
    let ran = AtomicBool::new(false);
    let out: BaseOutcome<S::Error> = cache
        .get_or_compute(&base, ttl, || async {
            ran.store(true, Ordering::Relaxed);
            let (mut inner, req) = job.take().expect("the handler runs once");
            let res = match inner.call(req).await {
                Ok(res) => res,
                Err(e) => return BaseOutcome::Pass(PassThrough::Error(e)),
            };
            match prepare(&settings, res.map(Body::new)).await {
                Prepared::Pass(res) => BaseOutcome::Pass(PassThrough::Response(res)),
                Prepared::Store(entry) => {
                    let names = stored_vary_names(&entry);
                    if names.is_empty() {
                        BaseOutcome::Entry(ResponseEntry::Response(entry), None)
                    } else {
                        // The variant first, so that followers that get the
                        // index from us find it.
                        let key = variant_key(&base, &names, request_headers);
                        let own = Some(store_ttl(&settings, &entry));
                        let _ = cache.set(&key, &entry, own).await;
                        BaseOutcome::Entry(ResponseEntry::Vary(names), Some(entry))
                    }
                }
            }
        })
        .await;
    let served = if ran.load(Ordering::Relaxed) {
        Served::Miss
    } else {
        Served::Hit
    };
    let names = match out {
        BaseOutcome::Entry(ResponseEntry::Response(entry), _) => {
            if served == Served::Miss {
                if store_ttl(&settings, &entry) < settings.ttl {
                    let value = ResponseEntry::Response(entry.clone());
                    shorten(&settings, &base, &value, &entry).await;
                }
                return Ok(render(entry, served, false, &view));
            }
            if expired(&entry) {
                let (inner, req) = job.take().expect("the handler has not run");
                return refresh(&settings, inner, req, &base, &view).await;
            }
            return Ok(render(entry, served, false, &view));
        }
        BaseOutcome::Entry(ResponseEntry::Vary(_), Some(entry)) => {
            return Ok(render(entry, Served::Miss, false, &view))
        }
        BaseOutcome::Pass(PassThrough::Response(res)) => return Ok(mark(res, "MISS")),
        BaseOutcome::Pass(PassThrough::Stored(entry)) => {
            return Ok(render(entry, Served::Miss, false, &view))
        }
        BaseOutcome::Pass(PassThrough::Error(e)) => return Err(e),
        BaseOutcome::Entry(ResponseEntry::Vary(names), None) => names,
    };

    // A vary index from the store: read through the variant this request selects.
    let key = variant_key(&base, &names, request_headers);
    let ran = AtomicBool::new(false);
    let out: Result<StoredResponse, PassThrough<S::Error>> = cache
        .get_or_compute(&key, ttl, || async {
            ran.store(true, Ordering::Relaxed);
            let (mut inner, req) = job.take().expect("the handler runs once");
            let res = match inner.call(req).await {
                Ok(res) => res,
                Err(e) => return Err(PassThrough::Error(e)),
            };
            match prepare(&settings, res.map(Body::new)).await {
                Prepared::Store(entry) => {
                    if stored_vary_names(&entry) == names {
                        Ok(entry)
                    } else {
                        // The resource changed its Vary: rewrite the index
                        // and store under the key it selects now.
                        write(&settings, &base, &entry, request_headers).await;
                        Err(PassThrough::Stored(entry))
                    }
                }
                Prepared::Pass(res) => Err(PassThrough::Response(res)),
            }
        })
        .await;
    let served = if ran.load(Ordering::Relaxed) {
        Served::Miss
    } else {
        Served::Hit
    };
    match out {
        Ok(entry) if served == Served::Miss => {
            shorten(&settings, &key, &entry, &entry).await;
            Ok(render(entry, served, false, &view))
        }
        Ok(entry) if expired(&entry) => {
            let (inner, req) = job.take().expect("the handler has not run");
            refresh(&settings, inner, req, &base, &view).await
        }
        Ok(entry) => Ok(render(entry, served, false, &view)),
        Err(PassThrough::Stored(entry)) => Ok(render(entry, Served::Miss, false, &view)),
        Err(PassThrough::Response(res)) => Ok(mark(res, "MISS")),
        Err(PassThrough::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_etags_and_empty_list_elements_never_match() {
        let mut req = HeaderMap::new();
        req.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", , \"b\""),
        );
        assert!(!not_modified(&req, Some(&HeaderValue::from_static(""))));
        assert!(not_modified(&req, Some(&HeaderValue::from_static("\"b\""))));
        assert!(!not_modified(
            &req,
            Some(&HeaderValue::from_static("\"c\""))
        ));
    }

    #[test]
    fn query_is_sorted_by_name_keeping_repeats_in_order() {
        assert_eq!(sorted_query("b=2&a=1&c=3"), "a=1&b=2&c=3");
        assert_eq!(sorted_query("t=2&a=1&t=1"), "a=1&t=2&t=1");
        assert_eq!(sorted_query("&&"), "");
    }

    #[test]
    fn authorities_are_normalised_and_checked() {
        let ok = |s: &str, host: &str, port: Option<u16>| {
            assert_eq!(
                parse_authority(s.as_bytes()),
                Some((host.to_owned(), port)),
                "{s}"
            );
        };
        ok("Example.COM", "example.com", None);
        ok("example.com:", "example.com", None);
        ok("example.com:8080", "example.com", Some(8080));
        ok("[::1]:3000", "[::1]", Some(3000));
        ok("127.0.0.1", "127.0.0.1", None);
        for bad in [
            "",
            "a b",
            "user@example.com",
            "example.com:http",
            "example.com:99999",
            "/x",
        ] {
            assert_eq!(parse_authority(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn an_absent_header_and_an_empty_one_are_different_variants() {
        let names = vec!["x-flag".to_owned()];
        let mut empty = HeaderMap::new();
        empty.insert("x-flag", HeaderValue::from_static(""));
        let absent = variant_key("b", &names, &HeaderMap::new());
        assert_ne!(absent, variant_key("b", &names, &empty));
        let mut set = HeaderMap::new();
        set.insert("x-flag", HeaderValue::from_static("1"));
        assert_ne!(absent, variant_key("b", &names, &set));
    }

    #[test]
    fn freshness_takes_s_maxage_over_max_age_capped_by_the_layer() {
        let h = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static(v));
            h
        };
        let ttl = Duration::from_secs(60);
        let secs = |v| freshness(&h(v), ttl).map(|d| d.as_secs());
        assert_eq!(freshness(&HeaderMap::new(), ttl), Some(ttl));
        assert_eq!(secs("max-age=10"), Some(10));
        assert_eq!(secs("max-age=600"), Some(60));
        assert_eq!(secs("max-age=10, s-maxage=30"), Some(30));
        assert_eq!(secs("S-MaxAge=\"5\", max-age=1"), Some(5));
        assert_eq!(secs("max-age=0"), Some(0));
        assert_eq!(secs("max-age=20, max-age=3"), Some(3));
        assert_eq!(secs("max-age=soon"), None);
        assert_eq!(secs("public"), Some(60));
    }

    #[test]
    fn if_none_match_forms() {
        let tag = HeaderValue::from_static("\"abc\"");
        let req = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(v));
            h
        };
        assert!(not_modified(&req("\"abc\""), Some(&tag)));
        assert!(not_modified(&req("W/\"abc\""), Some(&tag)));
        assert!(not_modified(&req("\"x\", \"abc\""), Some(&tag)));
        assert!(not_modified(&req("*"), Some(&tag)));
        assert!(!not_modified(&req("\"x\""), Some(&tag)));
        assert!(!not_modified(&HeaderMap::new(), Some(&tag)));
    }

    #[test]
    fn stored_response_uses_bin_in_msgpack() {
        let s = StoredResponse {
            status: 200,
            headers: vec![("etag".into(), vec![0xff; 4])],
            body: vec![0xff; 100],
            stored_at: 1,
            ttl: 2,
        };
        let bytes = rmp_serde::to_vec_named(&s).unwrap();
        assert!(bytes.len() < 160, "{} bytes", bytes.len());
        let back: StoredResponse = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, s);
        let json = serde_json::to_string(&s).unwrap();
        let back: StoredResponse = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}

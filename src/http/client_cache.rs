//! [`ClientCacheLayer`]: `Cache-Control` headers for browsers and CDNs, by path prefix.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::Error;

/// The value [`ClientCacheLayer`] uses for paths no rule matches: `private, no-store`.
///
/// ```
/// assert_eq!(cacheside::http::DEFAULT_API_CACHE_CONTROL, "private, no-store");
/// ```
pub const DEFAULT_API_CACHE_CONTROL: HeaderValue = HeaderValue::from_static("private, no-store");

/// Default max-age of [`ClientCacheLayer::public_prefix`] rules that name none:
/// 60 s, like `CLIENT_CACHE_MAX_AGE`'s default.
///
/// ```
/// assert_eq!(cacheside::http::DEFAULT_CLIENT_MAX_AGE.as_secs(), 60);
/// ```
pub const DEFAULT_CLIENT_MAX_AGE: Duration = Duration::from_secs(60);

/// A tower [`Layer`] that adds a `Cache-Control` header to responses whose
/// handler set none, chosen by path prefix.
///
/// * [`public_prefix(prefix, max_age)`](Self::public_prefix) rules give
///   `public, max-age=N` to successful and client-error responses (status
///   below 500) of `GET` and `HEAD` requests under `prefix` (whole path
///   segments: `/static` matches `/static` and `/static/app.js`, not
///   `/statics`). The longest matching prefix wins.
/// * Under a public prefix, a response that sets a cookie (`Set-Cookie`) or
///   answers a request with `Authorization` is personal: it gets `private,
///   max-age=N` instead, so that only the caller's own browser keeps it,
///   never a proxy or CDN. (A request `Cookie` alone does not count: browsers
///   send cookies with every static asset.)
/// * Everything else (other paths, other methods, 5xx responses) gets the
///   default, `private, no-store` ([`DEFAULT_API_CACHE_CONTROL`]) unless
///   changed with [`otherwise`](Self::otherwise): API responses may depend on
///   who asks and must not sit in shared caches.
/// * A `Cache-Control` the handler set is never touched.
///
/// # With [`ResponseCacheLayer`](crate::http::ResponseCacheLayer)
///
/// Add this layer *after* (outside) the response cache: `.layer(response_cache)
/// .layer(client_cache)`. Inside it, its `private, no-store` would reach the
/// response cache, which never stores such responses. Outside it, responses
/// the response cache serves already carry `Cache-Control: max-age=…` (or the
/// handler's own), which this layer keeps; bypassed ones get the rules here.
///
/// # Configuration from the environment
///
/// [`from_env`](Self::from_env) / [`from_lookup`](Self::from_lookup) map
/// the environment (`CLIENT_CACHE_ENABLED`, `CLIENT_CACHE_MAX_AGE`) like this:
///
/// | variable | effect |
/// |---|---|
/// | `CLIENT_CACHE_ENABLED=false` | the layer adds nothing at all (handlers' own headers only) |
/// | `CLIENT_CACHE_MAX_AGE=N` | the `max-age` of `public_prefix` rules given `None` |
///
/// The FastAPI boilerplate's `ClientCacheMiddleware` sets `Cache-Control:
/// public, max-age=N` on *every* response, overwriting the handler's. This
/// layer deliberately does not copy that default: a blanket `public` lets
/// proxies and CDNs serve one user's API answer to another, and it caches
/// errors and `POST` results. The environment keeps its meaning (enabled
/// switch, `N` for public responses), but which paths are public is said in
/// code. To get the boilerplate's behaviour for reads, add
/// `.public_prefix("/", None)`.
///
/// ```
/// use std::time::Duration;
/// use axum::{body::Body, routing::get, Router};
/// use http::Request;
/// use tower::ServiceExt;
/// use cacheside::http::ClientCacheLayer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let app = Router::new()
///     .route("/static/app.js", get(|| async { "console.log(1)" }))
///     .route("/api/me", get(|| async { "{}" }))
///     .layer(ClientCacheLayer::new().public_prefix("/static", Duration::from_secs(86_400)));
///
/// let res = app.clone().oneshot(Request::get("/static/app.js").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.headers()["cache-control"], "public, max-age=86400");
/// let res = app.oneshot(Request::get("/api/me").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.headers()["cache-control"], "private, no-store");
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientCacheLayer {
    rules: Arc<Rules>,
}

#[derive(Clone, Debug)]
struct Rules {
    enabled: bool,
    max_age: Duration,
    public: Vec<(String, Option<Duration>)>,
    otherwise: Option<HeaderValue>,
}

impl Default for ClientCacheLayer {
    fn default() -> Self {
        ClientCacheLayer::new()
    }
}

impl ClientCacheLayer {
    /// Enabled, no public rules, `private, no-store` for everything, default
    /// max-age [`DEFAULT_CLIENT_MAX_AGE`].
    ///
    /// ```
    /// let app: axum::Router = axum::Router::new().layer(cacheside::http::ClientCacheLayer::new());
    /// ```
    pub fn new() -> Self {
        ClientCacheLayer {
            rules: Arc::new(Rules {
                enabled: true,
                max_age: DEFAULT_CLIENT_MAX_AGE,
                public: Vec::new(),
                otherwise: Some(DEFAULT_API_CACHE_CONTROL),
            }),
        }
    }

    /// From the environment (`CLIENT_CACHE_ENABLED`, `CLIENT_CACHE_MAX_AGE`);
    /// see the [type docs](Self) for the mapping. A malformed value is an
    /// [`Error::Config`] naming the variable.
    ///
    /// ```
    /// # fn main() -> Result<(), cacheside::Error> {
    /// let layer = cacheside::http::ClientCacheLayer::from_env()?.public_prefix("/static", None);
    /// # Ok(()) }
    /// ```
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with the variables read through `lookup`:
    /// `CLIENT_CACHE_ENABLED` (default true) turns the layer on or off,
    /// `CLIENT_CACHE_MAX_AGE` (seconds, default 60) is the max-age of
    /// `public_prefix` rules given `None`.
    ///
    /// ```
    /// use cacheside::http::ClientCacheLayer;
    /// let layer = ClientCacheLayer::from_lookup(|v| match v {
    ///     "CLIENT_CACHE_MAX_AGE" => Some("300".into()),
    ///     _ => None,
    /// })?;
    /// let layer = layer.public_prefix("/static", None); // max-age=300
    /// # Ok::<(), cacheside::Error>(())
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let vars = crate::backend::env::Vars::new(&lookup);
        let mut layer = ClientCacheLayer::new();
        if let Some(enabled) = vars.bool("CLIENT_CACHE_ENABLED")? {
            layer = layer.enabled(enabled);
        }
        if let Some(max_age) =
            vars.seconds("CLIENT_CACHE_MAX_AGE", "a whole number of seconds, e.g. 60")?
        {
            layer = layer.max_age(max_age);
        }
        Ok(layer)
    }

    /// Turns the layer on or off (off: it adds no header).
    ///
    /// ```
    /// let layer = cacheside::http::ClientCacheLayer::new().enabled(false);
    /// ```
    pub fn enabled(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.rules).enabled = enabled;
        self
    }

    /// The max-age of [`public_prefix`](Self::public_prefix) rules given
    /// `None` (default [`DEFAULT_CLIENT_MAX_AGE`]; `CLIENT_CACHE_MAX_AGE` in
    /// [`from_env`](Self::from_env)).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let layer = cacheside::http::ClientCacheLayer::new().max_age(Duration::from_secs(120));
    /// ```
    pub fn max_age(mut self, max_age: Duration) -> Self {
        Arc::make_mut(&mut self.rules).max_age = max_age;
        self
    }

    /// `GET`/`HEAD` responses (status < 500) under `prefix` get `public,
    /// max-age=N`, where `N` is `max_age`, or the layer's
    /// [`max_age`](Self::max_age) for `None`; `private, max-age=N` when the
    /// response has `Set-Cookie` or the request `Authorization`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let layer = cacheside::http::ClientCacheLayer::new()
    ///     .public_prefix("/static", Duration::from_secs(86_400))
    ///     .public_prefix("/docs", None);
    /// ```
    pub fn public_prefix(mut self, prefix: &str, max_age: impl Into<Option<Duration>>) -> Self {
        let prefix = prefix.trim_end_matches('/').to_owned();
        Arc::make_mut(&mut self.rules)
            .public
            .push((prefix, max_age.into()));
        self
    }

    /// The value for responses no public rule covers (default `private,
    /// no-store`); `None` leaves them without a header.
    ///
    /// ```
    /// use http::HeaderValue;
    /// let layer = cacheside::http::ClientCacheLayer::new()
    ///     .otherwise(Some(HeaderValue::from_static("no-cache")));
    /// ```
    pub fn otherwise(mut self, value: Option<HeaderValue>) -> Self {
        Arc::make_mut(&mut self.rules).otherwise = value;
        self
    }
}

impl Rules {
    /// The max-age of the longest public prefix covering `path`, if any.
    fn public_max_age(&self, path: &str) -> Option<Duration> {
        self.public
            .iter()
            .filter(|(prefix, _)| {
                prefix.is_empty()
                    || path == prefix
                    || (path.starts_with(prefix.as_str())
                        && path.as_bytes().get(prefix.len()) == Some(&b'/'))
            })
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, age)| age.unwrap_or(self.max_age))
    }
}

impl<S> Layer<S> for ClientCacheLayer {
    type Service = ClientCache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientCache {
            inner,
            rules: Arc::clone(&self.rules),
        }
    }
}

/// The service [`ClientCacheLayer`] wraps around an inner service.
///
/// ```
/// use axum::{body::Body, routing::get, Router};
/// use http::Request;
/// use tower::{Layer, ServiceExt};
/// use cacheside::http::ClientCacheLayer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = ClientCacheLayer::new().layer(Router::new().route("/", get(|| async { "hi" })));
/// let res = svc.oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.headers()["cache-control"], "private, no-store");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ClientCache<S> {
    inner: S,
    rules: Arc<Rules>,
}

pin_project! {
    /// The future [`ClientCache`] returns: the inner future (pinned in place,
    /// not boxed), then the header.
    ///
    /// ```
    /// use axum::{body::Body, routing::get, Router};
    /// use http::Request;
    /// use tower::{Layer, Service, ServiceExt};
    /// use cacheside::http::{ClientCacheFuture, ClientCacheLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mut svc = ClientCacheLayer::new().layer(Router::new().route("/", get(|| async { "hi" })));
    /// let ready = ServiceExt::<Request<Body>>::ready(&mut svc).await.unwrap();
    /// let fut: ClientCacheFuture<_> = ready.call(Request::get("/").body(Body::empty()).unwrap());
    /// assert_eq!(fut.await.unwrap().headers()["cache-control"], "private, no-store");
    /// # }
    /// ```
    pub struct ClientCacheFuture<F> {
        #[pin]
        inner: F,
        // The max-age of the public rule covering the request, if any.
        public: Option<u64>,
        // The request carried `Authorization`: a public rule gives `private`.
        credentials: bool,
        otherwise: Option<HeaderValue>,
    }
}

impl<F> std::fmt::Debug for ClientCacheFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCacheFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ClientCacheFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = match this.inner.poll(cx) {
            Poll::Ready(Ok(res)) => res,
            other => return other,
        };
        if !res.headers().contains_key(header::CACHE_CONTROL) {
            let public = this
                .public
                .take()
                .filter(|_| !res.status().is_server_error());
            let value = match public {
                Some(age) => {
                    let personal =
                        *this.credentials || res.headers().contains_key(header::SET_COOKIE);
                    let scope = if personal { "private" } else { "public" };
                    Some(HeaderValue::from_str(&format!("{scope}, max-age={age}")).expect("ascii"))
                }
                None => this.otherwise.take(),
            };
            if let Some(v) = value {
                res.headers_mut().insert(header::CACHE_CONTROL, v);
            }
        }
        Poll::Ready(Ok(res))
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ClientCache<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ClientCacheFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let rules = &*self.rules;
        let (public, otherwise) = if rules.enabled {
            let public = matches!(*req.method(), Method::GET | Method::HEAD)
                .then(|| rules.public_max_age(req.uri().path()))
                .flatten()
                .map(|age| age.as_secs());
            (public, rules.otherwise.clone())
        } else {
            (None, None)
        };
        let credentials = req.headers().contains_key(header::AUTHORIZATION);
        ClientCacheFuture {
            inner: self.inner.call(req),
            public,
            credentials,
            otherwise,
        }
    }
}

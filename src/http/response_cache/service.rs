//! [`ResponseCache`]: the service, and what it does per request: bypass, or
//! read through the base key (and, for a response with `Vary`, through the
//! variant the request selects), running the handler at most once.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use cache_core::codec::Storable;
use cache_core::Outcome;
use http::header::HeaderMap;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use serde::de::DeserializeOwned;
use tower::Service;

use super::future::ResponseFuture;
use super::key::{classify, Lookup, Plan};
use super::layer::Settings;
use super::serve::{mark, respond, Served, View};
use super::stored::{expired, phase, prepare, store_ttl, Phase, Prepared};
use super::vary::{stored_vary_names, variant_key};
use super::{ResponseEntry, StoredResponse};
use crate::backend::Bytes;
use crate::http::ResponseBody;

/// The service [`ResponseCacheLayer`](super::ResponseCacheLayer) wraps
/// around an inner service (an axum `Router`'s routes, a hyper service, any
/// tower [`Service`] answering [`http::Response`]s).
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

impl<S> ResponseCache<S> {
    pub(super) fn new(inner: S, settings: Arc<Settings>) -> Self {
        ResponseCache { inner, settings }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ResponseCache<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (parts, body) = req.into_parts();
        match classify(&self.settings, &parts) {
            Plan::Bypass => {
                ResponseFuture::bypass(self.inner.call(Request::from_parts(parts, body)))
            }
            Plan::Cache(lookup) => {
                // The ready service goes into the future; a fresh clone stays behind.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let settings = Arc::clone(&self.settings);
                ResponseFuture::cached(handle(settings, inner, parts, body, lookup))
            }
        }
    }
}

/// The response of a request that goes through the cache.
async fn handle<S, ReqBody, ResBody>(
    settings: Arc<Settings>,
    mut inner: S,
    parts: Parts,
    body: ReqBody,
    lookup: Lookup,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
    S::Error: Send,
{
    let view = View {
        headers: parts.headers.clone(),
        private: lookup.private,
    };
    let base = &lookup.base;
    let cache = &settings.cache;

    if lookup.head {
        if !lookup.revalidate {
            let entry = match cache.get::<ResponseEntry>(base).await {
                Ok(Some(ResponseEntry::Response(entry))) => Some(entry),
                Ok(Some(ResponseEntry::Vary(names))) => cache
                    .get::<StoredResponse>(&variant_key(base, &names, &view.headers))
                    .await
                    .ok()
                    .flatten(),
                _ => None,
            };
            if let Some(entry) = entry.filter(|e| !expired(e)) {
                return Ok(respond(entry, Served::Hit, true, &view));
            }
        }
        let res = inner.call(Request::from_parts(parts, body)).await?;
        return Ok(mark(res.map(ResponseBody::inner), "MISS"));
    }

    if lookup.revalidate {
        return refresh(
            &settings,
            inner,
            Request::from_parts(parts, body),
            base,
            &view,
            None,
        )
        .await;
    }

    // The handler call, taken by whichever read-through needs it (at most one).
    let mut job = Some((inner, Request::from_parts(parts, body)));
    let admit_base = |entry: StoredResponse| async {
        let names = stored_vary_names(&entry);
        if names.is_empty() {
            return Filled::Held {
                value: ResponseEntry::Response(entry),
                own: None,
            };
        }
        // The variant first, so that followers that get the index from us find it.
        let key = variant_key(base, &names, &view.headers);
        let _ = cache
            .set(&key, &entry, Some(store_ttl(&settings, &entry)))
            .await;
        Filled::Held {
            value: ResponseEntry::Vary(names),
            own: Some(entry),
        }
    };
    let names = match read_through(&settings, base, base, &view, &mut job, admit_base).await? {
        Ok(res) => return Ok(res),
        Err(names) => names,
    };

    // A vary index from the store: read through the variant this request selects.
    let key = variant_key(base, &names, &view.headers);
    let admit_variant = |entry: StoredResponse| async {
        if stored_vary_names(&entry) == names {
            return Filled::Held {
                value: entry,
                own: None,
            };
        }
        // The resource changed its Vary: rewrite the index and store under
        // the key it selects now.
        write(&settings, base, &entry, &view.headers).await;
        Filled::Pass(PassThrough::Stored(entry))
    };
    match read_through(&settings, &key, base, &view, &mut job, admit_variant).await? {
        Ok(res) => Ok(res),
        Err(never) => match never {},
    }
}

/// What a key read through holds: the base key a [`ResponseEntry`], a
/// variant key a [`StoredResponse`].
trait Slot: Storable + DeserializeOwned + Clone {
    /// What the key may hold instead of a response: the vary index's names
    /// at the base key; nothing at a variant key.
    type Index;

    /// What the key holds for `entry`.
    fn holding(entry: &StoredResponse) -> Cow<'_, Self>;

    /// The response held, or the index.
    fn into_response(self) -> Result<StoredResponse, Self::Index>;
}

impl Slot for ResponseEntry {
    type Index = Vec<String>;

    fn holding(entry: &StoredResponse) -> Cow<'_, Self> {
        Cow::Owned(ResponseEntry::Response(entry.clone()))
    }

    fn into_response(self) -> Result<StoredResponse, Vec<String>> {
        match self {
            ResponseEntry::Response(entry) => Ok(entry),
            ResponseEntry::Vary(names) => Err(names),
        }
    }
}

impl Slot for StoredResponse {
    type Index = Infallible;

    fn holding(entry: &StoredResponse) -> Cow<'_, Self> {
        Cow::Borrowed(entry)
    }

    fn into_response(self) -> Result<StoredResponse, Infallible> {
        Ok(self)
    }
}

/// What the single-flight read-through of one key returns.
enum Filled<V, B: Body, E> {
    /// The key holds `value` (found, or stored by this request's handler
    /// run); `own` is that run's response when `value` is a vary index.
    Held {
        value: V,
        own: Option<StoredResponse>,
    },
    /// Nothing stored under the key.
    Pass(PassThrough<B, E>),
}

/// Why a read-through stored nothing under its key.
enum PassThrough<B: Body, E> {
    /// Not cacheable: returned as is.
    Response(Response<ResponseBody<B>>),
    /// Stored under another key than the one being computed (its `Vary` changed).
    Stored(StoredResponse),
    /// The inner service failed.
    Error(E),
}

impl<V: Slot, B: Body, E> Outcome for Filled<V, B, E> {
    type Value = V;

    fn cacheable(&self) -> Option<&V> {
        match self {
            Filled::Held { value, .. } => Some(value),
            Filled::Pass(_) => None,
        }
    }

    fn from_cached(value: V) -> Self {
        Filled::Held { value, own: None }
    }
}

/// Reads `key` through the cache, single-flight: a hit is served unless it
/// is past its own TTL (then the handler runs and replaces it); on a miss the
/// handler runs (taken from `job`) and `admit` decides what `key` holds for
/// the response it gave. `Ok(Err(index))`: `key` holds a vary index, whose
/// variant the caller reads next.
async fn read_through<V, S, ReqBody, ResBody, A, Fut>(
    settings: &Arc<Settings>,
    key: &str,
    base: &str,
    view: &View,
    job: &mut Option<(S, Request<ReqBody>)>,
    admit: A,
) -> Result<Result<Response<ResponseBody<ResBody>>, V::Index>, S::Error>
where
    V: Slot,
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
    S::Error: Send,
    A: FnOnce(StoredResponse) -> Fut,
    Fut: Future<Output = Filled<V, ResBody, S::Error>>,
{
    let ran = AtomicBool::new(false);
    let out: Filled<V, ResBody, S::Error> = settings
        .cache
        .get_or_compute(key, Some(settings.ttl), || async {
            ran.store(true, Ordering::Relaxed);
            let (mut inner, req) = job.take().expect("the handler runs once");
            let res = match inner.call(req).await {
                Ok(res) => res,
                Err(e) => return Filled::Pass(PassThrough::Error(e)),
            };
            match prepare(settings, res).await {
                Prepared::Pass(res) => Filled::Pass(PassThrough::Response(res)),
                Prepared::Store(entry) => admit(entry).await,
            }
        })
        .await;
    let served = if ran.load(Ordering::Relaxed) {
        Served::Miss
    } else {
        Served::Hit
    };
    let value = match out {
        Filled::Held {
            own: Some(entry), ..
        } => return Ok(Ok(respond(entry, Served::Miss, false, view))),
        Filled::Held { value, own: None } => value,
        Filled::Pass(PassThrough::Stored(entry)) => {
            return Ok(Ok(respond(entry, Served::Miss, false, view)))
        }
        Filled::Pass(PassThrough::Response(res)) => return Ok(Ok(mark(res, "MISS"))),
        Filled::Pass(PassThrough::Error(e)) => return Err(e),
    };
    let entry = match value.into_response() {
        Ok(entry) => entry,
        Err(index) => return Ok(Err(index)),
    };
    if served == Served::Miss {
        // Stored with the layer's TTL: when the handler asked for another
        // (less, or more to serve it stale), store it again with that TTL
        // (readers in between are protected by `expired`).
        let ttl = store_ttl(settings, &entry);
        if ttl != settings.ttl {
            let _ = settings
                .cache
                .set(key, &*V::holding(&entry), Some(ttl))
                .await;
        }
        return Ok(Ok(respond(entry, Served::Miss, false, view)));
    }
    match phase(&entry) {
        Phase::Fresh => Ok(Ok(respond(entry, Served::Hit, false, view))),
        Phase::Revalidate => {
            // RFC 5861 stale-while-revalidate: answered now, refreshed on a
            // task of its own (a dropped caller does not cancel it).
            // One background run per key in this process.
            let full = settings.cache.full_key(key).into_owned();
            if let Some(claim) = settings.cache.start_refresh(&full) {
                let (inner, req) = job.take().expect("the handler has not run");
                let (settings, base, background_view) =
                    (Arc::clone(settings), base.to_owned(), view.clone());
                tokio::spawn(async move {
                    let _claim = claim;
                    let _ = refresh(&settings, inner, req, &base, &background_view, None).await;
                });
            }
            Ok(Ok(respond(entry, Served::Stale, false, view)))
        }
        Phase::IfError => {
            let (inner, req) = job.take().expect("the handler has not run");
            refresh(settings, inner, req, base, view, Some(entry))
                .await
                .map(Ok)
        }
        Phase::Dead => {
            let (inner, req) = job.take().expect("the handler has not run");
            refresh(settings, inner, req, base, view, None)
                .await
                .map(Ok)
        }
    }
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
/// stored entries past their own TTL. With `stale` (within its
/// `stale-if-error`), a handler that fails (an error, a 5xx) is answered
/// with `stale` instead.
async fn refresh<S, ReqBody, ResBody>(
    settings: &Settings,
    mut inner: S,
    req: Request<ReqBody>,
    base: &str,
    view: &View,
    stale: Option<StoredResponse>,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    // An invalidation from here on (here, or over the backplane) makes what
    // the handler answers possibly older than it: not stored then.
    let epoch = settings.cache.invalidation_epoch();
    let res = match (inner.call(req).await, stale) {
        (Ok(res), Some(stale)) if res.status().is_server_error() => {
            tracing::warn!(
                key = base,
                status = res.status().as_u16(),
                "handler failed; answering with the stored response (stale-if-error)"
            );
            settings.cache.note_stale_served();
            return Ok(respond(stale, Served::Stale, false, view));
        }
        (Err(_), Some(stale)) => {
            tracing::warn!(
                key = base,
                "handler errored; answering with the stored response (stale-if-error)"
            );
            settings.cache.note_stale_served();
            return Ok(respond(stale, Served::Stale, false, view));
        }
        (res, _) => res?,
    };
    Ok(match prepare(settings, res).await {
        Prepared::Store(entry) => {
            if settings.cache.invalidation_epoch() == epoch {
                write(settings, base, &entry, &view.headers).await;
            }
            respond(entry, Served::Miss, false, view)
        }
        Prepared::Pass(res) => mark(res, "MISS"),
    })
}

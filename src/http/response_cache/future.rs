//! [`ResponseFuture`]: the future a [`ResponseCache`](super::ResponseCache) returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use super::serve::mark;
use crate::http::ResponseBody;

/// The read-through of a request that goes through the cache.
type Cached<B, E> = Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

pin_project! {
    /// The future a [`ResponseCache`](super::ResponseCache) returns: the inner
    /// service's future `F` (answering `Response<B>`, failing with `E`).
    ///
    /// A request that bypasses the cache (another method than `GET` or
    /// `HEAD`, credentials, `no-store`, caching switched off) is the inner
    /// future itself, pinned in place, plus the `X-Cache: BYPASS` header. A
    /// request that goes through the cache is a boxed future: before the
    /// handler runs (if it runs) it awaits the store and the single-flight
    /// of [`Cache::get_or_compute`](crate::Cache::get_or_compute), whose
    /// futures borrow from one another and cannot be named; the store calls
    /// it makes are boxed already (`Backend` is an `async_trait`), so this
    /// adds one allocation to the several each of them costs.
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
    /// let fut: ResponseFuture<_, _, _> = ready.call(Request::get("/").body(Body::empty()).unwrap());
    /// assert_eq!(fut.await.unwrap().status(), 200);
    /// # }
    /// ```
    pub struct ResponseFuture<F, B, E>
    where
        B: Body,
    {
        #[pin]
        state: State<F, B, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, E>
    where
        B: Body,
    {
        Bypass {
            #[pin]
            inner: F,
        },
        Cached {
            fut: Cached<B, E>,
        },
    }
}

impl<F, B: Body, E> ResponseFuture<F, B, E> {
    /// The inner service's future, for a request that bypasses the cache.
    pub(super) fn bypass(inner: F) -> Self {
        ResponseFuture {
            state: State::Bypass { inner },
        }
    }

    /// The read-through of a request that goes through the cache.
    pub(super) fn cached(
        fut: impl Future<Output = Result<Response<ResponseBody<B>>, E>> + Send + 'static,
    ) -> Self {
        ResponseFuture {
            state: State::Cached { fut: Box::pin(fut) },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Bypass { inner } => {
                let res = ready!(inner.poll(cx))?;
                Poll::Ready(Ok(mark(res.map(ResponseBody::inner), "BYPASS")))
            }
            StateProj::Cached { fut } => fut.as_mut().poll(cx),
        }
    }
}

impl<F, B: Body, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Bypass { .. } => "bypass",
            State::Cached { .. } => "cached",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

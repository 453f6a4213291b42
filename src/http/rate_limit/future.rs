//! [`RateLimitFuture`]: the future a [`RateLimit`](super::RateLimit) returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::header::{HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::Service;

use super::layer::Settings;
use super::service::plain;
use super::window::unix_ms;
use super::Decision;
use crate::backend::Bytes;
use crate::http::ResponseBody;
use crate::Error;

/// The store's answer for one client.
type Check = Pin<Box<dyn Future<Output = Result<Decision, Error>> + Send>>;

pin_project! {
    /// The future a [`RateLimit`](super::RateLimit) returns: first the
    /// store's decision, then, when the request may pass, the inner
    /// service's future, pinned in place (not boxed), whose response gets
    /// the `RateLimit-*` fields.
    ///
    /// The decision is a boxed future of its own: it is one or two calls of
    /// the store (`Backend` is an `async_trait`, each of its calls is boxed
    /// already) that own the client key. A request the limiter does not
    /// limit (its `key_fn` returned `None`) skips it and is the inner future
    /// alone.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use cacheside::{http::{RateLimit, RateLimitFuture}, backend::Bytes};
    /// use http::{Request, Response};
    /// use http_body_util::Full;
    /// use tower::Service;
    ///
    /// fn future_of<S>(svc: &mut RateLimit<S>, req: Request<Full<Bytes>>) -> RateLimitFuture<S, Full<Bytes>>
    /// where
    ///     S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone,
    /// {
    ///     svc.call(req)
    /// }
    /// ```
    pub struct RateLimitFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        /// Waiting for the store; the ready inner service and the request wait too.
        Checking {
            check: Check,
            settings: Arc<Settings>,
            call: Option<(S, Request<ReqBody>)>,
        },
        /// The inner service answers; `decision` goes into its response.
        Calling {
            #[pin]
            fut: S::Future,
            decision: Option<Decision>,
        },
        Done,
    }
}

impl<S, ReqBody> RateLimitFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    /// A request the limiter does not limit: the inner future alone.
    pub(super) fn unlimited(fut: S::Future) -> Self {
        RateLimitFuture {
            state: State::Calling {
                fut,
                decision: None,
            },
        }
    }

    /// Counts a request of `client`, then calls `inner` (ready) when it may pass.
    pub(super) fn checking(
        settings: Arc<Settings>,
        client: String,
        inner: S,
        req: Request<ReqBody>,
    ) -> Self {
        let counting = Arc::clone(&settings);
        let check: Check = Box::pin(async move { counting.check(&client, unix_ms()).await });
        RateLimitFuture {
            state: State::Checking {
                check,
                settings,
                call: Some((inner, req)),
            },
        }
    }
}

impl<S, ReqBody, ResBody> Future for RateLimitFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Checking {
                    check,
                    settings,
                    call,
                } => {
                    let decided = ready!(check.as_mut().poll(cx));
                    let (mut inner, req) = call.take().expect("checked once");
                    let decision = match decided {
                        Ok(decision) if decision.allowed => Some(decision),
                        Ok(decision) => {
                            let mut res =
                                plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n");
                            decision.write_headers(res.headers_mut());
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(res));
                        }
                        Err(e) => {
                            settings.store_failed(&e);
                            if !settings.fail_open {
                                let mut res = plain(
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    "Rate limit unavailable, retry shortly\n",
                                );
                                res.headers_mut()
                                    .insert(RETRY_AFTER, HeaderValue::from(1u64));
                                this.state.set(State::Done);
                                return Poll::Ready(Ok(res));
                            }
                            None
                        }
                    };
                    let fut = inner.call(req);
                    this.state.set(State::Calling { fut, decision });
                }
                StateProj::Calling { fut, decision } => {
                    let res = ready!(fut.poll(cx));
                    let decision = decision.take();
                    this.state.set(State::Done);
                    let mut res = res?.map(ResponseBody::inner);
                    if let Some(decision) = decision {
                        decision.write_headers(res.headers_mut());
                    }
                    return Poll::Ready(Ok(res));
                }
                StateProj::Done => panic!("RateLimitFuture polled after it completed"),
            }
        }
    }
}

impl<S, ReqBody> fmt::Debug for RateLimitFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Checking { .. } => "checking",
            State::Calling { .. } => "calling",
            State::Done => "done",
        };
        f.debug_struct("RateLimitFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

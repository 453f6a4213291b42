//! [`ResponseBody`]: the body of the responses [`ResponseCache`] and
//! [`RateLimit`] return. Either the inner service's own body, passed through
//! as it is (not boxed, its error type kept), or bytes the layer wrote.
//!
//! [`ResponseCache`]: crate::http::ResponseCache
//! [`RateLimit`]: crate::http::RateLimit

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

use crate::backend::Bytes;

pin_project! {
    /// The body of a response from a cacheside layer: the inner service's
    /// body `B` untouched, or bytes the layer wrote itself (a stored response,
    /// a `429`). Its error is `B`'s.
    ///
    /// Any framework that takes an [`http_body::Body`] with `Bytes` data
    /// takes it (axum's `IntoResponse`, hyper's server).
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response};
    /// use http_body_util::{BodyExt, Full};
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use cacheside::{backends::MemoryBackend, http::{ResponseBody, ResponseCacheLayer}, backend::Bytes, Cache};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache = Cache::builder(MemoryBackend::new(100)).build();
    /// let svc = ResponseCacheLayer::new(cache).layer(service_fn(|_req: Request<()>| async {
    ///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hi"))))
    /// }));
    /// let req = Request::get("/").header("host", "example.com").body(()).unwrap();
    /// let res: Response<ResponseBody<Full<Bytes>>> = svc.oneshot(req).await.unwrap();
    /// assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hi");
    /// # }
    /// ```
    pub struct ResponseBody<B>
    where
        B: Body,
    {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B>
    where
        B: Body,
    {
        /// The inner service's body, untouched.
        Inner {
            #[pin]
            body: B,
        },
        /// Bytes the layer wrote.
        Full { body: Full<Bytes> },
        /// The inner body after the layer read part of it: the frames read,
        /// then the error that stopped the reading (the rest is then dropped),
        /// then the rest. Boxed because it was read in place before it moved
        /// here; only responses the response cache began to store and then
        /// gave up on (too long, trailers, an error) take this path.
        Replay {
            head: VecDeque<Frame<Bytes>>,
            error: Option<B::Error>,
            rest: Option<Pin<Box<B>>>,
        },
    }
}

impl<B: Body> ResponseBody<B> {
    /// The inner service's body, passed through.
    pub(crate) fn inner(body: B) -> Self {
        ResponseBody {
            kind: Kind::Inner { body },
        }
    }

    /// Bytes written by the layer.
    pub(crate) fn full(body: Full<Bytes>) -> Self {
        ResponseBody {
            kind: Kind::Full { body },
        }
    }

    /// `head`, then `error` (ending the body) when there is one, else `rest`.
    pub(crate) fn replay(
        head: VecDeque<Frame<Bytes>>,
        error: Option<B::Error>,
        rest: Pin<Box<B>>,
    ) -> Self {
        ResponseBody {
            kind: Kind::Replay {
                head,
                error,
                rest: Some(rest),
            },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { body } => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(|never| match never {}))),
            KindProj::Replay { head, error, rest } => {
                if let Some(frame) = head.pop_front() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                if let Some(e) = error.take() {
                    *rest = None;
                    return Poll::Ready(Some(Err(e)));
                }
                match rest.as_mut() {
                    Some(rest) => rest.as_mut().poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { body } => body.is_end_stream(),
            Kind::Replay { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { body } => body.size_hint(),
            // Part of it was read: what is left is not what the body announced.
            Kind::Replay { .. } => SizeHint::default(),
        }
    }
}

impl<B: Body> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Full { .. } => "full",
            Kind::Replay { .. } => "replay",
        };
        f.debug_struct("ResponseBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_replay_yields_what_was_read_then_the_rest() {
        let rest = Box::pin(Full::new(Bytes::from_static(b" world")));
        let head = VecDeque::from([Frame::data(Bytes::from_static(b"hello"))]);
        let body = ResponseBody::replay(head, None, rest);
        assert_eq!(body.size_hint().exact(), None);
        assert_eq!(
            body.collect().await.unwrap().to_bytes(),
            Bytes::from_static(b"hello world")
        );
    }

    #[tokio::test]
    async fn written_bytes_announce_their_length() {
        let body = ResponseBody::<Full<Bytes>>::full(Full::new(Bytes::from_static(b"abc")));
        assert_eq!(body.size_hint().exact(), Some(3));
        let empty = ResponseBody::<Full<Bytes>>::full(Full::new(Bytes::new()));
        assert!(empty.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
    }
}

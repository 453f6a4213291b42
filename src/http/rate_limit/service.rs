//! [`RateLimit`]: the service, who the client of a request is, and what the
//! limiter answers itself (`429`, or `503` when the store fails closed).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use tower::Service;

use super::future::RateLimitFuture;
use super::layer::Settings;
use super::RATE_LIMIT_FALLBACK_KEY;
use crate::backend::Bytes;
use crate::http::ResponseBody;

/// The [`Service`] of a [`RateLimitLayer`](super::RateLimitLayer): checks the
/// client, then calls the inner service or answers 429 (or 503 when the
/// store fails and `fail_open(false)`).
///
/// ```
/// use std::{convert::Infallible, time::Duration};
/// use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache};
/// use cacheside::backend::{Bytes};
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = Cache::builder(MemoryBackend::new(100)).build();
/// let layer = RateLimitLayer::new(cache, 1, Duration::from_secs(60))
///     .key_fn(|_| Some("everyone".into()));
/// let svc = layer.layer(service_fn(|_req: Request<Full<Bytes>>| async {
///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
/// }));
/// let res = svc.clone().oneshot(Request::new(Full::default())).await.unwrap();
/// assert_eq!(res.status(), 200);
/// let res = svc.oneshot(Request::new(Full::default())).await.unwrap();
/// assert_eq!(res.status(), 429);
/// # }
/// ```
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> RateLimit<S> {
    pub(super) fn new(inner: S, settings: Arc<Settings>) -> Self {
        RateLimit { inner, settings }
    }
}

impl<S> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("limit", &self.settings.limit)
            .field("window", &Duration::from_millis(self.settings.window_ms))
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = RateLimitFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let client = self.settings.client_key(&parts);
        let req = Request::from_parts(parts, body);
        match client {
            None => RateLimitFuture::unlimited(self.inner.call(req)),
            Some(client) => {
                // The instance that was polled ready waits for the check in
                // the future; an unpolled clone stays behind.
                let ready = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, ready);
                RateLimitFuture::checking(Arc::clone(&self.settings), client, inner, req)
            }
        }
    }
}

impl Settings {
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
        if let Some(addr) = peer_addr(parts) {
            return Some(addr.ip().to_string());
        }
        static ONCE: OnceLock<()> = OnceLock::new();
        ONCE.get_or_init(|| {
            tracing::warn!("rate limiter: request without a client address (serve with into_make_service_with_connect_info::<SocketAddr>(), enable trust_forwarded_for behind a proxy, or set key_fn); such requests share the key {RATE_LIMIT_FALLBACK_KEY:?}");
        });
        Some(RATE_LIMIT_FALLBACK_KEY.to_owned())
    }
}

/// The peer address axum's `ConnectInfo<SocketAddr>` carries (feature `axum`).
#[cfg(feature = "axum")]
fn peer_addr(parts: &Parts) -> Option<SocketAddr> {
    use axum::extract::ConnectInfo;
    let ConnectInfo(addr) = parts.extensions.get::<ConnectInfo<SocketAddr>>()?;
    Some(*addr)
}

/// Without axum there is no agreed place for the peer address: a server
/// that has one makes it the key with `key_fn`.
#[cfg(not(feature = "axum"))]
fn peer_addr(_parts: &Parts) -> Option<SocketAddr> {
    None
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

/// A plain-text answer of the limiter itself.
pub(super) fn plain<B: Body>(status: StatusCode, text: &'static str) -> Response<ResponseBody<B>> {
    let mut res = Response::new(ResponseBody::full(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
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
}

//! HTTP integration (feature `http`): tower layers that cache whole responses,
//! set client cache headers and rate-limit callers, with state in the same
//! stores as the rest of cacheside.
//!
//! The layers depend on `http`, `http-body` and `tower` only, so they fit any
//! tower stack (hyper, axum, tonic, …). Feature `axum` adds what is specific
//! to axum: `#[cache]` on axum handlers, and the rate limiter keying clients
//! on axum's `ConnectInfo<SocketAddr>`.
//!
//! One folder per layer, laid out like tower-http's: `layer.rs` (the
//! configuration), `service.rs`, `future.rs`, and the parts of its concern.

mod body;
pub mod client_cache;
pub mod rate_limit;
pub mod response_cache;

pub use body::ResponseBody;

/// The request method, which `#[cache]` adds as the first parameter of an
/// axum handler that has no `Method` of its own (feature `axum`): the wrapper
/// must know whether a request may be answered from the cache (GET, HEAD)
/// or is a mutation, whatever routes the handler is mounted on. An extractor
/// that never fails. Code calling such a handler directly passes one:
///
/// ```
/// use axum::{extract::Path, http::Method, Json};
/// use cacheside::http::RequestMethod;
///
/// #[cacheside::cache(key_prefix = "widget", resource_id = "id")]
/// async fn widget(Path(id): Path<u64>) -> Json<u64> {
///     Json(id)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let Json(id) = widget(RequestMethod(Method::GET), Path(7)).await;
/// assert_eq!(id, 7);
/// # }
/// ```
#[cfg(feature = "axum")]
#[derive(Debug, Clone)]
pub struct RequestMethod(pub ::http::Method);

#[cfg(feature = "axum")]
impl RequestMethod {
    /// The method.
    pub fn get(&self) -> &::http::Method {
        &self.0
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestMethod {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut ::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(RequestMethod(parts.method.clone()))
    }
}
pub use client_cache::{
    ClientCache, ClientCacheFuture, ClientCacheLayer, DEFAULT_API_CACHE_CONTROL,
    DEFAULT_CLIENT_MAX_AGE,
};
pub use rate_limit::{
    Decision, RateLimit, RateLimitFuture, RateLimitLayer, RateLimitStats, DEFAULT_MAX_COUNTERS,
    RATE_LIMIT_FALLBACK_KEY, RATE_LIMIT_LIMIT_HEADER, RATE_LIMIT_REMAINING_HEADER,
    RATE_LIMIT_RESET_HEADER, RATE_LIMIT_STORAGE_URI,
};
pub use response_cache::{
    default_cache_status, ResponseCache, ResponseCacheLayer, ResponseEntry, ResponseFuture,
    StoredResponse, DEFAULT_MAX_BODY_BYTES, X_CACHE,
};

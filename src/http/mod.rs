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

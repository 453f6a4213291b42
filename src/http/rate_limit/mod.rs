//! [`RateLimitLayer`]: per-client request limits with a sliding-window
//! counter, kept in any cacheside store, answered with the IETF `RateLimit-*`
//! fields and `429 Too Many Requests`.
//!
//! # Algorithm: sliding-window counter
//!
//! Time is cut into fixed windows of length `W` (aligned on the Unix epoch,
//! so every process agrees). Each client has one counter per window. A
//! request at `e` milliseconds into window `n` estimates the requests of the
//! last `W` as
//!
//! ```text
//! estimate = count(n) + ⌊count(n − 1) × (W − e) / W⌋
//! ```
//!
//! i.e. the previous window's count weighted by how much of it still overlaps
//! the trailing window, assuming its requests were spread evenly. The request
//! passes when the estimate (itself included) is at most the limit `L`.
//!
//! One store round trip per request: [`Cache::increment`](crate::Cache::increment) adds 1 to
//! `count(n)` (created with a TTL of `2W + 1 s`, so it is still there while it
//! is the previous window) and reads `count(n − 1)` in the same call (both
//! keys share a `{hash tag}`, so they live on one Redis Cluster slot and one
//! Memcached server). A rejected request gives its unit back (a second call
//! with `delta = −1`): **only requests that pass count**, so a client that
//! keeps retrying too fast is not locked out for ever, it gets through as
//! soon as capacity frees.
//!
//! **Error bound.** Counting is exact (an atomic increment per request: with
//! 32 simultaneous requests and `L = 10`, exactly 10 pass, on every store), and
//! in every aligned window at most `L` requests pass. Over an arbitrary
//! interval of length `W` the estimate can be off in the lenient direction
//! when the previous window's requests were bunched at its end: the worst case
//! lets `2L` requests through in a trailing `W` (`L` at the very end of
//! window `n − 1`, then `L` more spread over window `n`; no interval of length
//! `W` can hold more, as it meets at most two aligned windows); with evenly
//! spread traffic it is exact, and in practice the error is small (Cloudflare
//! measured 0.003 % of requests misjudged with this scheme). Clocks of
//! different processes should agree to well under `W`.
//!
//! # Headers
//!
//! Every limited response carries (draft-ietf-httpapi-ratelimit-headers):
//!
//! * `RateLimit-Limit`: `L`;
//! * `RateLimit-Remaining`: `L − estimate`, at least 0;
//! * `RateLimit-Reset`: seconds (rounded up) until capacity frees: when
//!   nothing remains, until the next request would pass (the same value as
//!   `Retry-After`); otherwise until the current window ends, when its count
//!   starts to decay.
//!
//! A request over the limit gets `429 Too Many Requests` with those fields
//! and `Retry-After` (seconds, at least 1), without reaching the inner service.
//!
//! # Where counters live
//!
//! Counters must not compete with cached data for room: an in-memory cache
//! full of hot entries would evict them (or refuse to admit them), and every
//! lost counter lets a client through again. So:
//!
//! * given an in-process cache (`memory`, or `none`, which stores nothing),
//!   [`RateLimitLayer::new`] keeps the counters in **its own in-process
//!   store**, apart from the cache: it admits every counter, holds
//!   [`DEFAULT_MAX_COUNTERS`] of them (two per active client; change it with
//!   [`max_counters`](RateLimitLayer::max_counters)), and when full drops the
//!   counters closest to expiry first (counted in
//!   [`RateLimitStats::evicted`] and logged). Limits are then per process. A
//!   `none` cache does not switch rate limiting off: the limiter says so at
//!   WARN and counts on its own;
//! * given any other store (Redis, Redis Cluster, Memcached, your own
//!   [`Backend`](crate::backend::Backend)), counters go to that store, shared by every
//!   process. Such a store evicts by its own policy: give Redis a `maxmemory`
//!   policy that spares keys with a TTL (`volatile-*`, or `noeviction`), or a
//!   store of their own (`RATE_LIMIT_STORAGE_URI`, [`RateLimitLayer::from_uri`]).
//!
//! Counter keys never hold the client key itself (an API key from
//! [`key_fn`](RateLimitLayer::key_fn), an IP address): they hold its stable
//! 128-bit hash (SipHash-1-3, the same in every process, so a fleet shares
//! counters), see [`key_prefix`](RateLimitLayer::key_prefix).
//!
//! # Store failures
//!
//! The check goes through the cache's op timeout and circuit breaker (a dead
//! store costs microseconds once the circuit is open). With
//! [`fail_open(true)`](RateLimitLayer::fail_open) (the default) requests pass
//! unlimited, **without** `RateLimit-*` fields (a guess would mislead
//! clients); with `fail_open(false)` they get `503 Service Unavailable` with
//! `Retry-After: 1`. Either way the limiter is never silent about it: when the
//! layer is applied to a service it checks its store once (in the background)
//! and logs a WARN (an ERROR for a store that cannot count at all, a
//! [`Backend`](crate::backend::Backend) without `increment`) naming what to fix; every
//! failed check is counted ([`RateLimitLayer::stats`]) and logged at most
//! once per 10 s, with the number of failures held back since.
//!
//! No error, log line or `Debug` output of the limiter holds the password of
//! a storage URI: it appears as `***`.

//!
//! The files: `layer.rs` (the configuration), `storage.rs` (storage URIs and
//! auto-detection), `service.rs` (who the client is, what is answered),
//! `future.rs`, `window.rs` (the sliding-window counter), `failures.rs`
//! (the startup check, and how store failures are counted and logged),
//! `counters.rs` (the limiter's own in-process store), `redact.rs`.

mod counters;
mod failures;
mod future;
mod layer;
mod redact;
mod service;
mod storage;
mod window;

use std::sync::atomic::{AtomicU64, Ordering};

use http::header::HeaderName;

pub use future::RateLimitFuture;
pub use layer::RateLimitLayer;
pub use service::RateLimit;
pub use window::Decision;

/// The environment variable [`RateLimitLayer::from_env`] reads (every
/// variable cacheside defines for the limiter is spelled `RATE_LIMIT_*`).
/// flarchitect's `API_RATE_LIMIT_STORAGE_URI` is a key of its Flask config,
/// not a variable; cacheside reads no other spelling.
///
/// ```
/// assert_eq!(cacheside::http::RATE_LIMIT_STORAGE_URI, "RATE_LIMIT_STORAGE_URI");
/// ```
pub const RATE_LIMIT_STORAGE_URI: &str = "RATE_LIMIT_STORAGE_URI";

/// The key shared by every request whose client cannot be identified (no
/// `ConnectInfo`, no trusted `X-Forwarded-For`): such requests are limited
/// together, as one client.
///
/// ```
/// assert_eq!(cacheside::http::RATE_LIMIT_FALLBACK_KEY, "unknown");
/// ```
pub const RATE_LIMIT_FALLBACK_KEY: &str = "unknown";

/// `RateLimit-Limit`.
///
/// The three header-name constants are spelled after the header fields
/// (`RateLimit-Limit`), the way `http::header` names its constants; they are
/// not environment variables (those are spelled `RATE_LIMIT_*`).
///
/// ```
/// assert_eq!(cacheside::http::RATE_LIMIT_LIMIT_HEADER.as_str(), "ratelimit-limit");
/// ```
pub const RATE_LIMIT_LIMIT_HEADER: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`.
///
/// ```
/// assert_eq!(cacheside::http::RATE_LIMIT_REMAINING_HEADER.as_str(), "ratelimit-remaining");
/// ```
pub const RATE_LIMIT_REMAINING_HEADER: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`.
///
/// ```
/// assert_eq!(cacheside::http::RATE_LIMIT_RESET_HEADER.as_str(), "ratelimit-reset");
/// ```
pub const RATE_LIMIT_RESET_HEADER: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Counters held by the limiter's own in-process store (two per active
/// client: the current window and the previous one), unless
/// [`RateLimitLayer::max_counters`] says otherwise.
///
/// ```
/// assert_eq!(cacheside::http::DEFAULT_MAX_COUNTERS, 100_000);
/// ```
pub const DEFAULT_MAX_COUNTERS: u64 = 100_000;

/// What a [`RateLimitLayer`] has done since it was built, read with
/// [`RateLimitLayer::stats`]: what it let through, refused, and could not
/// decide.
///
/// ```
/// let s = cacheside::http::RateLimitStats::default();
/// assert_eq!((s.allowed, s.limited, s.failed_open), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitStats {
    /// Checks within the limit.
    pub allowed: u64,
    /// Checks over the limit (`429`).
    pub limited: u64,
    /// Checks the store could not answer (failures, timeouts, open circuit,
    /// no `increment`), startup check included.
    pub store_errors: u64,
    /// Requests let through unlimited because the store failed (`fail_open(true)`).
    pub failed_open: u64,
    /// Requests answered `503` because the store failed (`fail_open(false)`).
    pub failed_closed: u64,
    /// Counters the limiter's own in-process store dropped because it was
    /// full (those clients were limited leniently; see
    /// [`RateLimitLayer::max_counters`]).
    pub evicted: u64,
}

/// What [`RateLimitStats`] reports, counted as it happens.
#[derive(Debug, Default)]
struct Counts {
    allowed: AtomicU64,
    limited: AtomicU64,
    store_errors: AtomicU64,
    failed_open: AtomicU64,
    failed_closed: AtomicU64,
}

/// Adds one to `counter`; the new value.
fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

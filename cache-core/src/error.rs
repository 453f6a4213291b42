//! The one error type of cacheside: every message says what went wrong and what to do next.

use std::time::Duration;

/// Boxed source error carried by [`Error::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in cacheside.
///
/// Annotated functions never return this type: they fail open (the body runs,
/// a warning is logged, [`Stats::errors`](crate::Stats::errors) moves). The
/// provider API ([`Cache::get`](crate::Cache::get) and friends), configuration
/// and initialisation do return it, so callers can decide.
///
/// ```
/// let err = cache_core::Error::Config {
///     var: "CACHE_BACKEND",
///     value: "rdis".into(),
///     allowed: "memory, redis",
/// };
/// assert_eq!(
///     err.to_string(),
///     "invalid value \"rdis\" for CACHE_BACKEND: expected memory, redis; fix the variable or unset it to use the default"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable (or config value) is malformed.
    #[error("invalid value {value:?} for {var}: expected {allowed}; fix the variable or unset it to use the default")]
    Config {
        /// The variable, e.g. `CACHE_BACKEND`.
        var: &'static str,
        /// The value that was found.
        value: String,
        /// What would have been accepted.
        allowed: &'static str,
    },

    /// `init` was called after a global cache was already in place.
    #[error("the global cache is already initialised (by an earlier `init`/`init_from_env`, or lazily by the first annotated call); call `init` once at startup, before the first cached call, or use `register(name, cache)` for more caches")]
    AlreadyInitialized,

    /// The backend named in the configuration is not compiled in.
    #[error("backend {backend:?} is not compiled in: enable the `{feature}` feature of cacheside")]
    BackendNotCompiled {
        /// The backend name from the configuration.
        backend: String,
        /// The cargo feature that provides it.
        feature: &'static str,
    },

    /// The store reported an error (connection refused, protocol error, …).
    #[error("{backend} store error during {op}: {source}; the call fell back to the uncached path if it came from an annotated function")]
    Backend {
        /// Backend name, e.g. `redis`.
        backend: &'static str,
        /// The operation, e.g. `get`.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// The store did not answer within the operation timeout.
    #[error("{backend} store did not answer {op} within {after:?}; check the server, or raise CACHE_OP_TIMEOUT_MS")]
    Timeout {
        /// Backend name.
        backend: &'static str,
        /// The operation.
        op: &'static str,
        /// The timeout that elapsed.
        after: Duration,
    },

    /// The store has failed repeatedly; calls skip it until the cool-down ends.
    #[error("{backend} store is failing, requests skip it for now (circuit open); it is probed again after the cool-down")]
    CircuitOpen {
        /// Backend name.
        backend: &'static str,
    },

    /// This backend cannot match key patterns (Memcached).
    #[error("the {backend} backend cannot delete by pattern; delete exact keys instead, or use Redis for pattern invalidation")]
    PatternNotSupported {
        /// Backend name.
        backend: &'static str,
    },

    /// A value could not be encoded for the store.
    #[error(
        "could not encode the value with the {codec} codec: {message}; check its Serialize impl"
    )]
    Encode {
        /// Codec name.
        codec: &'static str,
        /// What the codec said.
        message: String,
    },

    /// Bytes in the store did not decode as the requested type.
    ///
    /// The provider API reports this; the entry has already been deleted.
    #[error("the entry under {key:?} is not a valid {expected} ({reason}); it was deleted, the next write replaces it")]
    Decode {
        /// The full store key.
        key: String,
        /// The type that was asked for.
        expected: &'static str,
        /// Why it did not decode.
        reason: String,
    },

    /// The encoded value is larger than the cache accepts.
    #[error("value of {size} bytes exceeds the limit of {limit} bytes; raise it with CacheBuilder::max_value_size or store less")]
    ValueTooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// The backend does not implement an operation (a custom [`Backend`](crate::Backend)
    /// written before the operation existed, or a store that cannot offer it).
    #[error("the {backend} backend does not support {op}; implement `Backend::{op}` for it, or use a built-in store (memory, redis, redis-cluster, memcached)")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// The operation, e.g. `increment`.
        op: &'static str,
    },

    /// A key is not acceptable to the store.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
}

impl Error {
    /// Wraps a store error.
    ///
    /// ```
    /// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    /// let err = cache_core::Error::backend("mystore", "get", io);
    /// assert!(err.to_string().contains("mystore store error during get"));
    /// ```
    pub fn backend(backend: &'static str, op: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            backend,
            op,
            source: source.into(),
        }
    }

    /// True when the error says the store is unreachable or slow (as opposed to bad input).
    pub fn is_store_failure(&self) -> bool {
        matches!(
            self,
            Error::Backend { .. } | Error::Timeout { .. } | Error::CircuitOpen { .. }
        )
    }
}

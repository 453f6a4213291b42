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
    ///
    /// The message never shows a secret: URLs in `value` are shown through
    /// [`redact_url`](crate::redact_url), and the value of a password
    /// variable (`CACHE_REDIS_PASSWORD`) as `***`. Build it with
    /// [`Error::config`] to have `value` itself redacted too.
    #[error("invalid value {:?} for {var}: expected {allowed}; fix the variable or unset it to use the default", crate::redact::shown_value(.var, .value))]
    Config {
        /// The variable, e.g. `CACHE_BACKEND`.
        var: &'static str,
        /// The value that was found (redacted when built by cacheside).
        value: String,
        /// What would have been accepted.
        allowed: &'static str,
    },

    /// The store answered at startup but refused the configuration: a wrong or
    /// missing password, a database number it does not have, nodes that are
    /// not a cluster, an address that is not such a store. Returned by
    /// `init_from_env` / `cache_backends::connect` at once (no retries), so a
    /// broken setup does not start; a store that is merely unreachable starts
    /// and fails open instead.
    ///
    /// ```
    /// let err = cache_core::Error::Misconfigured {
    ///     backend: "redis",
    ///     server: "127.0.0.1:6379".into(),
    ///     problem: "the server requires a password and none was given (NOAUTH)".into(),
    ///     var: "CACHE_REDIS_PASSWORD (or the password in CACHE_REDIS_URL)",
    /// };
    /// assert!(err.to_string().contains("fix CACHE_REDIS_PASSWORD"));
    /// ```
    #[error("the {backend} store at {server} cannot be used as configured: {problem}; fix {var} (the cache was not started)")]
    Misconfigured {
        /// Backend name, e.g. `redis`.
        backend: &'static str,
        /// The server (`host:port`, never with credentials).
        server: String,
        /// What the server said, credentials removed.
        problem: String,
        /// The variable(s) to fix, e.g. `CACHE_REDIS_PASSWORD`.
        var: &'static str,
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

    /// An [`Error::Config`] for `value` of `var`, with the value redacted:
    /// URLs through [`redact_url`](crate::redact_url), password variables
    /// (names ending in `PASSWORD`) never echoed.
    ///
    /// ```
    /// let err = cache_core::Error::config("CACHE_REDIS_URL", "http://:hunter2@h", "a redis:// URL");
    /// assert!(!format!("{err} {err:?}").contains("hunter2"));
    /// let err = cache_core::Error::config("CACHE_REDIS_PASSWORD", "hunter2", "a password");
    /// assert!(!format!("{err} {err:?}").contains("hunter2"));
    /// ```
    pub fn config(var: &'static str, value: &str, allowed: &'static str) -> Self {
        Error::Config {
            var,
            value: crate::redact::shown_value(var, value),
            allowed,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw value in a struct literal (as older code builds it) is still
    /// redacted in the message, for every variable that holds URLs or a password.
    #[test]
    fn config_errors_never_display_a_password() {
        let cases = [
            ("CACHE_REDIS_URL", "redis://:hunter2@cache:6379/0"),
            (
                "CACHE_REDIS_CLUSTER_NODES",
                "redis://:hunter2@n1:7000,redis://:hunter2@n2:7000",
            ),
            ("RATE_LIMIT_STORAGE_URI", "redis://app:hunter2@cache/1"),
            (
                "RATE_LIMIT_STORAGE_URI",
                "redis-cluster://:hunter2@n1:7000,:hunter2@n2:7000",
            ),
            ("CACHE_REDIS_URL", "unix:///run/redis.sock?pass=hunter2"),
            ("CACHE_REDIS_PASSWORD", "hunter2"),
        ];
        for (var, value) in cases {
            let literal = Error::Config {
                var,
                value: value.to_owned(),
                allowed: "something else",
            };
            let shown = literal.to_string();
            assert!(shown.contains(var), "{shown}");
            assert!(!shown.contains("hunter2"), "{var}: {shown}");
            let built = Error::config(var, value, "something else");
            let shown = format!("{built} {built:?}");
            assert!(!shown.contains("hunter2"), "{var}: {shown}");
        }
    }
}

//! Stores for [cacheside](https://docs.rs/cacheside), each behind a cargo feature.
//!
//! | feature | type | store |
//! |---|---|---|
//! | `memory` (default) | `MemoryBackend` | in-process, moka |
//! | `redis` | `RedisBackend`, `RedisBackplane` | one Redis server (redis-rs `ConnectionManager`); pub/sub backplane |
//! | `redis-cluster` | `RedisClusterBackend` | a Redis Cluster (redis-rs `cluster-async`) |
//! | `redis-sentinel` | `RedisBackend` (`connect_sentinel`), `RedisSentinel` | the master a set of Redis Sentinels names, followed across failovers |
//! | `tls` | | `rediss://` URLs for both Redis backends (rustls) |
//! | `memcached` | `MemcachedBackend` | one or more Memcached servers (meta protocol) |
//!
//! Each backend reads its own variables (`MemoryConfig`, `RedisConfig`,
//! `MemcachedConfig`, by the rules of [`cache_core::env`]) and starts from
//! them with the [`Timeouts`] every network store shares; the `cacheside`
//! facade's `Config` puts the sections together and picks the store.
// docs.rs (nightly, `--cfg docsrs`): each feature-gated item shows the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

use std::time::Duration;

use cache_core::Error;

mod auto;
pub use auto::auto;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "memory")]
pub use memory::{MemoryBackend, MemoryConfig};
// Each network backend lives in its own module behind its feature; each module
// provides its `…Config` (read from the environment) and a
// `connect_…(&…Config, Timeouts) -> Result<Box<dyn Backend>, Error>`.
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use crate::redis::*;
#[cfg(feature = "memcached")]
mod memcached;
#[cfg(feature = "memcached")]
pub use crate::memcached::*;

/// `fut` bounded by `limit`: [`Error::Timeout`] naming the store and the
/// operation when it runs out. For the exchanges a network backend bounds
/// itself, those no [`Cache`] timer covers call by call.
#[cfg(any(feature = "redis", feature = "memcached"))]
async fn within<T>(
    backend: &'static str,
    op: &'static str,
    limit: std::time::Duration,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Error> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| Error::Timeout {
            backend,
            op,
            after: limit,
        })
}

/// Why a store did not answer at startup, for the warning: the store's own
/// words (an [`Error::Backend`]'s source), not the advice for a failed call.
#[cfg(any(feature = "redis", feature = "memcached"))]
pub(crate) fn startup_reason(e: &Error) -> String {
    match e {
        Error::Backend { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// The bounds every network store starts with: `CACHE_CONNECT_TIMEOUT_MS`
/// (the startup check and each connection attempt) and
/// `CACHE_OP_TIMEOUT_MS` (each exchange the backend bounds itself).
///
/// ```
/// let t = cache_backends::Timeouts::default();
/// assert_eq!((t.connect.as_millis(), t.op.as_millis()), (1000, 250));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long startup waits for a store before taking it as unreachable.
    pub connect: Duration,
    /// The bound on one store operation.
    pub op: Duration,
}

/// Default of `CACHE_CONNECT_TIMEOUT_MS`: how long startup waits for a network store.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            op: cache_core::DEFAULT_OP_TIMEOUT,
        }
    }
}

/// The error for a store whose feature is not compiled in.
pub fn not_compiled(backend: &str, feature: &'static str) -> Error {
    Error::BackendNotCompiled {
        backend: backend.to_owned(),
        feature,
    }
}

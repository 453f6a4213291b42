//! Stores for [cacheside](https://docs.rs/cacheside), each behind a cargo feature.
//!
//! | feature | type | store |
//! |---|---|---|
//! | `memory` (default) | `MemoryBackend` | in-process, moka |
//! | `redis` | `RedisBackend` | one Redis server (redis-rs `ConnectionManager`) |
//! | `redis-cluster` | `RedisClusterBackend` | a Redis Cluster (redis-rs `cluster-async`) |
//! | `tls` | | `rediss://` URLs for both Redis backends (rustls) |
//! | `memcached` | `MemcachedBackend` | one or more Memcached servers (meta protocol) |
//!
//! [`connect`] builds the store a [`Config`] names (this is what
//! `cacheside::init_from_env` calls).
#![warn(missing_docs)]

use cache_core::{BackendKind, Cache, Config, Error, NullBackend};

mod auto;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "memory")]
pub use memory::MemoryBackend;
// Each network backend lives in its own module behind its feature; each module
// provides `connect_from_config(&Config) -> Result<Box<dyn Backend>, Error>`
// (and `cluster_from_config` for the cluster).
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

/// Builds the [`Cache`] that `config` describes, connecting to its store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
/// let cache = cache_backends::connect(&cache_core::Config::default()).await?;
/// assert_eq!(cache.backend_name(), "memory");
/// # Ok(()) }
/// ```
pub async fn connect(config: &Config) -> Result<Cache, Error> {
    let backend: Box<dyn cache_core::Backend> = match config.backend {
        BackendKind::Memory => memory_backend(config)?,
        BackendKind::None => Box::new(NullBackend),
        BackendKind::Auto => auto::choose(config).await?,
        #[cfg(feature = "redis")]
        BackendKind::Redis => crate::redis::connect_from_config(config).await?,
        #[cfg(not(feature = "redis"))]
        BackendKind::Redis => return Err(not_compiled("redis", "redis")),
        #[cfg(feature = "redis-cluster")]
        BackendKind::RedisCluster => crate::redis::cluster_from_config(config).await?,
        #[cfg(not(feature = "redis-cluster"))]
        BackendKind::RedisCluster => return Err(not_compiled("redis-cluster", "redis-cluster")),
        #[cfg(feature = "memcached")]
        BackendKind::Memcached => crate::memcached::connect_from_config(config).await?,
        #[cfg(not(feature = "memcached"))]
        BackendKind::Memcached => return Err(not_compiled("memcached", "memcached")),
        other => return Err(not_compiled(other.as_str(), "a newer cacheside")),
    };
    Ok(Cache::builder_boxed(backend)
        .namespace(&config.namespace)
        .default_ttl(config.default_ttl)
        .op_timeout(config.op_timeout)
        .build())
}

fn not_compiled(backend: &str, feature: &'static str) -> Error {
    Error::BackendNotCompiled {
        backend: backend.to_owned(),
        feature,
    }
}

#[cfg(feature = "memory")]
pub(crate) fn memory_backend(config: &Config) -> Result<Box<dyn cache_core::Backend>, Error> {
    Ok(Box::new(MemoryBackend::from_config(config)))
}

#[cfg(not(feature = "memory"))]
pub(crate) fn memory_backend(_config: &Config) -> Result<Box<dyn cache_core::Backend>, Error> {
    Err(not_compiled("memory", "memory"))
}

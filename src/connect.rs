//! From a [`Config`] to a [`Cache`]: pick the store `CACHE_BACKEND` names
//! and start it from its own section of the configuration.

use cache_core::{Backend, Cache, Error, NullBackend};

use crate::config::{BackendKind, Config};

/// Builds the [`Cache`] that `config` describes, connecting to its store.
///
/// A store that refuses the configuration (a wrong password, a malformed
/// address) is an error; one that does not answer within
/// `connect_timeout` is not: the cache starts, fails open, and uses the
/// store as soon as it answers.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
/// let cache = cacheside::backends::connect(&cacheside::Config::default()).await?;
/// assert_eq!(cache.backend_name(), "memory");
/// # Ok(()) }
/// ```
pub async fn connect(config: &Config) -> Result<Cache, Error> {
    let backend = store(config).await?;
    Ok(Cache::builder_boxed(backend)
        .namespace(&config.namespace)
        .default_ttl(config.default_ttl)
        .op_timeout(config.op_timeout)
        .build())
}

async fn store(config: &Config) -> Result<Box<dyn Backend>, Error> {
    #[allow(unused_variables)] // without network stores compiled in
    let timeouts = config.timeouts();
    Ok(match config.backend {
        #[cfg(feature = "memory")]
        BackendKind::Memory => Box::new(cache_backends::MemoryBackend::from_config(&config.memory)),
        BackendKind::None => Box::new(NullBackend),
        #[cfg(feature = "memory")]
        BackendKind::Auto => cache_backends::auto(&config.memory, timeouts).await?,
        #[cfg(not(feature = "memory"))]
        BackendKind::Auto => cache_backends::auto(timeouts).await?,
        #[cfg(feature = "redis")]
        BackendKind::Redis => cache_backends::connect_redis(&config.redis, timeouts).await?,
        #[cfg(feature = "redis-cluster")]
        BackendKind::RedisCluster => {
            cache_backends::connect_redis_cluster(&config.redis, timeouts).await?
        }
        #[cfg(feature = "memcached")]
        BackendKind::Memcached => {
            cache_backends::connect_memcached(&config.memcached, timeouts).await?
        }
        // Reached only for the stores whose feature is off.
        #[allow(unreachable_patterns)]
        other => {
            let feature = match other {
                BackendKind::Memory => "memory",
                BackendKind::Redis => "redis",
                BackendKind::RedisCluster => "redis-cluster",
                BackendKind::Memcached => "memcached",
                _ => "a newer cacheside",
            };
            return Err(cache_backends::not_compiled(other.as_str(), feature));
        }
    })
}

/// The global cache the first annotated call builds when no `init` ran.
pub(crate) async fn from_env_lazily() -> Result<Cache, Error> {
    let config = Config::from_env()?;
    if config.backend == BackendKind::Memory {
        tracing::info!("cacheside uses the in-memory store (CACHE_BACKEND unset or memory); entries are per process");
    }
    connect(&config).await
}

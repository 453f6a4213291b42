//! From a [`Config`] to a [`Cache`]: pick the store `CACHE_BACKEND` names
//! and start it from its own section of the configuration.

use cache_core::backplane::Backplane;
use cache_core::{Backend, Cache, CacheBuilder, Error, NullBackend};

use crate::config::{BackendKind, BackplaneSetting, Config};

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
    let name = backend.name();
    let builder = Cache::builder_boxed(backend)
        .namespace(&config.namespace)
        .default_ttl(config.default_ttl)
        .op_timeout(config.op_timeout);
    let builder = match config.fail_safe {
        Some(fs) => builder.fail_safe(fs),
        None => builder,
    }
    .jitter(config.jitter)
    .record_keys(config.trace_keys);
    let builder = match config.lease {
        Some(lease) => builder.lease(lease),
        None => builder,
    };
    #[cfg(feature = "compression")]
    let builder = match config.compression {
        Some(compression) => builder.compress(compression),
        None => builder,
    };
    let cache = hybrid(builder, config, name)?.build();
    if !cache.backplane_ready(config.connect_timeout).await {
        tracing::warn!(
            store = name,
            "the cache backplane did not subscribe within CACHE_CONNECT_TIMEOUT_MS; starting anyway (the local tier is flushed when it does)"
        );
    }
    Ok(cache)
}

/// The local tier in front of a network store, with its backplane: on by
/// default over Redis (the store is the backplane); over Memcached with
/// `CACHE_BACKPLANE=redis://…`; without a backplane only when
/// `CACHE_LOCAL_TTL` is set (it bounds how long an invalidation made in
/// another process goes unseen here).
fn hybrid(builder: CacheBuilder, config: &Config, store: &str) -> Result<CacheBuilder, Error> {
    if config.local.max_entries == 0 || !matches!(store, "redis" | "redis-cluster" | "memcached") {
        return Ok(builder);
    }
    Ok(match backplane(config, store)? {
        Some(backplane) => builder.local(config.local).backplane_boxed(backplane),
        None if config.local_ttl_set => {
            tracing::info!(
                store,
                local_ttl = ?config.local.ttl,
                "local cache tier without a backplane: another process's invalidation can stay unseen here for up to CACHE_LOCAL_TTL"
            );
            builder.local(config.local)
        }
        None => {
            tracing::info!(
                store,
                "no local cache tier: no backplane to keep it coherent (set CACHE_BACKPLANE=redis://…, or CACHE_LOCAL_TTL to accept that bound)"
            );
            builder
        }
    })
}

/// The backplane channel of the caches of one namespace
/// (`cacheside:invalidations:{namespace}`, the namespace encoded like a key
/// value). [`connect`] uses it; a cache whose backplane you build by hand
/// must use it too, to hear the others and be heard.
///
/// ```
/// assert_eq!(cacheside::backends::backplane_channel("shop"), "cacheside:invalidations:shop");
/// assert_eq!(cacheside::backends::backplane_channel("a:b"), "cacheside:invalidations:a%3Ab");
/// ```
pub fn backplane_channel(namespace: &str) -> String {
    format!(
        "cacheside:invalidations:{}",
        cache_core::keys::part(namespace)
    )
}

#[allow(unused_variables)] // without Redis compiled in
fn backplane(config: &Config, store: &str) -> Result<Option<Box<dyn Backplane>>, Error> {
    // Behind Sentinel the store's backplane follows the master the Sentinels name.
    #[cfg(feature = "redis-sentinel")]
    if matches!(config.backplane, BackplaneSetting::Store) && store == "redis" {
        if let Some(target) = cache_backends::RedisSentinel::from_config(&config.redis) {
            let backplane = cache_backends::RedisBackplane::with_sentinel(
                &target,
                &backplane_channel(&config.namespace),
                config.op_timeout,
                &cache_backends::RedisOptions::with_timeouts(config.timeouts()),
            )?;
            return Ok(Some(Box::new(backplane)));
        }
    }
    let nodes: Vec<String> = match &config.backplane {
        BackplaneSetting::None => return Ok(None),
        BackplaneSetting::Redis(url) => vec![url.clone()],
        #[cfg(feature = "redis")]
        BackplaneSetting::Store if store == "redis" => vec![config.redis.url.clone()],
        #[cfg(feature = "redis")]
        BackplaneSetting::Store if store == "redis-cluster" => config.redis.cluster_nodes.clone(),
        _ => return Ok(None),
    };
    #[cfg(feature = "redis")]
    {
        let options = cache_backends::RedisOptions::with_timeouts(config.timeouts());
        let backplane = cache_backends::RedisBackplane::with_options(
            &nodes,
            &backplane_channel(&config.namespace),
            config.op_timeout,
            &options,
        )?;
        Ok(Some(Box::new(backplane)))
    }
    #[cfg(not(feature = "redis"))]
    Err(cache_backends::not_compiled(
        "CACHE_BACKPLANE=redis://…",
        "redis",
    ))
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

//! Where the counters live when the layer is built from a storage URI
//! ([`RateLimitLayer::from_uri`]) or from the environment
//! ([`RateLimitLayer::from_env`], `RATE_LIMIT_STORAGE_URI`).

use std::sync::Arc;
use std::time::Duration;

use super::{redact, RateLimitLayer, DEFAULT_MAX_COUNTERS, RATE_LIMIT_STORAGE_URI};
use crate::{BackendKind, Config, Error};

const URI_ALLOWED: &str = "memory://, redis://host:port[/db], rediss://… (feature tls), redis-cluster://host:port,host:port, memcached://host:port[,host:port]";

impl RateLimitLayer {
    /// Like [`new`](RateLimitLayer::new), with the store named by a
    /// `RATE_LIMIT_STORAGE_URI`-style URI:
    ///
    /// | URI | store |
    /// |---|---|
    /// | `memory://` | the limiter's own in-process store ([`in_process`](RateLimitLayer::in_process): each process limits on its own) |
    /// | `redis://[[user]:password@]host:port[/db]`, `rediss://…` (feature `tls`) | one Redis server (features `redis`) |
    /// | `redis-cluster://host:port,host:port,…` | a Redis Cluster (feature `redis-cluster`; plain TCP without password: for those build a `RedisClusterBackend` and use [`new`](RateLimitLayer::new)) |
    /// | `memcached://host:port[,host:port…]` | Memcached (feature `memcached`) |
    ///
    /// Anything else is an [`Error::Config`] naming `RATE_LIMIT_STORAGE_URI`;
    /// a store that is not compiled in is [`Error::BackendNotCompiled`]. A
    /// password in the URI appears as `***` in every error, log line and
    /// `Debug` output of the limiter. A Redis server that does not answer yet
    /// does not fail (the limiter fails open until it does, and says so);
    /// Memcached must answer at least once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cacheside::http::RateLimitLayer;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
    /// let layer = RateLimitLayer::from_uri("memory://", 100, Duration::from_secs(60)).await?;
    /// assert_eq!(layer.cache().backend_name(), "memory");
    ///
    /// let err = RateLimitLayer::from_uri("mongodb://app:s3cret@db:27017", 100, Duration::from_secs(60)).await.unwrap_err();
    /// assert!(err.to_string().contains("RATE_LIMIT_STORAGE_URI"));
    /// assert!(err.to_string().contains("mongodb://app:***@db:27017"));
    /// assert!(!format!("{err} {err:?}").contains("s3cret"));
    /// # Ok(()) }
    /// ```
    pub async fn from_uri(uri: &str, limit: u64, window: Duration) -> Result<Self, Error> {
        let shown = redact::redact_uri(uri.trim());
        let config = config_for_uri(uri).map_err(|e| redact::scrub(e, uri))?;
        let mut layer = if config.backend == BackendKind::Memory {
            tracing::info!(
                capacity = DEFAULT_MAX_COUNTERS,
                "rate limits stored in memory ({RATE_LIMIT_STORAGE_URI}={shown}): the limiter's own in-process store, limits hold per process"
            );
            Self::in_process(limit, window)
        } else {
            let cache = crate::backends::connect(&config)
                .await
                .map_err(|e| redact::scrub(e, uri))?;
            tracing::info!(
                backend = cache.backend_name(),
                "rate limits stored in {} ({RATE_LIMIT_STORAGE_URI}={shown})",
                cache.backend_name()
            );
            Self::new(cache, limit, window)
        };
        Arc::make_mut(&mut layer.settings).source = Some(shown);
        Ok(layer)
    }

    /// [`from_uri`](RateLimitLayer::from_uri) with `RATE_LIMIT_STORAGE_URI`;
    /// when it is unset (or empty), uses Redis on 127.0.0.1:6379 if it
    /// answers, else Memcached on 127.0.0.1:11211, else the limiter's own
    /// in-process store (each only when compiled in; 200 ms per probe). Logs
    /// the choice at `info`.
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
    /// let layer = cacheside::http::RateLimitLayer::from_env(100, Duration::from_secs(60)).await?;
    /// println!("rate limits in {}", layer.cache().backend_name());
    /// # Ok(()) }
    /// ```
    pub async fn from_env(limit: u64, window: Duration) -> Result<Self, Error> {
        match std::env::var(RATE_LIMIT_STORAGE_URI) {
            Ok(uri) if !uri.trim().is_empty() => Self::from_uri(&uri, limit, window).await,
            _ => {
                #[allow(unused_mut)] // without the memory store compiled in
                let mut config = Config {
                    backend: BackendKind::Auto,
                    ..Config::default()
                };
                // Only a probe: an in-process choice gets the limiter's own store.
                #[cfg(feature = "memory")]
                {
                    config.memory.max_entries = 1;
                }
                let cache = crate::backends::connect(&config).await?;
                tracing::info!(
                    backend = cache.backend_name(),
                    "{RATE_LIMIT_STORAGE_URI} is unset: rate limits stored in {} (auto-detected)",
                    cache.backend_name()
                );
                Ok(Self::new(cache, limit, window))
            }
        }
    }
}

/// The store [`Config`] of a `RATE_LIMIT_STORAGE_URI`.
fn config_for_uri(uri: &str) -> Result<Config, Error> {
    let bad = || Error::Config {
        var: RATE_LIMIT_STORAGE_URI,
        value: redact::redact_uri(uri),
        allowed: URI_ALLOWED,
    };
    let trimmed = uri.trim();
    let (scheme, rest) = trimmed.split_once("://").ok_or_else(bad)?;
    let mut config = Config::default();
    let list = |rest: &str| -> Vec<String> {
        rest.trim_end_matches('/')
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match scheme.to_ascii_lowercase().as_str() {
        "memory" if rest.trim_end_matches('/').is_empty() => config.backend = BackendKind::Memory,
        "redis" | "rediss" if !rest.is_empty() => {
            config.backend = BackendKind::Redis;
            // Without the feature the kind alone makes connect say which feature to enable.
            #[cfg(feature = "redis")]
            {
                config.redis.url = trimmed.to_owned();
            }
        }
        "redis-cluster" | "redis+cluster" => {
            let nodes = list(rest);
            if nodes.is_empty() {
                return Err(bad());
            }
            config.backend = BackendKind::RedisCluster;
            #[cfg(feature = "redis")]
            {
                config.redis.cluster_nodes =
                    nodes.into_iter().map(|n| format!("redis://{n}")).collect();
            }
        }
        "memcached" => {
            let servers = list(rest);
            if servers.is_empty() {
                return Err(bad());
            }
            config.backend = BackendKind::Memcached;
            #[cfg(feature = "memcached")]
            {
                config.memcached.servers = servers;
            }
        }
        _ => return Err(bad()),
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_uris() {
        let c = config_for_uri("memory://").unwrap();
        assert_eq!(c.backend, BackendKind::Memory);
        let c = config_for_uri("redis://:pw@10.0.0.1:6379/2").unwrap();
        assert_eq!(
            (c.backend, c.redis.url.as_str()),
            (BackendKind::Redis, "redis://:pw@10.0.0.1:6379/2")
        );
        let c = config_for_uri("redis-cluster://a:7000, b:7001").unwrap();
        assert_eq!(c.redis.cluster_nodes, ["redis://a:7000", "redis://b:7001"]);
        let c = config_for_uri("memcached://a:11211,b:11211").unwrap();
        assert_eq!(
            (c.backend, c.memcached.servers.len()),
            (BackendKind::Memcached, 2)
        );
        for bad in [
            "",
            "memory",
            "mongodb://x:1",
            "memcached://",
            "redis://",
            "memory://x",
            "http://x",
        ] {
            let err = config_for_uri(bad).unwrap_err();
            assert!(
                matches!(&err, Error::Config { var: RATE_LIMIT_STORAGE_URI, value, .. } if value == bad),
                "{bad:?}: {err}"
            );
        }
        for (bad, shown) in [
            ("mongodb://app:hunter2@db:1", "mongodb://app:***@db:1"),
            ("memory://u:hunter2@x", "memory://u:***@x"),
            ("redis:hunter2@x", "redis:***@x"),
        ] {
            let err = config_for_uri(bad).unwrap_err();
            assert!(
                matches!(&err, Error::Config { var: RATE_LIMIT_STORAGE_URI, value, .. } if value == shown),
                "{bad:?}: {err}"
            );
            assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
        }
    }
}

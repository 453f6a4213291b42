//! `CACHE_BACKEND=auto`: use a store that answers on localhost, else memory.

use std::net::SocketAddr;
use std::time::Duration;

use cache_core::{Backend, Error};

use crate::Timeouts;

/// How long `auto` waits for each local port.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

async fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// `CACHE_BACKEND=auto`: probes 127.0.0.1:6379 (Redis), then
/// 127.0.0.1:11211 (Memcached), each if compiled in; falls back to the
/// in-memory store `memory` describes. Logs the choice.
pub async fn auto(
    #[cfg(feature = "memory")] memory: &crate::MemoryConfig,
    timeouts: Timeouts,
) -> Result<Box<dyn Backend>, Error> {
    #[cfg(feature = "redis")]
    if answers(6379).await {
        match crate::redis::start("redis://127.0.0.1:6379/0", timeouts).await {
            Ok(crate::redis::Startup::Ready(b)) => {
                tracing::info!("CACHE_BACKEND=auto: using Redis on 127.0.0.1:6379");
                return Ok(Box::new(b));
            }
            Ok(crate::redis::Startup::Unreachable(_, e)) => {
                tracing::info!(error = %e, "CACHE_BACKEND=auto: 127.0.0.1:6379 answered but Redis did not")
            }
            // Redis is there but refuses us (a password is required): say so loudly.
            Err(e) => {
                tracing::warn!(error = %e, "CACHE_BACKEND=auto: Redis on 127.0.0.1:6379 refused the connection; not using it (set CACHE_BACKEND=redis and the password to use it)")
            }
        }
    }
    #[cfg(feature = "memcached")]
    if answers(11211).await {
        let local = crate::MemcachedConfig {
            servers: vec!["127.0.0.1:11211".into()],
            ..crate::MemcachedConfig::default()
        };
        match crate::memcached::start(&local, timeouts).await {
            Ok(started) if !started.none_answered() => {
                tracing::info!("CACHE_BACKEND=auto: using Memcached on 127.0.0.1:11211");
                return Ok(Box::new(started.backend));
            }
            Ok(_) => {
                tracing::info!("CACHE_BACKEND=auto: 127.0.0.1:11211 answered but Memcached did not")
            }
            Err(e) => {
                tracing::info!(error = %e, "CACHE_BACKEND=auto: 127.0.0.1:11211 answered but Memcached did not")
            }
        }
    }
    let _ = (answers, timeouts); // used only when a network backend is compiled in
    tracing::info!("CACHE_BACKEND=auto: no Redis or Memcached on localhost (or not compiled in); using the in-memory store");
    #[cfg(feature = "memory")]
    return Ok(Box::new(crate::MemoryBackend::from_config(memory)));
    #[cfg(not(feature = "memory"))]
    Err(crate::not_compiled("memory", "memory"))
}

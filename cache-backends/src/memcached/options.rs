//! The settings of a [`MemcachedBackend`](super::MemcachedBackend):
//! [`MemcachedOptions`] for `connect_with`, and [`MemcachedConfig`], what
//! the environment asks of this backend (`CACHE_MEMCACHED_*`, the only
//! place the backend reads variables).

use std::time::Duration;

use cache_core::env::Vars;
use cache_core::Error;

use crate::Timeouts;

/// Memcached's default item size limit (`-I 1m`).
const SERVER_ITEM_LIMIT: usize = 1024 * 1024;
/// Room left for the item header, the key and the terminator.
const ITEM_OVERHEAD: usize = 1024;

/// Settings of a [`MemcachedBackend`](super::MemcachedBackend); start from `MemcachedOptions::default()`.
///
/// ```
/// use std::time::Duration;
/// use cache_backends::MemcachedOptions;
/// let options = MemcachedOptions {
///     pool_size: 8,
///     connect_timeout: Duration::from_millis(200),
///     ..MemcachedOptions::default()
/// };
/// assert_eq!(options.io_timeout, Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcachedOptions {
    /// Connections per server (at most this many open at once, all kept idle for reuse). Default 4.
    pub pool_size: usize,
    /// Bound on dialling a connection, and on waiting for a free one. Default 1 s.
    pub connect_timeout: Duration,
    /// Bound on the exchanges that no [`Cache`](cache_core::Cache) timer
    /// covers: the check that a server answers in `connect`, and the batch
    /// of `clear`. Default 1 s.
    ///
    /// Single-key operations get no timer in the client: the `Cache` bounds
    /// every call with its operation timeout (`CACHE_OP_TIMEOUT_MS`), which
    /// also covers waiting for a free pooled connection, and a second timer
    /// per exchange only costs throughput. A connection whose exchange is cut
    /// short is dropped, never returned to the pool half-read. Calling the
    /// backend's methods yourself, without a `Cache`, wrap them in
    /// `tokio::time::timeout`.
    pub io_timeout: Duration,
    /// Largest value sent, in bytes (the server's `-I` minus overhead). Default 1 MiB − 1 KiB.
    pub max_value_size: usize,
    /// How long this backend (and its clones) trusts the namespace
    /// generations it last read (see [`MemcachedBackend`], "`clear` without
    /// `flush_all`"). Default zero: every hit reads them in the same round
    /// trip as the entry, so a `clear()` by any process is seen at once.
    /// A positive value makes a hit within that window one `mg`, what a raw
    /// client costs; the price is that a `clear()` *by another process* is
    /// seen here only when the window ends (this backend's own `clear()` is
    /// seen at once). Deletes, `#[invalidate]` and TTLs are unaffected.
    /// `CACHE_MEMCACHED_GENERATION_REFRESH_MS` sets it from the environment.
    ///
    /// [`MemcachedBackend`]: super::MemcachedBackend
    pub generation_refresh: Duration,
}

impl Default for MemcachedOptions {
    fn default() -> Self {
        MemcachedOptions {
            pool_size: 4,
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
            max_value_size: SERVER_ITEM_LIMIT - ITEM_OVERHEAD,
            generation_refresh: Duration::ZERO,
        }
    }
}

/// What the environment asks of the Memcached backend.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `CACHE_MEMCACHED_SERVERS` | from the two below | comma-separated `host:port` |
/// | `CACHE_MEMCACHED_HOST` / `_PORT` | `127.0.0.1` / `11211` | used when `CACHE_MEMCACHED_SERVERS` is unset |
/// | `CACHE_MEMCACHED_POOL_SIZE` | `4` | connections per server |
/// | `CACHE_MEMCACHED_GENERATION_REFRESH_MS` | `0` | see [`MemcachedOptions::generation_refresh`] |
///
/// ```
/// use cache_backends::MemcachedConfig;
/// use cache_core::env::Vars;
/// let lookup = |name: &str| (name == "CACHE_MEMCACHED_PORT").then(|| "11311".to_string());
/// let config = MemcachedConfig::from_vars(&Vars::new(&lookup))?;
/// assert_eq!(config.servers, ["127.0.0.1:11311"]);
/// assert_eq!(config.pool_size, 4);
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemcachedConfig {
    /// `CACHE_MEMCACHED_SERVERS`, or `CACHE_MEMCACHED_HOST`:`PORT`, as written.
    pub servers: Vec<String>,
    /// `CACHE_MEMCACHED_POOL_SIZE`.
    pub pool_size: u32,
    /// `CACHE_MEMCACHED_GENERATION_REFRESH_MS` (zero: generations are read with every hit).
    pub generation_refresh: Duration,
}

impl Default for MemcachedConfig {
    fn default() -> Self {
        MemcachedConfig {
            servers: vec!["127.0.0.1:11211".into()],
            pool_size: 4,
            generation_refresh: Duration::ZERO,
        }
    }
}

impl MemcachedConfig {
    /// Reads `CACHE_MEMCACHED_*`; a malformed value is an [`Error::Config`] naming it.
    pub fn from_vars(vars: &Vars<'_>) -> Result<Self, Error> {
        let mut c = MemcachedConfig::default();
        if let Some(servers) = vars.list(SERVERS_VAR) {
            c.servers = servers;
        } else {
            let host = vars
                .get("CACHE_MEMCACHED_HOST")
                .unwrap_or_else(|| "127.0.0.1".into());
            let port: u16 = vars
                .num("CACHE_MEMCACHED_PORT", "a port number 1-65535")?
                .unwrap_or(11211);
            c.servers = vec![format!("{host}:{port}")];
        }
        if let Some(n) = vars.num(
            "CACHE_MEMCACHED_POOL_SIZE",
            "a whole number of connections, e.g. 4",
        )? {
            c.pool_size = n;
        }
        if let Some(d) = vars.millis(
            "CACHE_MEMCACHED_GENERATION_REFRESH_MS",
            "a whole number of milliseconds, e.g. 0 (read with every hit) or 1000",
        )? {
            c.generation_refresh = d;
        }
        Ok(c)
    }

    /// The options this configuration starts the backend with: the pool
    /// size (at least 1) and generation refresh from here; the connect
    /// timeout bounds dialling and the startup check, the op timeout the
    /// exchanges no `Cache` timer covers.
    pub fn options(&self, timeouts: Timeouts) -> MemcachedOptions {
        MemcachedOptions {
            pool_size: self.pool_size.max(1) as usize,
            connect_timeout: timeouts.connect,
            io_timeout: timeouts.op,
            generation_refresh: self.generation_refresh,
            ..MemcachedOptions::default()
        }
    }
}

/// The variable that lists the servers.
pub(super) const SERVERS_VAR: &str = "CACHE_MEMCACHED_SERVERS";
/// What to fix when an address is wrong.
pub(super) const SERVERS_VAR_FIX: &str =
    "CACHE_MEMCACHED_SERVERS (or CACHE_MEMCACHED_HOST / CACHE_MEMCACHED_PORT)";
pub(super) const SERVERS_ALLOWED: &str = "one or more comma-separated host:port addresses";

//! The settings of a [`MemcachedBackend`](super::MemcachedBackend):
//! [`MemcachedOptions`] for `connect_with`, and [`Configured`], what a
//! [`Config`] asks of this backend (the only place the backend reads
//! `Config`'s fields).

use std::time::Duration;

use cache_core::Config;

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

/// What a [`Config`] asks of this backend: its servers and options.
#[derive(Debug)]
pub(super) struct Configured {
    /// `CACHE_MEMCACHED_SERVERS` (or `CACHE_MEMCACHED_HOST` / `CACHE_MEMCACHED_PORT`), as written.
    pub(super) servers: Vec<String>,
    /// `CACHE_MEMCACHED_POOL_SIZE` (at least 1), `CACHE_MEMCACHED_GENERATION_REFRESH_MS`;
    /// `CACHE_CONNECT_TIMEOUT_MS` bounds dialling and the startup check,
    /// `CACHE_OP_TIMEOUT_MS` the exchanges no `Cache` timer covers.
    pub(super) options: MemcachedOptions,
}

impl Configured {
    /// The servers and options `config` names: the one place this backend reads `Config`.
    pub(super) fn from_config(config: &Config) -> Configured {
        Configured {
            servers: config.memcached_servers.clone(),
            options: MemcachedOptions {
                pool_size: config.memcached_pool_size.max(1) as usize,
                connect_timeout: config.connect_timeout,
                io_timeout: config.op_timeout,
                generation_refresh: config.memcached_generation_refresh,
                ..MemcachedOptions::default()
            },
        }
    }
}

/// The variable that lists the servers.
pub(super) const SERVERS_VAR: &str = "CACHE_MEMCACHED_SERVERS";
/// What to fix when an address is wrong.
pub(super) const SERVERS_VAR_FIX: &str =
    "CACHE_MEMCACHED_SERVERS (or CACHE_MEMCACHED_HOST / CACHE_MEMCACHED_PORT)";
pub(super) const SERVERS_ALLOWED: &str = "one or more comma-separated host:port addresses";

//! Redis stores: [`RedisBackend`] for one server (feature `redis`) and
//! [`RedisClusterBackend`] for a Redis Cluster (feature `redis-cluster`).
//!
//! Both speak the same commands: `SET key value PX ms`, `GET`, `UNLINK`,
//! `EXISTS`, `PTTL`, and `SCAN MATCH … COUNT 500` + `UNLINK` in batches for
//! [`delete_pattern`](cache_core::Backend::delete_pattern) and
//! [`clear`](cache_core::Backend::clear) (never `KEYS`, never `FLUSHDB`).
//! `rediss://` URLs need the `tls` feature.
//!
//! Both fence fills ([`Backend::get_fenced`](cache_core::Backend::get_fenced)):
//! [`invalidate`](cache_core::Backend::invalidate) is `SET key <tombstone> PX
//! window GET` (Redis 6.2+), a fill after a read that found nothing is `SET …
//! NX`, one after a read that found a tombstone is a Lua script that writes
//! only while the key still holds that tombstone. All single-key, so the
//! cluster backend does the same. `get` reads a tombstone as absent; `exists`
//! and `ttl` are a small script (`PTTL`, and the tombstone prefix checked with
//! `GETRANGE`), `delete` another one that removes a tombstone but answers
//! false for it. `delete_pattern` and `clear` remove tombstones with
//! everything else they match and count them: telling them apart would cost a
//! read of every matched key (and, on a cluster, a script per slot).
//!
//! Over 600 lines: the two backends share one `Backend` impl (a macro) and
//! its helpers, kept with the single-server backend they generalise;
//! startup, cluster routing, globs and variables have files of their own.

use std::time::Duration;

use ::redis::{cmd, Cmd, IntoConnectionInfo, RedisError};
use bytes::Bytes;
use cache_core::{Backend, Error, Key};

use crate::Timeouts;

mod backplane;
#[cfg(feature = "redis-cluster")]
mod cluster;
mod config;
mod glob;
#[cfg(feature = "redis-sentinel")]
mod sentinel;
mod startup;
pub use backplane::RedisBackplane;
#[cfg(feature = "redis-cluster")]
pub use cluster::RedisClusterBackend;
pub use config::RedisConfig;
pub use glob::redis_glob;
#[cfg(feature = "redis-sentinel")]
pub use sentinel::RedisSentinel;
use startup::{is_unreachable, probe, redis_error, Probe};

/// Keys asked for per `SCAN` step.
pub(crate) const SCAN_COUNT: usize = 500;

/// The name single-node Redis errors carry.
const NAME: &str = "redis";

type Prepared = (
    ::redis::Client,
    ::redis::aio::ConnectionManagerConfig,
    String,
);

/// Connection settings of [`RedisBackend::connect_with`] (and of the cluster backend).
///
/// ```
/// use std::time::Duration;
/// use cache_backends::RedisOptions;
/// let options = RedisOptions {
///     response_timeout: Duration::from_millis(100),
///     ..RedisOptions::default()
/// };
/// assert_eq!(options.connect_timeout, Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Bound on each attempt to open a connection (TCP, TLS, `AUTH`, `SELECT`). Default 1 s.
    pub connect_timeout: Duration,
    /// Bound on the answer to each page (`SCAN`, `UNLINK`) of `delete_pattern`
    /// and `clear`, so that a hanging server fails a bulk operation this fast
    /// rather than at the cache's bulk timeout. Default 250 ms, like the
    /// cache's operation timeout.
    ///
    /// Single-key commands get no timer of their own in [`RedisBackend`]: the
    /// [`Cache`](cache_core::Cache) bounds every call with its operation
    /// timeout (`CACHE_OP_TIMEOUT_MS`), which also covers waiting for a
    /// reconnect, and a second timer per command cost about 2 % of a hit's
    /// throughput at 64 concurrent tasks (BENCHMARKS.md). Calling the
    /// backend's methods yourself, without a `Cache`, wrap them in
    /// `tokio::time::timeout`. (`RedisClusterBackend`
    /// passes this value to redis-rs as its response timeout for every command.)
    pub response_timeout: Duration,
    /// Longest pause between reconnection attempts after the server went away. Default 1 s.
    pub max_reconnect_delay: Duration,
    /// Reconnection attempts in one round (each failed command starts a new round). Default 6.
    pub reconnect_attempts: usize,
    /// PEM certificate(s) of the CA that signed the server's certificate, for
    /// `rediss://` servers with a private CA; `None` trusts the system roots.
    /// Needs the `tls` feature.
    pub tls_root_cert: Option<Vec<u8>>,
    /// Multiplexed connections [`RedisBackend`] spreads its commands over,
    /// round robin (`CACHE_REDIS_POOL_SIZE`). Default 1: on loopback more
    /// were slower at 4 and at 64 concurrent tasks (2 connections 0.96×,
    /// 4 connections 0.69× the GETs per second of one), since one
    /// multiplexed connection already pipelines every task's commands; a
    /// second may pay off when one connection's socket is the bottleneck. Each is a
    /// `ConnectionManager` of its own, reconnecting on its own.
    /// Behind Sentinel ([`RedisBackend::connect_sentinel`]) they are
    /// connections to the master, all replaced together when it changes.
    /// `RedisClusterBackend` ignores it: its client keeps one multiplexed
    /// connection per node.
    pub pool_size: usize,
    /// `TCP_NODELAY` on every connection. Default true.
    ///
    /// Off (Nagle's algorithm on) lets the kernel coalesce the small writes
    /// of many concurrent commands: on loopback, 64 tasks doing GETs ran
    /// about 1.3× faster without it, but 4 tasks ran about 10 % slower, and
    /// on a real network a held write can wait a round trip. Turn it off
    /// only for a store under heavy concurrent load, after measuring
    /// (`cache-backends/examples/redis_pool_nodelay.rs`).
    pub tcp_nodelay: bool,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            connect_timeout: Duration::from_secs(1),
            response_timeout: cache_core::DEFAULT_OP_TIMEOUT,
            max_reconnect_delay: Duration::from_secs(1),
            reconnect_attempts: 6,
            tls_root_cert: None,
            pool_size: 1,
            tcp_nodelay: true,
        }
    }
}

impl RedisOptions {
    /// The options [`connect_redis`] uses: bulk pages bounded by the op
    /// timeout (`CACHE_OP_TIMEOUT_MS`; the cache bounds every call with it
    /// too), the startup check and each connection attempt by the connect
    /// timeout (`CACHE_CONNECT_TIMEOUT_MS`, default 1 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_backends::{RedisOptions, Timeouts};
    /// let timeouts = Timeouts { op: Duration::from_millis(80), ..Timeouts::default() };
    /// let options = RedisOptions::with_timeouts(timeouts);
    /// assert_eq!(options.response_timeout, Duration::from_millis(80));
    /// assert_eq!(options.connect_timeout, Duration::from_secs(1));
    /// ```
    pub fn with_timeouts(timeouts: Timeouts) -> Self {
        RedisOptions {
            connect_timeout: timeouts.connect,
            response_timeout: timeouts.op,
            ..RedisOptions::default()
        }
    }
}

/// A Redis server as a cacheside store (feature `redis`).
///
/// [`RedisOptions::pool_size`] multiplexed connections (redis-rs
/// `ConnectionManager`s, default one) shared by every clone and taken in
/// turn; when the server goes away each reconnects in the background with
/// exponential backoff, and the cache fails open meanwhile.
/// Password and database come from the URL:
/// `redis://[[user]:password@]host:port/db`, `rediss://…` with the `tls` feature.
///
/// ```no_run
/// use cache_backends::RedisBackend;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
/// let redis = RedisBackend::connect("redis://127.0.0.1:6379/0").await?;
/// let cache = cache_core::Cache::builder(redis).namespace("shop").build();
/// cache.set("widget:7", "spanner", None).await?;
/// assert_eq!(cache.delete_pattern("widget:*").await?, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    conns: Pool,
    target: String,
    /// [`RedisOptions::response_timeout`]: the bound on each page of a bulk operation.
    page_timeout: Duration,
}

/// The backend's multiplexed connections, taken in turn.
#[derive(Clone)]
enum Pool {
    /// To one server, each reconnecting on its own.
    Fixed {
        conns: std::sync::Arc<[::redis::aio::ConnectionManager]>,
        next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    },
    /// To the master the Sentinels name, looked up again when it is lost.
    #[cfg(feature = "redis-sentinel")]
    Sentinel {
        master: std::sync::Arc<sentinel::SentinelMaster>,
        size: usize,
    },
}

impl Pool {
    fn new(conns: Vec<::redis::aio::ConnectionManager>) -> Self {
        Pool::Fixed {
            conns: conns.into(),
            next: Default::default(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Pool::Fixed { conns, .. } => conns.len(),
            #[cfg(feature = "redis-sentinel")]
            Pool::Sentinel { size, .. } => *size,
        }
    }
}

/// The next connection of a fixed pool, round robin (no counter with one connection).
fn pick(
    conns: &[::redis::aio::ConnectionManager],
    next: &std::sync::atomic::AtomicUsize,
) -> ::redis::aio::ConnectionManager {
    let i = match conns.len() {
        1 => 0,
        n => next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n,
    };
    conns[i].clone()
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("RedisBackend");
        d.field("server", &self.target);
        #[cfg(feature = "redis-sentinel")]
        if let Pool::Sentinel { master, .. } = &self.conns {
            d.field("master", &master.current_addr());
        }
        d.field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

/// Adds `redis://` to a bare `host:port`.
pub(crate) fn normalize_url(url: &str) -> String {
    let url = url.trim();
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("redis://{url}")
    }
}

/// What a Redis URL looks like, for the error about one that does not parse.
const URL_ALLOWED: &str = "a URL such as redis://[[user]:password@]host[:port][/db] (valkey://… alike; rediss://… or valkeys://… with the tls feature; redis+unix:///path/to/socket), special characters of the password percent-encoded";

/// Parses a URL and applies the TCP settings every connection uses; a URL
/// that does not parse is an [`Error::Config`] naming `var` (the URL redacted).
pub(crate) fn connection_info(
    var: &'static str,
    url: &str,
) -> Result<::redis::ConnectionInfo, Error> {
    let url = normalize_url(url);
    #[cfg(not(feature = "tls"))]
    if url.starts_with("rediss://") || url.starts_with("valkeys://") {
        return Err(tls_not_compiled());
    }
    let info = url
        .as_str()
        .into_connection_info()
        .map_err(|_| Error::config(var, &url, URL_ALLOWED))?;
    Ok(with_nodelay(info, true))
}

/// `info` with `TCP_NODELAY` set as `nodelay` says.
pub(crate) fn with_nodelay(
    info: ::redis::ConnectionInfo,
    nodelay: bool,
) -> ::redis::ConnectionInfo {
    let tcp = info.tcp_settings().clone().set_nodelay(nodelay);
    info.set_tcp_settings(tcp)
}

/// The redis-rs client for one server, with the CA of `options` when given.
pub(crate) fn client(
    backend: &'static str,
    info: ::redis::ConnectionInfo,
    options: &RedisOptions,
) -> Result<::redis::Client, Error> {
    let connect_error = |e| redis_error(backend, "connect", e);
    match &options.tls_root_cert {
        None => ::redis::Client::open(info).map_err(connect_error),
        #[cfg(feature = "tls")]
        Some(pem) => ::redis::Client::build_with_tls(
            info,
            ::redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        )
        .map_err(connect_error),
        #[cfg(not(feature = "tls"))]
        Some(_) => Err(tls_not_compiled()),
    }
}

/// The error for `rediss://` (or a TLS option) without the `tls` feature.
#[cfg(not(feature = "tls"))]
pub(crate) fn tls_not_compiled() -> Error {
    Error::BackendNotCompiled {
        backend: "redis over TLS (rediss://)".into(),
        feature: "tls",
    }
}

/// `host:port` of a connection, without password, for logs and `Debug`.
pub(crate) fn describe(info: &::redis::ConnectionInfo) -> String {
    match info.addr() {
        ::redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        other => other.to_string(),
    }
}

impl RedisBackend {
    /// Connects to the server at `url` with [`RedisOptions::default`].
    ///
    /// Fails at once with [`Error::Config`] when the URL is malformed and
    /// with [`Error::Misconfigured`] when the server refuses the password
    /// (or needs one) or the database number; with [`Error::Backend`] when
    /// the server cannot be reached (after the reconnection attempts of the
    /// options). No error shows the password.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
    /// let redis = cache_backends::RedisBackend::connect("redis://:secret@127.0.0.1:6379/2").await?;
    /// # let _ = redis; Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to the server at `url` with the given timeouts and reconnection policy.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use cache_backends::{RedisBackend, RedisOptions};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
    /// let redis = RedisBackend::connect_with(
    ///     "redis://127.0.0.1:6379/0",
    ///     RedisOptions { connect_timeout: Duration::from_millis(500), ..RedisOptions::default() },
    /// )
    /// .await?;
    /// # let _ = redis; Ok(()) }
    /// ```
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, Error> {
        // One attempt first, so that a refusal fails fast instead of after
        // the manager's reconnection rounds.
        Self::check(url, &options).await?;
        Self::connect_manager(url, options).await
    }

    /// The startup check: one connection attempt and a `PING`, within the connect timeout.
    async fn check(url: &str, options: &RedisOptions) -> Result<Probe, Error> {
        let info = connection_info("CACHE_REDIS_URL", url)?;
        probe(NAME, &info, options, &cmd("PING"), startup::SINGLE).await
    }

    async fn connect_manager(url: &str, options: RedisOptions) -> Result<Self, Error> {
        let (client, config, target) = Self::prepare(url, &options)?;
        let mut conns = Vec::with_capacity(options.pool_size.max(1));
        for _ in 0..options.pool_size.max(1) {
            let conn =
                ::redis::aio::ConnectionManager::new_with_config(client.clone(), config.clone())
                    .await
                    .map_err(|e| redis_error(NAME, "connect", e))?;
            conns.push(conn);
        }
        Ok(RedisBackend {
            conns: Pool::new(conns),
            target,
            page_timeout: options.response_timeout,
        })
    }

    /// Like [`connect_with`](RedisBackend::connect_with), but returns at once
    /// and connects on first use: for services that must start while Redis is
    /// down (the cache fails open until it answers). Only a malformed URL is
    /// an error here; a wrong host or password shows up as store errors later.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
    /// use cache_backends::{RedisBackend, RedisOptions};
    /// let redis = RedisBackend::connect_lazy("redis://127.0.0.1:6379/0", RedisOptions::default()).await?;
    /// # let _ = redis; Ok(()) }
    /// ```
    pub async fn connect_lazy(url: &str, options: RedisOptions) -> Result<Self, Error> {
        let (client, config, target) = Self::prepare(url, &options)?;
        let conns = (0..options.pool_size.max(1))
            .map(|_| {
                ::redis::aio::ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    config.clone(),
                )
                .map_err(|e| redis_error(NAME, "connect", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RedisBackend {
            conns: Pool::new(conns),
            target,
            page_timeout: options.response_timeout,
        })
    }

    /// The client, manager settings and display name for `url`.
    fn prepare(url: &str, options: &RedisOptions) -> Result<Prepared, Error> {
        let info = with_nodelay(
            connection_info("CACHE_REDIS_URL", url)?,
            options.tcp_nodelay,
        );
        let target = describe(&info);
        let client = client(NAME, info, options)?;
        let config = ::redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            // The cache's op timeout bounds each single-key call (see `RedisOptions::response_timeout`).
            .set_response_timeout(None)
            .set_max_delay(options.max_reconnect_delay)
            .set_number_of_retries(options.reconnect_attempts);
        Ok((client, config, target))
    }

    async fn query<T: ::redis::FromRedisValue>(
        &self,
        op: &'static str,
        command: &Cmd,
    ) -> Result<T, Error> {
        match &self.conns {
            Pool::Fixed { conns, next } => {
                let mut conn = pick(conns, next);
                command
                    .query_async(&mut conn)
                    .await
                    .map_err(|e: RedisError| redis_error(NAME, op, e))
            }
            #[cfg(feature = "redis-sentinel")]
            Pool::Sentinel { master, .. } => {
                master
                    .run(op, self.page_timeout, |mut conn| async move {
                        command.query_async(&mut conn).await
                    })
                    .await
            }
        }
    }

    /// One script call (`EVALSHA`, `EVAL` after `NOSCRIPT`).
    async fn invoke<T: ::redis::FromRedisValue>(
        &self,
        op: &'static str,
        invocation: &::redis::ScriptInvocation<'_>,
    ) -> Result<T, Error> {
        match &self.conns {
            Pool::Fixed { conns, next } => {
                let mut conn = pick(conns, next);
                invocation
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| redis_error(NAME, op, e))
            }
            #[cfg(feature = "redis-sentinel")]
            Pool::Sentinel { master, .. } => {
                master
                    .run(op, self.page_timeout, |mut conn| async move {
                        invocation.invoke_async(&mut conn).await
                    })
                    .await
            }
        }
    }

    /// `query`, bounded by the page timeout.
    async fn query_page<T: ::redis::FromRedisValue>(
        &self,
        op: &'static str,
        command: &Cmd,
    ) -> Result<T, Error> {
        crate::within(NAME, op, self.page_timeout, self.query(op, command)).await?
    }

    /// SCANs the whole keyspace with `redis_match`, UNLINKs the keys `keep` accepts, page by page.
    async fn scan_unlink(
        &self,
        op: &'static str,
        redis_match: &str,
        keep: impl Fn(&[u8]) -> bool + Send + Sync,
    ) -> Result<u64, Error> {
        let mut cursor: u64 = 0;
        let mut removed = 0u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) =
                self.query_page(op, &scan_cmd(cursor, redis_match)).await?;
            if let Some(unlink) = unlink_cmd(keys.iter().filter(|k| keep(k))) {
                removed += self.query_page::<u64>(op, &unlink).await?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }
}

/// `SCAN cursor MATCH pattern COUNT 500`.
pub(crate) fn scan_cmd(cursor: u64, redis_match: &str) -> Cmd {
    let mut c = cmd("SCAN");
    c.arg(cursor)
        .arg("MATCH")
        .arg(redis_match)
        .arg("COUNT")
        .arg(SCAN_COUNT);
    c
}

/// `UNLINK k1 k2 …`, or `None` when there is nothing to unlink.
pub(crate) fn unlink_cmd<'k>(keys: impl Iterator<Item = &'k Vec<u8>>) -> Option<Cmd> {
    let mut c = cmd("UNLINK");
    let mut any = false;
    for k in keys {
        c.arg(k.as_slice());
        any = true;
    }
    any.then_some(c)
}

/// `SET key value [PX ms]`.
pub(crate) fn set_cmd(key: &str, value: &[u8], ttl: Option<Duration>) -> Cmd {
    let mut c = cmd("SET");
    c.arg(key).arg(value);
    if let Some(ttl) = ttl {
        c.arg("PX").arg(ttl_millis(ttl));
    }
    c
}

/// Milliseconds for `PX`: at least 1 (Redis rejects 0), at most about 146 million years.
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    let ms = ttl.as_millis().clamp(1, 1u128 << 62);
    ms as u64
}

/// `INCRBY` + `PEXPIRE` (only when the key has no expiry yet, i.e. was just
/// created) + `GET` of the optional peek key, as one atomic script.
///
/// `KEYS[1]` counter, `KEYS[2]` (optional) peeked counter, `ARGV[1]` delta,
/// `ARGV[2]` TTL in ms. Answers `{new value, peeked value or 0}`. A negative
/// delta (refund) leaves a missing key alone and stops at 0 (`SET … KEEPTTL`,
/// Redis 6+). A peeked value that is not an integer reads as 0.
const INCREMENT_LUA: &str = r"
local v = 0
if string.sub(ARGV[1], 1, 1) ~= '-' or redis.call('EXISTS', KEYS[1]) == 1 then
  v = redis.call('INCRBY', KEYS[1], ARGV[1])
  if v < 0 then
    redis.call('SET', KEYS[1], 0, 'KEEPTTL')
    v = 0
  end
  if redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
end
local p = 0
if KEYS[2] then
  p = tonumber(redis.call('GET', KEYS[2])) or 0
end
return {v, p}
";

/// The increment script (`EVALSHA`, loaded again after `NOSCRIPT`, e.g. when the server restarted).
pub(crate) fn increment_script() -> &'static ::redis::Script {
    static SCRIPT: std::sync::OnceLock<::redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| ::redis::Script::new(INCREMENT_LUA))
}

/// The invocation of [`increment_script`] for one counter (and an optional peek).
pub(crate) fn increment_invocation<'s>(
    key: Key<'_>,
    delta: i64,
    ttl: Duration,
    peek: Option<Key<'_>>,
) -> ::redis::ScriptInvocation<'s> {
    let mut invocation = increment_script().key(key.as_str());
    if let Some(peek) = peek {
        invocation.key(peek.as_str());
    }
    invocation.arg(delta).arg(ttl_millis(ttl));
    invocation
}

/// The script's answer as `(value, peeked)`; a negative value (a counter
/// decremented by hand) reads as 0.
pub(crate) fn increment_reply(answer: (i64, i64)) -> (u64, u64) {
    (answer.0.max(0) as u64, answer.1.max(0) as u64)
}

/// Lua: true when `KEYS[1]` (known to exist) is a string starting with the
/// tombstone prefix `ARGV[1]`; the head of every fencing script below.
const IS_TOMBSTONE_LUA: &str = r"
local function is_tombstone(key, prefix)
  return redis.call('TYPE', key).ok == 'string'
    and redis.call('GETRANGE', key, 0, #prefix - 1) == prefix
end
";

/// `PTTL` of `KEYS[1]`, but `-2` (absent) for a tombstone: what `exists` and
/// `ttl` read, in one round trip, without moving the value.
const PEEK_LUA: &str = r"
local ms = redis.call('PTTL', KEYS[1])
if ms ~= -2 and is_tombstone(KEYS[1], ARGV[1]) then
  return -2
end
return ms
";

/// `UNLINK KEYS[1]`; 1 when a live entry (not a tombstone) went.
const DELETE_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local live = not is_tombstone(KEYS[1], ARGV[1])
redis.call('UNLINK', KEYS[1])
if live then return 1 end
return 0
";

/// `SET KEYS[1] ARGV[2] [PX ARGV[3]]` only while `KEYS[1]` holds `ARGV[1]`
/// (a tombstone, or the stale value a fail-safe refresh read); 1 when it wrote. (`ARGV[3] = ''`: no expiry.)
const SET_IF_LUA: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
";

/// The fencing scripts, loaded once per process (`EVALSHA`, `EVAL` again after `NOSCRIPT`).
pub(crate) struct FenceScripts {
    peek: ::redis::Script,
    delete: ::redis::Script,
    set_if: ::redis::Script,
    release: ::redis::Script,
}

/// `DEL KEYS[1]` only while it holds `ARGV[1]` (a lease's token).
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

pub(crate) fn fence_scripts() -> &'static FenceScripts {
    static SCRIPTS: std::sync::OnceLock<FenceScripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| {
        let with_head = |body: &str| ::redis::Script::new(&format!("{IS_TOMBSTONE_LUA}{body}"));
        FenceScripts {
            peek: with_head(PEEK_LUA),
            delete: with_head(DELETE_LUA),
            set_if: ::redis::Script::new(SET_IF_LUA),
            release: ::redis::Script::new(RELEASE_LUA),
        }
    })
}

impl FenceScripts {
    /// [`PEEK_LUA`] for `key`.
    pub(crate) fn peek<'s>(&'s self, key: &str) -> ::redis::ScriptInvocation<'s> {
        let mut i = self.peek.key(key);
        i.arg(cache_core::backend::TOMBSTONE_PREFIX);
        i
    }

    /// [`DELETE_LUA`] for `key`.
    pub(crate) fn delete<'s>(&'s self, key: &str) -> ::redis::ScriptInvocation<'s> {
        let mut i = self.delete.key(key);
        i.arg(cache_core::backend::TOMBSTONE_PREFIX);
        i
    }

    /// [`RELEASE_LUA`]: deletes the lease `key` while it holds `token`.
    pub(crate) fn release<'s>(&'s self, key: &str, token: &[u8]) -> ::redis::ScriptInvocation<'s> {
        let mut i = self.release.key(key);
        i.arg(token);
        i
    }

    /// [`SET_IF_LUA`]: `value` under `key` while it holds `token`.
    pub(crate) fn set_if<'s>(
        &'s self,
        key: &str,
        token: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> ::redis::ScriptInvocation<'s> {
        let mut i = self.set_if.key(key);
        i.arg(token).arg(value);
        match ttl {
            Some(ttl) => i.arg(ttl_millis(ttl)),
            None => i.arg(""),
        };
        i
    }
}

/// `SET key value [PX ms] NX`: the fill after a read that found nothing.
pub(crate) fn set_nx_cmd(key: &str, value: &[u8], ttl: Option<Duration>) -> Cmd {
    let mut c = set_cmd(key, value, ttl);
    c.arg("NX");
    c
}

/// `SET key <fresh tombstone> PX window GET` (Redis 6.2+): the old value comes back.
pub(crate) fn invalidate_cmd(key: &str, window: Duration) -> Cmd {
    let mut c = set_cmd(key, &cache_core::backend::tombstone(), Some(window));
    c.arg("GET");
    c
}

/// A live entry, or `None` for an absent key or a tombstone.
pub(crate) fn live(value: Option<Vec<u8>>) -> Option<Bytes> {
    value
        .filter(|v| !cache_core::backend::is_tombstone(v))
        .map(Bytes::from)
}

/// What `PTTL` answers, as a remaining TTL: `-2` (absent) and `-1` (no expiry) are `None`.
pub(crate) fn pttl_to_ttl(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// The `Backend` impl both Redis backends share: every operation but
/// `increment` and `ping` is the same commands over the backend's own
/// `query` (one key, routed by slot on a cluster) and `scan_unlink` (every
/// primary on a cluster). The caller passes the items that differ.
macro_rules! redis_backend_impl {
    ($backend:ty, { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl cache_core::Backend for $backend {
            fn name(&self) -> &'static str {
                NAME
            }

            async fn get(&self, key: Key<'_>) -> Result<Option<Bytes>, Error> {
                let v: Option<Vec<u8>> = self.query("get", cmd("GET").arg(key.as_str())).await?;
                Ok($crate::redis::live(v))
            }

            async fn set(&self, key: Key<'_>, value: Bytes, ttl: Option<Duration>) -> Result<(), Error> {
                self.query::<()>("set", &$crate::redis::set_cmd(key.as_str(), &value, ttl)).await
            }

            /// `UNLINK` in a script that says whether the key held a live entry: a tombstone goes too, but counts as nothing.
            async fn delete(&self, key: Key<'_>) -> Result<bool, Error> {
                let scripts = $crate::redis::fence_scripts();
                let n: u64 = self.invoke("delete", &scripts.delete(key.as_str())).await?;
                Ok(n > 0)
            }

            /// `GET`: a tombstone, or a live value, is the fence of the fill that follows.
            async fn get_fenced(&self, key: Key<'_>) -> Result<(Option<Bytes>, cache_core::Fence), Error> {
                let v: Option<Vec<u8>> = self.query("get", cmd("GET").arg(key.as_str())).await?;
                Ok(match v {
                    None => (None, cache_core::Fence::Absent),
                    Some(v) if cache_core::backend::is_tombstone(&v) => {
                        (None, cache_core::Fence::Token(Bytes::from(v)))
                    }
                    Some(v) => {
                        let v = Bytes::from(v);
                        (Some(v.clone()), cache_core::Fence::Token(v))
                    }
                })
            }

            /// `SET … NX` after an absent key, a script comparing the tombstone after a tombstone.
            async fn set_fenced(
                &self,
                key: Key<'_>,
                value: Bytes,
                ttl: Option<Duration>,
                fence: &cache_core::Fence,
            ) -> Result<bool, Error> {
                match fence {
                    cache_core::Fence::None => self.set(key, value, ttl).await.map(|()| true),
                    cache_core::Fence::Absent => {
                        let set: Option<String> = self
                            .query("set", &$crate::redis::set_nx_cmd(key.as_str(), &value, ttl))
                            .await?;
                        Ok(set.is_some())
                    }
                    cache_core::Fence::Token(token) => {
                        let scripts = $crate::redis::fence_scripts();
                        let n: u64 = self
                            .invoke("set", &scripts.set_if(key.as_str(), token, &value, ttl))
                            .await?;
                        Ok(n > 0)
                    }
                }
            }

            /// `SET key token NX PX ttl`.
            async fn lease(&self, key: Key<'_>, token: &[u8], ttl: Duration) -> Result<bool, Error> {
                let set: Option<String> = self
                    .query("lease", &$crate::redis::set_nx_cmd(key.as_str(), token, Some(ttl)))
                    .await?;
                Ok(set.is_some())
            }

            /// A script: `DEL` while the lease holds `token`.
            async fn release(&self, key: Key<'_>, token: &[u8]) -> Result<(), Error> {
                let scripts = $crate::redis::fence_scripts();
                let _: u64 = self.invoke("release", &scripts.release(key.as_str(), token)).await?;
                Ok(())
            }

            /// `SET key <tombstone> PX window GET`.
            async fn invalidate(&self, key: Key<'_>, window: Duration) -> Result<bool, Error> {
                let old: Option<Vec<u8>> = self
                    .query("invalidate", &$crate::redis::invalidate_cmd(key.as_str(), window))
                    .await?;
                Ok($crate::redis::live(old).is_some())
            }

            async fn delete_pattern(&self, namespace: &str, glob: &str) -> Result<u64, Error> {
                self.scan_unlink("delete_pattern", &$crate::redis::glob::redis_match(namespace, glob), |k| {
                    $crate::redis::glob::glob_keeps(namespace, glob, k)
                })
                .await
            }

            /// `PTTL` in a script that reads a tombstone as absent.
            async fn exists(&self, key: Key<'_>) -> Result<bool, Error> {
                let scripts = $crate::redis::fence_scripts();
                let ms: i64 = self.invoke("exists", &scripts.peek(key.as_str())).await?;
                Ok(ms != -2)
            }

            /// `PTTL` in a script that reads a tombstone as absent.
            async fn ttl(&self, key: Key<'_>) -> Result<Option<Duration>, Error> {
                let scripts = $crate::redis::fence_scripts();
                let ms: i64 = self.invoke("ttl", &scripts.peek(key.as_str())).await?;
                Ok($crate::redis::pttl_to_ttl(ms))
            }

            async fn clear(&self, namespace: &str) -> Result<u64, Error> {
                self.scan_unlink("clear", &$crate::redis::glob::namespace_match(namespace), |k| {
                    $crate::redis::glob::namespace_keeps(namespace, k)
                })
                .await
            }

            $($own)*
        }
    };
}
#[cfg_attr(not(feature = "redis-cluster"), allow(unused_imports))]
pub(crate) use redis_backend_impl;

redis_backend_impl!(RedisBackend, {
    /// One `EVALSHA` of a Lua script: `INCRBY`, `PEXPIRE` when the key is
    /// new, `GET` of the peek key; atomic on the server.
    async fn increment(
        &self,
        key: Key<'_>,
        delta: i64,
        ttl: Duration,
        peek: Option<Key<'_>>,
    ) -> Result<(u64, u64), Error> {
        let invocation = increment_invocation(key, delta, ttl, peek);
        let answer: (i64, i64) = self.invoke("increment", &invocation).await?;
        Ok(increment_reply(answer))
    }

    async fn ping(&self) -> Result<(), Error> {
        let pong: String = self.query("ping", &cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(Error::backend(
                NAME,
                "ping",
                format!("server answered {pong:?} to PING instead of \"PONG\""),
            ))
        }
    }
});

/// Connects the server `config.url` names (what `CACHE_BACKEND=redis` uses),
/// or, with `CACHE_REDIS_SENTINELS` set, the master the Sentinels name
/// (feature `redis-sentinel`; without it, an error naming the feature).
///
/// A refusal of the configuration (password, database, URL) is an error at
/// once; a server that does not answer within the connect timeout does not
/// stop the service: it starts, logs a warning naming the server, fails
/// open, and connects when the server answers.
pub async fn connect_redis(
    config: &RedisConfig,
    timeouts: Timeouts,
) -> Result<Box<dyn Backend>, Error> {
    let options = RedisOptions {
        pool_size: config.pool_size,
        ..RedisOptions::with_timeouts(timeouts)
    };
    if !config.sentinels.is_empty() {
        #[cfg(feature = "redis-sentinel")]
        {
            let target = RedisSentinel::from_config(config).ok_or_else(|| {
                Error::config(
                    config::SENTINEL_MASTER_VAR,
                    "",
                    "the service name the Sentinels monitor, e.g. mymaster",
                )
            })?;
            return Ok(Box::new(
                start_sentinel(&target, options)
                    .await?
                    .warn_if_unreachable(),
            ));
        }
        #[cfg(not(feature = "redis-sentinel"))]
        return Err(Error::BackendNotCompiled {
            backend: "redis through Sentinel (CACHE_REDIS_SENTINELS is set)".into(),
            feature: "redis-sentinel",
        });
    }
    Ok(Box::new(
        start_with(&config.url, options)
            .await?
            .warn_if_unreachable(),
    ))
}

#[cfg(feature = "redis-sentinel")]
impl RedisBackend {
    /// Connects to the master the Sentinels of `target` name, and follows it
    /// across failovers (feature `redis-sentinel`; what `CACHE_BACKEND=redis`
    /// does with `CACHE_REDIS_SENTINELS` set).
    ///
    /// Uses [`RedisOptions::pool_size`] connections to the master. When one
    /// of them drops, gets no answer within `response_timeout`, or meets
    /// `READONLY` (the old master, now a replica), all are dropped and the
    /// Sentinels are asked again, with backoff up to `max_reconnect_delay`;
    /// calls fail meanwhile (the cache fails open). A failover can lose
    /// what the old master acknowledged but had not replicated: a fill (a
    /// miss later), never an invalidation, which is confirmed by `WAIT 1`
    /// while the master has a replica and is otherwise an error the cache
    /// delivers again.
    ///
    /// Fails with [`Error::Config`] for a malformed Sentinel address, with
    /// [`Error::Misconfigured`] when a node refuses the password, and with
    /// [`Error::Backend`] (or [`Error::Timeout`]) when no master is found
    /// within the connect timeout.
    ///
    /// ```no_run
    /// use cache_backends::{RedisBackend, RedisOptions, RedisSentinel};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
    /// let target = RedisSentinel::new(&["10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"], "mymaster")
    ///     .node_url("redis://:s3cret@unused/0");
    /// let redis = RedisBackend::connect_sentinel(&target, RedisOptions::default()).await?;
    /// # let _ = redis; Ok(()) }
    /// ```
    pub async fn connect_sentinel(
        target: &RedisSentinel,
        options: RedisOptions,
    ) -> Result<Self, Error> {
        match start_sentinel(target, options).await? {
            Startup::Ready(backend) => Ok(backend),
            Startup::Unreachable(_, why) => Err(why),
        }
    }
}

/// The startup lookup through the Sentinels, then a backend either way but a refusal.
#[cfg(feature = "redis-sentinel")]
pub(crate) async fn start_sentinel(
    target: &RedisSentinel,
    options: RedisOptions,
) -> Result<Startup<RedisBackend>, Error> {
    let size = options.pool_size.max(1);
    let master = sentinel::SentinelMaster::new(target, &options, size)?;
    let backend = RedisBackend {
        conns: Pool::Sentinel {
            master: master.clone(),
            size,
        },
        target: format!(
            "master {:?} via the Sentinels {}",
            master.service(),
            master.shown
        ),
        page_timeout: options.response_timeout,
    };
    let why = match master.check(options.connect_timeout).await {
        Ok(()) => return Ok(Startup::Ready(backend)),
        Err(sentinel::StartupFailure::Timeout) => Error::Timeout {
            backend: NAME,
            op: "connect",
            after: options.connect_timeout,
        },
        Err(sentinel::StartupFailure::Redis(e)) => {
            match startup::classify(NAME, &master.shown, e, sentinel::SENTINEL_VARS)? {
                Probe::Unreachable(why) => why,
                Probe::Ready => return Ok(Startup::Ready(backend)),
            }
        }
    };
    Ok(Startup::Unreachable(backend, why))
}

/// What starting against a Redis server gave.
pub(crate) enum Startup<B> {
    /// The server answered the startup check.
    Ready(B),
    /// It did not: a backend that connects on first use, and why.
    Unreachable(B, Error),
}

impl<B: std::fmt::Debug> Startup<B> {
    /// The backend; logs the warning when the store did not answer.
    pub(crate) fn warn_if_unreachable(self) -> B {
        match self {
            Startup::Ready(b) => {
                tracing::debug!(backend = ?b, "connected");
                b
            }
            Startup::Unreachable(b, e) => {
                tracing::warn!(backend = ?b, error = %crate::startup_reason(&e), "the cache store did not answer at startup; starting anyway: cached calls run uncached (fail open) until it answers, then it is used without a restart");
                b
            }
        }
    }
}

/// The startup check, then a backend either way but a refusal.
pub(crate) async fn start(url: &str, timeouts: Timeouts) -> Result<Startup<RedisBackend>, Error> {
    start_with(url, RedisOptions::with_timeouts(timeouts)).await
}

/// [`start`] with explicit options.
pub(crate) async fn start_with(
    url: &str,
    options: RedisOptions,
) -> Result<Startup<RedisBackend>, Error> {
    let why = match RedisBackend::check(url, &options).await? {
        Probe::Ready => match RedisBackend::connect_manager(url, options.clone()).await {
            Ok(backend) => return Ok(Startup::Ready(backend)),
            // Gone between the check and the connection: as if it had not answered.
            Err(e) if is_unreachable(&e) => e,
            Err(e) => return Err(e),
        },
        Probe::Unreachable(why) => why,
    };
    Ok(Startup::Unreachable(
        RedisBackend::connect_lazy(url, options).await?,
        why,
    ))
}

/// Connects the cluster `config.cluster_nodes` names (what `CACHE_BACKEND=redis-cluster` uses).
///
/// The same rule as [`connect_redis`]: a seed that refuses the
/// configuration (password, not a cluster) is an error at once; seeds that
/// do not answer within `CACHE_CONNECT_TIMEOUT_MS` start a backend that
/// connects in the background, with a warning.
#[cfg(feature = "redis-cluster")]
pub async fn connect_redis_cluster(
    config: &RedisConfig,
    timeouts: Timeouts,
) -> Result<Box<dyn Backend>, Error> {
    if config.cluster_nodes.is_empty() {
        return Err(Error::Config {
            var: "CACHE_REDIS_CLUSTER_NODES",
            value: String::new(),
            allowed: "comma-separated node URLs, e.g. redis://10.0.0.1:7000,redis://10.0.0.2:7000",
        });
    }
    let started =
        RedisClusterBackend::start(&config.cluster_nodes, RedisOptions::with_timeouts(timeouts))
            .await?;
    Ok(Box::new(started.warn_if_unreachable()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_conversions() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::from_secs(2)), 2000);
        assert_eq!(ttl_millis(Duration::MAX), 1 << 62);
        assert_eq!(pttl_to_ttl(-2), None);
        assert_eq!(pttl_to_ttl(-1), None);
        assert_eq!(pttl_to_ttl(1500), Some(Duration::from_millis(1500)));
    }

    /// Without the feature, Sentinel settings are an error that names it, never a silent single server.
    #[cfg(not(feature = "redis-sentinel"))]
    #[tokio::test]
    async fn sentinels_without_the_feature_name_it() {
        let lookup = |name: &str| match name {
            "CACHE_REDIS_SENTINELS" => Some("127.0.0.1:26379".to_string()),
            "CACHE_REDIS_SENTINEL_MASTER" => Some("mymaster".to_string()),
            _ => None,
        };
        let config = RedisConfig::from_vars(&cache_core::env::Vars::new(&lookup)).unwrap();
        let Err(err) = connect_redis(&config, Timeouts::default()).await else {
            panic!("the feature is off: connecting must fail");
        };
        assert!(
            matches!(
                err,
                Error::BackendNotCompiled {
                    feature: "redis-sentinel",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn bare_addresses_get_a_scheme() {
        assert_eq!(normalize_url("127.0.0.1:7000"), "redis://127.0.0.1:7000");
        assert_eq!(normalize_url(" rediss://h:1/0 "), "rediss://h:1/0");
    }

    #[test]
    fn valkey_schemes_parse_like_redis_ones() {
        let info = connection_info("CACHE_REDIS_URL", "valkey://:pw@127.0.0.1:7001/2").unwrap();
        assert_eq!(info.redis_settings().db(), 2);
        assert!(
            info.addr().to_string().contains("7001"),
            "{:?}",
            info.addr()
        );
        #[cfg(not(feature = "tls"))]
        assert!(matches!(
            connection_info("CACHE_REDIS_URL", "valkeys://127.0.0.1:7001"),
            Err(Error::BackendNotCompiled { feature: "tls", .. })
        ));
    }
}

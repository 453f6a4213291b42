//! Configuration from environment variables (12-factor), as in the FastAPI boilerplate.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `CACHE_ENABLED` | `true` | `false`/`0`/`no`/`off` make annotated functions plain calls; `invalidate-only`: no reads, invalidations still delete |
//! | `CACHE_BACKEND` | `memory` | `memory`, `redis`, `redis-cluster`, `memcached`, `none`, `auto` |
//! | `DEFAULT_CACHE_EXPIRATION` | `3600` | default TTL in seconds |
//! | `CACHE_NAMESPACE` | empty | prefix of every key (`{ns}:{key}`) |
//! | `CACHE_OP_TIMEOUT_MS` | `250` | bound on each store operation |
//! | `CACHE_MEMORY_MAX_ENTRIES` | `10000` | size bound of the in-memory store |
//! | `CACHE_MEMORY_MAX_BYTES` | `268435456` (256 MiB) | byte bound of the in-memory store (keys and values) |
//! | `CACHE_REDIS_URL` | from the four below | `redis://[:password@]host:port/db` |
//! | `CACHE_REDIS_HOST` / `_PORT` / `_DB` / `_PASSWORD` | `127.0.0.1` / `6379` / `0` / none | used when `CACHE_REDIS_URL` is unset |
//! | `CACHE_REDIS_CLUSTER_NODES` | none | comma-separated node URLs |
//! | `CACHE_MEMCACHED_SERVERS` | from the two below | comma-separated `host:port` |
//! | `CACHE_MEMCACHED_HOST` / `_PORT` | `127.0.0.1` / `11211` | used when `CACHE_MEMCACHED_SERVERS` is unset |
//! | `CACHE_MEMCACHED_POOL_SIZE` | `4` | connections per Memcached server |
//! | `CACHE_MEMCACHED_GENERATION_REFRESH_MS` | `0` | how long a process trusts the namespace generations it read; `0` reads them with every hit (see `MemcachedOptions::generation_refresh`) |
//! | `CLIENT_CACHE_ENABLED` | `true` | client `Cache-Control` headers (HTTP layer) |
//! | `CLIENT_CACHE_MAX_AGE` | `60` | their `max-age` in seconds |
//! | `CACHE_CONNECT_TIMEOUT_MS` | `1000` | bound on the startup check of a network store (and on each connection attempt); a store that does not answer within it is unreachable: the service starts and fails open |
//!
//! Credentials never leave a `Config` in clear: its `Debug` shows the URLs
//! through [`redact_url`](crate::redact_url), and errors about URL values show them the same way.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::cache::{DEFAULT_OP_TIMEOUT, DEFAULT_TTL};
use crate::Error;

/// Which store [`Config`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
    /// In-process moka cache (the default).
    Memory,
    /// One Redis server.
    Redis,
    /// A Redis Cluster.
    RedisCluster,
    /// One or more Memcached servers.
    Memcached,
    /// A store that keeps nothing: every read misses.
    None,
    /// Redis on 127.0.0.1:6379 if it answers, else Memcached on 127.0.0.1:11211, else memory.
    Auto,
}

const BACKENDS_ALLOWED: &str = "one of memory, redis, redis-cluster, memcached, none, auto";

impl BackendKind {
    /// The name used in `CACHE_BACKEND`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BackendKind::Memory => "memory",
            BackendKind::Redis => "redis",
            BackendKind::RedisCluster => "redis-cluster",
            BackendKind::Memcached => "memcached",
            BackendKind::None => "none",
            BackendKind::Auto => "auto",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "memory" | "inmemory" | "in-memory" => BackendKind::Memory,
            "redis" => BackendKind::Redis,
            "redis-cluster" | "redis_cluster" | "rediscluster" => BackendKind::RedisCluster,
            "memcached" => BackendKind::Memcached,
            "none" => BackendKind::None,
            "auto" => BackendKind::Auto,
            _ => {
                return Err(Error::Config {
                    var: "CACHE_BACKEND",
                    value: s.to_owned(),
                    allowed: BACKENDS_ALLOWED,
                })
            }
        })
    }
}

/// Everything cacheside reads from the environment.
///
/// ```
/// use cache_core::{BackendKind, Config};
/// let vars = [("CACHE_BACKEND", "memory"), ("DEFAULT_CACHE_EXPIRATION", "600")];
/// let config = Config::from_lookup(|name| {
///     vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
/// })?;
/// assert_eq!(config.backend, BackendKind::Memory);
/// assert_eq!(config.default_ttl.as_secs(), 600);
///
/// let bad = Config::from_lookup(|name| (name == "CACHE_BACKEND").then(|| "rdis".to_string()));
/// assert!(bad.unwrap_err().to_string().contains("CACHE_BACKEND"));
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// `CACHE_ENABLED`: true when annotated functions read through the cache.
    pub enabled: bool,
    /// `CACHE_ENABLED` in full (`invalidate-only` keeps invalidation on
    /// while `enabled` is false). `init_from_config` applies it.
    pub mode: crate::CacheMode,
    /// `CACHE_BACKEND`.
    pub backend: BackendKind,
    /// `DEFAULT_CACHE_EXPIRATION`.
    pub default_ttl: Duration,
    /// `CACHE_NAMESPACE` (empty: none).
    pub namespace: String,
    /// `CACHE_OP_TIMEOUT_MS`.
    pub op_timeout: Duration,
    /// `CACHE_MEMORY_MAX_ENTRIES`.
    pub memory_max_entries: u64,
    /// `CACHE_MEMORY_MAX_BYTES`: bytes of keys and values the in-memory store holds at most.
    pub memory_max_bytes: u64,
    /// `CACHE_REDIS_URL`, or built from `CACHE_REDIS_HOST`/`PORT`/`DB`/`PASSWORD`.
    pub redis_url: String,
    /// `CACHE_REDIS_CLUSTER_NODES`.
    pub redis_cluster_nodes: Vec<String>,
    /// `CACHE_MEMCACHED_SERVERS`, or `CACHE_MEMCACHED_HOST`:`PORT`.
    pub memcached_servers: Vec<String>,
    /// `CACHE_MEMCACHED_POOL_SIZE`.
    pub memcached_pool_size: u32,
    /// `CACHE_MEMCACHED_GENERATION_REFRESH_MS` (zero: generations are read with every hit).
    pub memcached_generation_refresh: Duration,
    /// `CLIENT_CACHE_ENABLED`.
    pub client_cache_enabled: bool,
    /// `CLIENT_CACHE_MAX_AGE`.
    pub client_cache_max_age: Duration,
    /// `CACHE_CONNECT_TIMEOUT_MS`: how long startup waits for a network store
    /// (and each later connection attempt) before taking it as unreachable.
    pub connect_timeout: Duration,
}

/// Every field, with the store URLs passed through [`redact_url`](crate::redact_url):
/// a password in `redis_url` or a cluster node URL shows as `***`.
///
/// ```
/// let mut config = cache_core::Config::default();
/// config.redis_url = "redis://:hunter2@cache:6379/0".into();
/// let shown = format!("{config:?}");
/// assert!(shown.contains("redis://:***@cache:6379/0"), "{shown}");
/// assert!(!shown.contains("hunter2"));
/// ```
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted_nodes: Vec<String> = self
            .redis_cluster_nodes
            .iter()
            .map(|n| crate::redact_url(n))
            .collect();
        f.debug_struct("Config")
            .field("enabled", &self.enabled)
            .field("mode", &self.mode)
            .field("backend", &self.backend)
            .field("default_ttl", &self.default_ttl)
            .field("namespace", &self.namespace)
            .field("op_timeout", &self.op_timeout)
            .field("memory_max_entries", &self.memory_max_entries)
            .field("memory_max_bytes", &self.memory_max_bytes)
            .field("redis_url", &crate::redact_url(&self.redis_url))
            .field("redis_cluster_nodes", &redacted_nodes)
            .field("memcached_servers", &self.memcached_servers)
            .field("memcached_pool_size", &self.memcached_pool_size)
            .field(
                "memcached_generation_refresh",
                &self.memcached_generation_refresh,
            )
            .field("client_cache_enabled", &self.client_cache_enabled)
            .field("client_cache_max_age", &self.client_cache_max_age)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// Default of `CACHE_CONNECT_TIMEOUT_MS`: how long startup waits for a network store.
///
/// ```
/// assert_eq!(cache_core::Config::default().connect_timeout, cache_core::DEFAULT_CONNECT_TIMEOUT);
/// assert_eq!(cache_core::DEFAULT_CONNECT_TIMEOUT.as_millis(), 1000);
/// ```
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            mode: crate::CacheMode::On,
            backend: BackendKind::Memory,
            default_ttl: DEFAULT_TTL,
            namespace: String::new(),
            op_timeout: DEFAULT_OP_TIMEOUT,
            memory_max_entries: 10_000,
            memory_max_bytes: 256 * 1024 * 1024,
            redis_url: "redis://127.0.0.1:6379/0".into(),
            redis_cluster_nodes: Vec::new(),
            memcached_servers: vec!["127.0.0.1:11211".into()],
            memcached_pool_size: 4,
            memcached_generation_refresh: Duration::ZERO,
            client_cache_enabled: true,
            client_cache_max_age: Duration::from_secs(60),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// Parses `CACHE_ENABLED`: a boolean, or `invalidate-only`.
pub(crate) fn parse_mode(var: &'static str, value: &str) -> Result<crate::CacheMode, Error> {
    use crate::CacheMode;
    match value.trim().to_ascii_lowercase().replace('_', "-").as_str() {
        "invalidate-only" | "invalidate" => Ok(CacheMode::InvalidateOnly),
        _ => match parse_bool(var, value) {
            Ok(true) => Ok(CacheMode::On),
            Ok(false) => Ok(CacheMode::Off),
            Err(_) => Err(Error::Config {
                var,
                value: value.to_owned(),
                allowed: "true/false (also 1/0, yes/no, on/off) or invalidate-only",
            }),
        },
    }
}

/// Parses a boolean the way the Python frameworks do.
pub(crate) fn parse_bool(var: &'static str, value: &str) -> Result<bool, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::Config {
            var,
            value: value.to_owned(),
            allowed: "true/false (also 1/0, yes/no, on/off)",
        }),
    }
}

fn parse_num<T: FromStr>(
    var: &'static str,
    value: &str,
    allowed: &'static str,
) -> Result<T, Error> {
    value.trim().parse().map_err(|_| Error::Config {
        var,
        value: value.to_owned(),
        allowed,
    })
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, Error> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (for tests and for other config sources).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut c = Config::default();
        if let Some(v) = get("CACHE_ENABLED") {
            c.mode = parse_mode("CACHE_ENABLED", &v)?;
            c.enabled = c.mode == crate::CacheMode::On;
        }
        if let Some(v) = get("CACHE_BACKEND") {
            c.backend = v.parse()?;
        }
        if let Some(v) = get("DEFAULT_CACHE_EXPIRATION") {
            c.default_ttl = Duration::from_secs(parse_num(
                "DEFAULT_CACHE_EXPIRATION",
                &v,
                "a whole number of seconds, e.g. 3600",
            )?);
        }
        if let Some(v) = get("CACHE_NAMESPACE") {
            c.namespace = v.trim().to_owned();
        }
        if let Some(v) = get("CACHE_OP_TIMEOUT_MS") {
            let ms: u64 = parse_num(
                "CACHE_OP_TIMEOUT_MS",
                &v,
                "a whole number of milliseconds above 0, e.g. 250",
            )?;
            if ms == 0 {
                return Err(Error::Config {
                    var: "CACHE_OP_TIMEOUT_MS",
                    value: v,
                    allowed: "a whole number of milliseconds above 0, e.g. 250",
                });
            }
            c.op_timeout = Duration::from_millis(ms);
        }
        if let Some(v) = get("CACHE_MEMORY_MAX_ENTRIES") {
            c.memory_max_entries = parse_num(
                "CACHE_MEMORY_MAX_ENTRIES",
                &v,
                "a whole number of entries, e.g. 10000",
            )?;
        }
        if let Some(v) = get("CACHE_MEMORY_MAX_BYTES") {
            c.memory_max_bytes = parse_num(
                "CACHE_MEMORY_MAX_BYTES",
                &v,
                "a whole number of bytes, e.g. 268435456 (256 MiB)",
            )?;
        }
        if let Some(v) = get("CACHE_REDIS_URL") {
            let v = v.trim().to_owned();
            if !(v.starts_with("redis://")
                || v.starts_with("rediss://")
                || v.starts_with("redis+unix://")
                || v.starts_with("unix://"))
            {
                return Err(Error::config(
                    "CACHE_REDIS_URL",
                    &v,
                    "a URL starting with redis://, rediss://, redis+unix:// or unix://",
                ));
            }
            c.redis_url = v;
        } else {
            let host = get("CACHE_REDIS_HOST").unwrap_or_else(|| "127.0.0.1".into());
            let port: u16 = match get("CACHE_REDIS_PORT") {
                Some(v) => parse_num("CACHE_REDIS_PORT", &v, "a port number 1-65535")?,
                None => 6379,
            };
            let db: u32 = match get("CACHE_REDIS_DB") {
                Some(v) => parse_num("CACHE_REDIS_DB", &v, "a database number, e.g. 0")?,
                None => 0,
            };
            let auth = match get("CACHE_REDIS_PASSWORD") {
                Some(p) => format!(":{}@", percent_encode(&p)),
                None => String::new(),
            };
            c.redis_url = format!("redis://{auth}{}:{port}/{db}", host.trim());
        }
        if let Some(v) = get("CACHE_REDIS_CLUSTER_NODES") {
            c.redis_cluster_nodes = list(&v);
        }
        if let Some(v) = get("CACHE_MEMCACHED_SERVERS") {
            c.memcached_servers = list(&v);
        } else {
            let host = get("CACHE_MEMCACHED_HOST").unwrap_or_else(|| "127.0.0.1".into());
            let port: u16 = match get("CACHE_MEMCACHED_PORT") {
                Some(v) => parse_num("CACHE_MEMCACHED_PORT", &v, "a port number 1-65535")?,
                None => 11211,
            };
            c.memcached_servers = vec![format!("{}:{port}", host.trim())];
        }
        if let Some(v) = get("CACHE_MEMCACHED_POOL_SIZE") {
            c.memcached_pool_size = parse_num(
                "CACHE_MEMCACHED_POOL_SIZE",
                &v,
                "a whole number of connections, e.g. 4",
            )?;
        }
        if let Some(v) = get("CACHE_MEMCACHED_GENERATION_REFRESH_MS") {
            c.memcached_generation_refresh = Duration::from_millis(parse_num(
                "CACHE_MEMCACHED_GENERATION_REFRESH_MS",
                &v,
                "a whole number of milliseconds, e.g. 0 (read with every hit) or 1000",
            )?);
        }
        if let Some(v) = get("CLIENT_CACHE_ENABLED") {
            c.client_cache_enabled = parse_bool("CLIENT_CACHE_ENABLED", &v)?;
        }
        if let Some(v) = get("CLIENT_CACHE_MAX_AGE") {
            c.client_cache_max_age = Duration::from_secs(parse_num(
                "CLIENT_CACHE_MAX_AGE",
                &v,
                "a whole number of seconds, e.g. 60",
            )?);
        }
        if let Some(v) = get("CACHE_CONNECT_TIMEOUT_MS") {
            const ALLOWED: &str = "a whole number of milliseconds above 0, e.g. 1000";
            let ms: u64 = parse_num("CACHE_CONNECT_TIMEOUT_MS", &v, ALLOWED)?;
            if ms == 0 {
                return Err(Error::config("CACHE_CONNECT_TIMEOUT_MS", &v, ALLOWED));
            }
            c.connect_timeout = Duration::from_millis(ms);
        }
        Ok(c)
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, Error> {
        Config::from_lookup(|n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_are_the_boilerplates() {
        let c = cfg(&[]).unwrap();
        assert!(c.enabled);
        assert_eq!(c.backend, BackendKind::Memory);
        assert_eq!(c.default_ttl, Duration::from_secs(3600));
        assert_eq!(c.redis_url, "redis://127.0.0.1:6379/0");
        assert_eq!(c.memcached_servers, vec!["127.0.0.1:11211"]);
        assert_eq!(c.memcached_generation_refresh, Duration::ZERO);
    }

    #[test]
    fn every_disable_spelling_disables() {
        for v in ["false", "0", "no", "off", "FALSE", " Off "] {
            assert!(!cfg(&[("CACHE_ENABLED", v)]).unwrap().enabled, "{v}");
        }
        for v in ["true", "1", "yes", "on"] {
            assert!(cfg(&[("CACHE_ENABLED", v)]).unwrap().enabled, "{v}");
        }
    }

    #[test]
    fn bad_values_name_variable_value_and_allowed() {
        let cases = [
            ("CACHE_BACKEND", "rdis", "memory, redis"),
            ("DEFAULT_CACHE_EXPIRATION", "ten", "seconds"),
            ("CACHE_ENABLED", "maybe", "invalidate-only"),
            ("CACHE_OP_TIMEOUT_MS", "0", "above 0"),
            ("CACHE_OP_TIMEOUT_MS", "-5", "milliseconds"),
            ("CACHE_MEMORY_MAX_ENTRIES", "1e6", "entries"),
            ("CACHE_REDIS_PORT", "70000", "port"),
            ("CACHE_REDIS_URL", "http://x", "redis://"),
            ("CLIENT_CACHE_MAX_AGE", "1m", "seconds"),
            (
                "CACHE_MEMCACHED_GENERATION_REFRESH_MS",
                "1s",
                "milliseconds",
            ),
        ];
        for (var, value, allowed) in cases {
            let msg = cfg(&[(var, value)]).unwrap_err().to_string();
            assert!(msg.contains(var), "{msg}");
            assert!(msg.contains(&format!("{value:?}")), "{msg}");
            assert!(msg.contains(allowed), "{msg}");
        }
    }

    #[test]
    fn invalidate_only_mode_is_read_from_cache_enabled() {
        for v in ["invalidate-only", "INVALIDATE_ONLY", " invalidate "] {
            let c = cfg(&[("CACHE_ENABLED", v)]).unwrap();
            assert_eq!(c.mode, crate::CacheMode::InvalidateOnly, "{v}");
            assert!(!c.enabled);
        }
        assert_eq!(cfg(&[]).unwrap().mode, crate::CacheMode::On);
        assert_eq!(
            cfg(&[("CACHE_ENABLED", "off")]).unwrap().mode,
            crate::CacheMode::Off
        );
    }

    #[test]
    fn redis_url_from_parts_escapes_password() {
        let c = cfg(&[
            ("CACHE_REDIS_HOST", "cache.local"),
            ("CACHE_REDIS_PORT", "6380"),
            ("CACHE_REDIS_DB", "2"),
            ("CACHE_REDIS_PASSWORD", "p@ss:w/rd"),
        ])
        .unwrap();
        assert_eq!(c.redis_url, "redis://:p%40ss%3Aw%2Frd@cache.local:6380/2");
    }

    #[test]
    fn lists_and_backend_names() {
        let c = cfg(&[
            ("CACHE_BACKEND", "Redis-Cluster"),
            (
                "CACHE_REDIS_CLUSTER_NODES",
                "redis://127.0.0.1:7000, redis://127.0.0.1:7001,",
            ),
            ("CACHE_MEMCACHED_SERVERS", "127.0.0.1:11211,127.0.0.1:11212"),
        ])
        .unwrap();
        assert_eq!(c.backend, BackendKind::RedisCluster);
        assert_eq!(c.redis_cluster_nodes.len(), 2);
        assert_eq!(c.memcached_servers.len(), 2);
    }

    #[test]
    fn memory_max_bytes_in_bytes() {
        assert_eq!(cfg(&[]).unwrap().memory_max_bytes, 256 * 1024 * 1024);
        let c = cfg(&[("CACHE_MEMORY_MAX_BYTES", " 1048576 ")]).unwrap();
        assert_eq!(c.memory_max_bytes, 1 << 20);
        for bad in ["256MiB", "-1", "1e9"] {
            let msg = cfg(&[("CACHE_MEMORY_MAX_BYTES", bad)])
                .unwrap_err()
                .to_string();
            assert!(msg.contains("CACHE_MEMORY_MAX_BYTES"), "{msg}");
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(msg.contains("bytes"), "{msg}");
        }
    }

    #[test]
    fn memcached_generation_refresh_in_milliseconds() {
        let c = cfg(&[("CACHE_MEMCACHED_GENERATION_REFRESH_MS", "1500")]).unwrap();
        assert_eq!(c.memcached_generation_refresh, Duration::from_millis(1500));
    }

    #[test]
    fn connect_timeout_parses_like_the_other_timeouts() {
        assert_eq!(
            cfg(&[]).unwrap().connect_timeout,
            Duration::from_millis(1000)
        );
        let c = cfg(&[("CACHE_CONNECT_TIMEOUT_MS", " 250 ")]).unwrap();
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        for bad in ["0", "-1", "1s", "1.5"] {
            let msg = cfg(&[("CACHE_CONNECT_TIMEOUT_MS", bad)])
                .unwrap_err()
                .to_string();
            assert!(msg.contains("CACHE_CONNECT_TIMEOUT_MS"), "{msg}");
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(msg.contains("milliseconds above 0"), "{msg}");
        }
    }

    #[test]
    fn debug_shows_no_password() {
        let c = cfg(&[
            ("CACHE_REDIS_PASSWORD", "hunter2"),
            (
                "CACHE_REDIS_CLUSTER_NODES",
                "redis://:hunter2@n1:7000,redis://u:hunter2@n2:7001/?password=hunter2",
            ),
        ])
        .unwrap();
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://:***@127.0.0.1:6379/0"), "{shown}");
        assert!(shown.contains("redis://:***@n1:7000"), "{shown}");
        assert!(
            shown.contains("redis://u:***@n2:7001/?password=***"),
            "{shown}"
        );
        let c = cfg(&[("CACHE_REDIS_URL", "redis://app:hunter2@h:1/0")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(format!("{c:?}").contains("connect_timeout"));
    }

    #[test]
    fn url_errors_show_no_password() {
        for value in [
            "http://:hunter2@cache:6379/0",
            "cache:6379?password=hunter2",
            "redis//:hunter2@cache",
        ] {
            let err = cfg(&[("CACHE_REDIS_URL", value)]).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(shown.contains("CACHE_REDIS_URL"), "{shown}");
            assert!(!shown.contains("hunter2"), "{value}: {shown}");
        }
        let err = cfg(&[("CACHE_REDIS_URL", "http://:hunter2@cache:6379/0")]).unwrap_err();
        assert!(
            err.to_string().contains("http://:***@cache:6379/0"),
            "{err}"
        );
    }
}

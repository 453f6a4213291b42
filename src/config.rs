//! Configuration from environment variables (12-factor), as in the FastAPI boilerplate.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `CACHE_ENABLED` | `true` | `false`/`0`/`no`/`off` make annotated functions plain calls; `invalidate-only`: no reads, invalidations still delete |
//! | `CACHE_BACKEND` | `memory` | `memory`, `redis`, `redis-cluster`, `memcached`, `none`, `auto` |
//! | `DEFAULT_CACHE_EXPIRATION` | `3600` | default TTL in seconds |
//! | `CACHE_NAMESPACE` | empty | prefix of every key (`{ns}:{key}`) |
//! | `CACHE_OP_TIMEOUT_MS` | `250` | bound on each store operation |
//! | `CACHE_CONNECT_TIMEOUT_MS` | `1000` | bound on the startup check of a network store (and on each connection attempt); a store that does not answer within it is unreachable: the service starts and fails open |
//! | `CACHE_LOCAL_MAX_ENTRIES` | `10000` | entries of the local tier in front of a network store (`0`: no local tier) |
//! | `CACHE_LOCAL_MAX_BYTES` | `67108864` (64 MiB) | encoded bytes of the local tier's values |
//! | `CACHE_LOCAL_TTL` | `60` | seconds an entry stays in the local tier at most (never past its own TTL) |
//! | `CACHE_FAIL_SAFE_MAX` | `0` (off) | seconds an entry is kept past its TTL, to answer when the body fails or the store cannot be read (`cacheside::FailSafe`) |
//! | `CACHE_TTL_JITTER` | `0` | fraction from 0 to 1: what reads store lives `ttl × (1 ± jitter)`, so a batch written together does not expire together |
//! | `CACHE_LEASE_MS` | `0` (off) | single-flight across processes: the lease a leader holds in the store while its body runs (longer than the body takes) |
//! | `CACHE_TRACE_KEYS` | `false` | `true`: each call's tracing span records its key (`cacheside.key`); off by default because keys are built from arguments and can hold user data |
//! | `CACHE_FAIL_SAFE_THROTTLE` | `30` | seconds a fallback value is served before the failing body is tried again (needs `CACHE_FAIL_SAFE_MAX`) |
//! | `CACHE_BACKPLANE` | the store | where invalidations reach the other processes' local tiers: unset = the Redis store itself (none for Memcached), `redis://…` = that Redis, `none` = no backplane |
//! | `CACHE_COMPRESS_MIN_BYTES` | unset (off) | feature `compression`: payloads of at least this many bytes are stored lz4-compressed (`CacheBuilder::compress`); `0` = off; set without the feature, an error |
//!
//! Without a backplane (Memcached without `CACHE_BACKPLANE`, or
//! `CACHE_BACKPLANE=none`) the local tier is used only when `CACHE_LOCAL_TTL`
//! is set: that TTL is then the longest another process's invalidation can
//! stay unseen here, and setting it says you accept that.
//!
//! Each store reads its own variables, by the same rules ([`cache_core::env`]):
//! `CACHE_MEMORY_*` ([`MemoryConfig`](crate::backends::MemoryConfig)),
//! `CACHE_REDIS_*` ([`RedisConfig`](crate::backends::RedisConfig)),
//! `CACHE_MEMCACHED_*` ([`MemcachedConfig`](crate::backends::MemcachedConfig));
//! the HTTP client-cache layer reads `CLIENT_CACHE_*` (`cacheside::http::ClientCacheLayer::from_env`).
//!
//! Credentials never leave a `Config` in clear: its `Debug` shows the URLs
//! through [`redact_url`](crate::redact_url), and errors about URL values show them the same way.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use cache_core::env::Vars;
use cache_core::{Error, DEFAULT_OP_TIMEOUT, DEFAULT_TTL};

use crate::registry::CacheMode;

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

/// Everything cacheside reads from the environment: the common variables,
/// and one section per store compiled in, read by that store's own rules.
///
/// ```
/// use cacheside::{BackendKind, Config};
/// let vars = [("CACHE_BACKEND", "memory"), ("DEFAULT_CACHE_EXPIRATION", "600")];
/// let config = Config::from_lookup(|name| {
///     vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
/// })?;
/// assert_eq!(config.backend, BackendKind::Memory);
/// assert_eq!(config.default_ttl.as_secs(), 600);
///
/// let bad = Config::from_lookup(|name| (name == "CACHE_BACKEND").then(|| "rdis".to_string()));
/// assert!(bad.unwrap_err().to_string().contains("CACHE_BACKEND"));
/// # Ok::<(), cacheside::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// `CACHE_ENABLED` (`invalidate-only` keeps invalidation on while reads
    /// are off). `init_from_config` applies it.
    pub mode: CacheMode,
    /// `CACHE_BACKEND`.
    pub backend: BackendKind,
    /// `DEFAULT_CACHE_EXPIRATION`.
    pub default_ttl: Duration,
    /// `CACHE_NAMESPACE` (empty: none).
    pub namespace: String,
    /// `CACHE_OP_TIMEOUT_MS`.
    pub op_timeout: Duration,
    /// `CACHE_CONNECT_TIMEOUT_MS`: how long startup waits for a network store
    /// (and each later connection attempt) before taking it as unreachable.
    pub connect_timeout: Duration,
    /// `CACHE_LOCAL_MAX_ENTRIES`, `CACHE_LOCAL_MAX_BYTES`, `CACHE_LOCAL_TTL`:
    /// the local tier in front of a network store (`max_entries == 0`: none).
    pub local: cache_core::LocalSettings,
    /// Whether `CACHE_LOCAL_TTL` was set (the tier is used without a backplane only then).
    pub local_ttl_set: bool,
    /// `CACHE_FAIL_SAFE_MAX`, `CACHE_FAIL_SAFE_THROTTLE`: the cache's
    /// default fail-safe (`None`: off, the default).
    pub fail_safe: Option<cache_core::FailSafe>,
    /// `CACHE_TTL_JITTER`: the cache's default TTL jitter (0: none).
    pub jitter: f64,
    /// `CACHE_LEASE_MS`: single-flight across processes (`None`: off, the default).
    pub lease: Option<Duration>,
    /// `CACHE_TRACE_KEYS`: spans record each call's key (off: keys can hold user data).
    pub trace_keys: bool,
    /// `CACHE_BACKPLANE`.
    pub backplane: BackplaneSetting,
    /// `CACHE_COMPRESS_MIN_BYTES`: what the cache compresses (`None`: nothing, the default).
    #[cfg(feature = "compression")]
    pub compression: Option<cache_core::codec::Compression>,
    /// `CACHE_MEMORY_*`.
    #[cfg(feature = "memory")]
    pub memory: cache_backends::MemoryConfig,
    /// `CACHE_REDIS_*` (its `Debug` hides passwords).
    #[cfg(feature = "redis")]
    pub redis: cache_backends::RedisConfig,
    /// `CACHE_MEMCACHED_*`.
    #[cfg(feature = "memcached")]
    pub memcached: cache_backends::MemcachedConfig,
}

/// `CACHE_BACKPLANE`: how invalidations reach the other processes' local tiers.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackplaneSetting {
    /// Unset: the store itself when it is Redis (pub/sub), none for Memcached.
    Store,
    /// `none`: no backplane.
    None,
    /// `redis://…`: this Redis (e.g. beside Memcached).
    Redis(String),
}

impl fmt::Debug for BackplaneSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackplaneSetting::Store => f.write_str("Store"),
            BackplaneSetting::None => f.write_str("None"),
            BackplaneSetting::Redis(url) => write!(f, "Redis({})", cache_core::redact_url(url)),
        }
    }
}

/// Default of `CACHE_CONNECT_TIMEOUT_MS`: how long startup waits for a network store.
///
/// ```
/// assert_eq!(cacheside::Config::default().connect_timeout, cacheside::DEFAULT_CONNECT_TIMEOUT);
/// assert_eq!(cacheside::DEFAULT_CONNECT_TIMEOUT.as_millis(), 1000);
/// ```
pub const DEFAULT_CONNECT_TIMEOUT: Duration = cache_backends::DEFAULT_CONNECT_TIMEOUT;

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: CacheMode::On,
            backend: BackendKind::Memory,
            default_ttl: DEFAULT_TTL,
            namespace: String::new(),
            op_timeout: DEFAULT_OP_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            local: cache_core::LocalSettings::DEFAULT,
            local_ttl_set: false,
            fail_safe: None,
            jitter: 0.0,
            lease: None,
            trace_keys: false,
            backplane: BackplaneSetting::Store,
            #[cfg(feature = "compression")]
            compression: None,
            #[cfg(feature = "memory")]
            memory: Default::default(),
            #[cfg(feature = "redis")]
            redis: Default::default(),
            #[cfg(feature = "memcached")]
            memcached: Default::default(),
        }
    }
}

/// Parses `CACHE_ENABLED`: a boolean, or `invalidate-only`.
pub(crate) fn parse_mode(var: &'static str, value: &str) -> Result<CacheMode, Error> {
    match value.trim().to_ascii_lowercase().replace('_', "-").as_str() {
        "invalidate-only" | "invalidate" => Ok(CacheMode::InvalidateOnly),
        _ => match cache_core::env::parse_bool(var, value) {
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

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, Error> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (for tests and for other config sources).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let vars = Vars::new(&lookup);
        let mut c = Config::default();
        if let Some(v) = vars.get("CACHE_ENABLED") {
            c.mode = parse_mode("CACHE_ENABLED", &v)?;
        }
        if let Some(v) = vars.get("CACHE_BACKEND") {
            c.backend = v.parse()?;
        }
        if let Some(ttl) = vars.seconds(
            "DEFAULT_CACHE_EXPIRATION",
            "a whole number of seconds, e.g. 3600",
        )? {
            c.default_ttl = ttl;
        }
        if let Some(v) = vars.get("CACHE_NAMESPACE") {
            c.namespace = v;
        }
        if let Some(t) = vars.millis_above_zero(
            "CACHE_OP_TIMEOUT_MS",
            "a whole number of milliseconds above 0, e.g. 250",
        )? {
            c.op_timeout = t;
        }
        if let Some(t) = vars.millis_above_zero(
            "CACHE_CONNECT_TIMEOUT_MS",
            "a whole number of milliseconds above 0, e.g. 1000",
        )? {
            c.connect_timeout = t;
        }
        if let Some(n) = vars.num(
            "CACHE_LOCAL_MAX_ENTRIES",
            "a whole number of entries, e.g. 10000 (0: no local tier)",
        )? {
            c.local.max_entries = n;
        }
        if let Some(n) = vars.num(
            "CACHE_LOCAL_MAX_BYTES",
            "a whole number of bytes, e.g. 67108864",
        )? {
            c.local.max_bytes = n;
        }
        const LOCAL_TTL: &str =
            "a whole number of seconds above 0, e.g. 60 (CACHE_LOCAL_MAX_ENTRIES=0 turns the local tier off)";
        if let Some(ttl) = vars.seconds("CACHE_LOCAL_TTL", LOCAL_TTL)? {
            if ttl.is_zero() {
                return Err(Error::config("CACHE_LOCAL_TTL", "0", LOCAL_TTL));
            }
            c.local.ttl = ttl;
            c.local_ttl_set = true;
        }
        const FAIL_SAFE_MAX: &str = "a whole number of seconds, e.g. 3600 (0: fail-safe off)";
        const FAIL_SAFE_THROTTLE: &str =
            "a whole number of seconds above 0, e.g. 30, with CACHE_FAIL_SAFE_MAX set above 0";
        let max = vars.seconds("CACHE_FAIL_SAFE_MAX", FAIL_SAFE_MAX)?;
        c.fail_safe = max
            .filter(|max| !max.is_zero())
            .map(cache_core::FailSafe::new);
        if let Some(throttle) = vars.seconds("CACHE_FAIL_SAFE_THROTTLE", FAIL_SAFE_THROTTLE)? {
            let shown = throttle.as_secs().to_string();
            match &mut c.fail_safe {
                Some(fs) if !throttle.is_zero() => *fs = fs.throttle(throttle),
                _ => {
                    return Err(Error::config(
                        "CACHE_FAIL_SAFE_THROTTLE",
                        &shown,
                        FAIL_SAFE_THROTTLE,
                    ))
                }
            }
        }
        c.lease = vars
            .millis(
                "CACHE_LEASE_MS",
                "a whole number of milliseconds, e.g. 5000 (0: off)",
            )?
            .filter(|ms| !ms.is_zero());
        if let Some(v) = vars.get("CACHE_TRACE_KEYS") {
            c.trace_keys = cache_core::env::parse_bool("CACHE_TRACE_KEYS", &v)?;
        }
        if let Some(v) = vars.get("CACHE_TTL_JITTER") {
            const JITTER: &str = "a fraction from 0 to 1, e.g. 0.1";
            c.jitter = match v.parse::<f64>() {
                Ok(f) if (0.0..=1.0).contains(&f) => f,
                _ => return Err(Error::config("CACHE_TTL_JITTER", &v, JITTER)),
            };
        }
        if let Some(v) = vars.get("CACHE_BACKPLANE") {
            c.backplane = match v.to_ascii_lowercase().as_str() {
                "none" | "off" | "false" | "0" => BackplaneSetting::None,
                _ if v.starts_with("redis://") || v.starts_with("rediss://") => {
                    BackplaneSetting::Redis(v)
                }
                _ => {
                    return Err(Error::config(
                        "CACHE_BACKPLANE",
                        &v,
                        "a redis:// or rediss:// URL, or none",
                    ))
                }
            };
        }
        const COMPRESS: &str = "a whole number of bytes, e.g. 16384 (0: off)";
        #[cfg(feature = "compression")]
        {
            c.compression = vars
                .num("CACHE_COMPRESS_MIN_BYTES", COMPRESS)?
                .filter(|&n| n > 0)
                .map(cache_core::codec::Compression::lz4);
        }
        #[cfg(not(feature = "compression"))]
        if let Some(v) = vars.get("CACHE_COMPRESS_MIN_BYTES") {
            if vars.num::<usize>("CACHE_COMPRESS_MIN_BYTES", COMPRESS)? != Some(0) {
                return Err(Error::config(
                    "CACHE_COMPRESS_MIN_BYTES",
                    &v,
                    "unset or 0: this build has no compression; enable cacheside's `compression` feature",
                ));
            }
        }
        #[cfg(feature = "memory")]
        {
            c.memory = cache_backends::MemoryConfig::from_vars(&vars)?;
        }
        #[cfg(feature = "redis")]
        {
            c.redis = cache_backends::RedisConfig::from_vars(&vars)?;
        }
        #[cfg(feature = "memcached")]
        {
            c.memcached = cache_backends::MemcachedConfig::from_vars(&vars)?;
        }
        Ok(c)
    }

    /// The bounds the network stores start with.
    pub fn timeouts(&self) -> cache_backends::Timeouts {
        cache_backends::Timeouts {
            connect: self.connect_timeout,
            op: self.op_timeout,
        }
    }
}

#[cfg(test)]
#[cfg(all(feature = "memory", feature = "redis", feature = "memcached"))]
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
        assert_eq!(c.mode, CacheMode::On);
        assert_eq!(c.backend, BackendKind::Memory);
        assert_eq!(c.default_ttl, Duration::from_secs(3600));
        assert_eq!(c.redis.url, "redis://127.0.0.1:6379/0");
        assert_eq!(c.memcached.servers, vec!["127.0.0.1:11211"]);
        assert_eq!(c.memcached.generation_refresh, Duration::ZERO);
        assert_eq!(c.local, cache_core::LocalSettings::DEFAULT);
        assert!(!c.local_ttl_set);
        assert_eq!(c.fail_safe, None);
        assert_eq!(c.backplane, BackplaneSetting::Store);
    }

    #[test]
    fn fail_safe_variables() {
        let secs = Duration::from_secs;
        let c = cfg(&[("CACHE_FAIL_SAFE_MAX", "3600")]).unwrap();
        assert_eq!(c.fail_safe, Some(cache_core::FailSafe::new(secs(3600))));
        let c = cfg(&[
            ("CACHE_FAIL_SAFE_MAX", "600"),
            ("CACHE_FAIL_SAFE_THROTTLE", "5"),
        ])
        .unwrap();
        assert_eq!(
            c.fail_safe,
            Some(cache_core::FailSafe::new(secs(600)).throttle(secs(5)))
        );
        assert_eq!(
            cfg(&[("CACHE_FAIL_SAFE_MAX", "0")]).unwrap().fail_safe,
            None
        );
        assert_eq!(cfg(&[("CACHE_TTL_JITTER", "0.1")]).unwrap().jitter, 0.1);
        assert_eq!(cfg(&[]).unwrap().jitter, 0.0);
        assert_eq!(
            cfg(&[("CACHE_LEASE_MS", "5000")]).unwrap().lease,
            Some(Duration::from_secs(5))
        );
        assert_eq!(cfg(&[("CACHE_LEASE_MS", "0")]).unwrap().lease, None);
        assert!(cfg(&[("CACHE_TRACE_KEYS", "yes")]).unwrap().trace_keys);
        assert!(!cfg(&[]).unwrap().trace_keys);
        let bad = cfg(&[("CACHE_TRACE_KEYS", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(bad.contains("CACHE_TRACE_KEYS"), "{bad}");
        // A throttle with nothing to throttle is a mistake, said so.
        for vars in [
            &[("CACHE_FAIL_SAFE_THROTTLE", "5")][..],
            &[
                ("CACHE_FAIL_SAFE_MAX", "0"),
                ("CACHE_FAIL_SAFE_THROTTLE", "5"),
            ],
            &[
                ("CACHE_FAIL_SAFE_MAX", "60"),
                ("CACHE_FAIL_SAFE_THROTTLE", "0"),
            ],
        ] {
            let msg = cfg(vars).unwrap_err().to_string();
            assert!(
                msg.contains("CACHE_FAIL_SAFE_THROTTLE") && msg.contains("CACHE_FAIL_SAFE_MAX"),
                "{msg}"
            );
        }
    }

    #[test]
    fn local_tier_and_backplane_variables() {
        let c = cfg(&[
            ("CACHE_LOCAL_MAX_ENTRIES", "500"),
            ("CACHE_LOCAL_MAX_BYTES", "1048576"),
            ("CACHE_LOCAL_TTL", "5"),
            ("CACHE_BACKPLANE", "redis://:hunter2@10.0.0.1:6379"),
        ])
        .unwrap();
        assert_eq!(
            (c.local.max_entries, c.local.max_bytes, c.local.ttl),
            (500, 1 << 20, Duration::from_secs(5))
        );
        assert!(c.local_ttl_set);
        assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
        assert_eq!(
            cfg(&[("CACHE_BACKPLANE", " None ")]).unwrap().backplane,
            BackplaneSetting::None
        );
        let err = cfg(&[("CACHE_BACKPLANE", "http://:hunter2@x")])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn compression_threshold_in_bytes_and_an_error_without_the_feature() {
        assert!(cfg(&[("CACHE_COMPRESS_MIN_BYTES", "0")]).is_ok());
        let bad = cfg(&[("CACHE_COMPRESS_MIN_BYTES", "16k")])
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("CACHE_COMPRESS_MIN_BYTES") && bad.contains("bytes"),
            "{bad}"
        );
        let set = cfg(&[("CACHE_COMPRESS_MIN_BYTES", "16384")]);
        #[cfg(feature = "compression")]
        {
            use cache_core::codec::Compression;
            assert_eq!(set.unwrap().compression, Some(Compression::lz4(16384)));
            assert_eq!(cfg(&[]).unwrap().compression, None);
            assert_eq!(
                cfg(&[("CACHE_COMPRESS_MIN_BYTES", "0")])
                    .unwrap()
                    .compression,
                None
            );
        }
        #[cfg(not(feature = "compression"))]
        {
            let msg = set.unwrap_err().to_string();
            assert!(
                msg.contains("CACHE_COMPRESS_MIN_BYTES") && msg.contains("`compression` feature"),
                "{msg}"
            );
        }
    }

    #[test]
    fn every_disable_spelling_disables() {
        for v in ["false", "0", "no", "off", "FALSE", " Off "] {
            assert_eq!(
                cfg(&[("CACHE_ENABLED", v)]).unwrap().mode,
                CacheMode::Off,
                "{v}"
            );
        }
        for v in ["true", "1", "yes", "on"] {
            assert_eq!(
                cfg(&[("CACHE_ENABLED", v)]).unwrap().mode,
                CacheMode::On,
                "{v}"
            );
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
            ("CACHE_LOCAL_MAX_ENTRIES", "lots", "entries"),
            ("CACHE_LOCAL_MAX_BYTES", "64MB", "bytes"),
            ("CACHE_LOCAL_TTL", "0", "above 0"),
            ("CACHE_LOCAL_TTL", "1m", "seconds"),
            ("CACHE_FAIL_SAFE_MAX", "1h", "seconds"),
            ("CACHE_TTL_JITTER", "10%", "fraction"),
            ("CACHE_LEASE_MS", "5s", "milliseconds"),
            ("CACHE_TTL_JITTER", "1.5", "fraction"),
            ("CACHE_TTL_JITTER", "NaN", "fraction"),
            ("CACHE_FAIL_SAFE_THROTTLE", "-1", "seconds"),
            ("CACHE_BACKPLANE", "http://x", "redis://"),
            ("CACHE_MEMORY_MAX_ENTRIES", "1e6", "entries"),
            ("CACHE_REDIS_PORT", "70000", "port"),
            ("CACHE_REDIS_URL", "http://x", "redis://"),
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
            assert_eq!(c.mode, CacheMode::InvalidateOnly, "{v}");
        }
        assert_eq!(cfg(&[]).unwrap().mode, CacheMode::On);
        assert_eq!(
            cfg(&[("CACHE_ENABLED", "off")]).unwrap().mode,
            CacheMode::Off
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
        assert_eq!(c.redis.url, "redis://:p%40ss%3Aw%2Frd@cache.local:6380/2");
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
        assert_eq!(c.redis.cluster_nodes.len(), 2);
        assert_eq!(c.memcached.servers.len(), 2);
    }

    #[test]
    fn memory_max_bytes_in_bytes() {
        assert_eq!(cfg(&[]).unwrap().memory.max_bytes, 256 * 1024 * 1024);
        let c = cfg(&[("CACHE_MEMORY_MAX_BYTES", " 1048576 ")]).unwrap();
        assert_eq!(c.memory.max_bytes, 1 << 20);
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
        assert_eq!(c.memcached.generation_refresh, Duration::from_millis(1500));
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

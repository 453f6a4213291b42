//! What the environment says about Redis: [`RedisConfig`].

use std::fmt;

use cache_core::env::Vars;
use cache_core::{redact_url, Error};

/// Where the Redis backends connect, from `CACHE_REDIS_*`.
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `CACHE_REDIS_URL` | from the four below | `redis://[:password@]host:port/db` (also `rediss://`, `redis+unix://`, `unix://`) |
/// | `CACHE_REDIS_HOST` / `_PORT` / `_DB` / `_PASSWORD` | `127.0.0.1` / `6379` / `0` / none | used when `CACHE_REDIS_URL` is unset; the password is percent-encoded |
/// | `CACHE_REDIS_CLUSTER_NODES` | none | comma-separated node URLs (`CACHE_BACKEND=redis-cluster`) |
/// | `CACHE_REDIS_POOL_SIZE` | `1` | multiplexed connections to one server, used in turn ([`RedisOptions::pool_size`](crate::RedisOptions::pool_size); ignored by `redis-cluster`) |
///
/// Its `Debug` shows the URLs through [`redact_url`]: a password never shows.
///
/// ```
/// use cache_backends::RedisConfig;
/// use cache_core::env::Vars;
/// let lookup = |name: &str| match name {
///     "CACHE_REDIS_HOST" => Some("cache".to_string()),
///     "CACHE_REDIS_PASSWORD" => Some("p@ss:word".to_string()),
///     _ => None,
/// };
/// let config = RedisConfig::from_vars(&Vars::new(&lookup))?;
/// assert_eq!(config.url, "redis://:p%40ss%3Aword@cache:6379/0");
/// assert!(!format!("{config:?}").contains("p%40ss"));
/// assert_eq!(config.pool_size, 1);
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `CACHE_REDIS_URL`, or built from `CACHE_REDIS_HOST`/`PORT`/`DB`/`PASSWORD`.
    pub url: String,
    /// `CACHE_REDIS_CLUSTER_NODES`.
    pub cluster_nodes: Vec<String>,
    /// `CACHE_REDIS_POOL_SIZE` (at least 1).
    pub pool_size: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/0".into(),
            cluster_nodes: Vec::new(),
            pool_size: crate::RedisOptions::default().pool_size,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.cluster_nodes.iter().map(|n| redact_url(n)).collect();
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("cluster_nodes", &nodes)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl RedisConfig {
    /// Reads `CACHE_REDIS_*`; a malformed value is an [`Error::Config`]
    /// naming the variable (a URL shown without its password).
    pub fn from_vars(vars: &Vars<'_>) -> Result<Self, Error> {
        let mut c = RedisConfig::default();
        if let Some(url) = vars.get("CACHE_REDIS_URL") {
            const SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];
            if !SCHEMES.iter().any(|s| url.starts_with(s)) {
                return Err(Error::config(
                    "CACHE_REDIS_URL",
                    &url,
                    "a URL starting with redis://, rediss://, redis+unix:// or unix://",
                ));
            }
            c.url = url;
        } else {
            let host = vars
                .get("CACHE_REDIS_HOST")
                .unwrap_or_else(|| "127.0.0.1".into());
            let port: u16 = vars
                .num("CACHE_REDIS_PORT", "a port number 1-65535")?
                .unwrap_or(6379);
            let db: u32 = vars
                .num("CACHE_REDIS_DB", "a database number, e.g. 0")?
                .unwrap_or(0);
            let auth = match vars.get("CACHE_REDIS_PASSWORD") {
                Some(p) => format!(":{}@", percent_encode(&p)),
                None => String::new(),
            };
            c.url = format!("redis://{auth}{host}:{port}/{db}");
        }
        if let Some(nodes) = vars.list("CACHE_REDIS_CLUSTER_NODES") {
            c.cluster_nodes = nodes;
        }
        if let Some(n) = vars.num::<usize>(
            "CACHE_REDIS_POOL_SIZE",
            "a number of connections, 1 or more (e.g. 2)",
        )? {
            if n == 0 {
                return Err(Error::config(
                    "CACHE_REDIS_POOL_SIZE",
                    "0",
                    "a number of connections, 1 or more (e.g. 2)",
                ));
            }
            c.pool_size = n;
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

    fn config(pool: &str) -> Result<RedisConfig, Error> {
        let lookup = |name: &str| (name == "CACHE_REDIS_POOL_SIZE").then(|| pool.to_string());
        RedisConfig::from_vars(&Vars::new(&lookup))
    }

    #[test]
    fn pool_size_is_one_or_more() {
        assert_eq!(config("3").unwrap().pool_size, 3);
        for bad in ["0", "-1", "two"] {
            let err = config(bad).unwrap_err().to_string();
            assert!(err.contains("CACHE_REDIS_POOL_SIZE"), "{err}");
        }
    }
}

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
/// | `CACHE_REDIS_SENTINELS` | none | comma-separated `host:port` or `redis://[:password@]host:port` of the Sentinels; with `CACHE_BACKEND=redis` the store is the master they name (feature `redis-sentinel`) |
/// | `CACHE_REDIS_SENTINEL_MASTER` | none | the service name the Sentinels monitor (`sentinel monitor <name> …`); required with `CACHE_REDIS_SENTINELS` |
/// | `CACHE_REDIS_SENTINEL_PASSWORD` | none | the password of the Sentinels themselves (`requirepass` in their config), for entries without one; the data nodes' password and database stay `CACHE_REDIS_PASSWORD` / `CACHE_REDIS_DB` (or those of `CACHE_REDIS_URL`, whose host is then unused) |
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
    /// `CACHE_REDIS_SENTINELS`: the Sentinels, as given (empty: no Sentinel).
    pub sentinels: Vec<String>,
    /// `CACHE_REDIS_SENTINEL_MASTER`: the monitored master's service name.
    pub sentinel_master: Option<String>,
    /// `CACHE_REDIS_SENTINEL_PASSWORD`: for the Sentinels that have none in their URL.
    pub sentinel_password: Option<String>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/0".into(),
            cluster_nodes: Vec::new(),
            pool_size: crate::RedisOptions::default().pool_size,
            sentinels: Vec::new(),
            sentinel_master: None,
            sentinel_password: None,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.cluster_nodes.iter().map(|n| redact_url(n)).collect();
        let sentinels: Vec<String> = self.sentinels.iter().map(|n| redact_url(n)).collect();
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("cluster_nodes", &nodes)
            .field("pool_size", &self.pool_size)
            .field("sentinels", &sentinels)
            .field("sentinel_master", &self.sentinel_master)
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "***"),
            )
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
        c.sentinels = vars.list(SENTINELS_VAR).unwrap_or_default();
        for entry in &c.sentinels {
            sentinel_info(entry)?;
        }
        c.sentinel_master = vars.get(SENTINEL_MASTER_VAR);
        c.sentinel_password = vars.get("CACHE_REDIS_SENTINEL_PASSWORD");
        match (c.sentinels.is_empty(), &c.sentinel_master) {
            (false, None) => return Err(Error::config(SENTINEL_MASTER_VAR, "", MASTER_ALLOWED)),
            (true, Some(_)) => {
                return Err(Error::config(
                    SENTINELS_VAR,
                    "",
                    "the Sentinels that monitor the master CACHE_REDIS_SENTINEL_MASTER names, e.g. 10.0.0.1:26379,10.0.0.2:26379 (or unset CACHE_REDIS_SENTINEL_MASTER)",
                ))
            }
            _ => {}
        }
        Ok(c)
    }
}

/// The variable that lists the Sentinels.
pub(crate) const SENTINELS_VAR: &str = "CACHE_REDIS_SENTINELS";
/// The variable that names the monitored master.
pub(crate) const SENTINEL_MASTER_VAR: &str = "CACHE_REDIS_SENTINEL_MASTER";
const MASTER_ALLOWED: &str = "the service name the Sentinels monitor (the <name> of `sentinel monitor <name> <ip> <port> <quorum>`), e.g. mymaster; required when CACHE_REDIS_SENTINELS is set";
const SENTINELS_ALLOWED: &str = "comma-separated Sentinel addresses, host:port or redis://[:password@]host:port (no /db: a Sentinel has no databases), e.g. 10.0.0.1:26379,10.0.0.2:26379";

/// One entry of `CACHE_REDIS_SENTINELS` as connection settings; a
/// malformed entry is an [`Error::Config`] saying what to write.
pub(crate) fn sentinel_info(entry: &str) -> Result<::redis::ConnectionInfo, Error> {
    use ::redis::IntoConnectionInfo;
    let url = super::normalize_url(entry);
    let bad = || Error::config(SENTINELS_VAR, entry, SENTINELS_ALLOWED);
    if !url.starts_with("redis://") {
        return Err(bad());
    }
    let info = url.as_str().into_connection_info().map_err(|_| bad())?;
    if info.redis_settings().db() != 0 {
        return Err(bad());
    }
    Ok(info)
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

    fn with(vars: &[(&str, &str)]) -> Result<RedisConfig, Error> {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        RedisConfig::from_vars(&Vars::new(&lookup))
    }

    #[test]
    fn sentinels_need_a_master_name_and_well_formed_addresses() {
        let c = with(&[
            (
                SENTINELS_VAR,
                "10.0.0.1:26379, redis://:s3cret@10.0.0.2:26379",
            ),
            (SENTINEL_MASTER_VAR, "mymaster"),
            ("CACHE_REDIS_SENTINEL_PASSWORD", "hunter2"),
        ])
        .unwrap();
        assert_eq!(c.sentinels.len(), 2);
        assert_eq!(c.sentinel_master.as_deref(), Some("mymaster"));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2"),
            "{shown}"
        );
        let err = with(&[(SENTINELS_VAR, "10.0.0.1:26379")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(SENTINEL_MASTER_VAR) && err.contains("mymaster"),
            "{err}"
        );
        let err = with(&[(SENTINEL_MASTER_VAR, "mymaster")])
            .unwrap_err()
            .to_string();
        assert!(err.contains(SENTINELS_VAR), "{err}");
        for bad in [
            "http://10.0.0.1:26379",
            "10.0.0.1:notaport",
            "redis://h:26379/2",
            "redis://:s3cret@h:x",
        ] {
            let err = with(&[(SENTINELS_VAR, bad), (SENTINEL_MASTER_VAR, "m")]).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(
                shown.contains(SENTINELS_VAR) && shown.contains("host:port"),
                "{shown}"
            );
            assert!(!shown.contains("s3cret"), "{shown}");
        }
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

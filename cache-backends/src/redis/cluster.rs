//! [`RedisClusterBackend`]: the same commands as [`RedisBackend`](super::RedisBackend), routed by slot.

use std::collections::BTreeMap;
use std::time::Duration;

use ::redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use ::redis::io::tcp::TcpSettings;
use ::redis::{cmd, Cmd, RedisError, Value};
use bytes::Bytes;
use cache_core::{Error, Key};

use super::startup::{self, probe, redis_error, Probe};
use super::{
    connection_info, describe, increment_invocation, increment_reply, scan_cmd, unlink_cmd,
    RedisOptions, Startup,
};

const NAME: &str = "redis-cluster";
/// The variable that holds the seed nodes.
const NODES_VAR: &str = "CACHE_REDIS_CLUSTER_NODES";

/// A Redis Cluster as a cacheside store (feature `redis-cluster`).
///
/// Commands on one key go to the primary that owns its slot (redis-rs
/// `cluster-async`, which follows `MOVED`/`ASK` and refreshes the slot map).
/// [`delete_pattern`](cache_core::Backend::delete_pattern) and [`clear`](cache_core::Backend::clear)
/// read the primaries from `CLUSTER SLOTS`, `SCAN` each of them, and `UNLINK`
/// what matched (redis-rs splits a multi-key `UNLINK` by slot).
///
/// ```no_run
/// use cache_backends::RedisClusterBackend;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
/// let nodes = ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000", "redis://10.0.0.3:7000"];
/// let cluster = RedisClusterBackend::connect(&nodes).await?;
/// let cache = cache_core::Cache::builder(cluster).build();
/// cache.set("widget:7", "spanner", None).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisClusterBackend {
    conn: ClusterConnection,
    seeds: Vec<String>,
}

impl std::fmt::Debug for RedisClusterBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClusterBackend")
            .field("seeds", &self.seeds)
            .finish_non_exhaustive()
    }
}

impl RedisClusterBackend {
    /// Connects to the cluster that the seed nodes belong to, with [`RedisOptions::default`].
    ///
    /// Each seed is a URL (`redis://host:port`, `rediss://…` with the `tls`
    /// feature) or a bare `host:port`; every seed must carry the same password.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
    /// let cluster = cache_backends::RedisClusterBackend::connect(&["127.0.0.1:7000"]).await?;
    /// # let _ = cluster; Ok(()) }
    /// ```
    pub async fn connect<S: AsRef<str>>(nodes: &[S]) -> Result<Self, Error> {
        Self::connect_with(nodes, RedisOptions::default()).await
    }

    /// Like [`connect`](RedisClusterBackend::connect), with explicit timeouts.
    ///
    /// `max_reconnect_delay` bounds the wait between the client's retries of a
    /// command, and `reconnect_attempts` their number.
    ///
    /// Each seed is checked first (one attempt within `connect_timeout`): a
    /// seed that refuses the password, needs one, or is not in cluster mode
    /// fails the call at once with [`Error::Misconfigured`]; a URL that does
    /// not parse is an [`Error::Config`]. No error shows a password.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use cache_backends::{RedisClusterBackend, RedisOptions};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
    /// let options = RedisOptions { response_timeout: Duration::from_millis(100), ..Default::default() };
    /// let cluster = RedisClusterBackend::connect_with(&["redis://127.0.0.1:7000"], options).await?;
    /// # let _ = cluster; Ok(()) }
    /// ```
    pub async fn connect_with<S: AsRef<str>>(
        nodes: &[S],
        options: RedisOptions,
    ) -> Result<Self, Error> {
        let (client, seeds, _) = Self::checked_client(nodes, &options).await?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(|e| redis_error(NAME, "connect", e))?;
        Ok(RedisClusterBackend { conn, seeds })
    }

    /// The startup check, then a backend either way but a refusal: one that
    /// connects in the background when no seed answered in time.
    pub(crate) async fn start<S: AsRef<str>>(
        nodes: &[S],
        options: RedisOptions,
    ) -> Result<Startup<Self>, Error> {
        let (client, seeds, unreachable) = Self::checked_client(nodes, &options).await?;
        let pending = |client: &ClusterClient, seeds| RedisClusterBackend {
            conn: client.get_pending_async_connection_with_config(
                ClusterConfig::new()
                    .set_connection_timeout(options.connect_timeout)
                    .set_response_timeout(options.response_timeout),
            ),
            seeds,
        };
        let why = match unreachable {
            Some(why) => why,
            None => {
                let connecting = client.get_async_connection();
                match tokio::time::timeout(options.connect_timeout, connecting).await {
                    Ok(Ok(conn)) => return Ok(Startup::Ready(RedisClusterBackend { conn, seeds })),
                    Ok(Err(e)) => redis_error(NAME, "connect", e),
                    Err(_) => Error::Timeout {
                        backend: NAME,
                        op: "connect",
                        after: options.connect_timeout,
                    },
                }
            }
        };
        Ok(Startup::Unreachable(pending(&client, seeds), why))
    }

    /// Parses the seeds, checks each (at once, each within the connect
    /// timeout) and builds the client. A seed that refuses the configuration
    /// is an error; `Some(why)` when none answered.
    async fn checked_client<S: AsRef<str>>(
        nodes: &[S],
        options: &RedisOptions,
    ) -> Result<(ClusterClient, Vec<String>, Option<Error>), Error> {
        if nodes.is_empty() {
            return Err(Error::backend(
                NAME,
                "connect",
                "no cluster nodes given; pass at least one node URL such as redis://127.0.0.1:7000",
            ));
        }
        let mut infos = Vec::with_capacity(nodes.len());
        for node in nodes {
            infos.push(connection_info(NODES_VAR, node.as_ref())?);
        }
        let seeds = infos.iter().map(describe).collect();
        let mut checks = tokio::task::JoinSet::new();
        for info in &infos {
            let (info, options) = (info.clone(), options.clone());
            checks.spawn(async move {
                let check = cmd("CLUSTER").arg("INFO").to_owned();
                probe(NAME, &info, &options, &check, startup::CLUSTER).await
            });
        }
        let mut unreachable = None;
        let mut answered = false;
        while let Some(done) = checks.join_next().await {
            match done {
                Ok(Ok(Probe::Ready)) => answered = true,
                Ok(Ok(Probe::Unreachable(why))) => unreachable = Some(why),
                Ok(Err(refused)) => return Err(refused),
                Err(panicked) => {
                    return Err(Error::backend(NAME, "connect", panicked.to_string()));
                }
            }
        }
        let max_wait = u64::try_from(options.max_reconnect_delay.as_millis()).unwrap_or(u64::MAX);
        let builder = ClusterClientBuilder::new(infos);
        let builder = match &options.tls_root_cert {
            None => builder,
            #[cfg(feature = "tls")]
            Some(pem) => builder.certs(::redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            }),
            #[cfg(not(feature = "tls"))]
            Some(_) => return Err(super::tls_not_compiled()),
        };
        let client = builder
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.response_timeout)
            .retries(u32::try_from(options.reconnect_attempts).unwrap_or(u32::MAX))
            .max_retry_wait(max_wait)
            .min_retry_wait(max_wait.min(10))
            .tcp_settings(TcpSettings::default().set_nodelay(options.tcp_nodelay))
            .build()
            .map_err(|e| redis_error(NAME, "connect", e))?;
        Ok((client, seeds, if answered { None } else { unreachable }))
    }

    async fn query<T: ::redis::FromRedisValue>(
        &self,
        op: &'static str,
        command: &Cmd,
    ) -> Result<T, Error> {
        let mut conn = self.conn.clone();
        command
            .query_async(&mut conn)
            .await
            .map_err(|e: RedisError| redis_error(NAME, op, e))
    }

    /// One script call (`EVALSHA`, `EVAL` after `NOSCRIPT`), routed by its first key.
    async fn invoke<T: ::redis::FromRedisValue>(
        &self,
        op: &'static str,
        invocation: &::redis::ScriptInvocation<'_>,
    ) -> Result<T, Error> {
        let mut conn = self.conn.clone();
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| redis_error(NAME, op, e))
    }

    /// One slot owned by each primary, from `CLUSTER SLOTS`.
    async fn one_slot_per_primary(&self, op: &'static str) -> Result<Vec<u16>, Error> {
        let reply: Value = self.query(op, cmd("CLUSTER").arg("SLOTS")).await?;
        primaries_from_cluster_slots(reply).map_err(|msg| Error::backend(NAME, op, msg))
    }

    /// SCANs every primary with `redis_match` and UNLINKs the keys `keep` accepts.
    async fn scan_unlink(
        &self,
        op: &'static str,
        redis_match: &str,
        keep: impl Fn(&[u8]) -> bool + Send + Sync,
    ) -> Result<u64, Error> {
        let mut removed = 0u64;
        for slot in self.one_slot_per_primary(op).await? {
            let node = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                slot,
                SlotAddr::Master,
            )));
            let mut cursor: u64 = 0;
            loop {
                let mut conn = self.conn.clone();
                let reply = conn
                    .route_command(scan_cmd(cursor, redis_match), node.clone())
                    .await
                    .map_err(|e| redis_error(NAME, op, e))?;
                let (next, keys): (u64, Vec<Vec<u8>>) =
                    ::redis::from_redis_value(reply).map_err(|e| Error::backend(NAME, op, e))?;
                if let Some(unlink) = unlink_cmd(keys.iter().filter(|k| keep(k))) {
                    removed += self.query::<u64>(op, &unlink).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(removed)
    }
}

/// The first slot of each primary in a `CLUSTER SLOTS` reply
/// (`[[start, end, [host, port, id, …], replicas…], …]`), one per primary.
fn primaries_from_cluster_slots(reply: Value) -> Result<Vec<u16>, String> {
    let Value::Array(ranges) = reply else {
        return Err(format!("unexpected CLUSTER SLOTS reply: {reply:?}"));
    };
    // Primary (id, or host:port when the id is missing) → lowest slot it serves.
    let mut primaries: BTreeMap<String, u16> = BTreeMap::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            return Err("unexpected CLUSTER SLOTS entry (not an array)".into());
        };
        let (Some(Value::Int(start)), Some(Value::Array(primary))) =
            (fields.first(), fields.get(2))
        else {
            return Err("unexpected CLUSTER SLOTS entry (no start slot or primary)".into());
        };
        let slot = u16::try_from(*start)
            .ok()
            .filter(|s| *s < 16384)
            .ok_or_else(|| format!("CLUSTER SLOTS names slot {start}, outside 0..16384"))?;
        let identity = match (primary.get(2), primary.first(), primary.get(1)) {
            (Some(Value::BulkString(id)), _, _) => String::from_utf8_lossy(id).into_owned(),
            (_, Some(Value::BulkString(host)), Some(Value::Int(port))) => {
                format!("{}:{port}", String::from_utf8_lossy(host))
            }
            _ => return Err("unexpected CLUSTER SLOTS primary entry".into()),
        };
        let entry = primaries.entry(identity).or_insert(slot);
        *entry = (*entry).min(slot);
    }
    if primaries.is_empty() {
        return Err("CLUSTER SLOTS lists no slots: the cluster is not formed yet".into());
    }
    Ok(primaries.into_values().collect())
}

super::redis_backend_impl!(RedisClusterBackend, {
    /// The same script as the single-node backend, routed by the counter's
    /// slot. When the peek key lives on another slot (no common `{hash tag}`),
    /// it is read with a second command (`GET`) instead of failing with `CROSSSLOT`.
    async fn increment(
        &self,
        key: Key<'_>,
        delta: i64,
        ttl: Duration,
        peek: Option<Key<'_>>,
    ) -> Result<(u64, u64), Error> {
        let same_slot = peek.is_none_or(|p| {
            ::redis::cluster_routing::Slot::for_key(p.as_str())
                == ::redis::cluster_routing::Slot::for_key(key.as_str())
        });
        let invocation = increment_invocation(key, delta, ttl, if same_slot { peek } else { None });
        let answer: (i64, i64) = self.invoke("increment", &invocation).await?;
        let (value, mut peeked) = increment_reply(answer);
        if let (false, Some(p)) = (same_slot, peek) {
            let raw: Option<String> = self.query("increment", cmd("GET").arg(p.as_str())).await?;
            peeked = raw.and_then(|v| v.parse().ok()).unwrap_or(0);
        }
        Ok((value, peeked))
    }

    async fn ping(&self) -> Result<(), Error> {
        // Routed to every primary; fails when one of them does not answer.
        let _: Value = self.query("ping", &cmd("PING")).await?;
        Ok(())
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64, id: &str) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(id.as_bytes().to_vec()),
        ])
    }

    #[test]
    fn one_slot_per_primary() {
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(5460), node("h", 1, "a")]),
            Value::Array(vec![Value::Int(5461), Value::Int(10922), node("h", 2, "b")]),
            Value::Array(vec![
                Value::Int(12000),
                Value::Int(16383),
                node("h", 1, "a"),
            ]),
            Value::Array(vec![
                Value::Int(10923),
                Value::Int(11999),
                node("h", 3, "c"),
            ]),
        ]);
        let mut slots = primaries_from_cluster_slots(reply).unwrap();
        slots.sort_unstable();
        assert_eq!(slots, vec![0, 5461, 10923]);
        assert!(primaries_from_cluster_slots(Value::Array(vec![])).is_err());
        assert!(primaries_from_cluster_slots(Value::Nil).is_err());
    }
}

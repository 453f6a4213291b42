//! [`RedisSentinel`]: a Redis master found through Redis Sentinel and found
//! again after a failover (feature `redis-sentinel`).
//!
//! The master is looked up with redis-rs's `Sentinel` (`SENTINEL MASTERS`
//! on the Sentinels, at most three at once, skipping a master flagged down,
//! then `ROLE` on the master it names), and `ROLE` is asked again on the
//! store's own connections before any command goes over them. Those are
//! plain multiplexed connections, not reconnecting managers: when one fails
//! (the connection drops, as when Sentinel demotes the old master and
//! disconnects its clients; a command gets no answer within the response
//! timeout; or a write meets `READONLY`, the answer of a node that is now a
//! replica), every connection to that master is dropped and the next call
//! asks the Sentinels again, in a task of its own (a caller's timeout does
//! not cancel it), with exponential backoff after failed lookups. Calls fail
//! meanwhile, and the cache fails open.
//!
//! What a failover can lose: Redis replicates asynchronously, so a write the
//! old master acknowledged but had not yet sent to the replica that is
//! promoted is gone. For a fill that is a miss later, which is fine. For an
//! invalidation it would be a value coming back, so while the master had
//! replicas when it was found, every invalidating command (`invalidate`,
//! `delete`, `delete_pattern`, `clear`) is followed by `WAIT 1` on the same
//! connection: an invalidation no replica confirmed within the response
//! timeout is an error, which the cache keeps and delivers again (to the new
//! master) instead of counting it done.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use ::redis::{cmd, AsyncConnectionConfig, Client, ConnectionInfo, RedisError, RedisResult};
use cache_core::{Error, OncePerBurst};
use tokio::sync::watch;

use super::config::{sentinel_info, RedisConfig, SENTINELS_VAR};
use super::startup::{redis_error, Vars};
use super::{connection_info, describe, RedisOptions};

/// Where a Sentinel-managed Redis master is found (feature `redis-sentinel`):
/// what [`RedisBackend::connect_sentinel`](crate::RedisBackend::connect_sentinel)
/// and [`RedisBackplane::with_sentinel`](crate::RedisBackplane::with_sentinel) take.
///
/// Its `Debug` shows no password.
///
/// ```
/// use cache_backends::RedisSentinel;
/// let target = RedisSentinel::new(&["10.0.0.1:26379", "10.0.0.2:26379"], "mymaster")
///     .node_url("redis://:s3cret@unused/2");
/// assert!(!format!("{target:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisSentinel {
    /// The Sentinels: `host:port` or `redis://[:password@]host:port`.
    pub sentinels: Vec<String>,
    /// The service name they monitor the master under.
    pub master: String,
    /// The Sentinels' own password, for the entries without one.
    pub sentinel_password: Option<String>,
    /// Username, password and database of the data nodes (master and
    /// replicas), as a Redis URL whose host is not used. Default
    /// `redis://127.0.0.1/0` (no password, database 0).
    pub node_url: String,
}

impl std::fmt::Debug for RedisSentinel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| cache_core::redact_url(s))
            .collect();
        f.debug_struct("RedisSentinel")
            .field("sentinels", &sentinels)
            .field("master", &self.master)
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "***"),
            )
            .field("node_url", &cache_core::redact_url(&self.node_url))
            .finish()
    }
}

impl RedisSentinel {
    /// The master named `master` by the Sentinels at `sentinels`, without passwords.
    pub fn new<S: AsRef<str>>(sentinels: &[S], master: &str) -> Self {
        RedisSentinel {
            sentinels: sentinels.iter().map(|s| s.as_ref().to_owned()).collect(),
            master: master.to_owned(),
            sentinel_password: None,
            node_url: "redis://127.0.0.1/0".into(),
        }
    }

    /// With the username, password and database of the data nodes taken from `url`.
    pub fn node_url(mut self, url: &str) -> Self {
        self.node_url = url.to_owned();
        self
    }

    /// With a password for the Sentinels.
    pub fn sentinel_password(mut self, password: &str) -> Self {
        self.sentinel_password = Some(password.to_owned());
        self
    }

    /// What `CACHE_REDIS_SENTINELS` and friends say; `None` when it is unset.
    /// The data nodes' password and database are those of `config.url`.
    pub fn from_config(config: &RedisConfig) -> Option<Self> {
        let master = config.sentinel_master.as_deref()?;
        if config.sentinels.is_empty() {
            return None;
        }
        let mut target = RedisSentinel::new(&config.sentinels, master).node_url(&config.url);
        target.sentinel_password = config.sentinel_password.clone();
        Some(target)
    }

    /// The Sentinels' connection settings, with the Sentinel password where an entry has none.
    fn sentinel_infos(&self, options: &RedisOptions) -> Result<Vec<ConnectionInfo>, Error> {
        if self.sentinels.is_empty() {
            return Err(Error::config(
                SENTINELS_VAR,
                "",
                "at least one Sentinel, e.g. 10.0.0.1:26379",
            ));
        }
        self.sentinels
            .iter()
            .map(|entry| {
                let info = super::with_nodelay(sentinel_info(entry)?, options.tcp_nodelay);
                Ok(match &self.sentinel_password {
                    Some(p) if info.redis_settings().password().is_none() => {
                        let redis = info.redis_settings().clone().set_password(p);
                        info.set_redis_settings(redis)
                    }
                    _ => info,
                })
            })
            .collect()
    }
}

/// The variables a refusal at startup names.
pub(crate) const SENTINEL_VARS: Vars = Vars {
    password: "CACHE_REDIS_PASSWORD (the data nodes', or the password in CACHE_REDIS_URL) or CACHE_REDIS_SENTINEL_PASSWORD (the Sentinels')",
    db: "CACHE_REDIS_DB (or the /db at the end of CACHE_REDIS_URL)",
    address: "CACHE_REDIS_SENTINELS",
};

/// First pause before asking the Sentinels again after a failed lookup.
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// The master the Sentinels name, shared by every clone of a backend (or a backplane).
pub(crate) struct SentinelMaster {
    service: String,
    lookup: tokio::sync::Mutex<Sentinel>,
    node: SentinelNodeConnectionInfo,
    /// The Sentinels, `host:port`, for `Debug` and logs.
    pub(crate) shown: String,
    conn_config: AsyncConnectionConfig,
    pool_size: usize,
    /// Bound on one lookup (Sentinels, `ROLE`, opening the connections).
    lookup_limit: Duration,
    max_backoff: Duration,
    state: Mutex<State>,
    /// Bumped when a lookup ends, either way.
    looked_up: watch::Sender<u64>,
    next: AtomicUsize,
    lost_log: OncePerBurst,
    failed_log: OncePerBurst,
}

#[derive(Default)]
struct State {
    current: Option<Arc<Master>>,
    epoch: u64,
    looking: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    last_error: Option<String>,
}

/// One master as found: its connections, until one of them fails.
pub(crate) struct Master {
    pub(crate) epoch: u64,
    /// `host:port`.
    pub(crate) addr: String,
    pub(crate) client: Client,
    conns: Vec<MultiplexedConnection>,
    /// Replicas online (listed by `ROLE`) when it was found: `WAIT 1`
    /// after invalidations when there was at least one. Not re-read until
    /// the next lookup, so a replica still syncing then is not waited for.
    replicas: usize,
}

impl Master {
    fn pick(&self, next: &AtomicUsize) -> MultiplexedConnection {
        let i = match self.conns.len() {
            1 => 0,
            n => next.fetch_add(1, Ordering::Relaxed) % n,
        };
        self.conns[i].clone()
    }
}

/// The operations whose writes a failover must not lose (see the module docs).
fn invalidates(op: &str) -> bool {
    matches!(op, "invalidate" | "delete" | "delete_pattern" | "clear")
}

/// True when `e` says the connection, or the node's role, is no longer what
/// it was: `READONLY` (a replica now), `MASTERDOWN` (a replica without its
/// master), `LOADING` (restarted), `NOREPLICAS` (a master that lost its
/// replicas under `min-replicas-to-write`, as before a failover), or no connection.
fn is_lost(e: &RedisError) -> bool {
    matches!(
        e.code(),
        Some("READONLY" | "MASTERDOWN" | "LOADING" | "NOREPLICAS")
    ) || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

impl SentinelMaster {
    /// Parses the target; connects nothing yet.
    pub(crate) fn new(
        target: &RedisSentinel,
        options: &RedisOptions,
        pool_size: usize,
    ) -> Result<Arc<Self>, Error> {
        if target.master.trim().is_empty() {
            return Err(Error::config(
                super::config::SENTINEL_MASTER_VAR,
                "",
                "the service name the Sentinels monitor, e.g. mymaster",
            ));
        }
        #[cfg(not(feature = "tls"))]
        if options.tls_root_cert.is_some() {
            return Err(super::tls_not_compiled());
        }
        if options.tls_root_cert.is_some() || target.node_url.starts_with("rediss://") {
            return Err(Error::config(
                "CACHE_REDIS_URL",
                &target.node_url,
                "a redis:// URL (TLS to Sentinel-managed nodes is not supported yet) or CACHE_REDIS_PASSWORD / CACHE_REDIS_DB",
            ));
        }
        let infos = target.sentinel_infos(options)?;
        let shown = infos.iter().map(describe).collect::<Vec<_>>().join(",");
        // The data nodes' credentials and database; the URL's host is not used.
        let node = connection_info("CACHE_REDIS_URL", &target.node_url)?;
        let node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(node.redis_settings().clone())
            .set_tcp_settings(node.tcp_settings().clone().set_nodelay(options.tcp_nodelay));
        let lookup = Sentinel::build(infos).map_err(|e| redis_error(super::NAME, "connect", e))?;
        let conn_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            // A master that stops answering is what a failover replaces: no answer is a loss.
            .set_response_timeout(Some(options.response_timeout));
        let (looked_up, _) = watch::channel(0);
        Ok(Arc::new(SentinelMaster {
            service: target.master.trim().to_owned(),
            lookup: tokio::sync::Mutex::new(lookup),
            node,
            shown,
            conn_config,
            pool_size: pool_size.max(1),
            lookup_limit: options.connect_timeout * 3,
            max_backoff: options.max_reconnect_delay.max(MIN_BACKOFF),
            state: Mutex::new(State {
                backoff: MIN_BACKOFF,
                ..State::default()
            }),
            looked_up,
            next: AtomicUsize::new(0),
            lost_log: OncePerBurst::new(),
            failed_log: OncePerBurst::new(),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The service name.
    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    /// The epoch of the master in use, if one is.
    pub(crate) fn epoch(&self) -> Option<u64> {
        self.state().current.as_ref().map(|m| m.epoch)
    }

    /// `host:port` of the master in use, if one is.
    pub(crate) fn current_addr(&self) -> Option<String> {
        self.state().current.as_ref().map(|m| m.addr.clone())
    }

    /// The master in use, or the outcome of a lookup started (or joined) now.
    pub(crate) async fn master(self: &Arc<Self>) -> Result<Arc<Master>, Error> {
        let mut looked_up = self.looked_up.subscribe();
        {
            let mut state = self.state();
            if let Some(m) = &state.current {
                return Ok(m.clone());
            }
            if !state.looking {
                if let Some(at) = state.retry_at.filter(|at| Instant::now() < *at) {
                    return Err(self.no_master(&state, Some(at)));
                }
                state.looking = true;
                let this = self.clone();
                tokio::spawn(async move { this.look_up().await });
            }
        }
        loop {
            if looked_up.changed().await.is_err() {
                return Err(Error::backend(
                    super::NAME,
                    "connect",
                    "the Sentinel lookup stopped",
                ));
            }
            let state = self.state();
            if let Some(m) = &state.current {
                return Ok(m.clone());
            }
            if !state.looking {
                return Err(self.no_master(&state, None));
            }
        }
    }

    fn no_master(&self, state: &State, retry_at: Option<Instant>) -> Error {
        let why = state.last_error.as_deref().unwrap_or("not looked up yet");
        let when = retry_at.map_or(String::new(), |at| {
            format!(
                "; asking again in {:?}",
                at.saturating_duration_since(Instant::now())
            )
        });
        Error::backend(
            super::NAME,
            "connect",
            format!(
                "no Redis master for {:?} from the Sentinels {} ({why}){when}",
                self.service, self.shown
            ),
        )
    }

    /// The lookup task: asks the Sentinels, connects, records the outcome.
    async fn look_up(self: Arc<Self>) {
        let outcome = match tokio::time::timeout(self.lookup_limit, self.resolve()).await {
            Ok(outcome) => outcome.map_err(|e| cache_core::redact_url(&e.to_string())),
            Err(_) => Err(format!("no answer within {:?}", self.lookup_limit)),
        };
        let mut state = self.state();
        state.looking = false;
        match outcome {
            Ok((client, addr, conns, replicas)) => {
                state.epoch += 1;
                tracing::info!(master = %addr, service = %self.service, sentinels = %self.shown, replicas, "using the Redis master the Sentinels name");
                state.current = Some(Arc::new(Master {
                    epoch: state.epoch,
                    addr,
                    client,
                    conns,
                    replicas,
                }));
                state.retry_at = None;
                state.backoff = MIN_BACKOFF;
                state.last_error = None;
            }
            Err(why) => {
                if let Some(suppressed) = self.failed_log.should_log() {
                    tracing::warn!(service = %self.service, sentinels = %self.shown, error = %why, suppressed, "no Redis master from the Sentinels; cached calls run uncached (fail open) and the Sentinels are asked again with backoff");
                }
                state.retry_at = Some(Instant::now() + state.backoff);
                state.backoff = (state.backoff * 2).min(self.max_backoff);
                state.last_error = Some(why);
            }
        }
        drop(state);
        self.looked_up.send_modify(|n| *n += 1);
    }

    /// One lookup: the master's client, `host:port`, connections, and replica count.
    async fn resolve(&self) -> RedisResult<(Client, String, Vec<MultiplexedConnection>, usize)> {
        let client = {
            let mut lookup = self.lookup.lock().await;
            lookup
                .async_master_for(&self.service, Some(&self.node))
                .await?
        };
        let addr = describe(client.get_connection_info());
        let mut conns = Vec::with_capacity(self.pool_size);
        let mut replicas = 0;
        for _ in 0..self.pool_size {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&self.conn_config)
                .await?;
            // The Sentinels' view can lag: this very connection must be to a master.
            match cmd("ROLE").query_async::<::redis::Role>(&mut conn).await? {
                ::redis::Role::Primary { replicas: r, .. } => replicas = r.len(),
                _ => {
                    return Err(RedisError::from((
                        ::redis::ErrorKind::Server(::redis::ServerErrorKind::ReadOnly),
                        "the node the Sentinels name is not a master (yet)",
                    )))
                }
            }
            conns.push(conn);
        }
        Ok((client, addr, conns, replicas))
    }

    /// A lookup within the connect timeout, for the startup check.
    pub(crate) async fn check(self: &Arc<Self>, limit: Duration) -> Result<(), StartupFailure> {
        match tokio::time::timeout(limit, self.resolve()).await {
            Err(_) => Err(StartupFailure::Timeout),
            Ok(Err(e)) => Err(StartupFailure::Redis(e)),
            Ok(Ok((client, addr, conns, replicas))) => {
                let mut state = self.state();
                state.epoch += 1;
                state.current = Some(Arc::new(Master {
                    epoch: state.epoch,
                    addr,
                    client,
                    conns,
                    replicas,
                }));
                Ok(())
            }
        }
    }

    /// Drops the master of `epoch` (if still in use) after `why`: the next call looks up again.
    pub(crate) fn lost(&self, epoch: u64, why: &dyn std::fmt::Display) {
        let mut state = self.state();
        if state.current.as_ref().is_some_and(|m| m.epoch == epoch) {
            let addr = state.current.take().map(|m| m.addr.clone());
            drop(state);
            if let Some(suppressed) = self.lost_log.should_log() {
                tracing::warn!(master = ?addr, service = %self.service, error = %cache_core::redact_url(&why.to_string()), suppressed, "lost the Redis master (a failover, or it went away); asking the Sentinels again");
            }
        }
    }

    /// Runs `f` on a connection to the master; a loss drops the master. After an
    /// invalidating `op`, `WAIT 1` on the same connection when the master has replicas.
    pub(crate) async fn run<T, F, Fut>(
        self: &Arc<Self>,
        op: &'static str,
        response_timeout: Duration,
        f: F,
    ) -> Result<T, Error>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let master = self.master().await?;
        let conn = master.pick(&self.next);
        let out = f(conn.clone()).await.map_err(|e| {
            if is_lost(&e) {
                self.lost(master.epoch, &e);
            }
            redis_error(super::NAME, op, e)
        })?;
        if master.replicas > 0 && invalidates(op) {
            let mut conn = conn;
            let ms = response_timeout.as_millis().max(1) as u64;
            let acked: RedisResult<i64> = cmd("WAIT").arg(1).arg(ms).query_async(&mut conn).await;
            match acked {
                Ok(n) if n >= 1 => {}
                Ok(_) => {
                    let why = format!("no replica confirmed the {op} within {response_timeout:?} (WAIT 1); a failover may be under way");
                    self.lost(master.epoch, &why);
                    return Err(Error::backend(super::NAME, op, why));
                }
                Err(e) => {
                    if is_lost(&e) {
                        self.lost(master.epoch, &e);
                    }
                    return Err(redis_error(super::NAME, op, e));
                }
            }
        }
        Ok(out)
    }
}

/// Why the startup lookup failed.
pub(crate) enum StartupFailure {
    Timeout,
    Redis(RedisError),
}

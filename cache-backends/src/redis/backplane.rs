//! [`RedisBackplane`]: the backplane over Redis pub/sub (`PUBLISH` / `SUBSCRIBE` on one channel).
//!
//! Publishing goes over a multiplexed connection (a `ConnectionManager`),
//! each call bounded by the timeout given at construction. Subscribing is a
//! task of its own on a dedicated pub/sub connection: it reports
//! [`connected`](BackplaneEvents::connected) once `SUBSCRIBE` is confirmed,
//! every message, and [`disconnected`](BackplaneEvents::disconnected) once
//! per loss, then reconnects with capped exponential backoff
//! ([`RedisBackplane::MIN_BACKOFF`] .. [`RedisBackplane::MAX_BACKOFF`]). A server that keeps the connection
//! open but stops answering (paused, overloaded, a half-open link) is a loss
//! too: the task sends `PING` every [`RedisBackplane::PING_EVERY`] and gives up on the
//! connection when no answer comes within the timeout.
//!
//! On a Redis Cluster a classic `PUBLISH` reaches the subscribers of every
//! node, so the backplane talks to one node at a time and moves to the next
//! of the list it was given when that one fails.
//!
//! Behind Redis Sentinel ([`RedisBackplane::with_sentinel`]) it follows the
//! master: it publishes there (a `PUBLISH` on a replica would reach only that
//! replica's subscribers), subscribes there, and with each `PING` of the
//! subscription asks `ROLE` over the publishing connection; when that
//! connection is lost (Sentinel disconnects the clients of a master it
//! demotes) or the node is no longer a master, the Sentinels are asked again
//! and the subscription moves, reported as a loss: every local tier is
//! flushed, so nothing it held from before the failover is served unchecked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{cmd, Client, Value};
use cache_core::backplane::{Backplane, BackplaneEvents};
use cache_core::{Error, OncePerBurst};
use tokio::sync::watch;

use super::startup::redis_error;
use super::{client, connection_info, describe, with_nodelay, RedisOptions};

const NAME: &str = "redis";

const PING_EVERY: Duration = RedisBackplane::PING_EVERY;
const MIN_BACKOFF: Duration = RedisBackplane::MIN_BACKOFF;
const MAX_BACKOFF: Duration = RedisBackplane::MAX_BACKOFF;

/// A backplane over Redis pub/sub (feature `redis`): every process that
/// shares the store subscribes to one channel and publishes its
/// invalidations there.
///
/// The subscription task stops when the value is dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use cache_backends::RedisBackplane;
/// use cache_core::backplane::Backplane;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
/// let backplane = RedisBackplane::new("redis://127.0.0.1:6379/0", "cacheside:shop", Duration::from_millis(250))?;
/// backplane.publish(b"cs1 0000000000000007 K shop:widget:7").await?;
/// # Ok(()) }
/// ```
pub struct RedisBackplane {
    shared: Arc<Shared>,
    /// Dropped with the backplane: the subscription task sees it and stops.
    stop: watch::Sender<()>,
}

/// What `publish` and the subscription task both use.
struct Shared {
    nodes: Vec<Node>,
    /// Behind Sentinel: the master they name (and `nodes` is empty).
    #[cfg(feature = "redis-sentinel")]
    sentinel: Option<Arc<super::sentinel::SentinelMaster>>,
    /// The node `publish` tries first: the last one that answered.
    current: AtomicUsize,
    channel: String,
    timeout: Duration,
    connect_timeout: Duration,
}

/// One server (or cluster node) the backplane may use.
struct Node {
    client: Client,
    publisher: ConnectionManager,
    /// `host:port`, no credentials.
    shown: String,
}

impl std::fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<&str> = self.shared.nodes.iter().map(|n| n.shown.as_str()).collect();
        let mut d = f.debug_struct("RedisBackplane");
        d.field("nodes", &nodes);
        #[cfg(feature = "redis-sentinel")]
        if let Some(master) = &self.shared.sentinel {
            d.field("sentinels", &master.shown)
                .field("master", &master.current_addr());
        }
        d.field("channel", &self.shared.channel)
            .finish_non_exhaustive()
    }
}

impl RedisBackplane {
    /// How often the subscription task checks that the server still answers
    /// (`PING`): a hung server is a loss within this plus the timeout.
    pub const PING_EVERY: Duration = Duration::from_secs(1);
    /// First pause before resubscribing after a loss (doubled per failed attempt).
    pub const MIN_BACKOFF: Duration = Duration::from_millis(50);
    /// Longest pause between attempts to resubscribe.
    pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

    /// A backplane on `channel` of the server at `url` (the URL forms
    /// [`RedisBackend::connect`](crate::RedisBackend::connect) accepts),
    /// with [`RedisOptions::default`]. `timeout` bounds each `publish` and
    /// the wait for each `PING` answer of the subscription.
    ///
    /// Connects on first use; only a malformed URL is an error here. Call it
    /// from within a tokio runtime.
    pub fn new(url: &str, channel: &str, timeout: Duration) -> Result<Self, Error> {
        Self::with_options(&[url], channel, timeout, &RedisOptions::default())
    }

    /// A backplane over any of `nodes` (for a Redis Cluster: some or all of
    /// its nodes, since a `PUBLISH` on one reaches every node), using the
    /// first that answers and moving to the next when it fails. `options`
    /// gives the connect timeout, the reconnection policy of the publishing
    /// connection and the CA of `rediss://` servers.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use cache_backends::{RedisBackplane, RedisOptions};
    /// # fn main() -> Result<(), cache_core::Error> {
    /// let nodes = ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"];
    /// let backplane = RedisBackplane::with_options(&nodes, "cacheside", Duration::from_millis(250), &RedisOptions::default())?;
    /// # let _ = backplane; Ok(()) }
    /// ```
    pub fn with_options<S: AsRef<str>>(
        nodes: &[S],
        channel: &str,
        timeout: Duration,
        options: &RedisOptions,
    ) -> Result<Self, Error> {
        if nodes.is_empty() {
            return Err(Error::backend(
                NAME,
                "connect",
                "no Redis URL given for the backplane; pass at least one, such as redis://127.0.0.1:6379",
            ));
        }
        let config = ::redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(None)
            .set_max_delay(options.max_reconnect_delay)
            .set_number_of_retries(options.reconnect_attempts);
        let mut built = Vec::with_capacity(nodes.len());
        for url in nodes {
            let info = with_nodelay(
                connection_info("CACHE_REDIS_URL", url.as_ref())?,
                options.tcp_nodelay,
            );
            let shown = describe(&info);
            let client = client(NAME, info, options)?;
            let publisher = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                .map_err(|e| redis_error(NAME, "connect", e))?;
            built.push(Node {
                client,
                publisher,
                shown,
            });
        }
        let (stop, _) = watch::channel(());
        Ok(RedisBackplane {
            shared: Arc::new(Shared {
                nodes: built,
                #[cfg(feature = "redis-sentinel")]
                sentinel: None,
                current: AtomicUsize::new(0),
                channel: channel.to_owned(),
                timeout,
                connect_timeout: options.connect_timeout,
            }),
            stop,
        })
    }
}

#[cfg(feature = "redis-sentinel")]
impl RedisBackplane {
    /// A backplane on `channel` of the master the Sentinels of `target`
    /// name, following it across failovers (feature `redis-sentinel`; see
    /// the module docs). Connects on first use; only a malformed target is
    /// an error here. Call it from within a tokio runtime.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use cache_backends::{RedisBackplane, RedisOptions, RedisSentinel};
    /// # fn main() -> Result<(), cache_core::Error> {
    /// let target = RedisSentinel::new(&["10.0.0.1:26379", "10.0.0.2:26379"], "mymaster");
    /// let backplane = RedisBackplane::with_sentinel(&target, "cacheside", Duration::from_millis(250), &RedisOptions::default())?;
    /// # let _ = backplane; Ok(()) }
    /// ```
    pub fn with_sentinel(
        target: &super::RedisSentinel,
        channel: &str,
        timeout: Duration,
        options: &RedisOptions,
    ) -> Result<Self, Error> {
        let options = RedisOptions {
            response_timeout: timeout,
            ..options.clone()
        };
        let master = super::sentinel::SentinelMaster::new(target, &options, 1)?;
        let (stop, _) = watch::channel(());
        Ok(RedisBackplane {
            shared: Arc::new(Shared {
                nodes: Vec::new(),
                sentinel: Some(master),
                current: AtomicUsize::new(0),
                channel: channel.to_owned(),
                timeout,
                connect_timeout: options.connect_timeout,
            }),
            stop,
        })
    }
}

/// Behind Sentinel: where the subscription task subscribes next, and the
/// check it runs with each `PING`.
#[cfg(feature = "redis-sentinel")]
struct Followed {
    master: Arc<super::sentinel::SentinelMaster>,
    epoch: u64,
}

#[cfg(feature = "redis-sentinel")]
impl Followed {
    /// `ROLE` over the publishing connection: an error when the master was
    /// lost (or is no longer one) since the subscription began.
    async fn still_master(&self, timeout: Duration) -> Result<(), String> {
        let role = self.master.run("ping", timeout, |mut conn| async move {
            cmd("ROLE").query_async::<::redis::Role>(&mut conn).await
        });
        match tokio::time::timeout(timeout, role).await {
            Ok(Ok(::redis::Role::Primary { .. })) => {}
            Ok(Ok(_)) => self
                .master
                .lost(self.epoch, &"ROLE: the node is no longer a master"),
            Ok(Err(_)) | Err(_) => {}
        }
        match self.master.epoch() {
            Some(e) if e == self.epoch => Ok(()),
            _ => Err(
                "the Redis master changed (or was lost): subscribing to the one the Sentinels name"
                    .into(),
            ),
        }
    }
}

#[async_trait::async_trait]
impl Backplane for RedisBackplane {
    fn name(&self) -> &'static str {
        NAME
    }

    /// `PUBLISH channel payload`, on the node that last answered, then on
    /// the others in turn, all within the timeout.
    async fn publish(&self, payload: &[u8]) -> Result<(), Error> {
        let shared = &self.shared;
        #[cfg(feature = "redis-sentinel")]
        if let Some(master) = &shared.sentinel {
            let sent = master.run("publish", shared.timeout, |mut conn| async move {
                cmd("PUBLISH")
                    .arg(&shared.channel)
                    .arg(payload)
                    .query_async::<i64>(&mut conn)
                    .await
            });
            return crate::within(NAME, "publish", shared.timeout, sent)
                .await?
                .map(|_| ());
        }
        let attempts = async {
            let first = shared.current.load(Ordering::Relaxed);
            let mut last = None;
            for i in 0..shared.nodes.len() {
                let at = (first + i) % shared.nodes.len();
                let mut conn = shared.nodes[at].publisher.clone();
                let sent: Result<i64, _> = cmd("PUBLISH")
                    .arg(&shared.channel)
                    .arg(payload)
                    .query_async(&mut conn)
                    .await;
                match sent {
                    Ok(_) => {
                        shared.current.store(at, Ordering::Relaxed);
                        return Ok(());
                    }
                    Err(e) => {
                        // The next call starts with the next node, even if this one runs out of time.
                        shared
                            .current
                            .store((at + 1) % shared.nodes.len(), Ordering::Relaxed);
                        last = Some(redis_error(NAME, "publish", e));
                    }
                }
            }
            Err(last.expect("at least one node"))
        };
        match crate::within(NAME, "publish", shared.timeout, attempts).await {
            Ok(done) => done,
            Err(timeout) => {
                let at = shared.current.load(Ordering::Relaxed);
                shared
                    .current
                    .store((at + 1) % shared.nodes.len(), Ordering::Relaxed);
                Err(timeout)
            }
        }
    }

    fn subscribe(&self, events: Arc<dyn BackplaneEvents>) {
        let shared = self.shared.clone();
        let stop = self.stop.subscribe();
        tokio::spawn(subscription(shared, events, stop));
    }
}

/// Why a subscription ended.
enum Ended {
    /// The backplane was dropped.
    Stopped,
    /// The connection is gone or does not answer.
    Lost(String),
}

/// The subscription task: subscribe, deliver, and after a loss report it
/// once and resubscribe, until the backplane is dropped.
async fn subscription(
    shared: Arc<Shared>,
    events: Arc<dyn BackplaneEvents>,
    mut stop: watch::Receiver<()>,
) {
    let failing = OncePerBurst::new();
    let lost = OncePerBurst::new();
    let mut at = 0;
    let mut backoff = MIN_BACKOFF;
    loop {
        let attempt = async {
            let (client, shown, followed) = target(&shared, at).await?;
            let mut pubsub = client
                .get_async_pubsub()
                .await
                .map_err(|e| redis_error(NAME, "subscribe", e))?;
            pubsub
                .subscribe(&shared.channel)
                .await
                .map_err(|e| redis_error(NAME, "subscribe", e))?;
            Ok::<_, Error>((pubsub, shown, followed))
        };
        let attempt = crate::within(NAME, "subscribe", shared.connect_timeout, attempt);
        let outcome = tokio::select! {
            outcome = attempt => outcome.and_then(|r| r),
            _ = stop.changed() => return,
        };
        match outcome {
            Ok((pubsub, shown, followed)) => {
                backoff = MIN_BACKOFF;
                tracing::debug!(node = %shown, channel = %shared.channel, "backplane subscribed");
                events.connected();
                match deliver(pubsub, &*events, &mut stop, shared.timeout, followed).await {
                    Ended::Stopped => return,
                    Ended::Lost(why) => {
                        events.disconnected();
                        if let Some(suppressed) = lost.should_log() {
                            tracing::warn!(node = %shown, channel = %shared.channel, error = %why, suppressed, "backplane subscription lost; local tiers are flushed and the subscription is retried with backoff");
                        }
                    }
                }
            }
            Err(e) => {
                if let Some(suppressed) = failing.should_log() {
                    tracing::warn!(nodes = ?described(&shared), channel = %shared.channel, error = %e, suppressed, "backplane could not subscribe; retrying with backoff");
                }
            }
        }
        at = (at + 1) % shared.nodes.len().max(1);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// What the subscription task checks with each `PING`, behind Sentinel.
#[cfg(feature = "redis-sentinel")]
type Check = Option<Followed>;
/// Nothing to check without Sentinel.
#[cfg(not(feature = "redis-sentinel"))]
type Check = Option<std::convert::Infallible>;

/// The node the subscription task tries now: `nodes[at]`, or the master the Sentinels name.
async fn target(shared: &Shared, at: usize) -> Result<(Client, String, Check), Error> {
    #[cfg(feature = "redis-sentinel")]
    if let Some(master) = &shared.sentinel {
        let found = master.master().await?;
        let followed = Followed {
            master: master.clone(),
            epoch: found.epoch,
        };
        return Ok((found.client.clone(), found.addr.clone(), Some(followed)));
    }
    let node = &shared.nodes[at];
    Ok((node.client.clone(), node.shown.clone(), None))
}

/// The nodes (or Sentinels) of the backplane, for a log line.
fn described(shared: &Shared) -> String {
    #[cfg(feature = "redis-sentinel")]
    if let Some(master) = &shared.sentinel {
        return format!(
            "master {:?} via the Sentinels {}",
            master.service(),
            master.shown
        );
    }
    let nodes: Vec<&str> = shared.nodes.iter().map(|n| n.shown.as_str()).collect();
    nodes.join(",")
}

/// Delivers the messages of one subscription until it is lost or the backplane stops.
async fn deliver(
    pubsub: ::redis::aio::PubSub,
    events: &dyn BackplaneEvents,
    stop: &mut watch::Receiver<()>,
    ping_timeout: Duration,
    check: Check,
) -> Ended {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = next_message(&mut stream) => match msg {
                Some(msg) => events.message(msg.get_payload_bytes()),
                None => return Ended::Lost("the server closed the connection".into()),
            },
            _ = ping.tick() => {
                match tokio::time::timeout(ping_timeout, sink.ping::<Value>()).await {
                    Ok(Ok(_)) => {
                        #[cfg(feature = "redis-sentinel")]
                        if let Some(followed) = &check {
                            if let Err(why) = followed.still_master(ping_timeout).await {
                                return Ended::Lost(why);
                            }
                        }
                        #[cfg(not(feature = "redis-sentinel"))]
                        let _ = &check;
                    }
                    Ok(Err(e)) => return Ended::Lost(redis_error(NAME, "ping", e).to_string()),
                    Err(_) => {
                        return Ended::Lost(format!("no answer to PING within {ping_timeout:?}"));
                    }
                }
            }
            _ = stop.changed() => return Ended::Stopped,
        }
    }
}

/// The next message of the subscription; `None` once the connection is gone.
async fn next_message(stream: &mut ::redis::aio::PubSubStream) -> Option<::redis::Msg> {
    use futures_core::Stream;
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

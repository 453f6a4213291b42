//! [`MemcachedBackend`]: the type, `connect`, its [`Backend`] impl, and
//! starting it from a [`MemcachedConfig`].
//!
//! Over 600 lines: about 120 are the type's documentation (what users read
//! on docs.rs about keys, servers, `clear` and limits) and about 230 the one
//! `Backend` impl, which cannot be split across files.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::{Backend, Error, Fence, Key};

use crate::Timeouts;

use super::generations::{Gens, Seen};
use super::keys::{entry_ttl, expiry, memcached_wire_key, wire_ttl};
use super::meta::{Cmd, MetaClient, MetaError, Reply, Store};
use super::options::{
    MemcachedConfig, MemcachedOptions, SERVERS_ALLOWED, SERVERS_VAR, SERVERS_VAR_FIX,
};
use super::ring::Ring;

const NAME: &str = "memcached";

pub(super) fn backend_error(op: &'static str, e: MetaError) -> Error {
    Error::backend(NAME, op, e)
}

pub(super) fn protocol_error(op: &'static str, what: &str) -> Error {
    Error::backend(
        NAME,
        op,
        format!("unexpected answer from memcached: {what}"),
    )
}

/// Memcached as a cacheside [`Backend`]: meta protocol, a connection pool per
/// server, several servers by rendezvous hashing, `clear` by generations.
///
/// Clones share the connection pools.
///
/// [`MemcachedBackend`] talks the memcached meta protocol (`mg`, `ms`, `md`,
/// `ma`, `mn`; memcached 1.6 or later) through a small client of its own:
/// a pool of at most [`MemcachedOptions::pool_size`] connections per server
/// (`TCP_NODELAY`, dialled on first use), binary-safe values, and pipelined
/// batches (one write, one round trip) to one server. A connection goes back
/// to the pool only after a complete exchange: one whose future is cancelled
/// mid-exchange (the cache's op timeout) is closed, so a half-read reply
/// never reaches the next call. A pooled connection that the server closed
/// (a restart) is detected before use by a non-blocking read, or replaced
/// once if it fails before any reply byte and resending cannot repeat an
/// effect (a count or a delete that may have run is an error instead); one
/// idle for 90 s is closed rather than trusted past a NAT's or firewall's
/// idle limit. Addresses are resolved once, in `connect`. Single-key exchanges are bounded
/// by the cache's op timeout, the rest by [`MemcachedOptions::io_timeout`].
/// (The `memcache` crate's `exp` client served here first and passed the
/// same tests, but its per-command allocations held exact hits at 64 tasks
/// to 0.888 of a raw `mg`'s throughput, below the 0.9 target; see
/// `BENCHMARKS.md`.)
///
/// This type adds what cacheside needs on top:
///
/// # Keys
///
/// Memcached keys must be at most 250 bytes without whitespace or control
/// characters. A cacheside key that is printable ASCII without spaces
/// (`0x21..=0x7e`), at most 250 bytes long and does not start with the
/// reserved prefix `__cacheside_` is sent **unchanged** (so `myapp:widget:7`
/// is what `memcached-tool` shows). Every other key (too long, spaces, control
/// characters such as `"a\r\nflush_all"`, non-ASCII, empty, reserved prefix) is
/// sent as `__cacheside_h:` followed by the 32 lowercase hex digits of
/// [`cache_core::hash::bytes128`] (SipHash-1-3-128 with zero keys) of the whole
/// key: 46 bytes, always safe, so no key can inject a command. The mapping is
/// stable across builds, processes and platforms.
///
/// # Servers: rendezvous hashing over SipHash
///
/// With several servers, each key goes to exactly one of them, chosen by
/// rendezvous (highest-random-weight) hashing: for the wire key `k` and each
/// configured server address `a` (the string as configured, e.g.
/// `"10.0.0.5:11211"`), the score is the low 64 bits of
/// `bytes128(le16(bytes128(a)) ++ le16(bytes128(k)))`, where `le16` is the
/// 16-byte little-endian encoding; the highest score wins (ties: the first
/// server in the list). Adding or removing a server moves only the keys that
/// it gains or loses (about `1/n` of them); the order of the list does not
/// matter, but every process must spell the addresses the same way.
///
/// # `clear` without `flush_all`: generations
///
/// Each server keeps, per namespace, a generation counter under
/// `__cacheside_gen:<server-tag>:<namespace>` (the server tag is 16 hex digits
/// of the hash of its address; the counter is created atomically on first use
/// with `ma … N J<unix microseconds> D0`, so a counter lost with a restart comes
/// back larger). The namespace `""` has one too: it is the *global*
/// generation. Every entry is written with its **client flags** set to its
/// *stamp*: the global generation plus (for a namespaced key) the namespace's
/// generation, modulo 2³². A read sends the generation reads (`mg … v t`,
/// read-only on the server) and the `mg` of the entry in one pipelined batch
/// to the entry's server (one round trip) and serves the entry only when its
/// flags equal the current stamp. A generation that is missing, or that
/// carries a lifetime, is created or made permanent by an `ma` in a second
/// round trip: that happens on first use and after a restart, not on a
/// steady hit.
///
/// * `clear("myapp:")` increments `myapp:`'s counter on every server: every
///   entry of that namespace becomes unreachable at once, for every process
///   (by default nothing is cached locally that could hide the change), and
///   expires by its TTL or by LRU. Other namespaces keep their entries.
/// * Reading the generations costs a hit one or two more `mg` lookups in its
///   batch (one round trip still, but more work on both ends than a raw `mg`).
///   [`MemcachedOptions::generation_refresh`] trades that for freshness:
///   within the window a hit is one `mg` checked against the generations
///   this backend last read, so a `clear()` by *another* process is seen
///   here up to that long later. This backend's own `clear()` forgets what it
///   read and is seen at once. Zero (the default) keeps every hit exact.
/// * `clear("")` increments the global counter: every entry this backend can
///   see becomes unreachable.
/// * A write stamps with the generations last seen by this process and reads
///   the current ones in the same batch; if a clear from elsewhere moved them,
///   the write is repeated once with the new stamp. A write that loses that
///   race is invisible (a miss), never stale data.
/// * Trade-off: each server holds its own counters, so a server that is down
///   during `clear` is not cleared; `clear` then returns an error so the caller
///   knows. (A server that restarted lost its entries with its counters, which
///   is harmless.) In exchange, each server is independent: losing one never
///   makes the keys on the others unreadable, and each operation is one round
///   trip to one server.
///
/// # Fencing
///
/// [`Backend::invalidate`] does not delete: it writes a fresh
/// [`tombstone`](cache_core::backend::tombstone) over the key, expiring
/// after the window (whole seconds, rounded up, at least 1 s), pipelined
/// after an `mg` that says whether a live entry was there (one round trip).
/// Its client flags are the stamp with the top bit flipped, so `get`,
/// `exists`, `ttl` and `delete` see no entry without reading the value.
/// [`Backend::get_fenced`] asks `mg` for the item's CAS value too (`c`): a
/// live entry is returned with [`Fence::None`], no item is
/// [`Fence::Absent`], and an item that reads as absent (a tombstone, or an
/// entry of a generation a `clear` retired) is [`Fence::Token`], its CAS as
/// 8 little-endian bytes. [`Backend::set_fenced`] then sends `ms … ME` (add:
/// `NS` when anything was written meanwhile) or `ms … C<cas>` (`EX` or `NF`
/// when the item changed or went), stamped like `set`. Fences order fills
/// against invalidations and writes of the key, not against `clear`: a fill
/// found stamped with generations a clear has retired lands invisible and
/// reports `false` (no second try, unlike `set`), but one stamped after this
/// backend read the new generations lands. Once written, a fenced write or
/// a tombstone is never resent on a fresh connection.
///
/// # Limits
///
/// * Values: [`Backend::max_value_size`] reports the server's item limit
///   ([`MemcachedOptions::max_value_size`], default 1 MiB minus 1 KiB for the
///   item header and key), so the cache skips larger values instead of
///   sending them; a server that still answers `SERVER_ERROR object too large`
///   (started with a smaller `-I`) yields [`Error::ValueTooLarge`].
/// * TTL: `ms … T<secs>`, sub-second TTLs rounded up to 1 s, more than 30 days
///   sent as an absolute time; no TTL is `T0` (no expiry), and so is a TTL
///   that would end after 2038-01-19 (memcached parses the time as a signed
///   32-bit number and would expire the item at once). `ttl()` reads back
///   the remaining seconds with `mg … t`.
/// * `delete_pattern` is [`Error::PatternNotSupported`]: memcached cannot list
///   keys.
///
/// # Example
///
/// ```no_run
/// use cache_backends::MemcachedBackend;
/// use cache_core::Cache;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
/// let backend = MemcachedBackend::connect(&["127.0.0.1:11211"]).await?;
/// let cache = Cache::builder(backend).namespace("shop").build();
/// cache.set("widget:7", "spanner", None).await?;
/// assert_eq!(cache.get::<String>("widget:7").await?.as_deref(), Some("spanner"));
/// cache.clear().await?; // only the "shop" namespace
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemcachedBackend {
    client: Arc<MetaClient>,
    pub(super) ring: Arc<Ring>,
    /// Per server: the generations last seen for each namespace: a hint for
    /// writes, and what hits trust for `generation_refresh`.
    pub(super) seen: Arc<[Mutex<HashMap<String, Seen>>]>,
    max_value_size: usize,
    pub(super) generation_refresh: Duration,
    /// [`MemcachedOptions::io_timeout`]: the bound on connect checks and `clear`.
    io_timeout: Duration,
}

impl std::fmt::Debug for MemcachedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcachedBackend")
            .field("servers", &self.ring.addrs)
            .field("max_value_size", &self.max_value_size)
            .finish_non_exhaustive()
    }
}

impl MemcachedBackend {
    /// Connects to `servers` (`"host:port"` each) with [`MemcachedOptions::default`].
    ///
    /// Fails when the list is empty, an address does not resolve, or no
    /// server answers a no-op; a server that is down while others answer is
    /// logged and used once it comes back.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
    /// let backend = cache_backends::MemcachedBackend::connect(&["127.0.0.1:11211"]).await?;
    /// # let _ = backend; Ok(()) }
    /// ```
    pub async fn connect<I>(servers: I) -> Result<MemcachedBackend, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::connect_with(servers, MemcachedOptions::default()).await
    }

    /// Connects with explicit [`MemcachedOptions`].
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use cache_backends::{MemcachedBackend, MemcachedOptions};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
    /// let backend = MemcachedBackend::connect_with(
    ///     &["10.0.0.5:11211", "10.0.0.6:11211"],
    ///     MemcachedOptions { pool_size: 8, io_timeout: Duration::from_millis(250), ..Default::default() },
    /// )
    /// .await?;
    /// # let _ = backend; Ok(()) }
    /// ```
    pub async fn connect_with<I>(
        servers: I,
        options: MemcachedOptions,
    ) -> Result<MemcachedBackend, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let backend = Self::build(servers, &options).await?;
        let mut last_error = None;
        let mut answered = 0;
        for server in 0..backend.ring.addrs.len() {
            match backend.ping_server(server).await {
                Ok(()) => answered += 1,
                Err(e) => {
                    tracing::warn!(server = %backend.ring.addrs[server], error = %e, "memcached server does not answer; its keys miss until it does");
                    last_error = Some(e);
                }
            }
        }
        match (answered, last_error) {
            (0, Some(e)) => Err(e),
            _ => Ok(backend),
        }
    }

    /// The backend for `servers`, their addresses resolved; no server is contacted.
    async fn build<I>(servers: I, options: &MemcachedOptions) -> Result<MemcachedBackend, Error>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let addrs: Vec<String> = servers
            .into_iter()
            .map(|s| s.as_ref().trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if addrs.is_empty() {
            return Err(Error::Config {
                var: SERVERS_VAR,
                value: String::new(),
                allowed: SERVERS_ALLOWED,
            });
        }
        let ring = Arc::new(Ring::new(addrs.clone()));
        let pool = options.pool_size.max(1);
        // No I/O timer in the client: the cache's op timeout bounds
        // single-key calls (see `MemcachedOptions::io_timeout`).
        let client = match MetaClient::resolve(&addrs, pool, options.connect_timeout).await {
            Ok(client) => client,
            // An address that does not resolve never will for this backend
            // (addresses are resolved once): a misconfiguration.
            Err(MetaError::Resolve { addr, source }) => {
                let server = addr.clone();
                let problem = MetaError::Resolve { addr, source }.to_string();
                return Err(Error::Misconfigured {
                    backend: NAME,
                    server,
                    problem,
                    var: SERVERS_VAR_FIX,
                });
            }
            Err(e) => return Err(backend_error("connect", e)),
        };
        Ok(MemcachedBackend {
            client: Arc::new(client),
            seen: addrs.iter().map(|_| Mutex::default()).collect(),
            ring,
            max_value_size: options.max_value_size,
            generation_refresh: options.generation_refresh,
            io_timeout: options.io_timeout,
        })
    }

    /// The configured address of the server that holds `key` (a full key, namespace included).
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
    /// let backend = cache_backends::MemcachedBackend::connect(&["127.0.0.1:11211", "127.0.0.1:11212"]).await?;
    /// println!("widget:7 lives on {}", backend.server_for("shop:widget:7"));
    /// # Ok(()) }
    /// ```
    pub fn server_for(&self, key: &str) -> &str {
        &self.ring.addrs[self.ring.route(memcached_wire_key(key).as_bytes())]
    }

    /// The configured server addresses, in order.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cache_core::Error> {
    /// let backend = cache_backends::MemcachedBackend::connect(&["127.0.0.1:11211"]).await?;
    /// assert_eq!(backend.servers(), ["127.0.0.1:11211"]);
    /// # Ok(()) }
    /// ```
    pub fn servers(&self) -> &[String] {
        &self.ring.addrs
    }

    async fn ping_server(&self, server: usize) -> Result<(), Error> {
        self.bounded("ping", self.client.noop(server))
            .await?
            .map_err(|e| backend_error("ping", e))
    }

    /// `fut` under the io timeout, for the exchanges no `Cache` timer covers.
    async fn bounded<T>(&self, op: &'static str, fut: impl Future<Output = T>) -> Result<T, Error> {
        crate::within(NAME, op, self.io_timeout, fut).await
    }

    /// One pipelined batch on `server`, its error mapped (a refused large
    /// value is [`Error::ValueTooLarge`]).
    pub(super) async fn run_batch(
        &self,
        op: &'static str,
        server: usize,
        ops: &[Cmd<'_>],
    ) -> Result<Vec<Reply>, Error> {
        self.client
            .exchange(server, ops)
            .await
            .map_err(|e| match e {
                e if e.is_too_large() => Error::ValueTooLarge {
                    size: 0,
                    limit: self.max_value_size,
                },
                e => backend_error(op, e),
            })
    }

    /// The get result of a batch, when the entry is live under the current stamp.
    pub(super) fn live<'r>(
        gens: Gens,
        result: Option<&'r Reply>,
        op: &'static str,
    ) -> Result<Option<&'r Reply>, Error> {
        let get = result.ok_or_else(|| protocol_error(op, "missing mg result"))?;
        Ok(gens.admits(get).then_some(get))
    }

    /// One read of an entry (`cmd`, an `mg`) on `server`, and the
    /// generations it is judged by: within `generation_refresh` the
    /// remembered ones (one `mg`), otherwise those read in the same batch.
    pub(super) async fn read_entry(
        &self,
        op: &'static str,
        server: usize,
        namespace: &str,
        cmd: Cmd<'_>,
    ) -> Result<(Gens, Reply), Error> {
        if let Some(gens) = self.trusted(server, namespace) {
            // Within `generation_refresh`: one `mg`, checked against the remembered stamp.
            let got = self
                .client
                .one(server, cmd)
                .await
                .map_err(|e| backend_error(op, e))?;
            return Ok((gens, got));
        }
        let (read, results) = self.read_with_gens(op, server, namespace, [cmd]).await?;
        let gens = match read {
            // An exact hit remembers nothing: only writes use what was
            // remembered (and they read their own), so the steady state
            // takes no lock.
            Some(gens) if self.generation_refresh.is_zero() => gens,
            read => {
                let gens = self.settle(op, server, namespace, read).await?;
                self.remember(server, namespace, gens);
                gens
            }
        };
        let got = results
            .into_iter()
            .next()
            .ok_or_else(|| protocol_error(op, "missing mg result"))?;
        Ok((gens, got))
    }

    /// [`Error::ValueTooLarge`] for a value past the server's item limit.
    pub(super) fn fits(&self, value: &[u8]) -> Result<(), Error> {
        if value.len() > self.max_value_size {
            return Err(Error::ValueTooLarge {
                size: value.len(),
                limit: self.max_value_size,
            });
        }
        Ok(())
    }

    /// `set` (an `ms`) on `server`, pipelined with the generation reads:
    /// the generations now and the `ms` result.
    pub(super) async fn write(
        &self,
        op: &'static str,
        server: usize,
        namespace: &str,
        set: Cmd<'_>,
    ) -> Result<(Gens, Reply), Error> {
        let size = match &set {
            Cmd::Set { value, .. } => value.len(),
            _ => 0,
        };
        let (current, results) =
            self.batch(op, server, namespace, vec![set])
                .await
                .map_err(|e| match e {
                    Error::ValueTooLarge { limit, .. } => Error::ValueTooLarge { size, limit },
                    other => other,
                })?;
        let stored = results
            .into_iter()
            .next()
            .ok_or_else(|| protocol_error(op, "missing ms result"))?;
        Ok((current, stored))
    }

    /// The value of the counter `key` under the current generations (0 when absent).
    async fn read_counter(&self, key: Key<'_>) -> Result<u64, Error> {
        let server = self.ring.counter_server(key.as_str());
        let namespace = key.namespace();
        let gens = self.remembered("increment", server, namespace).await?;
        let wire = self.ring.counter_key(server, gens.stamp(), key.as_str());
        let (current, results) = self
            .batch("increment", server, namespace, vec![Cmd::get(wire)])
            .await?;
        if current != gens {
            // Cleared meanwhile: the counter of the new generation is fresh.
            return Ok(0);
        }
        Ok(results.first().map_or(0, counter_value))
    }

    pub(super) fn route_key<'k>(&self, key: Key<'k>) -> (Cow<'k, str>, usize) {
        let wire = memcached_wire_key(key.as_str());
        let server = self.ring.route(wire.as_bytes());
        (wire, server)
    }
}

/// A counter's ASCII decimal value (0 when absent or not a number).
fn counter_value(get: &Reply) -> u64 {
    if !get.hit() {
        return 0;
    }
    get.number().unwrap_or(0)
}

#[async_trait]
impl Backend for MemcachedBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn max_value_size(&self) -> Option<usize> {
        Some(self.max_value_size)
    }

    async fn get(&self, key: Key<'_>) -> Result<Option<Bytes>, Error> {
        let (wire, server) = self.route_key(key);
        let (gens, got) = self
            .read_entry("get", server, key.namespace(), Cmd::get(&*wire))
            .await?;
        Ok(gens.value_of(got))
    }

    async fn set(&self, key: Key<'_>, value: Bytes, ttl: Option<Duration>) -> Result<(), Error> {
        self.fits(&value)?;
        let (wire, server) = self.route_key(key);
        let namespace = key.namespace();
        let ttl = entry_ttl(&value, ttl);
        let mut stamp_gens = self.remembered("set", server, namespace).await?;
        // Second try only when a clear elsewhere moved the generations under us.
        for _ in 0..2 {
            let op = Cmd::Set {
                key: Cow::Borrowed(&wire),
                value: &value,
                client_flags: stamp_gens.stamp(),
                expiry: ttl,
                store: Store::Always,
            };
            let (current, stored) = self.write("set", server, namespace, op).await?;
            if !stored.applied() {
                return Err(protocol_error("set", "ms was not applied"));
            }
            if current == stamp_gens {
                return Ok(());
            }
            stamp_gens = current;
        }
        // Stamped with a generation a concurrent clear retired: invisible, which is correct.
        Ok(())
    }

    /// `ms <lease> … ME` (add): outside the namespace generations, so a
    /// `clear` does not free a lease another process holds (it expires).
    async fn lease(&self, key: Key<'_>, token: &[u8], ttl: Duration) -> Result<bool, Error> {
        let (wire, server) = self.route_key(key);
        let add = Cmd::Set {
            key: Cow::Borrowed(&wire),
            value: token,
            client_flags: 0,
            // Whole seconds, at least one: a lease shorter than that lasts a second.
            expiry: wire_ttl(Some(ttl.max(Duration::from_secs(1)))),
            store: Store::IfAbsent,
        };
        let got = self
            .client
            .one(server, add)
            .await
            .map_err(|e| backend_error("lease", e))?;
        Ok(got.applied())
    }

    /// `mg <lease> v c`, then `md <lease> C<cas>` when it still holds `token`.
    async fn release(&self, key: Key<'_>, token: &[u8]) -> Result<(), Error> {
        let (wire, server) = self.route_key(key);
        let got = self
            .client
            .one(server, Cmd::get(&*wire).with_cas())
            .await
            .map_err(|e| backend_error("release", e))?;
        if let (Some(value), Some(cas)) = (got.value.as_deref(), got.cas) {
            if value == token {
                let delete = Cmd::Delete {
                    key: Cow::Borrowed(&wire),
                    cas: Some(cas),
                };
                self.client
                    .one(server, delete)
                    .await
                    .map_err(|e| backend_error("release", e))?;
            }
        }
        Ok(())
    }

    async fn delete(&self, key: Key<'_>) -> Result<bool, Error> {
        let (wire, server) = self.route_key(key);
        let ops = vec![
            Cmd::probe(&*wire),
            Cmd::Delete {
                key: Cow::Borrowed(&wire),
                cas: None,
            },
        ];
        let (gens, results) = self.batch("delete", server, key.namespace(), ops).await?;
        let was_live = Self::live(gens, results.first(), "delete")?.is_some();
        let deleted = results
            .get(1)
            .ok_or_else(|| protocol_error("delete", "missing md result"))?
            .applied();
        Ok(was_live && deleted)
    }

    async fn get_fenced(&self, key: Key<'_>) -> Result<(Option<Bytes>, Fence), Error> {
        self.read_fenced(key).await
    }

    async fn set_fenced(
        &self,
        key: Key<'_>,
        value: Bytes,
        ttl: Option<Duration>,
        fence: &Fence,
    ) -> Result<bool, Error> {
        self.write_fenced(key, value, ttl, fence).await
    }

    async fn invalidate(&self, key: Key<'_>, window: Duration) -> Result<bool, Error> {
        self.leave_tombstone(key, window).await
    }

    async fn delete_pattern(&self, _namespace: &str, _pattern: &str) -> Result<u64, Error> {
        Err(Error::PatternNotSupported { backend: NAME })
    }

    async fn exists(&self, key: Key<'_>) -> Result<bool, Error> {
        let (wire, server) = self.route_key(key);
        let ops = vec![Cmd::probe(&*wire)];
        let (gens, results) = self.batch("exists", server, key.namespace(), ops).await?;
        Ok(Self::live(gens, results.first(), "exists")?.is_some())
    }

    async fn ttl(&self, key: Key<'_>) -> Result<Option<Duration>, Error> {
        let (wire, server) = self.route_key(key);
        let ops = vec![Cmd::probe(&*wire).with_ttl()];
        let (gens, results) = self.batch("ttl", server, key.namespace(), ops).await?;
        Ok(Self::live(gens, results.first(), "ttl")?
            .and_then(|g| g.ttl)
            .filter(|&secs| secs >= 0)
            .map(|secs| Duration::from_secs(secs as u64)))
    }

    async fn clear(&self, namespace: &str) -> Result<u64, Error> {
        let outcome = self
            .bounded(
                "clear",
                self.client
                    .on_every_server(|server| self.gen_op(server, namespace, 1)),
            )
            .await;
        // Forget what was read whatever the outcome: servers that took the
        // bump must be read afresh, so this backend's own clear is seen at
        // once even with `generation_refresh` (and even when it failed elsewhere).
        self.forget(namespace);
        let results = match outcome {
            Ok(results) => results,
            Err(timeout) => {
                tracing::warn!(servers = ?self.ring.addrs, namespace, error = %timeout, "memcached clear timed out; a server that did not take it keeps this namespace's entries visible");
                return Err(timeout);
            }
        };
        for (server, result) in results.into_iter().enumerate() {
            if let Err(e) = result {
                tracing::warn!(server = %self.ring.addrs[server], namespace, error = %e, "memcached server missed a clear; its entries of this namespace stay visible");
                return Err(backend_error("clear", e));
            }
        }
        // Memcached cannot count the entries a generation bump retired.
        Ok(0)
    }

    /// `ma <counter> N<ttl> J<delta> D<delta> v` (autovivify: created at
    /// `delta` with the TTL, later increments keep it; a refund is
    /// `ma … MD D<n> v` without autovivify), pipelined with the
    /// generation reads and the `mg` of the peek counter: one round trip.
    ///
    /// Counter keys are `__cacheside_n:<server-tag>:<stamp>:<wire key>`: the
    /// stamp (see *clear* above) is part of the key, so `clear` of the
    /// namespace starts every counter over. Counters route by their
    /// `{hash tag}` when they have one, so a key and its peek share a server.
    /// A clear racing the increment makes it repeat once under the new stamp.
    async fn increment(
        &self,
        key: Key<'_>,
        delta: i64,
        ttl: Duration,
        peek: Option<Key<'_>>,
    ) -> Result<(u64, u64), Error> {
        const OP: &str = "increment";
        let server = self.ring.counter_server(key.as_str());
        let namespace = key.namespace();
        // The peek rides in the batch only when it shares server and generations.
        let peek_along = peek.filter(|p| {
            p.namespace() == namespace && self.ring.counter_server(p.as_str()) == server
        });
        let mut gens = self.remembered(OP, server, namespace).await?;
        let mut answer = (0, 0);
        for _ in 0..2 {
            let stamp = gens.stamp();
            // A refund (`delta < 0`) is `MD`, floored at 0 by memcached, without autovivify.
            let counter = Cmd::Arith {
                key: self.ring.counter_key(server, stamp, key.as_str()).into(),
                delta: delta.unsigned_abs(),
                decrement: delta < 0,
                vivify: (delta >= 0).then(|| (expiry(ttl), delta.unsigned_abs())),
                expiry: None,
            };
            let mut ops = vec![counter];
            if let Some(p) = peek_along {
                ops.push(Cmd::get(self.ring.counter_key(server, stamp, p.as_str())));
            }
            let (current, results) = self.batch(OP, server, namespace, ops).await?;
            let counted = results
                .first()
                .ok_or_else(|| protocol_error(OP, "missing ma result"))?;
            let value = match counted.number() {
                Some(v) => v,
                // A refund of a counter that is gone (`NF`).
                None if delta < 0 => 0,
                None => return Err(protocol_error(OP, "ma without a value")),
            };
            let peeked = match peek_along {
                Some(_) => counter_value(
                    results
                        .get(1)
                        .ok_or_else(|| protocol_error(OP, "missing mg result"))?,
                ),
                None => 0,
            };
            answer = (value, peeked);
            if current == gens {
                break;
            }
            // A clear moved the generations: count again under the new stamp.
            gens = current;
        }
        if let (Some(p), None) = (peek, peek_along) {
            answer.1 = self.read_counter(p).await?;
        }
        Ok(answer)
    }

    async fn ping(&self) -> Result<(), Error> {
        for server in 0..self.ring.addrs.len() {
            self.client
                .noop(server)
                .await
                .map_err(|e| backend_error("ping", e))?;
        }
        Ok(())
    }
}

/// Builds the backend that a [`MemcachedConfig`] describes (`CACHE_MEMCACHED_SERVERS`,
/// `CACHE_MEMCACHED_POOL_SIZE`, `CACHE_MEMCACHED_GENERATION_REFRESH_MS`;
/// `CACHE_CONNECT_TIMEOUT_MS` bounds dialling and the startup check,
/// `CACHE_OP_TIMEOUT_MS` bounds `clear`, and the cache bounds every other
/// call with it too).
///
/// The rule every store follows: an address that does not resolve, or a
/// server that answers but not as Memcached does, is an error at once
/// ([`Error::Misconfigured`] naming `CACHE_MEMCACHED_SERVERS`); servers that
/// do not answer within the connect timeout do not stop the service: it
/// starts with a warning naming them, fails open, and uses each server as
/// soon as it answers.
///
/// This is what `CACHE_BACKEND=memcached` starts.
pub async fn connect_memcached(
    config: &MemcachedConfig,
    timeouts: Timeouts,
) -> Result<Box<dyn Backend>, Error> {
    Ok(Box::new(
        start(config, timeouts).await?.warn_if_unreachable(),
    ))
}

/// The startup check, then a backend either way but a refusal.
pub(crate) async fn start(config: &MemcachedConfig, timeouts: Timeouts) -> Result<Startup, Error> {
    let options = config.options(timeouts);
    let backend = MemcachedBackend::build(&config.servers, &options).await?;
    let mut down = Vec::new();
    for server in 0..backend.ring.addrs.len() {
        let check = crate::within(
            NAME,
            "connect",
            options.connect_timeout,
            backend.client.noop(server),
        );
        let addr = &backend.ring.addrs[server];
        match check.await {
            Ok(Ok(())) => {}
            Ok(Err(MetaError::Protocol(what))) => {
                return Err(Error::Misconfigured {
                    backend: NAME,
                    server: addr.clone(),
                    problem: format!("the server did not answer as Memcached 1.6+ does ({what})"),
                    var: SERVERS_VAR_FIX,
                })
            }
            Ok(Err(e)) => down.push((addr.clone(), backend_error("connect", e))),
            Err(timeout) => down.push((addr.clone(), timeout)),
        }
    }
    Ok(Startup { backend, down })
}

/// What starting against the Memcached servers gave: the backend, and the
/// servers that did not answer (with why).
pub(crate) struct Startup {
    pub(crate) backend: MemcachedBackend,
    pub(crate) down: Vec<(String, Error)>,
}

impl Startup {
    /// True when no server answered.
    pub(crate) fn none_answered(&self) -> bool {
        self.down.len() == self.backend.ring.addrs.len()
    }

    /// The backend; logs one warning per server that did not answer.
    pub(crate) fn warn_if_unreachable(self) -> MemcachedBackend {
        let all = self.none_answered();
        for (server, error) in &self.down {
            if all {
                tracing::warn!(server = %server, error = %crate::startup_reason(error), "the cache store did not answer at startup; starting anyway: cached calls run uncached (fail open) until it answers, then it is used without a restart");
            } else {
                tracing::warn!(server = %server, error = %crate::startup_reason(error), "memcached server does not answer at startup; its keys miss until it does");
            }
        }
        self.backend
    }
}

//! Memcached over the meta protocol (feature `memcached`): see [`MemcachedBackend`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::hash::bytes128;
use cache_core::{Backend, Config, Error, Key};

mod meta;
#[doc(hidden)]
pub use meta::__fuzz as __fuzz_memcached_meta;

use meta::{is_valid_key, Cmd, MetaClient, MetaError, Reply, MAX_KEY_LEN};

const NAME: &str = "memcached";

/// Keys starting with this are reserved for cacheside's own items (hashed keys, generations).
const RESERVED: &str = "__cacheside_";
const HASHED_PREFIX: &str = "__cacheside_h:";
const GEN_PREFIX: &str = "__cacheside_gen:";
const COUNTER_PREFIX: &str = "__cacheside_n:";

/// Memcached's default item size limit (`-I 1m`).
const SERVER_ITEM_LIMIT: usize = 1024 * 1024;
/// Room left for the item header, the key and the terminator.
const ITEM_OVERHEAD: usize = 1024;

/// Bound on the namespaces whose generations a backend remembers, per server.
const MAX_REMEMBERED_NAMESPACES: usize = 1024;

/// Lifetime given to a generation counter when it is created; each later
/// access sets it to "never expires" (`T0`).
const GEN_CREATE_TTL: u32 = 30 * 24 * 60 * 60;

/// The key sent to memcached for a cacheside key (see [`MemcachedBackend`], *Keys*).
///
/// ```
/// use cache_backends::memcached_wire_key;
/// assert_eq!(memcached_wire_key("myapp:widget:7"), "myapp:widget:7");
/// let hashed = memcached_wire_key("a\r\nflush_all");
/// assert!(hashed.starts_with("__cacheside_h:") && hashed.len() == 46);
/// assert!(memcached_wire_key(&"x".repeat(300)).len() <= 250);
/// ```
pub fn memcached_wire_key(key: &str) -> Cow<'_, str> {
    if is_valid_key(key) && !key.starts_with(RESERVED) {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(format!("{HASHED_PREFIX}{:032x}", bytes128(key.as_bytes())))
    }
}

/// Settings of a [`MemcachedBackend`]; start from `MemcachedOptions::default()`.
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

/// The servers, their hashes and tags: the consistent hash.
#[derive(Debug)]
struct Ring {
    addrs: Vec<String>,
    ids: Vec<u128>,
    /// 16 hex digits per server, used in generation keys.
    tags: Vec<String>,
    /// Per server, the key of the global generation (read on every exact hit).
    global_gen: Vec<String>,
}

impl Ring {
    fn new(addrs: Vec<String>) -> Ring {
        let ids: Vec<u128> = addrs.iter().map(|a| bytes128(a.as_bytes())).collect();
        let tags: Vec<String> = ids
            .iter()
            .map(|id| format!("{:016x}", (*id >> 64) as u64))
            .collect();
        let global_gen = tags
            .iter()
            .map(|tag| format!("{GEN_PREFIX}{tag}:"))
            .collect();
        Ring {
            addrs,
            ids,
            tags,
            global_gen,
        }
    }

    /// The server of a wire key: rendezvous over SipHash (see `MemcachedBackend`).
    fn route(&self, wire_key: &[u8]) -> usize {
        if self.ids.len() == 1 {
            return 0;
        }
        let key_hash = bytes128(wire_key).to_le_bytes();
        let mut buf = [0u8; 32];
        buf[16..].copy_from_slice(&key_hash);
        let mut best = (0usize, 0u64);
        for (index, id) in self.ids.iter().enumerate() {
            buf[..16].copy_from_slice(&id.to_le_bytes());
            let score = bytes128(&buf) as u64;
            if index == 0 || score > best.1 {
                best = (index, score);
            }
        }
        best.0
    }

    /// `__cacheside_gen:<tag>:<namespace>` (namespace hashed when unsafe or long).
    fn gen_key(&self, server: usize, namespace: &str) -> Cow<'_, str> {
        if namespace.is_empty() {
            return Cow::Borrowed(&self.global_gen[server]);
        }
        let key = format!("{GEN_PREFIX}{}:{namespace}", self.tags[server]);
        Cow::Owned(if is_valid_key(&key) {
            key
        } else {
            // A hashed namespace never ends with ':' while real ones do: no clash.
            format!(
                "{GEN_PREFIX}{}:#{:032x}",
                self.tags[server],
                bytes128(namespace.as_bytes())
            )
        })
    }
}

/// The server of a counter: by its `{hash tag}` when it has one (so the
/// counters of one rate-limit window pair share a server and a batch), else
/// by the whole key.
fn counter_route(key: &str) -> &str {
    key.find('{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.find('}').map(|close| &rest[..close])
        })
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key)
}

impl Ring {
    /// `__cacheside_n:<server-tag>:<stamp>:<wire key>` (the wire key hashed when too long).
    ///
    /// The stamp in the key is what makes `clear` reset counters: `ma` cannot
    /// set client flags, so a counter of a retired generation is simply
    /// another key, never read again, gone at its TTL.
    fn counter_key(&self, server: usize, stamp: u32, key: &str) -> String {
        let wire = memcached_wire_key(key);
        let out = format!("{COUNTER_PREFIX}{}:{stamp:08x}:{wire}", self.tags[server]);
        if out.len() <= MAX_KEY_LEN {
            out
        } else {
            format!(
                "{COUNTER_PREFIX}{}:{stamp:08x}:#{:032x}",
                self.tags[server],
                bytes128(key.as_bytes())
            )
        }
    }
}

/// The `T` (or `N`) of a TTL: whole seconds rounded up (at least 1), sent
/// as an absolute unix time past 30 days as the protocol requires, and 0
/// (never expires) when that time is past what memcached parses: it reads
/// the number as a signed 32-bit value, so a time after 2038-01-19 would
/// turn negative and expire the item at once.
fn expiry(ttl: Duration) -> u32 {
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0))
        .max(1);
    if secs <= 30 * 24 * 60 * 60 {
        return secs as u32;
    }
    let at = unix_secs().saturating_add(secs);
    if at > i32::MAX as u64 {
        0
    } else {
        at as u32
    }
}

/// The `T` of an `ms`: [`expiry`], or 0 (no expiry) without a TTL.
fn wire_ttl(ttl: Option<Duration>) -> u32 {
    ttl.map_or(0, expiry)
}

/// A counter's ASCII decimal value (0 when absent or not a number).
fn counter_value(get: &Reply) -> u64 {
    if !get.hit() {
        return 0;
    }
    get.number().unwrap_or(0)
}

/// A generation read by `mg … v t`: its value when present and permanent.
/// `None` asks for the `ma` that creates it or makes it permanent.
fn settled_generation(get: &Reply) -> Option<u64> {
    if !get.hit() || get.ttl != Some(-1) {
        return None;
    }
    get.number()
}

/// What this backend last read of one namespace's generations on one server, and when.
#[derive(Debug, Clone, Copy)]
struct Seen {
    gens: Gens,
    at: tokio::time::Instant,
}

/// The generations an entry's stamp is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gens {
    global: u64,
    namespace: Option<u64>,
}

impl Gens {
    /// The generations of `namespace`'s stamp from their values, in
    /// `stamp_namespaces` order; `None` when there are too few or too many.
    fn from_values(namespace: &str, mut values: impl Iterator<Item = u64>) -> Option<Gens> {
        let global = values.next()?;
        let namespace = match namespace.is_empty() {
            true => None,
            false => Some(values.next()?),
        };
        values
            .next()
            .is_none()
            .then_some(Gens { global, namespace })
    }

    fn stamp(&self) -> u32 {
        self.global.wrapping_add(self.namespace.unwrap_or(0)) as u32
    }

    /// True when `get` found an entry written under these generations.
    fn admits(&self, get: &Reply) -> bool {
        get.hit() && get.client_flags.unwrap_or(0) == self.stamp()
    }

    /// The value of `get` when it is live under these generations.
    fn value_of(&self, get: Reply) -> Option<Bytes> {
        self.admits(&get).then(|| get.value.unwrap_or_default())
    }
}

/// The initial value of a generation counter: microseconds since the epoch.
/// A counter lost and created again starts past every value the lost one
/// can have reached (a clear adds 1, and recreating takes more than a
/// microsecond), so entries it retired never match again.
fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| {
        u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
    })
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_secs().max(1))
}

fn backend_error(op: &'static str, e: MetaError) -> Error {
    Error::backend(NAME, op, e)
}

fn protocol_error(op: &'static str, what: &str) -> Error {
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
    ring: Arc<Ring>,
    /// Per server: the generations last seen for each namespace: a hint for
    /// writes, and what hits trust for `generation_refresh`.
    seen: Arc<[Mutex<HashMap<String, Seen>>]>,
    max_value_size: usize,
    generation_refresh: Duration,
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

    /// `ma <gen> N<30d> J<now> D<delta> T0 v`: reads (delta 0) or bumps a generation, creating it if absent.
    fn gen_op(&self, server: usize, namespace: &str, delta: u64) -> Cmd<'_> {
        Cmd::Arith {
            key: self.ring.gen_key(server, namespace),
            delta,
            decrement: false,
            vivify: Some((GEN_CREATE_TTL, unix_micros())),
            expiry: Some(0),
        }
    }

    /// The namespaces whose generations make up a stamp: the global one
    /// (`""`), then `namespace` when it is not the global one.
    fn stamp_namespaces(namespace: &str) -> impl Iterator<Item = &str> {
        std::iter::once("").chain((!namespace.is_empty()).then_some(namespace))
    }

    /// Per generation, the `ma … D0` that reads it (creating it when
    /// missing) and an `mg … T0` that makes it permanent. (`ma`'s own `T0`
    /// is not applied reliably: seen skipped when the server rewrote the
    /// item instead of updating it in place.)
    fn gen_ops(&self, server: usize, namespace: &str) -> Vec<Cmd<'_>> {
        Self::stamp_namespaces(namespace)
            .flat_map(|ns| {
                let permanent = Cmd::Get {
                    key: self.ring.gen_key(server, ns),
                    value: false,
                    client_flags: false,
                    ttl: false,
                    touch: Some(0),
                };
                [self.gen_op(server, ns, 0), permanent]
            })
            .collect()
    }

    /// The plain `mg <gen> v t` reads of the steady state: read-only on the
    /// server, unlike `ma` (which rewrites the item and its CAS even for a
    /// delta of 0), so a hit costs the server about one extra lookup.
    fn gen_reads<'a>(
        &'a self,
        server: usize,
        namespace: &'a str,
    ) -> impl Iterator<Item = Cmd<'a>> + 'a {
        Self::stamp_namespaces(namespace).map(move |ns| Cmd::Get {
            key: self.ring.gen_key(server, ns),
            value: true,
            client_flags: false,
            ttl: true,
            touch: None,
        })
    }

    /// Sends `gen_reads(server, namespace) ++ rest` as one pipelined batch
    /// on `server`: the generations, when every one is present and
    /// permanent, and the results of `rest`.
    async fn read_with_gens<'a>(
        &'a self,
        op: &'static str,
        server: usize,
        namespace: &'a str,
        rest: impl IntoIterator<Item = Cmd<'a>>,
    ) -> Result<(Option<Gens>, Vec<Reply>), Error> {
        let mut ops = Vec::with_capacity(3);
        ops.extend(self.gen_reads(server, namespace));
        let n_gens = ops.len();
        ops.extend(rest);
        let mut out = self.run_batch(op, server, &ops).await?;
        if out.len() < n_gens {
            return Err(protocol_error(op, "fewer results than requests in a batch"));
        }
        // A read that is not settled ends the values early: too few, so `None`.
        let gens = Gens::from_values(
            namespace,
            out.drain(..n_gens).map_while(|r| settled_generation(&r)),
        );
        Ok((gens, out))
    }

    /// The generations `read_with_gens` found, or, when one is missing
    /// (first use, a restarted server) or still carries the lifetime it was
    /// created with, the values of the `ma` that creates it or makes it
    /// permanent, in a second round trip. Those are read *after* the rest
    /// of the first batch, which callers handle as they handle a concurrent
    /// `clear` (a read misses, a write or a count is repeated under the new
    /// stamp).
    async fn settle(
        &self,
        op: &'static str,
        server: usize,
        namespace: &str,
        read: Option<Gens>,
    ) -> Result<Gens, Error> {
        if let Some(gens) = read {
            return Ok(gens);
        }
        // Seen on every call, this means the repair does not hold.
        tracing::debug!(
            server = %self.ring.addrs[server],
            namespace,
            "memcached generation missing or not permanent; creating or repairing it"
        );
        let made = self
            .run_batch(op, server, &self.gen_ops(server, namespace))
            .await?;
        let values = made
            .iter()
            .step_by(2)
            .map(|r| {
                r.number()
                    .ok_or_else(|| protocol_error(op, "generation counter without a value"))
            })
            .collect::<Result<Vec<u64>, Error>>()?;
        Gens::from_values(namespace, values.into_iter())
            .ok_or_else(|| protocol_error(op, "wrong number of generation counters"))
    }

    /// `read_with_gens` and `settle`, remembering the generations: returns
    /// them and the results of `rest`.
    async fn batch(
        &self,
        op: &'static str,
        server: usize,
        namespace: &str,
        rest: Vec<Cmd<'_>>,
    ) -> Result<(Gens, Vec<Reply>), Error> {
        let (read, rest) = self.read_with_gens(op, server, namespace, rest).await?;
        let gens = self.settle(op, server, namespace, read).await?;
        self.remember(server, namespace, gens);
        Ok((gens, rest))
    }

    /// One pipelined batch on `server`, its error mapped (a refused large
    /// value is [`Error::ValueTooLarge`]).
    async fn run_batch(
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

    fn remember(&self, server: usize, namespace: &str, gens: Gens) {
        // Exact hits (no refresh window) never read `at`: when nothing
        // changed, the steady state skips the clock and the write.
        let exact = self.generation_refresh.is_zero();
        let now = || Seen {
            gens,
            at: tokio::time::Instant::now(),
        };
        let mut seen = self.seen[server].lock().unwrap_or_else(|e| e.into_inner());
        match seen.get_mut(namespace) {
            Some(g) if exact && g.gens == gens => {}
            Some(g) => *g = now(),
            None => {
                if seen.len() >= MAX_REMEMBERED_NAMESPACES {
                    // Forgetting costs one round trip, never correctness.
                    seen.clear();
                }
                seen.insert(namespace.to_owned(), now());
            }
        }
    }

    fn seen(&self, server: usize, namespace: &str) -> Option<Seen> {
        self.seen[server]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(namespace)
            .copied()
    }

    /// The generations last read, however old: what writes stamp with first.
    fn remembered(&self, server: usize, namespace: &str) -> Option<Gens> {
        self.seen(server, namespace).map(|s| s.gens)
    }

    /// The generations last read, if read less than `generation_refresh` ago.
    fn trusted(&self, server: usize, namespace: &str) -> Option<Gens> {
        if self.generation_refresh.is_zero() {
            return None;
        }
        self.seen(server, namespace)
            .filter(|s| s.at.elapsed() < self.generation_refresh)
            .map(|s| s.gens)
    }

    /// The get result of a batch, when the entry is live under the current stamp.
    fn live<'r>(
        gens: Gens,
        result: Option<&'r Reply>,
        op: &'static str,
    ) -> Result<Option<&'r Reply>, Error> {
        let get = result.ok_or_else(|| protocol_error(op, "missing mg result"))?;
        Ok(gens.admits(get).then_some(get))
    }

    /// The value of the counter `key` under the current generations (0 when absent).
    async fn read_counter(&self, key: Key<'_>) -> Result<u64, Error> {
        let server = self.ring.route(counter_route(key.as_str()).as_bytes());
        let namespace = key.namespace();
        let gens = match self.remembered(server, namespace) {
            Some(g) => g,
            None => {
                self.batch("increment", server, namespace, Vec::new())
                    .await?
                    .0
            }
        };
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

    fn route_key<'k>(&self, key: Key<'k>) -> (Cow<'k, str>, usize) {
        let wire = memcached_wire_key(key.as_str());
        let server = self.ring.route(wire.as_bytes());
        (wire, server)
    }
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
        if let Some(gens) = self.trusted(server, key.namespace()) {
            // Within `generation_refresh`: one `mg`, checked against the remembered stamp.
            let got = self
                .client
                .one(server, Cmd::get(&*wire))
                .await
                .map_err(|e| backend_error("get", e))?;
            return Ok(gens.value_of(got));
        }
        let namespace = key.namespace();
        let (read, results) = self
            .read_with_gens("get", server, namespace, [Cmd::get(&*wire)])
            .await?;
        let gens = match read {
            // An exact hit remembers nothing: only writes use what was
            // remembered (and they read their own), so the steady state
            // takes no lock.
            Some(gens) if self.generation_refresh.is_zero() => gens,
            read => {
                let gens = self.settle("get", server, namespace, read).await?;
                self.remember(server, namespace, gens);
                gens
            }
        };
        match results.into_iter().next() {
            Some(g) => Ok(gens.value_of(g)),
            None => Err(protocol_error("get", "missing mg result")),
        }
    }

    async fn set(&self, key: Key<'_>, value: Bytes, ttl: Option<Duration>) -> Result<(), Error> {
        if value.len() > self.max_value_size {
            return Err(Error::ValueTooLarge {
                size: value.len(),
                limit: self.max_value_size,
            });
        }
        let (wire, server) = self.route_key(key);
        let namespace = key.namespace();
        let ttl = wire_ttl(ttl);
        let mut stamp_gens = match self.remembered(server, namespace) {
            Some(g) => g,
            None => self.batch("set", server, namespace, Vec::new()).await?.0,
        };
        // Second try only when a clear elsewhere moved the generations under us.
        for _ in 0..2 {
            let op = Cmd::Set {
                key: Cow::Borrowed(&wire),
                value: &value,
                client_flags: stamp_gens.stamp(),
                expiry: ttl,
            };
            let (current, results) = self
                .batch("set", server, namespace, vec![op])
                .await
                .map_err(|e| match e {
                    Error::ValueTooLarge { limit, .. } => Error::ValueTooLarge {
                        size: value.len(),
                        limit,
                    },
                    other => other,
                })?;
            let stored = results
                .first()
                .ok_or_else(|| protocol_error("set", "missing ms result"))?;
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

    async fn delete(&self, key: Key<'_>) -> Result<bool, Error> {
        let (wire, server) = self.route_key(key);
        let ops = vec![
            Cmd::probe(&*wire),
            Cmd::Delete {
                key: Cow::Borrowed(&wire),
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
        for seen in self.seen.iter() {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            if namespace.is_empty() {
                seen.clear();
            } else {
                seen.remove(namespace);
            }
        }
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
        let server = self.ring.route(counter_route(key.as_str()).as_bytes());
        let namespace = key.namespace();
        // The peek rides in the batch only when it shares server and generations.
        let peek_along = peek.filter(|p| {
            p.namespace() == namespace
                && self.ring.route(counter_route(p.as_str()).as_bytes()) == server
        });
        let mut gens = match self.remembered(server, namespace) {
            Some(g) => g,
            None => self.batch(OP, server, namespace, Vec::new()).await?.0,
        };
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

/// The variable that lists the servers.
const SERVERS_VAR: &str = "CACHE_MEMCACHED_SERVERS";
/// What to fix when an address is wrong.
const SERVERS_VAR_FIX: &str =
    "CACHE_MEMCACHED_SERVERS (or CACHE_MEMCACHED_HOST / CACHE_MEMCACHED_PORT)";
const SERVERS_ALLOWED: &str = "one or more comma-separated host:port addresses";

/// Builds the backend that a [`Config`] describes (`CACHE_MEMCACHED_SERVERS`,
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
/// Crate-private (every backend module has one; [`crate::connect`] picks it):
/// `CACHE_BACKEND=memcached` reaches it through `cache_backends::connect`.
pub(crate) async fn connect_from_config(config: &Config) -> Result<Box<dyn Backend>, Error> {
    Ok(Box::new(start(config).await?.warn_if_unreachable()))
}

/// The startup check, then a backend either way but a refusal.
pub(crate) async fn start(config: &Config) -> Result<Startup, Error> {
    let options = MemcachedOptions {
        pool_size: config.memcached_pool_size.max(1) as usize,
        connect_timeout: config.connect_timeout,
        io_timeout: config.op_timeout,
        generation_refresh: config.memcached_generation_refresh,
        ..MemcachedOptions::default()
    };
    let backend = MemcachedBackend::build(&config.memcached_servers, &options).await?;
    let mut down = Vec::new();
    for server in 0..backend.ring.addrs.len() {
        let check = crate::within(
            NAME,
            "connect",
            config.connect_timeout,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_keys_are_unchanged() {
        for key in [
            "widget:7",
            "myapp:widget:7",
            "a",
            "k-_.~!{}[]",
            &"x".repeat(250),
        ] {
            assert_eq!(memcached_wire_key(key), key);
        }
    }

    #[test]
    fn unsafe_or_long_keys_are_hashed() {
        let bad = [
            "a\r\nflush_all",
            "with space",
            "tab\there",
            "nul\0",
            "caf\u{e9}",
            "",
            "__cacheside_gen:x",
            &"x".repeat(251),
            &"y".repeat(10_000),
        ];
        for key in bad {
            let wire = memcached_wire_key(key);
            assert!(wire.starts_with(HASHED_PREFIX), "{key:?} -> {wire}");
            assert_eq!(wire.len(), HASHED_PREFIX.len() + 32);
            assert!(wire.len() <= MAX_KEY_LEN);
            assert!(wire.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        }
        assert_ne!(memcached_wire_key("a b"), memcached_wire_key("a  b"));
        // Pinned: the mapping must not change between builds.
        assert_eq!(
            memcached_wire_key("a\r\nflush_all"),
            format!("{HASHED_PREFIX}{:032x}", bytes128(b"a\r\nflush_all"))
        );
    }

    fn ring(n: usize) -> Ring {
        Ring::new((0..n).map(|i| format!("127.0.0.1:{}", 11211 + i)).collect())
    }

    #[test]
    fn assignments_are_pinned() {
        let r = ring(3);
        let got: Vec<usize> = [
            "widget:1",
            "widget:2",
            "widget:3",
            "user:42",
            "myapp:page:9",
            "a",
            "b",
            "c",
        ]
        .iter()
        .map(|k| r.route(k.as_bytes()))
        .collect();
        // Pinned: a change here re-homes keys in every deployment.
        assert_eq!(got, PINNED_ROUTES);
        assert_eq!(ring(1).route(b"anything"), 0);
    }

    const PINNED_ROUTES: [usize; 8] = [2, 1, 1, 1, 2, 1, 0, 1];

    #[test]
    fn adding_a_server_moves_about_a_quarter() {
        let three = ring(3);
        let four = ring(4);
        let mut moved = 0;
        let mut counts = [0usize; 4];
        for i in 0..10_000 {
            let key = format!("key:{i}");
            let before = three.route(key.as_bytes());
            let after = four.route(key.as_bytes());
            counts[after] += 1;
            if before != after {
                assert_eq!(after, 3, "a key may only move to the new server");
                moved += 1;
            }
        }
        assert!((2000..3000).contains(&moved), "moved {moved} of 10000");
        for c in counts {
            assert!(c > 2000, "unbalanced: {counts:?}");
        }
    }

    #[test]
    fn generation_keys_are_safe_and_carry_their_servers_tag() {
        let r = ring(3);
        for server in 0..3 {
            for ns in ["", "myapp:", "with space:", &"n".repeat(300)] {
                let key = r.gen_key(server, ns);
                assert!(key.len() <= MAX_KEY_LEN, "{key}");
                assert!(key.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{key}");
                // Two addresses of one memcached never share a counter.
                assert!(key.starts_with(&format!("{GEN_PREFIX}{}:", r.tags[server])));
                assert_ne!(key, r.gen_key((server + 1) % 3, ns));
            }
        }
        assert_ne!(r.gen_key(0, ""), r.gen_key(0, "a:"));
    }

    #[test]
    fn counter_keys_are_safe_and_route_by_tag() {
        let r = ring(3);
        for key in [
            "rl:{1.2.3.4}:60000:7",
            "plain",
            "with space {t}",
            &"x".repeat(400),
        ] {
            for server in 0..3 {
                let wire = r.counter_key(server, 0xdead_beef, key);
                assert!(wire.len() <= MAX_KEY_LEN, "{wire}");
                assert!(wire.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{wire}");
                assert!(wire.starts_with(&format!("{COUNTER_PREFIX}{}:deadbeef:", r.tags[server])));
            }
        }
        assert_ne!(r.counter_key(0, 1, "k"), r.counter_key(0, 2, "k"));
        assert_eq!(counter_route("ns:rl:{1.2.3.4}:60000:7"), "1.2.3.4");
        assert_eq!(
            counter_route("ns:rl:{1.2.3.4}:60000:6"),
            counter_route("ns:rl:{1.2.3.4}:60000:7")
        );
        assert_eq!(counter_route("a{}b"), "a{}b");
        assert_eq!(counter_route("no-tag"), "no-tag");
        assert_eq!(expiry(Duration::from_millis(1)), 1);
        assert_eq!(expiry(Duration::from_secs(120)), 120);
        assert!(expiry(Duration::from_secs(40 * 86_400)) > 1_000_000_000);
    }

    #[test]
    fn generations_need_exactly_one_value_per_stamp_namespace() {
        let of = |ns: &str, v: &[u64]| Gens::from_values(ns, v.iter().copied());
        assert_eq!(
            of("", &[7]),
            Some(Gens {
                global: 7,
                namespace: None
            })
        );
        assert_eq!(
            of("app:", &[7, 9]),
            Some(Gens {
                global: 7,
                namespace: Some(9)
            })
        );
        for (ns, values) in [
            ("", &[][..]),
            ("", &[7, 9]),
            ("app:", &[7]),
            ("app:", &[7, 9, 1]),
        ] {
            assert_eq!(of(ns, values), None, "{ns:?} {values:?}");
        }
    }

    #[test]
    fn stamps_change_with_either_generation() {
        let g = Gens {
            global: 10,
            namespace: Some(20),
        };
        let bumped_ns = Gens {
            namespace: Some(21),
            ..g
        };
        let bumped_global = Gens { global: 11, ..g };
        assert_ne!(g.stamp(), bumped_ns.stamp());
        assert_ne!(g.stamp(), bumped_global.stamp());
        assert_eq!(
            Gens {
                global: 7,
                namespace: None
            }
            .stamp(),
            7
        );
    }

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(wire_ttl(None), 0);
        assert_eq!(wire_ttl(Some(Duration::from_millis(1))), 1);
        assert_eq!(wire_ttl(Some(Duration::ZERO)), 1);
        assert_eq!(wire_ttl(Some(Duration::from_millis(1500))), 2);
        assert_eq!(wire_ttl(Some(Duration::from_secs(60))), 60);
        assert_eq!(wire_ttl(Some(Duration::MAX)), 0);
        assert_eq!(wire_ttl(Some(Duration::from_secs(200 * 365 * 86_400))), 0);
        // Past 2038-01-19 memcached's signed 32-bit parse would expire the item at once.
        let until_2038 = i32::MAX as u64 - unix_secs();
        assert_eq!(wire_ttl(Some(Duration::from_secs(until_2038 + 10))), 0);
        let ten_years = wire_ttl(Some(Duration::from_secs(10 * 365 * 86_400)));
        assert!(
            ten_years > 1_900_000_000 && ten_years <= i32::MAX as u32,
            "{ten_years}"
        );
    }
}

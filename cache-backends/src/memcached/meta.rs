//! A small client for the memcached meta protocol: what [`super::MemcachedBackend`]
//! needs and nothing more.
//!
//! * Per server, a pool of at most `pool_size` TCP connections (`TCP_NODELAY`),
//!   dialled lazily under the connect timeout.
//! * An exchange is a pipelined batch of commands to **one** server: one
//!   write, then one reply per command, in order (memcached answers the
//!   commands of a connection in order; no quiet mode is used, so every
//!   command has exactly one reply).
//! * Cancellation: a connection goes back to the pool only after a complete
//!   exchange. A future dropped mid-exchange (the cache's op timeout) drops
//!   its connection with it, so a half-read reply never reaches the next caller.
//! * A pooled connection the server closed (a restart) is found by a
//!   non-blocking read probe before use. One that fails anyway before any
//!   reply byte arrived is replaced by a fresh dial once, when resending
//!   cannot repeat an effect (see [`MetaClient::exchange`]); one idle for
//!   90 s is closed rather than reused.
//! * Keys are checked before anything is written (1 to 250 bytes of
//!   `0x21..=0x7e`), so no key can inject a command; values are sent with
//!   their length, so they may hold any bytes.
//!
//! Why not the `memcache` crate's `exp` client, which the first versions of
//! the backend used: it passed every behaviour test, but an exact hit (two
//! `mg` in one batch) cost about 1.8× the client-side instructions of a raw
//! single `mg`, most of it in per-command allocations (flag vectors, response
//! lines, opaque-token checks, the batch plan), and that put exact hits at 64
//! tasks below the 0.9× throughput target. Here a batch allocates its reply
//! vector and the values it returns, nothing per command on the way out.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Longest key memcached accepts.
pub(crate) const MAX_KEY_LEN: usize = 250;

/// Longest reply line accepted before a `\n` (flags included); longer is a desynchronised stream.
const MAX_LINE: usize = 8 * 1024;

/// Largest value block accepted in a `VA` reply (memcached's own maximum item size is 1 GiB).
const MAX_VALUE: usize = 1024 * 1024 * 1024;

/// Initial read buffer of a connection; grows for large values.
const READ_CHUNK: usize = 8 * 1024;

/// Most the read buffer grows by per read: memory follows the bytes that
/// arrive, not the size a reply announces.
const MAX_GROWTH: usize = 1024 * 1024;

/// A pooled connection's buffers are shrunk back when a large value grew them past this.
const KEEP_BUFFER: usize = 64 * 1024;

/// Pooled connections idle this long are closed instead of reused: a NAT
/// or firewall may have dropped them silently, and such a connection would
/// swallow a request until the op timeout.
const MAX_IDLE: Duration = Duration::from_secs(90);

/// What went wrong talking to memcached.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MetaError {
    #[error("i/o error talking to memcached: {0}")]
    Io(#[from] io::Error),
    #[error("connecting to memcached timed out after {0:?}; check the address and that the server is up")]
    ConnectTimeout(Duration),
    #[error("no memcached connection became free within {0:?}; raise MemcachedOptions::pool_size or lower the load")]
    PoolExhausted(Duration),
    #[error("memcached answered SERVER_ERROR {0}")]
    Server(String),
    #[error("memcached rejected a request ({0}); check that the item is not one another client wrote in another format")]
    Client(String),
    #[error("unexpected reply from memcached: {0}; is the address a memcached 1.6+ server?")]
    Protocol(&'static str),
    #[error("{0:?} is not a valid memcached key (1 to 250 bytes, printable ASCII, no spaces)")]
    InvalidKey(String),
    #[error("memcached server address {addr:?} does not resolve ({source}); use host:port")]
    Resolve { addr: String, source: io::Error },
}

impl MetaError {
    /// True for `SERVER_ERROR object too large for cache`.
    pub(crate) fn is_too_large(&self) -> bool {
        matches!(self, MetaError::Server(m) if m.contains("too large"))
    }

    /// A closed or reset socket: what a pooled connection to a restarted server shows.
    fn is_stale(&self) -> bool {
        matches!(self, MetaError::Io(e) if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
        ))
    }
}

/// One meta command. Keys are wire keys (checked when encoded).
#[derive(Debug, Clone)]
pub(crate) enum Cmd<'a> {
    /// `mg <key> [v] [f] [t] [T<touch>]`
    Get {
        key: Cow<'a, str>,
        value: bool,
        client_flags: bool,
        ttl: bool,
        /// `T<n>`: set the item's expiry (0 = never) as it is read.
        touch: Option<u32>,
    },
    /// `ms <key> <len> F<flags> T<expiry>` and the data block.
    Set {
        key: Cow<'a, str>,
        value: &'a [u8],
        client_flags: u32,
        expiry: u32,
    },
    /// `md <key>`
    Delete { key: Cow<'a, str> },
    /// `ma <key> [N<vivify expiry> J<initial>] [MD] D<delta> [T<expiry>] v`
    Arith {
        key: Cow<'a, str>,
        delta: u64,
        decrement: bool,
        /// Autovivify: create a missing counter at `initial` with this expiry.
        vivify: Option<(u32, u64)>,
        /// `T<n>`: the expiry to set (0 = never).
        expiry: Option<u32>,
    },
    /// `mn`
    Noop,
}

impl<'a> Cmd<'a> {
    /// True when running the command twice has the effect of running it
    /// once: reads, writes of the same value, arithmetic of zero. Not a
    /// count, a delete (its second run reports "not found"), a generation bump.
    fn repeatable(&self) -> bool {
        match self {
            Cmd::Get { .. } | Cmd::Set { .. } | Cmd::Noop => true,
            Cmd::Arith { delta, .. } => *delta == 0,
            Cmd::Delete { .. } => false,
        }
    }

    /// `mg <key> v f`: the value and the client flags.
    pub(crate) fn get(key: impl Into<Cow<'a, str>>) -> Cmd<'a> {
        Cmd::Get {
            key: key.into(),
            value: true,
            client_flags: true,
            ttl: false,
            touch: None,
        }
    }

    /// `mg <key> f`: the client flags only (existence).
    pub(crate) fn probe(key: impl Into<Cow<'a, str>>) -> Cmd<'a> {
        Cmd::Get {
            key: key.into(),
            value: false,
            client_flags: true,
            ttl: false,
            touch: None,
        }
    }

    /// Adds `t` (remaining seconds, -1 for none) to a `Get`.
    pub(crate) fn with_ttl(mut self) -> Cmd<'a> {
        if let Cmd::Get { ttl, .. } = &mut self {
            *ttl = true;
        }
        self
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), MetaError> {
        match self {
            Cmd::Get {
                key,
                value,
                client_flags,
                ttl,
                touch,
            } => {
                head(out, b"mg ", key)?;
                if *value {
                    out.extend_from_slice(b" v");
                }
                if *client_flags {
                    out.extend_from_slice(b" f");
                }
                if *ttl {
                    out.extend_from_slice(b" t");
                }
                if let Some(t) = touch {
                    flag(out, b'T', u64::from(*t));
                }
            }
            Cmd::Set {
                key,
                value,
                client_flags,
                expiry,
            } => {
                head(out, b"ms ", key)?;
                out.push(b' ');
                push_num(out, value.len() as u64);
                flag(out, b'F', u64::from(*client_flags));
                flag(out, b'T', u64::from(*expiry));
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(value);
            }
            Cmd::Delete { key } => head(out, b"md ", key)?,
            Cmd::Arith {
                key,
                delta,
                decrement,
                vivify,
                expiry,
            } => {
                head(out, b"ma ", key)?;
                if let Some((vivify_expiry, initial)) = vivify {
                    flag(out, b'N', u64::from(*vivify_expiry));
                    flag(out, b'J', *initial);
                }
                if *decrement {
                    out.extend_from_slice(b" MD");
                }
                flag(out, b'D', *delta);
                if let Some(t) = expiry {
                    flag(out, b'T', u64::from(*t));
                }
                out.extend_from_slice(b" v");
            }
            Cmd::Noop => out.extend_from_slice(b"mn"),
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }
}

/// A key memcached accepts and that cannot inject a command: 1 to 250
/// bytes of printable ASCII without spaces (`0x21..=0x7e`).
pub(crate) fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn head(out: &mut Vec<u8>, verb: &[u8], key: &str) -> Result<(), MetaError> {
    if !is_valid_key(key) {
        return Err(MetaError::InvalidKey(key.to_owned()));
    }
    out.extend_from_slice(verb);
    out.extend_from_slice(key.as_bytes());
    Ok(())
}

fn flag(out: &mut Vec<u8>, name: u8, value: u64) {
    out.push(b' ');
    out.push(name);
    push_num(out, value);
}

fn push_num(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The status of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// `VA`: a value follows.
    Value,
    /// `HD`: success without a value (a hit without `v`, stored, deleted).
    Done,
    /// `EN`: miss.
    Miss,
    /// `NF`: not found.
    NotFound,
    /// `NS`: not stored.
    NotStored,
    /// `EX`: CAS mismatch.
    Exists,
    /// `MN`: the no-op's answer.
    Noop,
}

/// One reply, with the return flags cacheside asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) code: Code,
    pub(crate) value: Option<Bytes>,
    /// `f<n>`
    pub(crate) client_flags: Option<u32>,
    /// `t<n>`: remaining seconds, -1 when the item never expires.
    pub(crate) ttl: Option<i64>,
}

impl Reply {
    /// An `mg` found the item.
    pub(crate) fn hit(&self) -> bool {
        matches!(self.code, Code::Value | Code::Done)
    }

    /// An `ms` stored, an `md` deleted.
    pub(crate) fn applied(&self) -> bool {
        self.code == Code::Done
    }

    /// The value as an ASCII decimal number (an `ma … v` result, a counter read).
    pub(crate) fn number(&self) -> Option<u64> {
        std::str::from_utf8(self.value.as_deref()?)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// A parse of the front of a read buffer.
#[derive(Debug)]
enum Parsed {
    /// More bytes are needed: at least this many in total.
    Incomplete(usize),
    /// One reply (or the server's per-command error) and the bytes it took.
    Reply(Result<Reply, MetaError>, usize),
}

fn num<T: std::str::FromStr>(digits: &[u8]) -> Result<T, MetaError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(MetaError::Protocol("malformed number"))
}

/// Parses one reply from the front of `buf`. An `Err` means the stream can
/// no longer be trusted (the connection is dropped); a server's per-command
/// `SERVER_ERROR` is a `Parsed::Reply` holding an error.
fn parse(buf: &[u8]) -> Result<Parsed, MetaError> {
    // Only the first MAX_LINE + 1 bytes: a longer line is refused whether or
    // not its `\n` came in the same read.
    let Some(nl) = buf.iter().take(MAX_LINE + 1).position(|&b| b == b'\n') else {
        if buf.len() > MAX_LINE {
            return Err(MetaError::Protocol("reply line too long"));
        }
        return Ok(Parsed::Incomplete(buf.len() + 1));
    };
    let line = buf[..nl]
        .strip_suffix(b"\r")
        .ok_or(MetaError::Protocol("reply line without CRLF"))?;
    let mut taken = nl + 1;
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let code = match words.next().unwrap_or_default() {
        b"VA" => Code::Value,
        b"HD" => Code::Done,
        b"EN" => Code::Miss,
        b"NF" => Code::NotFound,
        b"NS" => Code::NotStored,
        b"EX" => Code::Exists,
        b"MN" => Code::Noop,
        b"SERVER_ERROR" => {
            let message = String::from_utf8_lossy(line.get(13..).unwrap_or_default());
            return Ok(Parsed::Reply(
                Err(MetaError::Server(message.into_owned())),
                taken,
            ));
        }
        b"CLIENT_ERROR" | b"ERROR" => {
            return Err(MetaError::Client(
                String::from_utf8_lossy(line).into_owned(),
            ))
        }
        _ => return Err(MetaError::Protocol("unknown reply code")),
    };
    let mut value = None;
    if code == Code::Value {
        let size: usize = num(words
            .next()
            .ok_or(MetaError::Protocol("VA without a size"))?)?;
        if size > MAX_VALUE {
            return Err(MetaError::Protocol("value block larger than 1 GiB"));
        }
        let end = taken + size;
        if buf.len() < end + 2 {
            return Ok(Parsed::Incomplete(end + 2));
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(MetaError::Protocol("value block without CRLF"));
        }
        value = Some(Bytes::copy_from_slice(&buf[taken..end]));
        taken = end + 2;
    }
    let mut reply = Reply {
        code,
        value,
        client_flags: None,
        ttl: None,
    };
    for word in words {
        match word.split_first() {
            Some((b'f', n)) => reply.client_flags = Some(num(n)?),
            Some((b't', n)) => reply.ttl = Some(num(n)?),
            _ => {}
        }
    }
    Ok(Parsed::Reply(Ok(reply), taken))
}

/// Fuzzing hook (`fuzz/`), not API: `parse` on any bytes, as plain data.
#[doc(hidden)]
pub mod __fuzz {
    /// What the parser made of the front of a buffer.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Parse {
        /// More bytes are needed: at least this many in total.
        Incomplete(usize),
        /// A reply, or a server's per-command error (`Err`), and the bytes it took.
        Reply(Result<Reply, String>, usize),
        /// The stream can no longer be trusted.
        Fatal(String),
    }

    /// A reply as plain data.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Reply {
        pub code: String,
        pub value: Option<Vec<u8>>,
        pub client_flags: Option<u32>,
        pub ttl: Option<i64>,
        pub hit: bool,
        pub applied: bool,
        pub number: Option<u64>,
    }

    /// Parses one reply from the front of `buf`.
    pub fn parse_reply(buf: &[u8]) -> Parse {
        match super::parse(buf) {
            Ok(super::Parsed::Incomplete(n)) => Parse::Incomplete(n),
            Ok(super::Parsed::Reply(r, taken)) => Parse::Reply(
                r.map(|r| Reply {
                    code: format!("{:?}", r.code),
                    value: r.value.as_deref().map(<[u8]>::to_vec),
                    client_flags: r.client_flags,
                    ttl: r.ttl,
                    hit: r.hit(),
                    applied: r.applied(),
                    number: r.number(),
                })
                .map_err(|e| e.to_string()),
                taken,
            ),
            Err(e) => Parse::Fatal(e.to_string()),
        }
    }
}

/// One TCP connection with its buffers.
struct Conn {
    stream: TcpStream,
    read: BytesMut,
    write: Vec<u8>,
}

/// How an exchange on a connection failed: the error, whether any request
/// byte had left, and whether any reply byte had arrived.
struct Failure {
    error: MetaError,
    written: bool,
    answered: bool,
}

impl Conn {
    async fn dial(addrs: &[SocketAddr], timeout: Duration) -> Result<Conn, MetaError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addrs))
            .await
            .map_err(|_| MetaError::ConnectTimeout(timeout))??;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: Vec::with_capacity(256),
        })
    }

    /// An idle connection is quiet: a readable byte or EOF means it is out
    /// of step or closed by the server. A non-blocking probe, no round trip.
    fn is_reusable(&self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Large values leave large buffers: shrink them before the connection is pooled.
    fn shrink(&mut self) {
        if self.write.capacity() > KEEP_BUFFER {
            self.write = Vec::with_capacity(256);
        }
        if self.read.capacity() > KEEP_BUFFER && self.read.is_empty() {
            self.read = BytesMut::with_capacity(READ_CHUNK);
        }
    }

    /// Writes `self.write`, then reads `count` replies. The inner error is
    /// the first `SERVER_ERROR` among them: the stream is read to the end
    /// all the same, so the connection stays in step.
    async fn round_trip(&mut self, count: usize) -> Result<Result<Vec<Reply>, MetaError>, Failure> {
        let mut sent = 0;
        while sent < self.write.len() {
            match self.stream.write(&self.write[sent..]).await {
                Ok(0) => {
                    return Err(Failure {
                        error: io::Error::from(io::ErrorKind::WriteZero).into(),
                        written: sent > 0,
                        answered: false,
                    })
                }
                Ok(n) => sent += n,
                Err(e) => {
                    return Err(Failure {
                        error: e.into(),
                        written: sent > 0,
                        answered: false,
                    })
                }
            }
        }
        let mut replies = Vec::with_capacity(count);
        let mut refused = None;
        let mut parsed = 0;
        let mut answered = false;
        while parsed < count {
            match parse(&self.read) {
                Ok(Parsed::Reply(reply, taken)) => {
                    self.read.advance(taken);
                    parsed += 1;
                    match reply {
                        Ok(reply) => replies.push(reply),
                        Err(error) => {
                            refused.get_or_insert(error);
                        }
                    }
                }
                Ok(Parsed::Incomplete(need)) => {
                    let free = self.read.capacity() - self.read.len();
                    let want = need
                        .saturating_sub(self.read.len())
                        .clamp(READ_CHUNK / 2, MAX_GROWTH);
                    if free < want {
                        self.read.reserve(want.max(READ_CHUNK));
                    }
                    match self.stream.read_buf(&mut self.read).await {
                        Ok(0) => {
                            return Err(Failure {
                                error: io::Error::from(io::ErrorKind::UnexpectedEof).into(),
                                written: true,
                                answered,
                            })
                        }
                        Ok(_) => answered = true,
                        Err(e) => {
                            return Err(Failure {
                                error: e.into(),
                                written: true,
                                answered,
                            })
                        }
                    }
                }
                Err(error) => {
                    return Err(Failure {
                        error,
                        written: true,
                        answered,
                    })
                }
            }
        }
        Ok(match refused {
            Some(error) => Err(error),
            None => Ok(replies),
        })
    }
}

/// One server's pool.
struct Server {
    addr: String,
    /// `addr` resolved once, when the client was made.
    resolved: Vec<SocketAddr>,
    /// Idle connections, each with the time it was returned.
    idle: Mutex<Vec<(Conn, Instant)>>,
    slots: Semaphore,
}

/// A connection taken from a pool, holding one of its slots. Dropped
/// (cancelled, failed) it closes; [`Checkout::put_back`] returns it.
struct Checkout<'a> {
    server: &'a Server,
    conn: Conn,
    pooled: bool,
    _slot: SemaphorePermit<'a>,
}

impl Checkout<'_> {
    fn put_back(mut self) {
        self.conn.shrink();
        let now = Instant::now();
        let mut idle = self.server.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.push((self.conn, now));
    }
}

/// Pooled connections to each server, and pipelined exchanges on them.
pub(crate) struct MetaClient {
    servers: Box<[Server]>,
    connect_timeout: Duration,
    /// [`MAX_IDLE`], or less in tests.
    max_idle: Duration,
}

impl std::fmt::Debug for MetaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaClient")
            .field(
                "servers",
                &self.servers.iter().map(|s| &s.addr).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl MetaClient {
    /// A client for `addrs` (`host:port` each, resolved now, each within
    /// `connect_timeout`; nothing is dialled until used), with at most
    /// `pool_size` connections per server, each dialled within `connect_timeout`.
    pub(crate) async fn resolve(
        addrs: &[String],
        pool_size: usize,
        connect_timeout: Duration,
    ) -> Result<MetaClient, MetaError> {
        let mut servers = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let failed = |source| MetaError::Resolve {
                addr: addr.clone(),
                source,
            };
            let resolved: Vec<SocketAddr> =
                tokio::time::timeout(connect_timeout, tokio::net::lookup_host(addr.as_str()))
                    .await
                    .map_err(|_| failed(io::ErrorKind::TimedOut.into()))?
                    .map_err(failed)?
                    .collect();
            if resolved.is_empty() {
                return Err(failed(io::ErrorKind::NotFound.into()));
            }
            servers.push(Server {
                addr: addr.clone(),
                resolved,
                idle: Mutex::new(Vec::new()),
                slots: Semaphore::new(pool_size.clamp(1, Semaphore::MAX_PERMITS)),
            });
        }
        Ok(MetaClient {
            servers: servers.into(),
            connect_timeout,
            max_idle: MAX_IDLE,
        })
    }

    async fn checkout(&self, server: usize) -> Result<Checkout<'_>, MetaError> {
        let server = &self.servers[server];
        let slot = match server.slots.try_acquire() {
            Ok(slot) => slot,
            Err(_) => tokio::time::timeout(self.connect_timeout, server.slots.acquire())
                .await
                .map_err(|_| MetaError::PoolExhausted(self.connect_timeout))?
                .map_err(|_| MetaError::Protocol("connection pool closed"))?,
        };
        loop {
            let conn = server.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match conn {
                Some((conn, since)) if since.elapsed() < self.max_idle && conn.is_reusable() => {
                    return Ok(Checkout {
                        server,
                        conn,
                        pooled: true,
                        _slot: slot,
                    })
                }
                Some(_) => continue,
                None => break,
            }
        }
        let conn = Conn::dial(&server.resolved, self.connect_timeout).await?;
        Ok(Checkout {
            server,
            conn,
            pooled: false,
            _slot: slot,
        })
    }

    /// Sends `cmds` to `server` as one pipelined batch; one reply per
    /// command, in order. Fails when there is no connection, the stream
    /// breaks or desynchronises, a key is invalid (then nothing was
    /// written), or the server answers a command with `SERVER_ERROR` (the
    /// first such [`MetaError::Server`]; the connection stays usable).
    pub(crate) async fn exchange(
        &self,
        server: usize,
        cmds: &[Cmd<'_>],
    ) -> Result<Vec<Reply>, MetaError> {
        let mut checkout = self.checkout(server).await?;
        checkout.conn.write.clear();
        for cmd in cmds {
            if let Err(invalid) = cmd.encode(&mut checkout.conn.write) {
                // Nothing was written: the connection is still in step.
                checkout.put_back();
                return Err(invalid);
            }
        }
        loop {
            match checkout.conn.round_trip(cmds.len()).await {
                Ok(replies) => {
                    checkout.put_back();
                    return replies;
                }
                // The server closed this pooled connection while it was idle
                // (the probe can miss a close that is still in flight): sent
                // once more on a new connection, when that cannot repeat an
                // effect: nothing had been written, or every command is
                // repeatable (a count or a delete that ran before the
                // connection broke must not run twice).
                Err(Failure {
                    error,
                    written,
                    answered,
                }) if checkout.pooled
                    && !answered
                    && error.is_stale()
                    && (!written || cmds.iter().all(Cmd::repeatable)) =>
                {
                    let mut fresh =
                        Conn::dial(&checkout.server.resolved, self.connect_timeout).await?;
                    std::mem::swap(&mut fresh.write, &mut checkout.conn.write);
                    checkout.conn = fresh;
                    checkout.pooled = false;
                }
                Err(Failure { error, .. }) => return Err(error),
            }
        }
    }

    /// One command on `server`.
    pub(crate) async fn one(&self, server: usize, cmd: Cmd<'_>) -> Result<Reply, MetaError> {
        self.exchange(server, std::slice::from_ref(&cmd))
            .await?
            .pop()
            .ok_or(MetaError::Protocol("missing reply"))
    }

    /// `mn` on `server`.
    pub(crate) async fn noop(&self, server: usize) -> Result<(), MetaError> {
        match self.one(server, Cmd::Noop).await?.code {
            Code::Noop => Ok(()),
            _ => Err(MetaError::Protocol("mn was not answered with MN")),
        }
    }

    /// One command per server, all servers at once (one round trip in total).
    pub(crate) async fn on_every_server<'c>(
        &self,
        cmd: impl Fn(usize) -> Cmd<'c>,
    ) -> Vec<Result<Reply, MetaError>> {
        join_all(
            (0..self.servers.len())
                .map(|server| self.one(server, cmd(server)))
                .collect(),
        )
        .await
    }
}

/// Polls every future until all are done; outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => done = false,
                }
            }
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn encoded(cmd: Cmd<'_>) -> Result<String, MetaError> {
        let mut out = Vec::new();
        cmd.encode(&mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn reply(buf: &[u8]) -> (Result<Reply, MetaError>, usize) {
        match parse(buf) {
            Ok(Parsed::Reply(reply, taken)) => (reply, taken),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn commands_encode_as_the_protocol_spells_them() -> Result<(), MetaError> {
        assert_eq!(encoded(Cmd::get("k"))?, "mg k v f\r\n");
        assert_eq!(encoded(Cmd::probe("k").with_ttl())?, "mg k f t\r\n");
        let touch = Cmd::Get {
            key: "g".into(),
            value: false,
            client_flags: false,
            ttl: false,
            touch: Some(0),
        };
        assert_eq!(encoded(touch)?, "mg g T0\r\n");
        let set = Cmd::Set {
            key: "k".into(),
            value: b"a\r\nb",
            client_flags: 4_294_967_295,
            expiry: 0,
        };
        assert_eq!(encoded(set)?, "ms k 4 F4294967295 T0\r\na\r\nb\r\n");
        assert_eq!(encoded(Cmd::Delete { key: "k".into() })?, "md k\r\n");
        let vivify = Cmd::Arith {
            key: "n".into(),
            delta: 0,
            decrement: false,
            vivify: Some((2_592_000, 1_764_000_000)),
            expiry: Some(0),
        };
        assert_eq!(encoded(vivify)?, "ma n N2592000 J1764000000 D0 T0 v\r\n");
        let refund = Cmd::Arith {
            key: "n".into(),
            delta: 3,
            decrement: true,
            vivify: None,
            expiry: None,
        };
        assert_eq!(encoded(refund)?, "ma n MD D3 v\r\n");
        assert_eq!(encoded(Cmd::Noop)?, "mn\r\n");
        Ok(())
    }

    #[test]
    fn keys_that_could_inject_or_that_memcached_refuses_are_errors() {
        for key in [
            String::new(),
            "a b".to_owned(),
            "a\r\nflush_all".to_owned(),
            "ключ".to_owned(),
            "x".repeat(251),
        ] {
            assert!(
                matches!(
                    encoded(Cmd::get(key.clone())),
                    Err(MetaError::InvalidKey(_))
                ),
                "{key:?}"
            );
        }
        assert!(encoded(Cmd::get("x".repeat(250))).is_ok());
    }

    #[test]
    fn replies_parse_with_their_flags_and_values() {
        let (r, taken) = reply(b"VA 3 f7 t-1\r\nabc\r\nEN\r\n");
        let r = r.expect("VA");
        assert_eq!(taken, 18);
        assert!(r.hit());
        assert_eq!(r.value.as_deref(), Some(&b"abc"[..]));
        assert_eq!((r.client_flags, r.ttl), (Some(7), Some(-1)));
        let (r, _) = reply(b"EN\r\n");
        assert!(!r.expect("EN").hit());
        let (r, _) = reply(b"HD f9\r\n");
        let r = r.expect("HD");
        assert!(r.hit() && r.applied() && r.client_flags == Some(9));
        let (r, _) = reply(b"VA 2\r\n42\r\n");
        assert_eq!(r.expect("ma").number(), Some(42));
        // Binary values may hold CRLF: the size frames them, not the bytes.
        let (r, _) = reply(b"VA 4 f0\r\n\r\n\r\n\r\n");
        assert_eq!(r.expect("VA").value.as_deref(), Some(&b"\r\n\r\n"[..]));
        let (r, taken) = reply(b"SERVER_ERROR object too large for cache\r\nHD\r\n");
        assert!(r.expect_err("SERVER_ERROR").is_too_large());
        assert_eq!(taken, 41);
    }

    #[test]
    fn partial_replies_ask_for_more_and_garbage_is_fatal() {
        assert!(matches!(
            parse(b"VA 10 f1\r\nabc"),
            Ok(Parsed::Incomplete(22))
        ));
        assert!(matches!(parse(b"HD"), Ok(Parsed::Incomplete(3))));
        assert!(matches!(parse(b""), Ok(Parsed::Incomplete(1))));
        for garbage in [
            &b"XX\r\n"[..],
            b"VA 3\r\nabcde\r\n",
            b"VA x\r\n",
            b"HD f12x\r\n",
            b"HD\n",
            b"CLIENT_ERROR bad command line format\r\n",
        ] {
            assert!(
                parse(garbage).is_err(),
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
        assert!(parse(&[b'x'; MAX_LINE + 1]).is_err());
    }

    /// The fuzz target `memcached_meta`'s chunking property: what the parser
    /// answers must not depend on how TCP cut the bytes. A line past
    /// `MAX_LINE` was refused while its `\n` had not arrived, but accepted
    /// when it came in the same read.
    #[test]
    fn a_reply_line_past_the_limit_is_refused_however_it_arrives() {
        let mut line = b"HD f1 ".to_vec();
        line.resize(MAX_LINE + 10, b'x');
        let cut = line[..MAX_LINE + 1].to_vec();
        line.extend_from_slice(b"\r\n");
        assert!(parse(&cut).is_err(), "the first read of the line");
        assert!(parse(&line).is_err(), "the whole line in one read");
        let mut longest = b"HD f1 ".to_vec();
        longest.resize(MAX_LINE - 1, b'x');
        longest.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&longest), Ok(Parsed::Reply(Ok(_), n)) if n == longest.len()));
    }

    #[test]
    fn every_prefix_of_a_reply_asks_for_more_and_random_bytes_never_panic() {
        let replies: [&[u8]; 5] = [
            b"VA 5 f42 t-1\r\nab\r\nc\r\n",
            b"HD f7 t30\r\n",
            b"EN\r\n",
            b"VA 0 f1\r\n\r\n",
            b"SERVER_ERROR out of memory storing object\r\n",
        ];
        for reply in replies {
            for cut in 0..reply.len() {
                assert!(
                    matches!(parse(&reply[..cut]), Ok(Parsed::Incomplete(n)) if n > cut),
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(reply)
                );
            }
            assert!(matches!(parse(reply), Ok(Parsed::Reply(_, n)) if n == reply.len()));
        }
        // Bounded pseudo-random input, biased towards protocol bytes: any
        // outcome but a panic, and a reply never claims more bytes than there are.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let alphabet = b"VAHDENSX 0123456789ftv\r\n-";
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|i| alphabet[((state >> (i % 8 * 8)) as usize + i) % alphabet.len()])
                .collect();
            if let Ok(Parsed::Reply(_, taken)) = parse(&buf) {
                assert!(taken <= buf.len());
            }
        }
    }

    /// A fake server on loopback: per accepted connection, reads one request
    /// of `mn\r\n` and either answers `MN` or (when `script` says so) closes.
    async fn fake_server(script: Vec<bool>) -> String {
        fake_server_counting(script, Arc::default()).await
    }

    /// A one-connection client of a [`fake_server`] with this script.
    async fn client_of_fake(script: Vec<bool>) -> MetaClient {
        let addr = fake_server(script).await;
        MetaClient::resolve(&[addr], 1, Duration::from_secs(1))
            .await
            .unwrap()
    }

    /// [`fake_server`], counting the connections it accepts in `accepted`.
    async fn fake_server_counting(script: Vec<bool>, accepted: Arc<AtomicUsize>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut script = script.into_iter();
            while let Ok((mut socket, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                // Answer requests on this connection until the script says close.
                let mut buf = [0u8; 4];
                loop {
                    if socket.read_exact(&mut buf).await.is_err() {
                        break;
                    }
                    match script.next() {
                        Some(true) => socket.write_all(b"MN\r\n").await.unwrap(),
                        _ => break,
                    }
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_pooled_connection_closed_before_answering_is_redialled_once() {
        // Answer, then close the (now pooled) connection on the next request,
        // then answer on the new connection.
        let client = client_of_fake(vec![true, false, true]).await;
        client.noop(0).await.expect("first exchange");
        client.noop(0).await.expect("resent on a fresh connection");
    }

    #[tokio::test]
    async fn a_fresh_connection_that_fails_is_an_error_not_a_retry() {
        let client = client_of_fake(vec![false, true]).await;
        let err = client.noop(0).await.expect_err("closed without an answer");
        assert!(err.is_stale(), "{err}");
    }

    #[tokio::test]
    async fn a_count_or_delete_written_to_a_connection_that_then_closes_is_not_repeated() {
        // Answer `mn`, close on the `md` (after reading it), then answer on a new connection.
        let client = client_of_fake(vec![true, false, true]).await;
        client.noop(0).await.expect("first exchange");
        let delete = Cmd::Delete { key: "k".into() };
        let err = client
            .one(0, delete)
            .await
            .expect_err("may have run: not resent");
        assert!(err.is_stale(), "{err}");
        client.noop(0).await.expect("the next call dials afresh");
    }

    #[tokio::test]
    async fn connections_idle_past_the_limit_are_dialled_afresh() {
        let accepted = Arc::new(AtomicUsize::new(0));
        let addr = fake_server_counting(vec![true; 6], Arc::clone(&accepted)).await;
        let mut client = MetaClient::resolve(&[addr], 1, Duration::from_secs(1))
            .await
            .unwrap();
        for _ in 0..3 {
            client.noop(0).await.unwrap();
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "reused within the limit"
        );
        client.max_idle = Duration::ZERO;
        for _ in 0..3 {
            client.noop(0).await.unwrap();
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            4,
            "one dial per call past the limit"
        );
    }
}

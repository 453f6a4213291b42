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
//!
//! The files: `command.rs` builds the commands and checks keys, `reply.rs`
//! parses what the server sends back (and holds the fuzzing hook),
//! `connection.rs` is one TCP connection and its round trip, `pool.rs` the
//! per-server pools and [`MetaClient`], what the backend calls.

use std::io;
use std::time::Duration;

mod command;
mod connection;
mod pool;
mod reply;

#[doc(hidden)]
pub use reply::__fuzz;

pub(crate) use command::{is_valid_key, Cmd, Store, MAX_KEY_LEN};
pub(crate) use pool::MetaClient;
pub(crate) use reply::Reply;

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

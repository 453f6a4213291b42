//! Memcached over the meta protocol (feature `memcached`): see [`MemcachedBackend`].
//!
//! [`MemcachedBackend`] is a cacheside [`Backend`](cache_core::Backend) on
//! one or more memcached servers: each key goes to one server by rendezvous
//! hashing, `clear` bumps per-namespace generation counters instead of
//! sending `flush_all`, and a small meta-protocol client of its own carries
//! the commands, pipelined, over pooled connections.
//!
//! How the files fit:
//! * `backend.rs`: the type, `connect`, the `Backend` impl, and startup from
//!   a [`Config`](cache_core::Config) (`CACHE_BACKEND=memcached`, `auto`).
//! * `options.rs`: [`MemcachedOptions`], and what a `Config` asks of this
//!   backend (the one place its fields are read).
//! * `keys.rs`: what is sent for a key ([`memcached_wire_key`]), the keys of
//!   generations and counters, and the expiry of a TTL.
//! * `ring.rs`: the servers, and which one holds a key.
//! * `fencing.rs`: `invalidate` by tombstone, fenced reads (the CAS value)
//!   and the conditional writes of fenced fills.
//! * `generations.rs`: the generations behind `clear`: reading them with an
//!   entry, creating and repairing them, and what a backend remembers of them.
//! * `meta/`: the protocol client (commands, replies, connections, pools).

mod backend;
mod fencing;
mod generations;
mod keys;
mod meta;
mod options;
mod ring;

pub use backend::connect_memcached;
pub use backend::MemcachedBackend;
pub use keys::memcached_wire_key;
#[doc(hidden)]
pub use meta::__fuzz as __fuzz_memcached_meta;
pub use options::{MemcachedConfig, MemcachedOptions};

pub(crate) use backend::start;

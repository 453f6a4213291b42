//! Real servers for tests, the conformance suite every backend must pass, and
//! store faults on demand (feature `testing`).
//!
//! [`Faulty`] wraps any [`Backend`](crate::backend::Backend) and makes chosen operations
//! slow, failing, hanging or corrupt while a test runs, to check that your code
//! fails open (see [`Fault`]):
//!
//! ```
//! use cacheside::testing::{Fault, Faulty, Op};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = Faulty::memory(); // or Faulty::new(your_backend)
//! let cache = cacheside::Cache::builder(store.clone()).build();
//! store.inject(Op::Get, Fault::Error);
//! assert_eq!(cache.get_or_set("k", None, || async { 1u8 }).await.unwrap(), 1);
//! assert_eq!(store.calls(Op::Get), 1);
//! # }
//! ```
//!
//! The launchers start real `redis-server` and `memcached` processes on free
//! loopback ports, wait until they answer, and stop them on drop. A missing
//! binary is a panic that names the `apt-get` command, never a silent skip.
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn demo() {
//! let server = cacheside::testing::RedisServer::start();
//! println!("redis on {}", server.url());
//! # }
//! ```

mod process;
pub use process::{free_port, require_binary, ServerProcess};

pub mod conformance;
pub use cache_core::testing::{Fault, Faulty, MapStore, Op};
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use redis::{
    redis_command, RedisCluster, RedisSentinelGroup, RedisServer, Reply, SENTINEL_MASTER_NAME,
};
#[cfg(feature = "memcached")]
mod memcached;
#[cfg(feature = "memcached")]
pub use memcached::MemcachedServer;

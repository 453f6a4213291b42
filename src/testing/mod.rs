//! Real servers for tests, and the conformance suite every backend must pass (feature `testing`).
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
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use redis::{redis_command, RedisCluster, RedisServer, Reply};
#[cfg(feature = "memcached")]
mod memcached;
#[cfg(feature = "memcached")]
pub use memcached::MemcachedServer;

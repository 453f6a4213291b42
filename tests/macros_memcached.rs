//! The `#[cache]` / `#[invalidate]` suite against a real `memcached` started on
//! a free loopback port for this test binary. Memcached cannot delete by
//! pattern: the suite checks that the exact keys still go.

mod common;
mod macro_suite;

use cacheside::backends::MemcachedBackend;
use cacheside::testing::MemcachedServer;
use cacheside::Cache;

const PATTERNS: bool = false;

async fn global() -> &'static Cache {
    static SERVER: std::sync::OnceLock<MemcachedServer> = std::sync::OnceLock::new();
    macro_suite::global_over(|| async {
        let server = SERVER.get_or_init(MemcachedServer::start);
        MemcachedBackend::connect([server.addr()])
            .await
            .expect("connect to the test memcached")
    })
    .await
}

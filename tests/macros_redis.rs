//! The `#[cache]` / `#[invalidate]` suite against a real `redis-server`
//! started on a free loopback port for this test binary.

mod common;
mod macro_suite;

use cacheside::backends::RedisBackend;
use cacheside::testing::RedisServer;
use cacheside::Cache;

const PATTERNS: bool = true;

async fn global() -> &'static Cache {
    static SERVER: std::sync::OnceLock<RedisServer> = std::sync::OnceLock::new();
    macro_suite::global_over(|| async {
        let server = SERVER.get_or_init(RedisServer::start);
        RedisBackend::connect(&server.url())
            .await
            .expect("connect to the test redis-server")
    })
    .await
}

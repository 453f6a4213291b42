//! The `#[cache]` / `#[invalidate]` suite against a real `redis-server`
//! started on a free loopback port for this test binary.

mod common;
mod macro_suite;

use cacheside::backends::RedisBackend;
use cacheside::testing::RedisServer;
use cacheside::Cache;
use tokio::sync::OnceCell;

const PATTERNS: bool = true;

async fn global() -> &'static Cache {
    static SERVER: std::sync::OnceLock<RedisServer> = std::sync::OnceLock::new();
    static CACHE: OnceCell<Cache> = OnceCell::const_new();
    CACHE
        .get_or_init(|| async {
            let server = SERVER.get_or_init(RedisServer::start);
            let backend = RedisBackend::connect(&server.url())
                .await
                .expect("connect to the test redis-server");
            let cache = Cache::builder(backend).namespace("t").build();
            cacheside::init(cache.clone()).expect("first init in this binary");
            cache
        })
        .await
}

//! The `#[cache]` / `#[invalidate]` suite against a real 3-primary Redis Cluster
//! started on free loopback ports for this test binary.

mod common;
mod macro_suite;

use cacheside::backends::RedisClusterBackend;
use cacheside::testing::RedisCluster;
use cacheside::Cache;
use tokio::sync::OnceCell;

const PATTERNS: bool = true;

async fn global() -> &'static Cache {
    static CLUSTER: std::sync::OnceLock<RedisCluster> = std::sync::OnceLock::new();
    static CACHE: OnceCell<Cache> = OnceCell::const_new();
    CACHE
        .get_or_init(|| async {
            let cluster = CLUSTER.get_or_init(|| RedisCluster::start(3));
            let backend = RedisClusterBackend::connect(&cluster.node_urls())
                .await
                .expect("connect to the test cluster");
            let cache = Cache::builder(backend).namespace("t").build();
            cacheside::init(cache.clone()).expect("first init in this binary");
            cache
        })
        .await
}

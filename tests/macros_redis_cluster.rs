//! The `#[cache]` / `#[invalidate]` suite against a real 3-primary Redis Cluster
//! started on free loopback ports for this test binary.

mod common;
mod macro_suite;

use cacheside::backends::RedisClusterBackend;
use cacheside::testing::RedisCluster;
use cacheside::Cache;

const PATTERNS: bool = true;

async fn global() -> &'static Cache {
    static CLUSTER: std::sync::OnceLock<RedisCluster> = std::sync::OnceLock::new();
    macro_suite::global_over(|| async {
        let cluster = CLUSTER.get_or_init(|| RedisCluster::start(3));
        RedisClusterBackend::connect(&cluster.node_urls())
            .await
            .expect("connect to the test cluster")
    })
    .await
}

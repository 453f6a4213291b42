//! The conformance suite against a real 3-primary Redis Cluster.

use std::time::Duration;

use cacheside::backends::RedisClusterBackend;
use cacheside::testing::conformance::{self, Capabilities};
use cacheside::testing::RedisCluster;
use cacheside::{BackendKind, Config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_backend_conforms() {
    let cluster = RedisCluster::start(3);
    let backend = RedisClusterBackend::connect(&cluster.node_urls())
        .await
        .expect("connect to the test cluster");
    conformance::fenced_fills(&conformance::shared_store(
        backend.clone(),
        Duration::from_secs(5),
    ))
    .await;
    conformance::run(
        conformance::shared_store(backend, Duration::from_secs(5)),
        Capabilities {
            patterns: true,
            counters: true,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_delete_and_clear_reach_every_primary() {
    let cluster = RedisCluster::start(3);
    let config = Config::from_lookup(|name| match name {
        "CACHE_BACKEND" => Some("redis-cluster".into()),
        "CACHE_REDIS_CLUSTER_NODES" => Some(cluster.node_urls().join(",")),
        "CACHE_NAMESPACE" => Some("app".into()),
        "CACHE_OP_TIMEOUT_MS" => Some("5000".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(config.backend, BackendKind::RedisCluster);
    let cache = cacheside::backends::connect(&config)
        .await
        .expect("connect from config");
    assert_eq!(cache.backend_name(), "redis-cluster");
    cache.ping().await.unwrap();
    for i in 0..300 {
        cache.set(&format!("page:{i}"), &i, None).await.unwrap();
        cache.set(&format!("keep:{i}"), &i, None).await.unwrap();
    }
    // 300 keys spread over 16384 slots land on every primary.
    for port in cluster.ports() {
        match cluster.command(port, &[b"DBSIZE"]).unwrap() {
            cacheside::testing::Reply::Int(n) => assert!(n > 0, "node {port} holds no key"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(cache.delete_pattern("page:*").await.unwrap(), 300);
    assert_eq!(cluster.key_count(), 300);
    assert_eq!(cache.clear().await.unwrap(), 300);
    assert_eq!(cluster.key_count(), 0);
}

//! A hit through `#[cache]` on Redis and on Memcached vs the raw client's GET
//! plus decode, at 1 and at 64 concurrent tasks, in the same run.
//!
//! Servers are real `redis-server` / `memcached` processes started on free
//! loopback ports (`cacheside::testing`). `scripts/bench.sh` prints the
//! throughput ratios next to `redis-benchmark` figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cacheside::backends::{MemcachedBackend, RedisBackend};
use cacheside::testing::{MemcachedServer, RedisServer};
use cacheside::Cache;
use criterion::{criterion_group, criterion_main, Criterion};
mod common;

use common::{widget, Widget};

#[cacheside::cache(key_prefix = "widget", resource_id = "widget_id", cache = "redis")]
async fn widget_on_redis(widget_id: u64) -> Widget {
    widget(widget_id)
}

#[cacheside::cache(key_prefix = "widget", resource_id = "widget_id", cache = "memcached")]
async fn widget_on_memcached(widget_id: u64) -> Widget {
    widget(widget_id)
}

const RAW_KEY: &str = "raw:widget:7";

/// Runs `op` `iters` times spread over `tasks` concurrent tasks; returns the time `iters` ops took.
async fn concurrent<F, Fut>(iters: u64, tasks: u64, op: F) -> Duration
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per_task = iters.div_ceil(tasks).max(1);
    let op = Arc::new(op);
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                for _ in 0..per_task {
                    op().await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("bench task");
    }
    // Scale to exactly `iters` operations.
    start
        .elapsed()
        .mul_f64(iters as f64 / (per_task * tasks) as f64)
}

fn store_hits(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let redis_server = RedisServer::start();
    let memcached_server = MemcachedServer::start();

    let (raw_redis, raw_mc) = rt.block_on(async {
        let redis_cache = Cache::builder()
            .backend(
                RedisBackend::connect(&redis_server.url())
                    .await
                    .expect("redis"),
            )
            .build();
        cacheside::register("redis", redis_cache);
        let mc_cache = Cache::builder()
            .backend(
                MemcachedBackend::connect([memcached_server.addr()])
                    .await
                    .expect("memcached"),
            )
            .build();
        cacheside::register("memcached", mc_cache);
        // Warm: the measured calls are hits.
        assert_eq!(widget_on_redis(7).await, widget(7));
        assert_eq!(widget_on_memcached(7).await, widget(7));
        let payload = rmp_serde::to_vec_named(&widget(7)).expect("encode");

        let client = redis::Client::open(redis_server.url()).expect("redis url");
        let mut raw_redis = redis::aio::ConnectionManager::new(client)
            .await
            .expect("raw redis");
        redis::cmd("SET")
            .arg(RAW_KEY)
            .arg(&payload)
            .query_async::<()>(&mut raw_redis)
            .await
            .expect("raw set");

        let raw_mc = memcache::exp::AsyncMetaClient::builder()
            .max_idle(4)
            .max_connections(Some(4))
            .connect_async(memcached_server.addr().as_str())
            .await
            .expect("raw memcached");
        raw_mc
            .run(memcache::exp::Set::new(RAW_KEY, &payload))
            .await
            .expect("raw set");
        (raw_redis, Arc::new(raw_mc))
    });

    for tasks in [1u64, 64] {
        let mut group = c.benchmark_group(format!("store_hit/{tasks}"));
        group.measurement_time(Duration::from_secs(4));
        group.bench_function("redis_macro", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                concurrent(iters, tasks, || async {
                    std::hint::black_box(widget_on_redis(7).await);
                })
            })
        });
        group.bench_function("redis_raw", |b| {
            let conn = raw_redis.clone();
            b.to_async(&rt).iter_custom(move |iters| {
                let conn = conn.clone();
                concurrent(iters, tasks, move || {
                    let mut conn = conn.clone();
                    async move {
                        let bytes: Vec<u8> = redis::cmd("GET")
                            .arg(RAW_KEY)
                            .query_async(&mut conn)
                            .await
                            .expect("raw get");
                        std::hint::black_box(
                            rmp_serde::from_slice::<Widget>(&bytes).expect("decode"),
                        );
                    }
                })
            })
        });
        group.bench_function("memcached_macro", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                concurrent(iters, tasks, || async {
                    std::hint::black_box(widget_on_memcached(7).await);
                })
            })
        });
        group.bench_function("memcached_raw", |b| {
            let client = Arc::clone(&raw_mc);
            b.to_async(&rt).iter_custom(move |iters| {
                let client = Arc::clone(&client);
                concurrent(iters, tasks, move || {
                    let client = Arc::clone(&client);
                    async move {
                        let got = client
                            .run(memcache::exp::Get::new(RAW_KEY))
                            .await
                            .expect("raw get");
                        let bytes = got.value.expect("raw hit");
                        std::hint::black_box(
                            rmp_serde::from_slice::<Widget>(&bytes).expect("decode"),
                        );
                    }
                })
            })
        });
        group.finish();
    }
    drop(redis_server);
    drop(memcached_server);
}

criterion_group!(benches, store_hits);
criterion_main!(benches);

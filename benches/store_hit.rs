//! A hit through `#[cache]` on Redis and on Memcached vs the raw client's GET
//! plus decode, at 1 and at 64 concurrent tasks, in the same run.
//!
//! Measured as interleaved pairs, not one function after the other: each
//! round runs the two sides of a comparison back to back (alternating which
//! goes first) for a fixed number of hits, and the ratio of that round's two
//! throughputs is one sample; the figure is the median over the rounds, with
//! its quartiles. On this project's 2-core VMs the throughput of identical
//! code drifts by ±20 % within seconds, which made ratios between criterion
//! functions measured a few seconds apart swing from 0.75 to 1.0 for the
//! *same* client (`redis_raw` vs `redis_raw_nagle` at one task); paired rounds
//! cancel that drift. `scripts/bench.sh` runs this pinned to one core.
//!
//! Servers are real `redis-server` / `memcached` processes started on free
//! loopback ports (`cacheside::testing`). `scripts/bench.sh` prints the
//! throughput ratios next to `redis-benchmark` figures.
//!
//! The raw clients are configured as the backends configure theirs, so that
//! the ratio is what cacheside adds, not a transport setting:
//! * `redis_raw`: a redis-rs `ConnectionManager` with `TCP_NODELAY` and a
//!   response timeout of the cache's op timeout (250 ms), so that each side
//!   bounds a GET with exactly one timer: the raw client's inside redis-rs,
//!   cacheside's in the `Cache` (its backend arms none of its own for
//!   single-key commands). `redis_raw_nagle` is the same client with
//!   redis-rs's defaults (Nagle's algorithm on), for reference: at 64 tasks
//!   the kernel then coalesces the pipelined writes, which is faster on
//!   loopback and not what a latency-bound cache client should do.
//! * `memcached_raw`: the memcache crate's async meta client (what a user
//!   would otherwise call; the backend has its own, leaner client) with the
//!   same pool size and the crate's default I/O timeout (again one timer per
//!   GET on each side: the backend's client has none, the `Cache` bounds the
//!   call). `memcached_macro` uses the default (exact) backend, whose hits
//!   also read the namespace generations; `memcached_macro_refresh` trusts
//!   them for a second (`MemcachedOptions::generation_refresh`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cacheside::backends::{MemcachedBackend, MemcachedOptions, RedisBackend};
use cacheside::testing::{MemcachedServer, RedisServer};
use cacheside::Cache;
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

#[cacheside::cache(
    key_prefix = "widget",
    resource_id = "widget_id",
    cache = "memcached_refresh"
)]
async fn widget_on_memcached_refresh(widget_id: u64) -> Widget {
    widget(widget_id)
}

const RAW_KEY: &str = "raw:widget:7";

/// A raw redis-rs connection to `url` with a 250 ms response timeout; `nodelay`
/// as the backend sets it, or redis-rs's default.
async fn raw_redis_client(url: &str, nodelay: bool) -> redis::aio::ConnectionManager {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info().expect("redis url");
    let info = if nodelay {
        let tcp = info.tcp_settings().clone().set_nodelay(true);
        info.set_tcp_settings(tcp)
    } else {
        info
    };
    let client = redis::Client::open(info).expect("redis client");
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(cacheside::DEFAULT_OP_TIMEOUT));
    redis::aio::ConnectionManager::new_with_config(client, config)
        .await
        .expect("raw redis")
}

/// One side of a comparison: a name and one hit.
struct Side {
    name: &'static str,
    hit: Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>,
}

impl Side {
    fn new<F, Fut>(name: &'static str, hit: F) -> Side
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Side {
            name,
            hit: Arc::new(move || Box::pin(hit())),
        }
    }
}

/// Runs `hits` hits spread over `tasks` concurrent tasks; returns hits per second.
async fn throughput(side: &Side, tasks: u64, hits: u64) -> f64 {
    let per_task = hits.div_ceil(tasks).max(1);
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let hit = Arc::clone(&side.hit);
            tokio::spawn(async move {
                for _ in 0..per_task {
                    hit().await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("bench task");
    }
    (per_task * tasks) as f64 / start.elapsed().as_secs_f64()
}

/// The value at quantile `q` of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// `rounds` paired rounds of `a` and `b`; prints median throughputs and the
/// median (quartiles) of the per-round ratio `a / b`.
async fn compare(a: &Side, b: &Side, tasks: u64, rounds: usize, note: &str) {
    // Size a round to about 0.15 s of the slower side, after a warm-up.
    let warm = throughput(a, tasks, 200)
        .await
        .min(throughput(b, tasks, 200).await);
    let hits = ((warm * 0.15) as u64).max(tasks * 4);
    let (mut ta, mut tb, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (x, y) = if round % 2 == 0 {
            let x = throughput(a, tasks, hits).await;
            (x, throughput(b, tasks, hits).await)
        } else {
            let y = throughput(b, tasks, hits).await;
            (throughput(a, tasks, hits).await, y)
        };
        ta.push(x);
        tb.push(y);
        ratio.push(x / y);
    }
    for v in [&mut ta, &mut tb, &mut ratio] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "  {tasks:>2} tasks {:<24} {:9.0}/s  {:<16} {:9.0}/s  ratio = {:.3} (quartiles {:.3}-{:.3})  {note}",
        a.name,
        quantile(&ta, 0.5),
        b.name,
        quantile(&tb, 0.5),
        quantile(&ratio, 0.5),
        quantile(&ratio, 0.25),
        quantile(&ratio, 0.75),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then one quick round.
    let rounds = if std::env::args().any(|a| a == "--bench") {
        std::env::var("STORE_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30)
    } else {
        1
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let redis_server = RedisServer::start();
    let memcached_server = MemcachedServer::start();
    let (raw_redis, raw_redis_nagle, raw_mc) = rt.block_on(async {
        let redis_cache = Cache::builder(
            RedisBackend::connect(&redis_server.url())
                .await
                .expect("redis"),
        )
        .build();
        cacheside::register("redis", redis_cache);
        let mc_cache = Cache::builder(
            MemcachedBackend::connect([memcached_server.addr()])
                .await
                .expect("memcached"),
        )
        .build();
        cacheside::register("memcached", mc_cache);
        let mc_refresh_cache = Cache::builder(
            MemcachedBackend::connect_with(
                [memcached_server.addr()],
                MemcachedOptions {
                    generation_refresh: Duration::from_secs(1),
                    ..MemcachedOptions::default()
                },
            )
            .await
            .expect("memcached"),
        )
        .build();
        cacheside::register("memcached_refresh", mc_refresh_cache);
        // Warm: the measured calls are hits.
        assert_eq!(widget_on_redis(7).await, widget(7));
        assert_eq!(widget_on_memcached(7).await, widget(7));
        assert_eq!(widget_on_memcached_refresh(7).await, widget(7));
        let payload = rmp_serde::to_vec_named(&widget(7)).expect("encode");

        let mut raw_redis = raw_redis_client(&redis_server.url(), true).await;
        let raw_redis_nagle = raw_redis_client(&redis_server.url(), false).await;
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
        (raw_redis, raw_redis_nagle, Arc::new(raw_mc))
    });

    let redis_get = |name: &'static str, conn: &redis::aio::ConnectionManager| {
        let conn = conn.clone();
        Side::new(name, move || {
            let mut conn = conn.clone();
            async move {
                let bytes: Vec<u8> = redis::cmd("GET")
                    .arg(RAW_KEY)
                    .query_async(&mut conn)
                    .await
                    .expect("raw get");
                std::hint::black_box(rmp_serde::from_slice::<Widget>(&bytes).expect("decode"));
            }
        })
    };
    let redis_raw = redis_get("redis_raw", &raw_redis);
    let redis_raw_nagle = redis_get("redis_raw_nagle", &raw_redis_nagle);
    let redis_macro = Side::new("redis_macro", || async {
        std::hint::black_box(widget_on_redis(7).await);
    });
    let memcached_raw = Side::new("memcached_raw", move || {
        let client = Arc::clone(&raw_mc);
        async move {
            let got = client
                .run(memcache::exp::Get::new(RAW_KEY))
                .await
                .expect("raw get");
            let bytes = got.value.expect("raw hit");
            std::hint::black_box(rmp_serde::from_slice::<Widget>(&bytes).expect("decode"));
        }
    });
    let memcached_macro = Side::new("memcached_macro", || async {
        std::hint::black_box(widget_on_memcached(7).await);
    });
    let memcached_macro_refresh = Side::new("memcached_macro_refresh", || async {
        std::hint::black_box(widget_on_memcached_refresh(7).await);
    });

    // `STORE_BENCH_ONLY=redis` (or `memcached`, `nagle`, `64`): only the comparisons
    // whose description contains every listed word; for quick runs while tuning one path.
    let only = std::env::var("STORE_BENCH_ONLY").unwrap_or_default();
    let wanted = |what: &str| {
        only.split(',')
            .filter(|w| !w.is_empty())
            .all(|w| what.contains(w))
    };
    println!("store hits, {rounds} paired rounds each (throughput = hits per second):");
    rt.block_on(async {
        for tasks in [1u64, 64] {
            let comparisons: [(&Side, &Side, &str); 4] = [
                (&redis_macro, &redis_raw, "target >= 0.90"),
                (
                    &memcached_macro,
                    &memcached_raw,
                    "exact generations (default); target >= 0.90",
                ),
                (
                    &memcached_macro_refresh,
                    &memcached_raw,
                    "generation_refresh = 1 s; target >= 0.90",
                ),
                (
                    &redis_raw,
                    &redis_raw_nagle,
                    "reference: TCP_NODELAY vs redis-rs's default (Nagle)",
                ),
            ];
            for (a, b, note) in comparisons {
                if wanted(&format!("{} {} {tasks} {note}", a.name, b.name)) {
                    compare(a, b, tasks, rounds, note).await;
                }
            }
        }
    });
    drop(redis_server);
    drop(memcached_server);
}

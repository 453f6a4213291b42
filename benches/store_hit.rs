//! A hit through `#[cache]` on Redis and on Memcached vs the raw client's GET
//! plus decode, at 1 and at 64 concurrent tasks, in the same run; and the
//! hybrid setting at 64 tasks: Redis behind the local tier (`.local(..)`) vs
//! redis-rs with its defaults, and a `local = false` function of that cache
//! (the store path) vs the raw client and vs `cached`'s Redis macro.
//!
//! Measured as interleaved pairs (`common/paired.rs`): each round runs the two
//! sides of a comparison back to back (alternating which goes first), and the
//! ratio of that round's two throughputs is one sample; the figure is the
//! median over the rounds, with its quartiles. Every task reads 100 hot ids
//! (`raw:widget:{id}` for the raw clients), each task in its own order.
//! `scripts/bench.sh` runs this pinned to one core.
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
//! * `redis_raw_default`: a `ConnectionManager` with no settings at all, what
//!   the hybrid comparison's user would otherwise write; `cached_redis`: the
//!   `cached` crate's async Redis macro with its defaults.

use std::sync::Arc;
use std::time::Duration;

use cache_core::LocalSettings; // not re-exported by the facade (yet)
use cacheside::backends::{MemcachedBackend, MemcachedOptions, RedisBackend};
use cacheside::testing::{MemcachedServer, RedisServer};
use cacheside::Cache;
mod common;
#[path = "common/paired.rs"]
mod paired;

use common::{widget, Widget};
use paired::{compare, rounds, verdict, Side, HOT_KEYS};

#[cacheside::cache(key_prefix = "widget", resource_id = "widget_id", cache = "redis")]
async fn widget_on_redis(widget_id: u64) -> Widget {
    widget(widget_id)
}

#[cacheside::cache(
    key_prefix = "widget_local",
    resource_id = "widget_id",
    cache = "redis_local"
)]
async fn widget_on_redis_local(widget_id: u64) -> Widget {
    widget(widget_id)
}

#[cacheside::cache(
    key_prefix = "widget_store",
    resource_id = "widget_id",
    cache = "redis_local",
    local = false
)]
async fn widget_on_redis_store(widget_id: u64) -> Widget {
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

/// The error type `cached`'s Redis macro needs (it caches only `Ok`).
#[derive(Debug)]
struct CachedRedisError(#[allow(dead_code)] String);

/// What a `cached` user writes for Redis: the async `#[concurrent_cached]`
/// (4.x's name of `#[io_cached]`) with `redis = true` and its defaults (a
/// multiplexed connection from `CACHED_REDIS_CONNECTION_STRING`, MessagePack).
#[cached::macros::concurrent_cached(
    redis = true,
    ttl_secs = 3600,
    map_error = r##"|e| CachedRedisError(format!("{e:?}"))"##
)]
async fn widget_on_cached_redis(widget_id: u64) -> Result<Widget, CachedRedisError> {
    Ok(widget(widget_id))
}

fn raw_key(id: u64) -> String {
    format!("raw:widget:{id}")
}

/// A comparison: sides, the task counts it runs at, a note, and its target
/// (`a / b` at least this much) when it has one.
struct Comparison<'a> {
    a: &'a Side,
    b: &'a Side,
    tasks: &'static [u64],
    note: &'static str,
    target: Option<f64>,
}

fn main() {
    let rounds = rounds("STORE_BENCH_ROUNDS");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let redis_server = RedisServer::start();
    let memcached_server = MemcachedServer::start();
    // Where `cached`'s Redis macro connects (read on its first call).
    std::env::set_var("CACHED_REDIS_CONNECTION_STRING", redis_server.url());
    let (raw_redis, raw_redis_nagle, raw_redis_default, raw_mc) = rt.block_on(async {
        let redis_cache = Cache::builder(
            RedisBackend::connect(&redis_server.url())
                .await
                .expect("redis"),
        )
        .build();
        cacheside::register("redis", redis_cache);
        // The hybrid setting: Redis behind a local tier of decoded values (no
        // backplane: coherent within this one process only, enough here).
        let redis_local_cache = Cache::builder(
            RedisBackend::connect(&redis_server.url())
                .await
                .expect("redis"),
        )
        .local(LocalSettings::default())
        .build();
        cacheside::register("redis_local", redis_local_cache);
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

        let mut raw_redis = raw_redis_client(&redis_server.url(), true).await;
        let raw_redis_nagle = raw_redis_client(&redis_server.url(), false).await;
        // redis-rs exactly as its docs show it: no settings at all.
        let raw_redis_default = redis::aio::ConnectionManager::new(
            redis::Client::open(redis_server.url()).expect("redis client"),
        )
        .await
        .expect("raw redis");
        let raw_mc = memcache::exp::AsyncMetaClient::builder()
            .max_idle(4)
            .max_connections(Some(4))
            .connect_async(memcached_server.addr().as_str())
            .await
            .expect("raw memcached");
        // Warm: the measured calls are hits, on every hot id.
        for id in 0..HOT_KEYS {
            assert_eq!(widget_on_redis(id).await, widget(id));
            assert_eq!(widget_on_redis_local(id).await, widget(id));
            assert_eq!(widget_on_redis_store(id).await, widget(id));
            assert_eq!(
                widget_on_cached_redis(id).await.expect("cached"),
                widget(id)
            );
            assert_eq!(widget_on_memcached(id).await, widget(id));
            assert_eq!(widget_on_memcached_refresh(id).await, widget(id));
            let payload = rmp_serde::to_vec_named(&widget(id)).expect("encode");
            redis::cmd("SET")
                .arg(raw_key(id))
                .arg(&payload)
                .query_async::<()>(&mut raw_redis)
                .await
                .expect("raw set");
            raw_mc
                .run(memcache::exp::Set::new(raw_key(id), &payload))
                .await
                .expect("raw set");
        }
        (
            raw_redis,
            raw_redis_nagle,
            raw_redis_default,
            Arc::new(raw_mc),
        )
    });

    let redis_get = |name: &'static str, conn: &redis::aio::ConnectionManager| {
        let conn = conn.clone();
        Side::new(name, move |id| {
            let mut conn = conn.clone();
            async move {
                let bytes: Vec<u8> = redis::cmd("GET")
                    .arg(raw_key(id))
                    .query_async(&mut conn)
                    .await
                    .expect("raw get");
                std::hint::black_box(rmp_serde::from_slice::<Widget>(&bytes).expect("decode"));
            }
        })
    };
    let redis_raw = redis_get("redis_raw", &raw_redis);
    let redis_raw_nagle = redis_get("redis_raw_nagle", &raw_redis_nagle);
    let redis_raw_default = redis_get("redis_raw_default", &raw_redis_default);
    let redis_macro = Side::new("redis_macro", |id| async move {
        std::hint::black_box(widget_on_redis(id).await);
    });
    let redis_local = Side::new("redis_local_tier", |id| async move {
        std::hint::black_box(widget_on_redis_local(id).await);
    });
    let redis_store = Side::new("redis_local_false", |id| async move {
        std::hint::black_box(widget_on_redis_store(id).await);
    });
    let cached_redis = Side::new("cached_redis", |id| async move {
        std::hint::black_box(widget_on_cached_redis(id).await.expect("cached hit"));
    });
    let memcached_raw = Side::new("memcached_raw", move |id| {
        let client = Arc::clone(&raw_mc);
        async move {
            let got = client
                .run(memcache::exp::Get::new(raw_key(id)))
                .await
                .expect("raw get");
            let bytes = got.value.expect("raw hit");
            std::hint::black_box(rmp_serde::from_slice::<Widget>(&bytes).expect("decode"));
        }
    });
    let memcached_macro = Side::new("memcached_macro", |id| async move {
        std::hint::black_box(widget_on_memcached(id).await);
    });
    let memcached_macro_refresh = Side::new("memcached_macro_refresh", |id| async move {
        std::hint::black_box(widget_on_memcached_refresh(id).await);
    });

    const BOTH: &[u64] = &[1, 64];
    const MANY: &[u64] = &[64];
    let comparisons = [
        Comparison {
            a: &redis_macro,
            b: &redis_raw,
            tasks: BOTH,
            note: "Redis, no local tier",
            target: Some(0.90),
        },
        Comparison {
            a: &memcached_macro,
            b: &memcached_raw,
            tasks: BOTH,
            note: "exact generations (default)",
            target: Some(0.90),
        },
        Comparison {
            a: &memcached_macro_refresh,
            b: &memcached_raw,
            tasks: BOTH,
            note: "generation_refresh = 1 s",
            target: Some(0.90),
        },
        Comparison {
            a: &redis_raw,
            b: &redis_raw_nagle,
            tasks: BOTH,
            note: "reference: TCP_NODELAY vs redis-rs's default (Nagle)",
            target: None,
        },
        Comparison {
            a: &redis_local,
            b: &redis_raw_default,
            tasks: MANY,
            note: "hybrid: local tier over Redis vs redis-rs with its defaults",
            target: Some(10.0),
        },
        Comparison {
            a: &redis_store,
            b: &redis_raw,
            tasks: MANY,
            note: "hybrid: local = false (store path)",
            target: Some(0.95),
        },
        Comparison {
            a: &redis_store,
            b: &cached_redis,
            tasks: MANY,
            note: "hybrid: local = false vs cached's Redis macro",
            target: Some(1.0),
        },
    ];

    // `STORE_BENCH_ONLY=redis` (or `memcached`, `nagle`, `64`, `hybrid`): only the comparisons
    // whose description contains every listed word; for quick runs while tuning one path.
    let only = std::env::var("STORE_BENCH_ONLY").unwrap_or_default();
    let wanted = |what: &str| {
        only.split(',')
            .filter(|w| !w.is_empty())
            .all(|w| what.contains(w))
    };
    println!("store hits, {rounds} paired rounds each (throughput = hits per second, {HOT_KEYS} hot keys):");
    let mut verdicts = Vec::new();
    rt.block_on(async {
        for tasks in [1u64, 64] {
            for c in comparisons.iter().filter(|c| c.tasks.contains(&tasks)) {
                let what = format!("{} {} {tasks} {}", c.a.name, c.b.name, c.note);
                if !wanted(&what) {
                    continue;
                }
                let note = match c.target {
                    Some(t) => format!("{}; target >= {t:.2}", c.note),
                    None => c.note.to_string(),
                };
                let p = compare(c.a, c.b, tasks, rounds, &note).await;
                if let Some(t) = c.target {
                    verdicts.push(format!(
                        "target: {} / {} at {tasks} tasks ({}) = {:.3} (>= {t:.2}: {})",
                        c.a.name,
                        c.b.name,
                        c.note,
                        p.ratio,
                        verdict(p.ratio, t, true)
                    ));
                }
            }
        }
    });
    for v in verdicts {
        println!("{v}");
    }
    drop(redis_server);
    drop(memcached_server);
}

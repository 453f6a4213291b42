//! Memcached failures: crash, freeze, garbage, oversized values, one of two servers lost.
//!
//! Every test starts its own `memcached` processes on free loopback ports.
//! Waits are bounded polls; no sleep is used as a timing assertion.

mod common;
use common::{clear_works_again, eventually, finishes};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_backends::{MemcachedBackend, MemcachedOptions};
use cacheside::backend::{Backend, Bytes, Key};
use cacheside::testing::MemcachedServer;
use cacheside::{BreakerSettings, Cache, Error};

const OP_TIMEOUT: Duration = Duration::from_millis(100);

async fn backend(addrs: &[String]) -> MemcachedBackend {
    MemcachedBackend::connect_with(
        addrs,
        MemcachedOptions {
            connect_timeout: OP_TIMEOUT,
            io_timeout: OP_TIMEOUT,
            ..MemcachedOptions::default()
        },
    )
    .await
    .expect("connect to the test memcached")
}

/// A backend of one server with `pool_size` connections, defaults otherwise.
async fn with_pool(addr: &str, pool_size: usize) -> MemcachedBackend {
    MemcachedBackend::connect_with(
        [addr],
        MemcachedOptions {
            pool_size,
            ..MemcachedOptions::default()
        },
    )
    .await
    .expect("connect to the test memcached")
}

fn cache_with(backend: MemcachedBackend, breaker: BreakerSettings) -> Cache {
    Cache::builder(backend)
        .namespace("faults")
        .op_timeout(OP_TIMEOUT)
        .breaker(breaker)
        .build()
}

fn value_for(key: &str) -> String {
    format!("value-of-{key}")
}

// The annotated functions under load, one per test (each test registers its own cache).
#[cacheside::cache(key = "{key}", cache = "mc-faults-kill")]
async fn value_during_kill(key: String) -> String {
    value_for(&key)
}

#[cacheside::cache(key = "{key}", cache = "mc-faults-stop")]
async fn value_during_stop(key: String) -> String {
    value_for(&key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_load_stays_correct_and_recovers_after_restart() {
    const TASKS: u64 = 50;
    const CALLS: u64 = 200; // 10,000 in all
    let mut server = MemcachedServer::start();
    let cache = cache_with(
        backend(&[server.addr()]).await,
        BreakerSettings {
            threshold: 5,
            cooldown: Duration::from_millis(200),
        },
    );
    cacheside::register("mc-faults-kill", cache.clone());
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    // Half of the workers hold at their 100th call until the kill has happened,
    // so that the kill lands mid-load however the scheduler runs the others.
    let (killed_tx, killed_rx) = tokio::sync::watch::channel(false);
    for t in 0..TASKS {
        let done = done.clone();
        let mut killed = killed_rx.clone();
        tasks.spawn(async move {
            for i in 0..CALLS {
                if t % 2 == 0 && i == CALLS / 2 {
                    killed
                        .wait_for(|k| *k)
                        .await
                        .expect("the test holds the sender");
                }
                let key = format!("k{}", (t * 7 + i) % 500);
                let expected = value_for(&key);
                let got = value_during_kill(key.clone()).await;
                assert_eq!(got, expected, "wrong value for {key}");
                done.fetch_add(1, Ordering::Relaxed);
                if i % 16 == 0 {
                    tokio::task::yield_now().await; // let the killer run on a busy runtime
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::Relaxed) < 2_000 {
        assert!(
            Instant::now() < deadline,
            "2,000 calls did not complete within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.kill();
    let done_at_kill = done.load(Ordering::Relaxed);
    killed_tx.send_replace(true);
    let errors_before = cache.stats().errors;
    while let Some(r) = tasks.join_next().await {
        r.expect("a worker panicked: a call returned a wrong value");
    }
    assert_eq!(done.load(Ordering::Relaxed), TASKS * CALLS);
    eprintln!(
        "killed after {done_at_kill} calls; stats at the end: {:?}",
        cache.stats()
    );
    assert!(done_at_kill < TASKS * CALLS, "the kill must land mid-load");
    assert!(
        cache.stats().errors > errors_before,
        "calls after the kill must have met the dead store: {:?}",
        cache.stats()
    );

    server.restart();
    let hits_before = cache.stats().hits;
    eventually("hits after restart", Duration::from_secs(10), || {
        let cache = cache.clone();
        async move {
            let _ = cache.set("probe", "p", None).await;
            matches!(cache.get::<String>("probe").await, Ok(Some(v)) if v == "p")
        }
    })
    .await;
    assert!(cache.stats().hits > hits_before);
    let v: String = cache
        .get_or_set("k1", None, || async { value_for("k1") })
        .await
        .unwrap();
    assert_eq!(v, value_for("k1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_fails_open_then_the_breaker_makes_calls_cheap() {
    let server = MemcachedServer::start();
    let cache = cache_with(
        backend(&[server.addr()]).await,
        BreakerSettings {
            threshold: 5,
            cooldown: Duration::from_secs(2),
        },
    );
    cache.set("warm", "w", None).await.unwrap();
    cacheside::register("mc-faults-stop", cache.clone());
    server.pause();

    // Each call completes within one op timeout (the body takes no time);
    // SLACK covers scheduling on 2 cores, the point is that nothing hangs.
    const SLACK: Duration = Duration::from_millis(400);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..20 {
        tasks.spawn(async move {
            let key = format!("frozen{t}");
            let started = Instant::now();
            let got = value_during_stop(key.clone()).await;
            let took = started.elapsed();
            assert_eq!(got, value_for(&key));
            took
        });
    }
    while let Some(r) = tasks.join_next().await {
        let took = r.expect("a call on a frozen store returned a wrong value");
        assert!(
            took <= OP_TIMEOUT + SLACK,
            "a call took {took:?} with the store paused; the bound is the op timeout ({OP_TIMEOUT:?}) plus the body"
        );
    }

    eventually("circuit open", Duration::from_secs(10), || {
        let cache = cache.clone();
        async move {
            matches!(
                cache.get::<String>("warm").await,
                Err(Error::CircuitOpen { .. })
            )
        }
    })
    .await;
    let mut costs = Vec::with_capacity(50);
    for i in 0..50 {
        let key = format!("open{i}");
        let started = Instant::now();
        let got = value_during_stop(key.clone()).await;
        costs.push(started.elapsed());
        assert_eq!(got, value_for(&key));
    }
    costs.sort();
    let median = costs[costs.len() / 2];
    assert!(
        median < OP_TIMEOUT / 10,
        "with the circuit open a call must not wait for the store: median {median:?}"
    );

    server.resume();
    eventually(
        "store answers after resume",
        Duration::from_secs(10),
        || {
            let cache = cache.clone();
            async move { matches!(cache.get::<String>("warm").await, Ok(Some(v)) if v == "w") }
        },
    )
    .await;
}

/// The exchanges no `Cache` timer covers carry the backend's `io_timeout`:
/// `clear` on a frozen server fails at that bound, not at the cache's 30 s
/// bulk timeout, and connecting to a frozen server is an error, not a hang.
/// (The timeout's own figure says which bound fired.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_fails_clear_and_connect_at_the_io_timeout() {
    let server = MemcachedServer::start();
    let cache = cache_with(backend(&[server.addr()]).await, BreakerSettings::default());
    cache
        .set("a", &1u32, None)
        .await
        .expect("answers before the pause");
    server.pause();
    match cache.clear().await {
        Err(Error::Timeout { after, .. }) => assert_eq!(after, OP_TIMEOUT),
        other => panic!("clear on a frozen server: expected the io timeout, got {other:?}"),
    }
    let connecting = MemcachedBackend::connect_with(
        [server.addr()],
        MemcachedOptions {
            connect_timeout: OP_TIMEOUT,
            io_timeout: OP_TIMEOUT,
            ..MemcachedOptions::default()
        },
    );
    match finishes("connect to a frozen server", connecting).await {
        Err(Error::Timeout { after, .. }) => assert_eq!(after, OP_TIMEOUT),
        other => panic!("connect to a frozen server: expected the io timeout, got {other:?}"),
    }
    server.resume();
    clear_works_again(&cache, "a").await;
}

/// A `clear` that times out on one server still took effect on the others,
/// and this backend must read their generations afresh: its own clear is
/// seen at once, even when it trusts generations for a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_that_times_out_on_one_server_is_still_seen_on_the_others() {
    let healthy = MemcachedServer::start();
    let frozen = MemcachedServer::start();
    let backend = MemcachedBackend::connect_with(
        [healthy.addr(), frozen.addr()],
        MemcachedOptions {
            connect_timeout: OP_TIMEOUT,
            io_timeout: OP_TIMEOUT,
            generation_refresh: Duration::from_secs(600),
            ..MemcachedOptions::default()
        },
    )
    .await
    .expect("connect to the test memcached servers");
    let cache = cache_with(backend.clone(), BreakerSettings::default());
    let key = (0..100)
        .map(|i| format!("k{i}"))
        .find(|k| backend.server_for(&cache.full_key(k)) == healthy.addr())
        .expect("some key lives on the healthy server");
    cache.set(&key, &1u32, None).await.expect("set");
    assert_eq!(cache.get::<u32>(&key).await.unwrap(), Some(1));
    frozen.pause();
    assert!(matches!(cache.clear().await, Err(Error::Timeout { .. })));
    assert_eq!(
        cache.get::<u32>(&key).await.unwrap(),
        None,
        "the healthy server took the clear; this backend must not trust what it read before"
    );
    frozen.resume();
}

#[tokio::test]
async fn garbage_bytes_read_as_a_miss_and_count_an_error() {
    let server = MemcachedServer::start();
    let cache = cache_with(backend(&[server.addr()]).await, BreakerSettings::default());
    // Another process writes raw bytes (no envelope) under the same key.
    let raw = backend(&[server.addr()]).await;
    let key = Key::new("faults:g", "faults:".len());
    raw.set(key, Bytes::from_static(b"\xff\x00garbage\r\nEND\r\n"), None)
        .await
        .unwrap();
    let errors = cache.stats().errors;
    assert_eq!(cache.get::<String>("g").await.unwrap(), None);
    assert!(cache.stats().errors > errors, "{:?}", cache.stats());
    assert!(
        !raw.exists(key).await.unwrap(),
        "the undecodable entry is deleted"
    );
    // The next write replaces it.
    let v: String = cache
        .get_or_set("g", None, || async { "fresh".to_owned() })
        .await
        .unwrap();
    assert_eq!(v, "fresh");
    assert_eq!(
        cache.get::<String>("g").await.unwrap().as_deref(),
        Some("fresh")
    );
}

#[tokio::test]
async fn five_mib_value_is_refused_by_set_and_skipped_by_get_or_set() {
    let server = MemcachedServer::start();
    let cache = cache_with(backend(&[server.addr()]).await, BreakerSettings::default());
    let big = "x".repeat(5 * 1024 * 1024);
    match cache.set("big", &big, None).await {
        Err(Error::ValueTooLarge { size, limit }) => {
            assert!(size > 5 * 1024 * 1024);
            assert!(limit <= 1024 * 1024, "the server's limit applies: {limit}");
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    assert!(!cache.exists("big").await.unwrap(), "nothing was written");
    let skipped = cache.stats().skipped;
    let got: String = cache
        .get_or_set("big2", None, || async { big.clone() })
        .await
        .unwrap();
    assert_eq!(got.len(), big.len());
    assert!(cache.stats().skipped > skipped);
    assert!(
        !cache.exists("big2").await.unwrap(),
        "a skipped value is not stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_spread_keys_and_survive_losing_one() {
    let a = MemcachedServer::start();
    let mut b = MemcachedServer::start();
    let addrs = [a.addr(), b.addr()];
    let cache = cache_with(backend(&addrs).await, BreakerSettings::default());
    let router = backend(&addrs).await; // same list, same routing: tells where each key lives
    let keys: Vec<String> = (0..200).map(|i| format!("spread:{i}")).collect();
    let mut on_a = Vec::new();
    for key in &keys {
        cache.set(key, &value_for(key), None).await.unwrap();
        if router.server_for(&cache.full_key(key)) == a.addr() {
            on_a.push(key.clone());
        }
    }
    assert!(
        (40..160).contains(&on_a.len()),
        "keys must spread over both servers: {} of 200 on the first",
        on_a.len()
    );
    // Each server really holds its share.
    let only_a = backend(&[a.addr()]).await;
    let only_b = backend(&[b.addr()]).await;
    for key in &keys {
        let full = cache.full_key(key);
        let k = Key::new(&full, "faults:".len());
        let (on, off) = if on_a.contains(key) {
            (&only_a, &only_b)
        } else {
            (&only_b, &only_a)
        };
        assert!(on.exists(k).await.unwrap(), "{key} on its server");
        assert!(!off.exists(k).await.unwrap(), "{key} not on the other");
    }

    b.kill();
    for key in &on_a {
        assert_eq!(
            cache.get::<String>(key).await.unwrap(),
            Some(value_for(key)),
            "{key} lives on the surviving server"
        );
    }
    // Keys of the dead server fail open.
    for key in keys.iter().filter(|k| !on_a.contains(k)).take(10) {
        let v: String = cache
            .get_or_set(key, None, || async { value_for(key) })
            .await
            .unwrap();
        assert_eq!(v, value_for(key));
    }
}

#[tokio::test]
async fn a_cancelled_call_never_desynchronises_the_pool() {
    let server = MemcachedServer::start();
    // One connection, so a connection returned half-read would be reused at once.
    let backend = with_pool(&server.addr(), 1).await;
    let k1 = Key::plain("cancel:1");
    let k2 = Key::plain("cancel:2");
    backend
        .set(k1, Bytes::from_static(b"one"), None)
        .await
        .unwrap();
    backend
        .set(k2, Bytes::from_static(b"two"), None)
        .await
        .unwrap();
    server.pause();
    // The request for k1 is written, its answer is still queued when the future is dropped.
    let cancelled = tokio::time::timeout(Duration::from_millis(50), backend.get(k1)).await;
    assert!(cancelled.is_err(), "a frozen server cannot answer");
    server.resume();
    for _ in 0..20 {
        assert_eq!(backend.get(k2).await.unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(backend.get(k1).await.unwrap().as_deref(), Some(&b"one"[..]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_to_a_restarted_server_are_replaced_before_use() {
    let mut server = MemcachedServer::start();
    let backend = with_pool(&server.addr(), 4).await;
    // Fill the pool: concurrent calls each take a connection of their own.
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..32 {
        let backend = backend.clone();
        calls.spawn(async move {
            let key = format!("restart:{i}");
            backend
                .set(Key::plain(&key), Bytes::from(key.clone()), None)
                .await
        });
    }
    for stored in calls.join_all().await {
        stored.unwrap();
    }
    server.restart();
    // Every pooled connection is now closed by the old process: not one
    // call may fail because of it, sequential or concurrent.
    let key = Key::plain("restart:after");
    for _ in 0..4 {
        assert_eq!(
            backend.get(key).await.unwrap(),
            None,
            "the restart emptied the server"
        );
    }
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..16 {
        let backend = backend.clone();
        calls.spawn(async move {
            let key = format!("restart:again:{i}");
            backend
                .set(Key::plain(&key), Bytes::from(key.clone()), None)
                .await?;
            backend.get(Key::plain(&key)).await
        });
    }
    for got in calls.join_all().await {
        assert!(got.unwrap().is_some());
    }
}

// ---- Startup: a broken setup fails fast and names the variable; an unreachable store starts. ----

/// Generous bound on a startup that must not wait or retry, against a local server.
const FAST: Duration = Duration::from_secs(2);

fn memcached_config(servers: &str) -> cacheside::Config {
    cacheside::Config::from_lookup(|name| match name {
        "CACHE_BACKEND" => Some("memcached".into()),
        "CACHE_MEMCACHED_SERVERS" => Some(servers.to_owned()),
        _ => None,
    })
    .expect("a valid configuration")
}

async fn connect_timed(config: &cacheside::Config) -> (Result<Cache, Error>, Duration) {
    let started = Instant::now();
    let result = finishes("connect", cacheside::backends::connect(config)).await;
    (result, started.elapsed())
}

#[tokio::test]
async fn memcached_down_at_startup_starts_with_a_warning_and_recovers() {
    let mut server = MemcachedServer::start();
    server.kill();
    let (_guard, logs) = common::logs::capture();
    let (result, took) = connect_timed(&memcached_config(&server.addr())).await;
    let cache = result.expect("an unreachable store does not stop the service");
    assert!(
        took < FAST,
        "startup waited {took:?} for a store that refuses connections"
    );
    assert!(
        logs.lines_with("did not answer at startup")
            .iter()
            .any(|l| l.contains("WARN") && l.contains(&server.addr())),
        "one WARN naming {}: {}",
        server.addr(),
        logs.text()
    );
    assert!(cache.get::<u8>("k").await.is_err(), "the store is down");
    common::fails_open(&cache).await;
    server.restart();
    common::used_again(
        &cache,
        "the cache using memcached once it is up",
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn a_memcached_address_without_port_fails_fast_naming_the_variable() {
    let (result, took) = connect_timed(&memcached_config("127.0.0.1")).await;
    let err = result.expect_err("an address without a port is refused");
    assert!(took < FAST, "took {took:?}");
    assert!(matches!(err, Error::Misconfigured { .. }), "{err:?}");
    assert!(err.to_string().contains("CACHE_MEMCACHED_SERVERS"), "{err}");
}

#[tokio::test]
async fn a_server_that_is_not_memcached_fails_fast_naming_the_variable() {
    // Something else listens there: it answers every line with an HTTP error.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address").to_string();
    let answering = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            while let Ok(n) = socket.read(&mut buf).await {
                if n == 0
                    || socket
                        .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                        .await
                        .is_err()
                {
                    break;
                }
            }
        }
    });
    let (result, took) = connect_timed(&memcached_config(&addr)).await;
    answering.abort();
    let err = result.expect_err("a server that is not memcached is refused");
    assert!(took < FAST, "took {took:?}");
    assert!(matches!(err, Error::Misconfigured { .. }), "{err:?}");
    assert!(err.to_string().contains("CACHE_MEMCACHED_SERVERS"), "{err}");
    assert!(err.to_string().contains(&addr), "{err}");
}

/// A server that accepts connections but never answers (SIGSTOP): startup
/// waits CACHE_CONNECT_TIMEOUT_MS, not more, then starts and fails open.
#[tokio::test]
async fn a_frozen_memcached_at_startup_costs_the_connect_timeout_then_starts() {
    let server = MemcachedServer::start();
    server.pause();
    let config = cacheside::Config::from_lookup(|name| match name {
        "CACHE_BACKEND" => Some("memcached".into()),
        "CACHE_MEMCACHED_SERVERS" => Some(server.addr()),
        "CACHE_CONNECT_TIMEOUT_MS" => Some("300".into()),
        _ => None,
    })
    .expect("a valid configuration");
    let (result, took) = connect_timed(&config).await;
    let cache = result.expect("a frozen store does not stop the service");
    assert!(
        took < FAST,
        "startup waited {took:?}; the bound is CACHE_CONNECT_TIMEOUT_MS"
    );
    common::fails_open(&cache).await;
    server.resume();
    common::used_again(
        &cache,
        "the cache using memcached after SIGCONT",
        Duration::from_secs(10),
    )
    .await;
}

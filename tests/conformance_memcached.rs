//! Memcached against the conformance suite, plus memcached-specific checks,
//! on real `memcached` processes started here.

mod common;
use common::eventually;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cache_backends::{memcached_wire_key, MemcachedBackend, MemcachedOptions};
use cacheside::backend::{Backend, Bytes, Key};
use cacheside::testing::{conformance, MemcachedServer};
use cacheside::{Cache, Error};

/// Item limit of the servers started for the suite: its `large_values` check
/// stores 1 MiB plus envelope, which memcached's default `-I 1m` cannot hold.
const ITEM_LIMIT: &str = "2m";

fn options_for_2m() -> MemcachedOptions {
    MemcachedOptions {
        max_value_size: 2 * 1024 * 1024 - 1024,
        ..MemcachedOptions::default()
    }
}

async fn connect(addrs: &[String], options: MemcachedOptions) -> MemcachedBackend {
    MemcachedBackend::connect_with(addrs, options)
        .await
        .expect("connect to the test memcached")
}

/// Bound on each operation of the caches these tests build.
const OP_TIMEOUT: Duration = Duration::from_secs(2);

fn cache_over(backend: MemcachedBackend, namespace: &str) -> Cache {
    Cache::builder(backend)
        .namespace(namespace)
        .op_timeout(OP_TIMEOUT)
        .build()
}

/// One raw text-protocol exchange: sends `request`, reads until `until` ends the reply.
fn raw(addr: &str, request: &str, until: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("raw connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..1000 {
        let n = s.read(&mut buf).expect("raw read");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        // `lru_crawler metadump` answers a one-line `BUSY …` while the
        // crawler runs (its own background runs too), leaving the socket open.
        let busy = out.starts_with(b"BUSY") && out.ends_with(b"\r\n");
        if out.ends_with(until.as_bytes()) || busy {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_conforms_one_server() {
    let server = MemcachedServer::start_with_args(&["-I", ITEM_LIMIT]);
    let addrs = vec![server.addr()];
    // A new backend per namespace: like separate processes sharing the servers.
    let make = |namespace: &str| {
        let namespace = namespace.to_owned();
        let addrs = addrs.clone();
        async move { cache_over(connect(&addrs, options_for_2m()).await, &namespace) }
    };
    conformance::fenced_fills(&make).await;
    conformance::run(
        make,
        conformance::Capabilities {
            patterns: false,
            counters: true,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_conforms_two_servers() {
    let a = MemcachedServer::start_with_args(&["-I", ITEM_LIMIT]);
    let b = MemcachedServer::start_with_args(&["-I", ITEM_LIMIT]);
    conforms_sharing(connect(&[a.addr(), b.addr()], options_for_2m()).await).await;
}

/// The suite over one backend shared by every namespace (clones share the
/// pools and what the backend remembers): one process.
async fn conforms_sharing(shared: MemcachedBackend) {
    conformance::run(
        conformance::shared_store(shared, OP_TIMEOUT),
        conformance::Capabilities {
            patterns: false,
            counters: true,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_conforms_with_generation_refresh() {
    let server = MemcachedServer::start_with_args(&["-I", ITEM_LIMIT]);
    let options = MemcachedOptions {
        generation_refresh: Duration::from_secs(600),
        ..options_for_2m()
    };
    // One process: its own clears are seen at once, whatever the window.
    conforms_sharing(connect(&[server.addr()], options).await).await;
}

/// One counter of the server's `stats` (`get_hits`, `incr_hits`, …).
fn server_stat(addr: &str, name: &str) -> u64 {
    let prefix = format!("STAT {name} ");
    raw(addr, "stats\r\n", "END\r\n")
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in memcached's stats"))
}

/// (`mg` hits, `ma` hits) the server answered since it started.
fn reads_and_arithmetic(addr: &str) -> (u64, u64) {
    (
        server_stat(addr, "get_hits"),
        server_stat(addr, "incr_hits"),
    )
}

#[tokio::test]
async fn generation_refresh_trades_clear_visibility_for_one_command_hits() {
    let server = MemcachedServer::start();
    let addrs = [server.addr()];
    let addr = addrs[0].as_str();
    let trusting = |window| MemcachedOptions {
        generation_refresh: window,
        ..MemcachedOptions::default()
    };
    let exact = cache_over(connect(&addrs, MemcachedOptions::default()).await, "app");
    let reader = cache_over(
        connect(&addrs, trusting(Duration::from_secs(600))).await,
        "app",
    );
    exact.set("k", &1u32, None).await.unwrap();
    assert_eq!(reader.get::<u32>("k").await.unwrap(), Some(1));

    // Exact (the default): every hit reads the global and the namespace
    // generation beside the entry (three `mg` hits), and the steady state
    // writes nothing (no `ma`, which would rewrite the counters).
    let (gets, incrs) = reads_and_arithmetic(addr);
    for _ in 0..10 {
        assert_eq!(exact.get::<u32>("k").await.unwrap(), Some(1));
    }
    assert_eq!(reads_and_arithmetic(addr), (gets + 30, incrs));
    // Within the window: hits are one `mg` each, no generation read.
    let (gets, incrs) = reads_and_arithmetic(addr);
    for _ in 0..10 {
        assert_eq!(reader.get::<u32>("k").await.unwrap(), Some(1));
    }
    assert_eq!(reads_and_arithmetic(addr), (gets + 10, incrs));

    // The price, as documented: another process's clear is not seen within the window...
    exact.clear().await.unwrap();
    assert_eq!(exact.get::<u32>("k").await.unwrap(), None);
    assert_eq!(reader.get::<u32>("k").await.unwrap(), Some(1));
    // ...but a write re-reads the generations, and this backend's own clear is seen at once.
    reader.set("m", &3u32, None).await.unwrap();
    assert_eq!(reader.get::<u32>("k").await.unwrap(), None);
    assert_eq!(exact.get::<u32>("m").await.unwrap(), Some(3));
    assert_eq!(reader.get::<u32>("m").await.unwrap(), Some(3));
    reader.clear().await.unwrap();
    assert_eq!(reader.get::<u32>("m").await.unwrap(), None);
    assert_eq!(exact.get::<u32>("m").await.unwrap(), None);

    // A short window: another process's clear is seen once it ends.
    let brief = cache_over(
        connect(&addrs, trusting(Duration::from_millis(100))).await,
        "app",
    );
    exact.set("n", &4u32, None).await.unwrap();
    assert_eq!(brief.get::<u32>("n").await.unwrap(), Some(4));
    exact.clear().await.unwrap();
    eventually(
        "a clear elsewhere seen after the window",
        Duration::from_secs(10),
        || {
            let brief = brief.clone();
            async move { brief.get::<u32>("n").await.unwrap().is_none() }
        },
    )
    .await;
}

/// `%XX` escapes of `lru_crawler metadump` keys, decoded.
fn percent_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        let hex = |b: Option<u8>| (b? as char).to_digit(16);
        out.push(match b {
            b'%' => match (hex(bytes.next()), hex(bytes.next())) {
                (Some(h), Some(l)) => (h * 16 + l) as u8,
                _ => panic!("bad escape in metadump key {s}"),
            },
            b => b,
        });
    }
    String::from_utf8(out).expect("utf-8 key")
}

/// The names of the generation counters on the server, found with
/// `lru_crawler metadump`. The crawler serves one dump at a time (`BUSY`
/// meanwhile) and may not list items written a moment ago: asked again, a
/// bounded number of times, until it lists `expected` of them.
fn generation_keys(addr: &str, expected: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for _ in 0..250 {
        let dump = raw(addr, "lru_crawler metadump all\r\n", "END\r\n");
        keys = dump
            .lines()
            .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("key=")))
            .map(percent_decode)
            .filter(|key| key.starts_with("__cacheside_gen:"))
            .collect();
        if keys.len() >= expected {
            return keys;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("metadump never listed {expected} generation counters: {keys:?}");
}

/// `mg <key> t`: the remaining lifetime memcached reports (`Some(-1)`: never
/// expires), `None` when the key is absent.
fn lifetime(addr: &str, key: &str) -> Option<i64> {
    let reply = raw(addr, &format!("mg {key} t\r\n"), "\r\n");
    if reply == "EN\r\n" {
        return None;
    }
    let t = reply
        .trim_end()
        .strip_prefix("HD ")
        .and_then(|flags| flags.strip_prefix('t'))
        .unwrap_or_else(|| panic!("unexpected mg reply {reply:?}"));
    Some(t.parse().expect("a number of seconds"))
}

#[tokio::test]
async fn generations_are_created_on_first_use_permanent_and_recreated_when_lost() {
    let server = MemcachedServer::start();
    let addr = server.addr();
    let cache = cache_over(
        connect(std::slice::from_ref(&addr), MemcachedOptions::default()).await,
        "app:",
    );
    // First use creates the global and the namespace counter (`ma` with autovivify).
    cache.set("k", &1u32, None).await.unwrap();
    assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(1));
    let gens = generation_keys(&addr, 2);
    assert_eq!(gens.len(), 2, "global and namespace counter: {gens:?}");
    let lifetimes = |keys: &[String]| keys.iter().map(|k| lifetime(&addr, k)).collect::<Vec<_>>();
    assert_eq!(lifetimes(&gens), [Some(-1), Some(-1)], "they never expire");
    // The steady state only reads them.
    let (_, incrs) = reads_and_arithmetic(&addr);
    for _ in 0..5 {
        assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(1));
    }
    assert_eq!(
        reads_and_arithmetic(&addr).1,
        incrs,
        "no `ma` on a steady hit"
    );

    // A counter lost (evicted, deleted by hand) is created again on the next use.
    for key in &gens {
        assert_eq!(raw(&addr, &format!("md {key}\r\n"), "\r\n"), "HD\r\n");
    }
    assert_eq!(lifetimes(&gens), [None, None]);
    let _ = cache.get::<u32>("k").await.unwrap();
    assert_eq!(
        lifetimes(&gens),
        [Some(-1), Some(-1)],
        "recreated, permanent"
    );
    // One given a lifetime (by hand, or by an older writer) is made permanent again.
    for key in &gens {
        assert_eq!(
            raw(&addr, &format!("touch {key} 600\r\n"), "\r\n"),
            "TOUCHED\r\n"
        );
    }
    assert!(lifetimes(&gens)
        .iter()
        .all(|t| matches!(t, Some(t) if *t > 0)));
    let _ = cache.get::<u32>("k").await.unwrap();
    assert_eq!(
        lifetimes(&gens),
        [Some(-1), Some(-1)],
        "made permanent again"
    );
    cache.set("k", &2u32, None).await.unwrap();
    assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(2));

    // Cleared, then the counters are lost at once (in the same second):
    // the recreated ones must not bring the cleared entry back.
    cache.clear().await.unwrap();
    for key in &gens {
        assert_eq!(raw(&addr, &format!("md {key}\r\n"), "\r\n"), "HD\r\n");
    }
    assert_eq!(cache.get::<u32>("k").await.unwrap(), None, "stays cleared");
}

#[tokio::test]
async fn injection_keys_never_reach_the_protocol() {
    let server = MemcachedServer::start();
    let addr = server.addr();
    // A sentinel written by another client, outside cacheside.
    assert_eq!(
        raw(&addr, "set sentinel 0 0 2\r\nok\r\n", "\r\n"),
        "STORED\r\n"
    );
    let cache = cache_over(
        connect(std::slice::from_ref(&addr), MemcachedOptions::default()).await,
        "",
    );
    for key in [
        "a\r\nflush_all",
        "a\r\nflush_all\r\n",
        "x 0 0 1\r\nz\r\nflush_all",
        "a\nmd sentinel",
    ] {
        cache.set(key, "v", None).await.unwrap();
        assert_eq!(
            cache.get::<String>(key).await.unwrap().as_deref(),
            Some("v"),
            "{key:?}"
        );
        assert!(cache.delete(key).await.unwrap());
    }
    let got = raw(&addr, "get sentinel\r\n", "END\r\n");
    assert_eq!(
        got, "VALUE sentinel 0 2\r\nok\r\nEND\r\n",
        "nothing was flushed or deleted"
    );
    // And the store holds the hashed form, not the raw key.
    cache.set("a b", "v", None).await.unwrap();
    let wire = memcached_wire_key("a b");
    let got = raw(&addr, &format!("mg {wire} v\r\n"), "\r\n");
    assert!(got.starts_with("VA "), "hashed key {wire} present: {got:?}");
}

#[tokio::test]
async fn clear_is_seen_by_another_process_and_keeps_other_namespaces() {
    let server = MemcachedServer::start();
    let addrs = [server.addr()];
    let one = cache_over(connect(&addrs, MemcachedOptions::default()).await, "app");
    let two = cache_over(connect(&addrs, MemcachedOptions::default()).await, "app");
    let other = cache_over(connect(&addrs, MemcachedOptions::default()).await, "other");
    let bare = cache_over(connect(&addrs, MemcachedOptions::default()).await, "");
    one.set("k", &1u32, None).await.unwrap();
    other.set("k", &2u32, None).await.unwrap();
    bare.set("k", &3u32, None).await.unwrap();
    assert_eq!(two.get::<u32>("k").await.unwrap(), Some(1));
    // `two` has now seen the generation; a clear by `one` must still reach it.
    one.clear().await.unwrap();
    assert_eq!(two.get::<u32>("k").await.unwrap(), None);
    assert!(!two.exists("k").await.unwrap());
    assert_eq!(two.ttl("k").await.unwrap(), None);
    assert!(
        !two.delete("k").await.unwrap(),
        "a cleared entry is not there to delete"
    );
    assert_eq!(other.get::<u32>("k").await.unwrap(), Some(2));
    assert_eq!(bare.get::<u32>("k").await.unwrap(), Some(3));
    // `two` writes with the generation it saw before the clear: the write must still land.
    two.set("k", &4u32, None).await.unwrap();
    assert_eq!(one.get::<u32>("k").await.unwrap(), Some(4));
    // Clearing without a namespace reaches every namespace.
    bare.clear().await.unwrap();
    for cache in [&one, &two, &other, &bare] {
        assert_eq!(cache.get::<u32>("k").await.unwrap(), None, "{cache:?}");
    }
    other.set("k", &5u32, None).await.unwrap();
    assert_eq!(
        other.get::<u32>("k").await.unwrap(),
        Some(5),
        "writes work after a clear"
    );
    // No flush_all: a foreign item survives every clear.
    assert_eq!(
        raw(&addrs[0], "set foreign 0 0 1\r\nx\r\n", "\r\n"),
        "STORED\r\n"
    );
    bare.clear().await.unwrap();
    assert!(raw(&addrs[0], "get foreign\r\n", "END\r\n").starts_with("VALUE foreign"));
}

#[tokio::test]
async fn backend_level_ttl_exists_delete_pattern() {
    let server = MemcachedServer::start();
    let backend = connect(&[server.addr()], MemcachedOptions::default()).await;
    assert_eq!(backend.name(), "memcached");
    assert!(!backend.is_in_process());
    assert_eq!(backend.max_value_size(), Some(1024 * 1024 - 1024));
    backend.ping().await.unwrap();
    let key = Key::new("ns:forever", 3);
    backend
        .set(key, Bytes::from_static(b"\0\x01\r\n"), None)
        .await
        .unwrap();
    assert_eq!(
        backend.ttl(key).await.unwrap(),
        None,
        "no TTL: never expires (T0)"
    );
    assert_eq!(
        backend.get(key).await.unwrap().as_deref(),
        Some(&b"\0\x01\r\n"[..])
    );
    let short = Key::new("ns:short", 3);
    backend
        .set(
            short,
            Bytes::from_static(b"x"),
            Some(Duration::from_millis(10)),
        )
        .await
        .unwrap();
    // T1 lives until memcached's clock next ticks, which may be at once:
    // then the item is gone, never kept without an expiry.
    match backend.ttl(short).await.unwrap() {
        Some(ttl) => assert!(
            ttl <= Duration::from_secs(1),
            "sub-second TTL rounds up to 1 s: {ttl:?}"
        ),
        None => assert_eq!(
            backend.get(short).await.unwrap(),
            None,
            "no TTL left: expired, not kept forever"
        ),
    }
    let long = Key::new("ns:long", 3);
    backend
        .set(
            long,
            Bytes::from_static(b"x"),
            Some(Duration::from_secs(40 * 24 * 3600)),
        )
        .await
        .unwrap();
    let ttl = backend.ttl(long).await.unwrap().expect("a 40-day TTL");
    assert!(
        ttl > Duration::from_secs(39 * 24 * 3600),
        "long TTLs are sent as absolute times: {ttl:?}"
    );
    assert!(matches!(
        backend.delete_pattern("ns:", "*").await,
        Err(Error::PatternNotSupported {
            backend: "memcached"
        })
    ));
    assert!(backend.exists(key).await.unwrap());
    assert!(backend.delete(key).await.unwrap());
    assert!(!backend.delete(key).await.unwrap());
    assert!(!backend.exists(key).await.unwrap());
}

#[tokio::test]
async fn server_refusing_a_large_value_is_a_clear_error() {
    let server = MemcachedServer::start();
    // Claim a bigger limit than the server's default 1 MiB, so the value is sent.
    let backend = connect(
        &[server.addr()],
        MemcachedOptions {
            max_value_size: 4 * 1024 * 1024,
            ..MemcachedOptions::default()
        },
    )
    .await;
    let key = Key::plain("big");
    let err = backend
        .set(key, Bytes::from(vec![1u8; 2 * 1024 * 1024]), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ValueTooLarge { size, .. } if size == 2 * 1024 * 1024),
        "{err}"
    );
    assert!(
        !err.is_store_failure(),
        "a refused value must not trip the circuit breaker"
    );
    // The connection pool recovered: the next operations work.
    backend
        .set(key, Bytes::from_static(b"small"), None)
        .await
        .unwrap();
    assert_eq!(
        backend.get(key).await.unwrap().as_deref(),
        Some(&b"small"[..])
    );
    // Over the configured limit: refused before sending.
    let err = backend
        .set(key, Bytes::from(vec![1u8; 5 * 1024 * 1024]), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { .. }), "{err}");
}

#[tokio::test]
async fn default_limit_fits_the_default_server() {
    let server = MemcachedServer::start();
    let backend = connect(&[server.addr()], MemcachedOptions::default()).await;
    let limit = backend.max_value_size().unwrap();
    // The largest value the backend admits, under the longest key, is stored.
    let long_key = "k".repeat(250);
    let key = Key::plain(&long_key);
    backend
        .set(key, Bytes::from(vec![7u8; limit]), None)
        .await
        .unwrap();
    assert_eq!(
        backend.get(key).await.unwrap().map(|b| b.len()),
        Some(limit)
    );
}

#[tokio::test]
async fn connect_fails_without_any_server_and_from_config_works() {
    let port = cacheside::testing::free_port();
    let err = MemcachedBackend::connect_with(
        &[format!("127.0.0.1:{port}")],
        MemcachedOptions {
            connect_timeout: Duration::from_millis(500),
            ..MemcachedOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.is_store_failure(), "{err}");
    // One address that cannot resolve fails the connect, even beside a good one.
    let server = MemcachedServer::start();
    let err = MemcachedBackend::connect([server.addr().as_str(), "127.0.0.1"])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("\"127.0.0.1\" does not resolve"),
        "{err}"
    );
    drop(server);
    assert!(matches!(
        MemcachedBackend::connect(Vec::<String>::new()).await,
        Err(Error::Config {
            var: "CACHE_MEMCACHED_SERVERS",
            ..
        })
    ));

    let server = MemcachedServer::start();
    let config = cacheside::Config::from_lookup(|name| match name {
        "CACHE_BACKEND" => Some("memcached".into()),
        "CACHE_MEMCACHED_SERVERS" => Some(server.addr()),
        "CACHE_MEMCACHED_POOL_SIZE" => Some("2".into()),
        "CACHE_MEMCACHED_GENERATION_REFRESH_MS" => Some("1000".into()),
        "CACHE_NAMESPACE" => Some("cfg".into()),
        _ => None,
    })
    .unwrap();
    let cache = cacheside::backends::connect(&config).await.unwrap();
    assert_eq!(cache.backend_name(), "memcached");
    cache.set("k", "v", None).await.unwrap();
    assert_eq!(
        cache.get::<String>("k").await.unwrap().as_deref(),
        Some("v")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_opens_at_most_pool_size_connections_and_reuses_them() {
    let server = MemcachedServer::start();
    let addr = server.addr();
    let backend = connect(
        std::slice::from_ref(&addr),
        MemcachedOptions {
            pool_size: 2,
            ..MemcachedOptions::default()
        },
    )
    .await;
    let key = Key::plain("pool:k");
    backend
        .set(key, Bytes::from_static(b"v"), None)
        .await
        .unwrap();
    // Every `stats` below is one more connection of its own.
    let before = server_stat(&addr, "total_connections");
    for _ in 0..5 {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let backend = backend.clone();
            calls.spawn(async move { backend.get(Key::plain("pool:k")).await });
        }
        for got in calls.join_all().await {
            assert_eq!(got.unwrap().as_deref(), Some(&b"v"[..]));
        }
    }
    let opened = server_stat(&addr, "total_connections") - before - 1;
    assert!(
        (1..=2).contains(&opened),
        "320 calls over a pool of 2 opened {opened} connections"
    );
}

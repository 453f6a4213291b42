//! `CACHE_REDIS_POOL_SIZE` and `CACHE_MEMCACHED_POOL_SIZE` do what the README
//! says, counted on the servers: `CLIENT LIST` on Redis, `stats` on Memcached.

mod common;
use common::eventually;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cacheside::testing::{MemcachedServer, RedisServer, Reply};
use cacheside::{Cache, Config};

const LIMIT: Duration = Duration::from_secs(10);

async fn connect(vars: &[(&str, String)]) -> Cache {
    let config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    cacheside::backends::connect(&config).await.unwrap()
}

/// The clients `CLIENT LIST` shows on `server`, but the connection that asks.
fn redis_clients(server: &RedisServer) -> Vec<String> {
    match server.command(&[b"CLIENT", b"LIST"]).unwrap() {
        reply @ (Reply::Bulk(_) | Reply::Status(_)) => reply
            .as_text()
            .unwrap()
            .lines()
            .filter(|l| !l.contains("cmd=client|list"))
            .map(str::to_owned)
            .collect(),
        other => panic!("CLIENT LIST answered {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pool_size_opens_and_uses_that_many_connections() {
    for size in [1usize, 3] {
        let server = RedisServer::start();
        // No local tier, hence no backplane: every connection is the store's.
        let cache = connect(&[
            ("CACHE_BACKEND", "redis".into()),
            ("CACHE_REDIS_URL", server.url()),
            ("CACHE_REDIS_POOL_SIZE", size.to_string()),
            ("CACHE_LOCAL_MAX_ENTRIES", "0".into()),
            ("CACHE_OP_TIMEOUT_MS", "2000".into()),
        ])
        .await;
        // The startup check's own connection closes: then exactly `size` remain.
        eventually(
            &format!("{size} connections from the store"),
            LIMIT,
            || async { redis_clients(&server).len() == size },
        )
        .await;
        // Round robin: 10 reads per connection leave each with GET as its last command.
        for _ in 0..10 * size {
            assert_eq!(cache.get::<u32>("k").await.unwrap(), None);
        }
        let clients = redis_clients(&server);
        assert_eq!(clients.len(), size, "{clients:#?}");
        assert!(
            clients.iter().all(|c| c.contains("cmd=get")),
            "every connection was used: {clients:#?}"
        );
    }
}

/// `curr_connections` of the memcached on `port` (a fresh connection asks, and counts itself).
fn memcached_connections(port: u16) -> u64 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"stats\r\n").unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.ends_with(b"END\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "memcached closed the stats connection");
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out)
        .lines()
        .find_map(|l| l.strip_prefix("STAT curr_connections "))
        .and_then(|n| n.trim().parse().ok())
        .expect("curr_connections in stats")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_pool_size_caps_the_connections_per_server() {
    let server = MemcachedServer::start();
    // A fresh server counts only the connection that asks, once the
    // readiness probe's close has been processed (memcached counts it down
    // a moment later; a baseline taken before that was one too high).
    eventually(
        "memcached to count only the asking connection",
        LIMIT,
        || async { memcached_connections(server.port()) == 1 },
    )
    .await;
    let before = 1;
    let cache = connect(&[
        ("CACHE_BACKEND", "memcached".into()),
        ("CACHE_MEMCACHED_SERVERS", server.addr()),
        ("CACHE_MEMCACHED_POOL_SIZE", "3".into()),
        ("CACHE_LOCAL_MAX_ENTRIES", "0".into()),
        ("CACHE_OP_TIMEOUT_MS", "2000".into()),
    ])
    .await;
    // Connections are opened on demand. Eight reads polled together in one
    // task each need a connection before any can finish: the first three
    // dial, the others wait for a slot, whatever the scheduler does.
    let read = |k: &'static str| {
        let cache = cache.clone();
        async move { cache.get::<u32>(k).await.unwrap() }
    };
    let burst = tokio::join!(
        read("a"),
        read("b"),
        read("c"),
        read("d"),
        read("e"),
        read("f"),
        read("g"),
        read("h")
    );
    assert_eq!(burst, (None, None, None, None, None, None, None, None));
    // Concurrent calls from many tasks never open more than the 3.
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..32u32 {
        let cache = cache.clone();
        tasks.spawn(async move {
            for i in 0..50u32 {
                let key = format!("k{}", (t + i) % 20);
                cache.set(&key, &i, None).await.unwrap();
                let _ = cache.get::<u32>(&key).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    // The pool keeps its idle connections open: exactly 3 more than before.
    // (A count can only run high for a moment, while a previous stats
    // connection's close is still being processed; with a 4th pooled
    // connection it could never be `before + 3`.)
    eventually("exactly 3 pooled connections", LIMIT, || async {
        memcached_connections(server.port()) == before + 3
    })
    .await;
}

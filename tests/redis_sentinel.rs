//! Redis behind Sentinel: a master, a replica and three Sentinels started
//! for each test; the store is found through the Sentinels, follows the
//! master across `SENTINEL FAILOVER`, and never answers wrong meanwhile.

mod common;
use common::eventually;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_backends::RedisSentinel;
use cacheside::backend::{Backplane, BackplaneEvents};
use cacheside::backends::{RedisBackend, RedisBackplane, RedisOptions};
use cacheside::testing::conformance::{self, Capabilities};
use cacheside::testing::{RedisSentinelGroup, Reply, SENTINEL_MASTER_NAME};
use cacheside::{BackendKind, Cache, Config, Error};

/// `CACHE_BACKEND=redis` through the Sentinels of `group`, plus `extra`.
fn config(group: &RedisSentinelGroup, extra: &[(&str, &str)]) -> Result<Config, Error> {
    let sentinels = group.sentinel_addrs().join(",");
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(move |name| {
        if let Some((_, v)) = extra.iter().find(|(k, _)| k == name) {
            return Some(v.clone());
        }
        match name {
            "CACHE_BACKEND" => Some("redis".into()),
            "CACHE_REDIS_SENTINELS" => Some(sentinels.clone()),
            "CACHE_REDIS_SENTINEL_MASTER" => Some(SENTINEL_MASTER_NAME.into()),
            "CACHE_OP_TIMEOUT_MS" => Some("300".into()),
            _ => None,
        }
    })
}

fn raw_get(group: &RedisSentinelGroup, port: u16, key: &str) -> Option<Vec<u8>> {
    match group.command(port, &[b"GET", key.as_bytes()]).unwrap() {
        Reply::Bulk(v) => v,
        other => panic!("GET {key} on {port} answered {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_path_connects_to_the_master_the_sentinels_name() {
    let group = RedisSentinelGroup::start();
    // No local tier, hence no backplane: the master's other clients are the store's.
    let config = config(
        &group,
        &[
            ("CACHE_NAMESPACE", "cfg"),
            ("CACHE_REDIS_POOL_SIZE", "2"),
            ("CACHE_LOCAL_MAX_ENTRIES", "0"),
        ],
    )
    .unwrap();
    assert_eq!(config.backend, BackendKind::Redis);
    let cache = cacheside::backends::connect(&config)
        .await
        .expect("connect through the Sentinels");
    assert_eq!(cache.backend_name(), "redis");
    // CACHE_REDIS_POOL_SIZE connections to the master (the lookup's own ROLE check closes).
    eventually(
        "2 store connections on the master",
        Duration::from_secs(10),
        || async { store_clients(&group, group.master_port()) == 2 },
    )
    .await;
    cache
        .set("widget:7", &"spanner".to_string(), None)
        .await
        .unwrap();
    assert_eq!(
        cache.get::<String>("widget:7").await.unwrap().as_deref(),
        Some("spanner")
    );
    // Written on the master the Sentinels name.
    let master = group.master_port();
    assert!(raw_get(&group, master, "cfg:widget:7").is_some());
    assert!(cache.delete("widget:7").await.unwrap());
    assert_eq!(cache.get::<String>("widget:7").await.unwrap(), None);

    // A name the Sentinels do not monitor: the service starts and fails open, as when they are down.
    let unknown = config_with_master(&group, "no-such-master");
    let cache = cacheside::backends::connect(&unknown)
        .await
        .expect("starts anyway");
    assert_eq!(
        cache.get_or_set("k", None, || async { 5u8 }).await.unwrap(),
        5
    );
    assert!(cache.stats().errors >= 1, "{:?}", cache.stats());
}

/// Clients of the data node on `port` that are neither Sentinels, replicas, nor the asker.
fn store_clients(group: &RedisSentinelGroup, port: u16) -> usize {
    let list = group
        .command(port, &[b"CLIENT", b"LIST"])
        .unwrap()
        .as_text()
        .unwrap_or_default();
    list.lines()
        .filter(|l| {
            !l.contains("name=sentinel-")
                && !l.contains("flags=S")
                && !l.contains("cmd=client|list")
        })
        .count()
}

fn config_with_master(group: &RedisSentinelGroup, master: &str) -> Config {
    config(
        group,
        &[
            ("CACHE_REDIS_SENTINEL_MASTER", master),
            ("CACHE_CONNECT_TIMEOUT_MS", "300"),
            ("CACHE_LOCAL_MAX_ENTRIES", "0"),
        ],
    )
    .unwrap()
}

#[test]
fn sentinel_variables_are_checked_with_messages_that_say_what_to_write() {
    let cfg = |vars: &'static [(&'static str, &'static str)]| {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    };
    let err = cfg(&[("CACHE_REDIS_SENTINELS", "127.0.0.1:26379")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("CACHE_REDIS_SENTINEL_MASTER") && err.contains("e.g. mymaster"),
        "{err}"
    );
    let err = cfg(&[
        ("CACHE_REDIS_SENTINELS", "redis://:hunter2@h:port"),
        ("CACHE_REDIS_SENTINEL_MASTER", "m"),
    ])
    .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        shown.contains("CACHE_REDIS_SENTINELS") && shown.contains("host:port"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    let c = cfg(&[
        ("CACHE_REDIS_SENTINELS", "redis://:hunter2@h:26379"),
        ("CACHE_REDIS_SENTINEL_MASTER", "m"),
        ("CACHE_REDIS_SENTINEL_PASSWORD", "hunter3"),
        ("CACHE_REDIS_PASSWORD", "hunter4"),
    ])
    .unwrap();
    let shown = format!("{c:?} {:?}", RedisSentinel::from_config(&c.redis));
    assert!(!shown.contains("hunter"), "{shown}");
}

fn expected(key: u64) -> String {
    format!("value-of-{key}")
}

static BODY_RUNS: AtomicU64 = AtomicU64::new(0);

#[cacheside::cache(key = "fo:{key}", cache = "sentinel-failover")]
async fn value_during_failover(key: u64) -> String {
    BODY_RUNS.fetch_add(1, Ordering::Relaxed);
    expected(key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_under_load_gives_no_wrong_answer_and_the_store_follows_the_master() {
    let group = RedisSentinelGroup::start();
    let old_master = group.master_port();
    // No local tier: every hit below is a store hit.
    let config = config(
        &group,
        &[("CACHE_NAMESPACE", "fo"), ("CACHE_LOCAL_MAX_ENTRIES", "0")],
    )
    .unwrap();
    let cache = cacheside::backends::connect(&config).await.unwrap();
    cacheside::register("sentinel-failover", cache.clone());

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..4u64 {
        let stop = stop.clone();
        let calls = calls.clone();
        tasks.spawn(async move {
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                let key = i % 50;
                let got = value_during_failover(key).await;
                assert_eq!(got, expected(key), "a wrong value for key {key}");
                calls.fetch_add(1, Ordering::Relaxed);
                i += 7;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    }
    eventually("calls before the failover", Duration::from_secs(10), || {
        let calls = calls.clone();
        async move { calls.load(Ordering::Relaxed) >= 200 }
    })
    .await;
    let before = cache.stats();
    assert!(
        before.hits > 0,
        "store hits before the failover: {before:?}"
    );

    let new_master = tokio::task::block_in_place(|| group.failover());
    assert_ne!(new_master, old_master);
    let at_failover = (calls.load(Ordering::Relaxed), cache.stats());

    // The store finds the new master: fills land there, and reads hit it again.
    eventually(
        "store hits on the new master after the failover",
        Duration::from_secs(15),
        || {
            let cache = cache.clone();
            async move {
                let hits = cache.stats().hits;
                for key in 0..50 {
                    let _ = value_during_failover(key).await;
                }
                cache.stats().hits >= hits + 50
            }
        },
    )
    .await;
    // A key first filled after the failover is on the new master: the store writes there.
    eventually("a fill on the new master", Duration::from_secs(5), || {
        let group = &group;
        async move {
            let _ = value_during_failover(1000).await;
            raw_get(group, new_master, "fo:fo:1000").is_some()
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = tasks.join_next().await {
        r.expect("a caller saw a wrong value (or panicked)");
    }
    let after = cache.stats();
    assert!(
        calls.load(Ordering::Relaxed) > at_failover.0,
        "calls went on after the failover"
    );
    assert!(
        after.hits > at_failover.1.hits,
        "store hits after the failover: {:?} then {after:?}",
        at_failover.1
    );
    eprintln!(
        "calls {}, body runs {}, stats before {before:?}, at failover {:?}, after {after:?}",
        calls.load(Ordering::Relaxed),
        BODY_RUNS.load(Ordering::Relaxed),
        at_failover.1
    );

    // (c) An invalidation after the failover deletes on the new master.
    let key = "fo:fo:3";
    let present = raw_get(&group, new_master, key).is_some();
    assert!(present, "{key} on the new master");
    value_during_failover_invalidate(3).await;
    let after_delete = raw_get(&group, new_master, key);
    assert!(
        after_delete.as_deref().is_none_or(cache_core_is_tombstone),
        "the invalidation must delete {key} on the new master, found {after_delete:?}"
    );
    let runs = BODY_RUNS.load(Ordering::Relaxed);
    assert_eq!(value_during_failover(3).await, expected(3));
    assert_eq!(
        BODY_RUNS.load(Ordering::Relaxed),
        runs + 1,
        "the invalidated key is a miss: the body runs"
    );
}

/// A tombstone is what an invalidation leaves (it reads as absent).
fn cache_core_is_tombstone(v: &[u8]) -> bool {
    cacheside::backend::is_tombstone(v)
}

#[cacheside::invalidate(key = "fo:{key}", cache = "sentinel-failover")]
async fn value_during_failover_invalidate(key: u64) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_no_replica_confirmed_is_kept_and_delivered_later() {
    let group = RedisSentinelGroup::start();
    let target = RedisSentinel::new(&group.sentinel_addrs(), SENTINEL_MASTER_NAME);
    let options = RedisOptions {
        response_timeout: Duration::from_millis(200),
        ..RedisOptions::default()
    };
    let redis = RedisBackend::connect_sentinel(&target, options)
        .await
        .unwrap();
    let cache = Cache::builder(redis)
        .namespace("w")
        .op_timeout(Duration::from_millis(500))
        .build();
    cache.set("k", &1u32, None).await.unwrap();
    let master = group.master_port();
    let replica = *group.data_ports().iter().find(|p| **p != master).unwrap();
    // The replica stops acknowledging: the master takes the write, but nothing confirms it
    // would survive a failover.
    group.data_node(replica).pause();
    let deleted = cache.delete("k").await;
    assert!(
        deleted.is_err(),
        "an unconfirmed invalidation is not done: {deleted:?}"
    );
    assert!(
        cache.stats().invalidations_queued >= 1,
        "{:?}",
        cache.stats()
    );
    // Kept: the key reads as absent meanwhile, without asking the store.
    assert_eq!(cache.get::<u32>("k").await.unwrap_or(None), None);
    group.data_node(replica).resume();
    eventually(
        "the kept invalidation delivered",
        Duration::from_secs(15),
        || {
            let cache = cache.clone();
            async move {
                // Any call that reaches the store delivers what is kept.
                let _ = cache.set("other", &2u32, None).await;
                cache.stats().invalidations_delivered >= 1
            }
        },
    )
    .await;
    assert!(raw_get(&group, master, "w:k")
        .as_deref()
        .is_none_or(cache_core_is_tombstone));
    assert_eq!(cache.get::<u32>("k").await.unwrap(), None);
}

/// What a backplane reported.
#[derive(Default)]
struct Seen {
    messages: Mutex<Vec<Vec<u8>>>,
    connected: AtomicUsize,
    disconnected: AtomicUsize,
}

impl BackplaneEvents for Seen {
    fn message(&self, payload: &[u8]) {
        self.messages.lock().unwrap().push(payload.to_vec());
    }
    fn disconnected(&self) {
        self.disconnected.fetch_add(1, Ordering::SeqCst);
    }
    fn connected(&self) {
        self.connected.fetch_add(1, Ordering::SeqCst);
    }
}

impl Seen {
    fn counts(&self) -> (usize, usize) {
        (
            self.connected.load(Ordering::SeqCst),
            self.disconnected.load(Ordering::SeqCst),
        )
    }
    fn has(&self, payload: &[u8]) -> bool {
        self.messages.lock().unwrap().iter().any(|m| m == payload)
    }
}

/// Subscribers of `channel` on the data node on `port` (`PUBSUB NUMSUB`).
fn subscribers(group: &RedisSentinelGroup, port: u16, channel: &str) -> i64 {
    match group.command(port, &[b"PUBSUB", b"NUMSUB", channel.as_bytes()]) {
        Ok(Reply::Array(Some(items))) => match items.get(1) {
            Some(Reply::Int(n)) => *n,
            _ => -1,
        },
        _ => -1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backplane_follows_the_master() {
    const LIMIT: Duration = Duration::from_secs(15);
    let group = RedisSentinelGroup::start();
    let target = RedisSentinel::new(&group.sentinel_addrs(), SENTINEL_MASTER_NAME);
    let timeout = Duration::from_millis(300);
    let options = RedisOptions::default();
    let a = RedisBackplane::with_sentinel(&target, "cs-sentinel", timeout, &options).unwrap();
    let b = RedisBackplane::with_sentinel(&target, "cs-sentinel", timeout, &options).unwrap();
    let (seen_a, seen_b) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
    a.subscribe(seen_a.clone());
    b.subscribe(seen_b.clone());
    eventually("both subscribe", LIMIT, || async {
        seen_a.counts() == (1, 0) && seen_b.counts() == (1, 0)
    })
    .await;
    a.publish(b"before").await.unwrap();
    eventually("b receives", LIMIT, || async { seen_b.has(b"before") }).await;
    let old = group.master_port();
    assert_eq!(subscribers(&group, old, "cs-sentinel"), 2);

    let new = tokio::task::block_in_place(|| group.failover());
    // Both move to the new master; the move is a loss (local tiers flushed).
    eventually("both subscriptions on the new master", LIMIT, || async {
        subscribers(&group, new, "cs-sentinel") == 2
            && seen_a.counts().1 >= 1
            && seen_b.counts().1 >= 1
    })
    .await;
    eventually(
        "a message published after the failover arrives",
        LIMIT,
        || async {
            let _ = a.publish(b"after").await;
            seen_b.has(b"after")
        },
    )
    .await;
    assert!(
        format!("{a:?}").contains(&format!("127.0.0.1:{new}")),
        "{a:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentinel_backend_conforms() {
    let group = RedisSentinelGroup::start();
    let target = RedisSentinel::new(&group.sentinel_addrs(), SENTINEL_MASTER_NAME);
    let redis = RedisBackend::connect_sentinel(&target, RedisOptions::default())
        .await
        .expect("connect through the Sentinels");
    conformance::fenced_fills(&conformance::shared_store(
        redis.clone(),
        Duration::from_secs(5),
    ))
    .await;
    conformance::run(
        conformance::shared_store(redis, Duration::from_secs(5)),
        Capabilities {
            patterns: true,
            counters: true,
        },
    )
    .await;
}

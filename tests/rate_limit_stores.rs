//! `RateLimitLayer` against real stores: Redis, Redis Cluster (3 nodes) and
//! Memcached, each started on a free loopback port by `cacheside::testing`.
//!
//! Waits are bounded polls; no sleep is used as a timing assertion.

mod rate_limit_support;
use rate_limit_support::{app, capture_logs, eventually, from_ip, header, send};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use cacheside::backends::{RedisBackend, RedisOptions};
use cacheside::http::RateLimitLayer;
use cacheside::testing::{free_port, MemcachedServer, RedisCluster, RedisServer, Reply};
use cacheside::{BreakerSettings, Cache};
use http::{Request, StatusCode};

/// Long enough that no test straddles a window boundary (windows are epoch-aligned).
const HOUR: Duration = Duration::from_secs(3600);

/// N pass with decreasing `RateLimit-Remaining`, then 429 with `Retry-After`;
/// another client is unaffected; clearing the cache's namespace starts over.
async fn limits_and_headers(layer: RateLimitLayer) {
    let cache = layer.cache().clone();
    let (app, calls) = app(layer);
    let ip = [10, 0, 0, 1];
    for expected_remaining in [2, 1, 0] {
        let res = send(&app, from_ip(ip)).await;
        assert_eq!(res.status(), StatusCode::OK, "{}", cache.backend_name());
        assert_eq!(header(&res, "ratelimit-limit"), Some(3));
        assert_eq!(
            header(&res, "ratelimit-remaining"),
            Some(expected_remaining)
        );
        assert!(header(&res, "ratelimit-reset").is_some());
    }
    for _ in 0..2 {
        let res = send(&app, from_ip(ip)).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&res, "ratelimit-remaining"), Some(0));
        let retry = header(&res, "retry-after").expect("Retry-After");
        assert!((1..=2 * 3600).contains(&retry), "retry-after {retry}");
        assert_eq!(header(&res, "ratelimit-reset"), Some(retry));
    }
    let other = send(&app, from_ip([10, 0, 0, 2])).await;
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(header(&other, "ratelimit-remaining"), Some(2));
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    cache.clear().await.expect("clear");
    let res = send(&app, from_ip(ip)).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}: clear must reset counters",
        cache.backend_name()
    );
    assert_eq!(header(&res, "ratelimit-remaining"), Some(2));
}

/// 32 simultaneous requests of one client, limit 10: exactly 10 pass.
async fn exact_under_concurrency(layer: RateLimitLayer) {
    let name = layer.cache().backend_name();
    let (app, calls) = app(layer);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let app = app.clone();
        tasks.spawn(async move { send(&app, from_ip([10, 7, 7, 7])).await.status() });
    }
    let statuses = tasks.join_all().await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((ok, limited), (10, 22), "{name}: {statuses:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 10);
}

/// With a 1 s window, a refused client gets through again within about two windows.
async fn window_slides(layer: RateLimitLayer) {
    let name = layer.cache().backend_name();
    let (app, _) = app(layer);
    let ip = [10, 9, 9, 9];
    let mut passed = 0;
    loop {
        let res = send(&app, from_ip(ip)).await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(res.status(), StatusCode::OK);
        passed += 1;
        assert!(passed <= 4, "{name}: the limit never applied");
    }
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let res = send(&app, from_ip(ip)).await;
        if res.status() == StatusCode::OK {
            return;
        }
        assert!(Instant::now() < deadline, "{name}: the window never slid");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn all_behaviours(uri: &str, expected_backend: &str) {
    let make = |limit, window| async move {
        let layer = RateLimitLayer::from_uri(uri, limit, window)
            .await
            .unwrap_or_else(|e| panic!("from_uri({uri}): {e}"));
        assert_eq!(layer.cache().backend_name(), expected_backend);
        layer
    };
    limits_and_headers(make(3, HOUR).await.key_prefix("headers")).await;
    exact_under_concurrency(make(10, HOUR).await.key_prefix("exact")).await;
    window_slides(make(2, Duration::from_secs(1)).await.key_prefix("slide")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    let server = RedisServer::start();
    all_behaviours(&server.url(), "redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster() {
    let cluster = RedisCluster::start(3);
    let nodes: Vec<String> = cluster
        .ports()
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    all_behaviours(
        &format!("redis-cluster://{}", nodes.join(",")),
        "redis-cluster",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached() {
    let server = MemcachedServer::start();
    all_behaviours(&format!("memcached://{}", server.addr()), "memcached").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_test_fails_open_then_limits_again_after_restart() {
    const OP_TIMEOUT: Duration = Duration::from_millis(100);
    let mut server = RedisServer::start();
    let options = RedisOptions {
        connect_timeout: OP_TIMEOUT,
        response_timeout: OP_TIMEOUT,
        max_reconnect_delay: Duration::from_millis(200),
        ..RedisOptions::default()
    };
    let redis = RedisBackend::connect_with(&server.url(), options)
        .await
        .expect("connect to the test server");
    let cache = Cache::builder(redis)
        .op_timeout(OP_TIMEOUT)
        .breaker(BreakerSettings {
            threshold: 3,
            cooldown: Duration::from_millis(300),
        })
        .build();
    let (app, calls) = app(RateLimitLayer::new(cache, 2, HOUR));
    let ip = [10, 5, 5, 5];
    for _ in 0..2 {
        assert_eq!(send(&app, from_ip(ip)).await.status(), StatusCode::OK);
    }
    assert_eq!(
        send(&app, from_ip(ip)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    server.kill();
    // Every request is answered, promptly, unlimited and without RateLimit fields.
    for _ in 0..20 {
        let started = Instant::now();
        let res = send(&app, from_ip(ip)).await;
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "fail-open while Redis is down"
        );
        assert!(res.headers().get("ratelimit-limit").is_none());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a dead store must not stall requests ({:?})",
            started.elapsed()
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 22);

    server.restart();
    // Limiting resumes (the restarted server is empty: a fresh budget of 2).
    let deadline = Instant::now() + Duration::from_secs(10);
    // A request whose count reached the restarted server but whose answer
    // came after the op timeout was served unlimited: what is left of the
    // budget is what the first counted answer says.
    let remaining: u64 = loop {
        let res = send(&app, from_ip(ip)).await;
        if let Some(left) = res.headers().get("ratelimit-remaining") {
            assert_eq!(res.status(), StatusCode::OK);
            break left.to_str().unwrap().parse().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "limiting did not resume after restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(remaining <= 1, "a budget of 2, one used: {remaining}");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(send(&app, from_ip(ip)).await.status());
    }
    let ok = usize::try_from(remaining).unwrap();
    let mut expected = vec![StatusCode::OK; ok];
    expected.resize(3, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        statuses, expected,
        "{remaining} left after the first counted request"
    );
}

/// Every key name in the Redis server (a test server: `KEYS` is fine here).
fn redis_keys(server: &RedisServer) -> Vec<String> {
    match server.command(&[b"KEYS", b"*"]).expect("KEYS") {
        Reply::Array(Some(keys)) => keys.iter().filter_map(Reply::as_text).collect(),
        other => panic!("KEYS answered {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_counter_keys_hold_a_hash_never_the_client_key() {
    let server = RedisServer::start();
    let layer = RateLimitLayer::from_uri(&server.url(), 5, HOUR)
        .await
        .expect("from_uri")
        .key_fn(|parts| {
            parts
                .headers
                .get("x-api-key")?
                .to_str()
                .ok()
                .map(str::to_owned)
        });
    assert_eq!(layer.counter_capacity(), None, "counters live in Redis");
    let (app, _) = app(layer);
    for _ in 0..2 {
        let req = Request::get("/")
            .header("x-api-key", "sk_live_TOPSECRET")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&app, req).await.status(), StatusCode::OK);
    }
    assert_eq!(
        send(&app, from_ip([10, 8, 8, 8])).await.status(),
        StatusCode::OK
    );
    let keys = redis_keys(&server);
    let hashed = format!(
        "{:032x}",
        cacheside::backend::hash::bytes128(b"sk_live_TOPSECRET")
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("ratelimit:{{{hashed}}}:"))),
        "{keys:?}"
    );
    for raw in ["TOPSECRET", "sk_live", "10.8.8.8"] {
        assert!(!keys.iter().any(|k| k.contains(raw)), "{raw} in {keys:?}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn redis_passwords_never_appear_in_errors_logs_or_debug() {
    // Current-thread: the log capture sees the background startup check too.
    let (logs, _guard) = capture_logs();
    let server = RedisServer::start_with_args(&["--requirepass", "hunter2pw"]);
    let port = server.port();

    // The right password: limits as usual; Debug shows the URI masked.
    let uri = format!("redis://:hunter2pw@127.0.0.1:{port}/0");
    let layer = RateLimitLayer::from_uri(&uri, 2, HOUR)
        .await
        .expect("from_uri");
    let debug = format!("{layer:?}");
    assert!(
        debug.contains(&format!("redis://:***@127.0.0.1:{port}/0")),
        "{debug}"
    );
    let limiter = layer.clone();
    let (service, _) = app(layer);
    let statuses = [
        send(&service, from_ip([10, 6, 6, 6])).await.status(),
        send(&service, from_ip([10, 6, 6, 6])).await.status(),
        send(&service, from_ip([10, 6, 6, 6])).await.status(),
    ];
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert_eq!(limiter.stats().store_errors, 0);

    // A wrong password: an error that does not quote it.
    let wrong = format!("redis://:wrongpw77@127.0.0.1:{port}/0");
    let err = RateLimitLayer::from_uri(&wrong, 2, HOUR).await.unwrap_err();
    let shown = format!("{err} | {err:?}");
    assert!(!shown.contains("wrongpw77"), "{shown}");

    // A server that is not there: the layer starts, says so, and never quotes the password.
    let down = format!("redis://:downpw55@127.0.0.1:{}/0", free_port());
    let layer = RateLimitLayer::from_uri(&down, 2, HOUR)
        .await
        .expect("starts while Redis is down");
    let limiter = layer.clone();
    let (down_app, _) = app(layer);
    eventually(Duration::from_secs(10), || {
        limiter.stats().store_errors >= 1
    })
    .await;
    assert_eq!(
        send(&down_app, from_ip([10, 6, 6, 7])).await.status(),
        StatusCode::OK,
        "fail-open"
    );
    assert!(!format!("{limiter:?}").contains("downpw55"));
    let text = logs.text();
    assert!(text.contains("rate limiter cannot limit"), "{text}");
    for secret in ["hunter2pw", "wrongpw77", "downpw55"] {
        assert!(!text.contains(secret), "{secret} logged: {text}");
    }
}

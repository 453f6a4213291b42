//! `RateLimitLayer` on the in-memory store, driven through an axum `Router`.

mod rate_limit_support;
use rate_limit_support::{app, capture_logs, from_ip, header, send, until};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use cache_core::testing::{Fault, Faulty, Op};
use cacheside::backend::NullBackend;
use cacheside::backends::MemoryBackend;
use cacheside::http::{RateLimitLayer, DEFAULT_MAX_COUNTERS};
use cacheside::{BreakerSettings, Cache, Error};
use http::{Request, StatusCode};

/// Long enough that no test straddles a window boundary (windows are epoch-aligned).
const HOUR: Duration = Duration::from_secs(3600);

fn memory() -> Cache {
    Cache::builder(MemoryBackend::new(10_000)).build()
}

#[tokio::test]
async fn n_allowed_then_429_with_headers_and_retry_after() {
    let (app, calls) = app(RateLimitLayer::new(memory(), 3, HOUR));
    for expected_remaining in [2, 1, 0] {
        let res = send(&app, from_ip([10, 0, 0, 1])).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "ratelimit-limit"), Some(3));
        assert_eq!(
            header(&res, "ratelimit-remaining"),
            Some(expected_remaining)
        );
        let reset = header(&res, "ratelimit-reset").expect("RateLimit-Reset");
        assert!((1..=2 * 3600).contains(&reset), "reset {reset}");
        assert!(res.headers().get("retry-after").is_none());
    }
    for _ in 0..3 {
        let res = send(&app, from_ip([10, 0, 0, 1])).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&res, "ratelimit-limit"), Some(3));
        assert_eq!(header(&res, "ratelimit-remaining"), Some(0));
        let retry = header(&res, "retry-after").expect("Retry-After");
        // Three requests in this window: room 1 ms into the next hour at the earliest,
        // at most two hours away.
        assert!((1..=2 * 3600).contains(&retry), "retry-after {retry}");
        assert_eq!(header(&res, "ratelimit-reset"), Some(retry));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "429s must not reach the handler"
    );
}

#[tokio::test]
async fn clients_are_limited_independently() {
    let (app, calls) = app(RateLimitLayer::new(memory(), 2, HOUR));
    for _ in 0..2 {
        assert_eq!(
            send(&app, from_ip([10, 0, 0, 1])).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        send(&app, from_ip([10, 0, 0, 1])).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let other = send(&app, from_ip([10, 0, 0, 2])).await;
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(header(&other, "ratelimit-remaining"), Some(1));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn key_fn_limits_per_api_key_and_none_is_unlimited() {
    let layer = RateLimitLayer::new(memory(), 1, HOUR).key_fn(|parts| {
        parts
            .headers
            .get("x-api-key")?
            .to_str()
            .ok()
            .map(str::to_owned)
    });
    let (app, _) = app(layer);
    let with_key = |key: &str| {
        Request::get("/")
            .header("x-api-key", key)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(send(&app, with_key("alpha")).await.status(), StatusCode::OK);
    assert_eq!(
        send(&app, with_key("alpha")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(send(&app, with_key("beta")).await.status(), StatusCode::OK);
    // Keys that would break a hash tag are hashed, not mixed up.
    assert_eq!(send(&app, with_key("a}b")).await.status(), StatusCode::OK);
    assert_eq!(send(&app, with_key("a{b")).await.status(), StatusCode::OK);
    // No key: not limited, no RateLimit fields.
    for _ in 0..5 {
        let res = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().get("ratelimit-limit").is_none());
    }
}

#[tokio::test]
async fn forwarded_for_only_when_trusted_and_fallback_key_is_shared() {
    let xff = |ip: &str| {
        let mut req = from_ip([10, 9, 9, 9]);
        req.headers_mut()
            .insert("x-forwarded-for", ip.parse().unwrap());
        req
    };
    // Trusted: each forwarded client has its own budget.
    let (trusted, _) = app(RateLimitLayer::new(memory(), 1, HOUR).trust_forwarded_for(true));
    assert_eq!(
        send(&trusted, xff("203.0.113.1")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&trusted, xff("203.0.113.2")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&trusted, xff("198.51.100.1, 203.0.113.1"))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the last entry (the proxy's) is the client"
    );
    // Not trusted (default): the header is ignored, the peer address counts.
    let (app, _) = app(RateLimitLayer::new(memory(), 1, HOUR));
    assert_eq!(
        send(&app, xff("203.0.113.1")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&app, xff("203.0.113.2")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // No address at all: one shared fallback bucket.
    let bare = || Request::get("/").body(Body::empty()).unwrap();
    assert_eq!(send(&app, bare()).await.status(), StatusCode::OK);
    assert_eq!(
        send(&app, bare()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn window_slides_and_rejections_do_not_count() {
    let (app, calls) = app(RateLimitLayer::new(memory(), 2, Duration::from_secs(1)));
    let ip = [10, 1, 1, 1];
    let mut passed = 0;
    let mut first_429 = None;
    // A 1 s window: the 2 pass and the third is refused, whatever the phase.
    while first_429.is_none() {
        let res = send(&app, from_ip(ip)).await;
        match res.status() {
            StatusCode::OK => passed += 1,
            StatusCode::TOO_MANY_REQUESTS => first_429 = Some(res),
            other => panic!("unexpected {other}"),
        }
        assert!(passed <= 4, "the limit never applied");
    }
    let res = first_429.unwrap();
    let retry = header(&res, "retry-after").unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    // Poll (rejected polls do not count) until the window has slid enough.
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let res = send(&app, from_ip(ip)).await;
        if res.status() == StatusCode::OK {
            break;
        }
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            Instant::now() < deadline,
            "a client polling every 20 ms was never let through again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), passed + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_limit_pass_under_32_concurrent_requests() {
    let (app, calls) = app(RateLimitLayer::new(memory(), 10, HOUR));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let app = app.clone();
        tasks.spawn(async move { send(&app, from_ip([10, 2, 2, 2])).await.status() });
    }
    let statuses = tasks.join_all().await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((ok, limited), (10, 22));
    assert_eq!(calls.load(Ordering::SeqCst), 10);
}

/// A network-like store whose counters always fail (or, `legacy`, do not exist).
fn broken(legacy: bool) -> Cache {
    let store = Faulty::new(NullBackend);
    let fault = if legacy {
        Fault::Unsupported
    } else {
        Fault::Error
    };
    store.inject(Op::Increment, fault);
    Cache::builder(store)
        .breaker(BreakerSettings {
            threshold: 2,
            cooldown: Duration::from_secs(30),
        })
        .build()
}

#[tokio::test]
async fn failing_store_fails_open_by_default_and_closed_on_request() {
    for legacy in [false, true] {
        let (open, calls) = app(RateLimitLayer::new(broken(legacy), 1, HOUR));
        // Past the breaker threshold too: the circuit opens, requests still pass.
        for _ in 0..5 {
            let res = send(&open, from_ip([10, 3, 3, 3])).await;
            assert_eq!(res.status(), StatusCode::OK);
            assert!(res.headers().get("ratelimit-limit").is_none());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 5);

        let (closed, calls) = app(RateLimitLayer::new(broken(legacy), 1, HOUR).fail_open(false));
        for _ in 0..3 {
            let res = send(&closed, from_ip([10, 3, 3, 3])).await;
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(header(&res, "retry-after"), Some(1));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn storage_uri_errors_name_the_variable() {
    let err = RateLimitLayer::from_uri("mongodb://db:27017", 10, HOUR)
        .await
        .unwrap_err();
    match &err {
        Error::Config {
            var,
            value,
            allowed,
        } => {
            assert_eq!(*var, "RATE_LIMIT_STORAGE_URI");
            assert_eq!(value, "mongodb://db:27017");
            assert!(allowed.contains("memory://") && allowed.contains("redis://"));
            assert!(allowed.contains("memcached://"));
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    assert!(err.to_string().starts_with(
        "invalid value \"mongodb://db:27017\" for RATE_LIMIT_STORAGE_URI: expected memory://"
    ));
    for bad in ["", "redis", "memcached://", "memory://elsewhere"] {
        assert!(
            matches!(
                RateLimitLayer::from_uri(bad, 10, HOUR).await,
                Err(Error::Config {
                    var: "RATE_LIMIT_STORAGE_URI",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
    let layer = RateLimitLayer::from_uri("memory://", 10, HOUR)
        .await
        .unwrap();
    assert_eq!(layer.cache().backend_name(), "memory");
    assert_eq!(layer.counter_capacity(), Some(DEFAULT_MAX_COUNTERS));
}

#[tokio::test]
async fn storage_uri_passwords_never_appear_in_errors_logs_or_debug() {
    let (logs, _guard) = capture_logs();
    for bad in [
        "mongodb://app:hunter2@db:27017",
        "memory://app:hunter2@elsewhere",
        "memcached://",
        "redis:hunter2@db",
        "redis-cluster://",
    ] {
        let err = RateLimitLayer::from_uri(bad, 10, HOUR).await.unwrap_err();
        let shown = format!("{err} | {err:?}");
        assert!(shown.contains("RATE_LIMIT_STORAGE_URI"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    let err = RateLimitLayer::from_uri("mongodb://app:hunter2@db:27017", 10, HOUR)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("\"mongodb://app:***@db:27017\""),
        "{err}"
    );
    let layer = RateLimitLayer::from_uri("memory://", 10, HOUR)
        .await
        .unwrap();
    let debug = format!("{layer:?}");
    assert!(debug.contains("memory://"), "{debug}");
    assert!(!logs.text().contains("hunter2"), "{}", logs.text());
}

#[tokio::test]
async fn from_env_reads_the_storage_uri() {
    // The only test of this binary that touches the environment.
    std::env::set_var("RATE_LIMIT_STORAGE_URI", "memory://");
    let layer = RateLimitLayer::from_env(10, HOUR).await.unwrap();
    assert_eq!(layer.cache().backend_name(), "memory");
    std::env::set_var("RATE_LIMIT_STORAGE_URI", "ftp://nope");
    let err = RateLimitLayer::from_env(10, HOUR).await.unwrap_err();
    assert!(err.to_string().contains("RATE_LIMIT_STORAGE_URI"), "{err}");
    std::env::remove_var("RATE_LIMIT_STORAGE_URI");
}

/// Fills `cache` with `n` entries and reads each a few times, so that the
/// store's admission policy rates them hot.
async fn fill_with_hot_entries(cache: &Cache, n: usize) {
    for round in 0..3 {
        for i in 0..n {
            let key = format!("hot:{i}");
            if round == 0 {
                cache.set(&key, &i, None).await.expect("set");
            } else {
                let _ = cache.get::<usize>(&key).await.expect("get");
            }
        }
    }
}

#[tokio::test]
async fn counters_survive_a_shared_memory_cache_full_of_hot_entries() {
    let cache = Cache::builder(MemoryBackend::new(1_000)).build();
    fill_with_hot_entries(&cache, 5_000).await;
    let (app, calls) = app(RateLimitLayer::new(cache.clone(), 3, HOUR));
    let clients: Vec<[u8; 4]> = (1..=8).map(|i| [10, 40, 0, i]).collect();
    for round in 0..10 {
        for ip in &clients {
            let _ = send(&app, from_ip(*ip)).await;
            // The application keeps using its cache meanwhile.
            fill_with_hot_entries(&cache, 200 + round).await;
        }
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3 * 8,
        "exactly 3 requests of each of the 8 clients pass"
    );
}

/// `limit` requests of one client pass, the rest get 429.
async fn exactly_limit_pass(layer: RateLimitLayer, limit: u64) {
    let (app, calls) = app(layer);
    for i in 0..limit + 3 {
        let expected = if i < limit {
            StatusCode::OK
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(
            send(&app, from_ip([10, 41, 0, 1])).await.status(),
            expected,
            "request {i}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), limit);
}

#[tokio::test]
async fn a_cache_that_stores_nothing_does_not_switch_limiting_off_and_says_so() {
    let (logs, _guard) = capture_logs();
    let none = Cache::builder(NullBackend).build();
    let layer = RateLimitLayer::new(none, 3, HOUR);
    let warned = logs.lines("WARN", "CACHE_BACKEND=none");
    assert_eq!(warned.len(), 1, "{}", logs.text());
    assert!(
        warned[0].contains("RATE_LIMIT_STORAGE_URI"),
        "names what to fix: {}",
        warned[0]
    );
    assert_eq!(layer.counter_capacity(), Some(DEFAULT_MAX_COUNTERS));
    exactly_limit_pass(layer, 3).await;
}

#[tokio::test]
async fn a_memory_cache_of_zero_entries_still_limits() {
    // CACHE_MEMORY_MAX_ENTRIES=0
    let empty = Cache::builder(MemoryBackend::new(0)).build();
    exactly_limit_pass(RateLimitLayer::new(empty, 3, HOUR), 3).await;
}

#[tokio::test]
async fn raw_client_keys_never_reach_counter_key_names() {
    let shared = memory();
    let layer = RateLimitLayer::new(shared.clone(), 5, HOUR).key_fn(|parts| {
        parts
            .headers
            .get("x-api-key")?
            .to_str()
            .ok()
            .map(str::to_owned)
    });
    let counters = layer.cache().clone();
    let (app, _) = app(layer);
    let req = Request::get("/")
        .header("x-api-key", "sk_live_TOPSECRET")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.status(), StatusCode::OK);
    for cache in [&counters, &shared] {
        assert_eq!(
            cache.delete_pattern("*TOPSECRET*").await.unwrap(),
            0,
            "no key name holds the API key"
        );
    }
    let hashed = format!(
        "{:032x}",
        cacheside::backend::hash::bytes128(b"sk_live_TOPSECRET")
    );
    assert_eq!(
        counters
            .delete_pattern(&format!("ratelimit:{{{hashed}}}:*"))
            .await
            .unwrap(),
        1,
        "the counter is under the key's stable hash"
    );
}

#[tokio::test]
async fn a_full_counter_store_drops_the_oldest_counters_counts_and_says_so() {
    let (logs, _guard) = capture_logs();
    let limiter = RateLimitLayer::in_process(1, HOUR).max_counters(4);
    assert_eq!(limiter.counter_capacity(), Some(4));
    for client in 0..10 {
        assert!(
            limiter
                .check(&format!("client-{client}"))
                .await
                .unwrap()
                .allowed
        );
    }
    // The latest clients are still counted.
    assert!(!limiter.check("client-9").await.unwrap().allowed);
    let stats = limiter.stats();
    assert!(stats.evicted >= 6, "{stats:?}");
    let full = logs.lines("WARN", "counter store is full");
    assert_eq!(full.len(), 1, "once per burst: {}", logs.text());
    assert!(full[0].contains("max_counters"), "{}", full[0]);
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_is_reported_at_startup_then_once_per_burst_and_counted() {
    let (logs, _guard) = capture_logs();
    let layer = RateLimitLayer::new(broken(false), 1, HOUR);
    let limiter = layer.clone();
    let (open, calls) = app(layer);
    // Applying the layer checks the store in the background.
    until(|| limiter.stats().store_errors == 1).await;
    let startup = logs.lines("WARN", "rate limiter cannot limit");
    assert_eq!(startup.len(), 1, "{}", logs.text());
    assert!(
        startup[0].contains("startup check") && startup[0].contains("RATE_LIMIT_STORAGE_URI"),
        "{}",
        startup[0]
    );
    assert!(startup[0].contains("fail_open(true)"), "{}", startup[0]);

    for _ in 0..5 {
        assert_eq!(
            send(&open, from_ip([10, 3, 3, 3])).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    let stats = limiter.stats();
    assert_eq!(
        (stats.failed_open, stats.store_errors, stats.allowed),
        (5, 6, 0)
    );
    assert_eq!(
        logs.lines("WARN", "rate limiter cannot limit").len(),
        1,
        "one line per burst"
    );

    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(
        send(&open, from_ip([10, 3, 3, 3])).await.status(),
        StatusCode::OK
    );
    let lines = logs.lines("WARN", "rate limiter cannot limit");
    assert_eq!(lines.len(), 2, "{}", logs.text());
    assert!(
        lines[1].contains("suppressed=5") && lines[1].contains("total=6"),
        "{}",
        lines[1]
    );
    assert_eq!(limiter.stats().failed_open, 6);
}

#[tokio::test(start_paused = true)]
async fn a_store_that_cannot_count_is_an_error_at_startup() {
    let (logs, _guard) = capture_logs();
    let layer = RateLimitLayer::new(broken(true), 1, HOUR).fail_open(false);
    let limiter = layer.clone();
    let (closed, calls) = app(layer);
    until(|| limiter.stats().store_errors == 1).await;
    let errors = logs.lines("ERROR", "does not count");
    assert_eq!(errors.len(), 1, "{}", logs.text());
    assert!(
        errors[0].contains("Backend::increment") && errors[0].contains("503"),
        "{}",
        errors[0]
    );
    for _ in 0..3 {
        assert_eq!(
            send(&closed, from_ip([10, 3, 3, 4])).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(limiter.stats().failed_closed, 3);
    assert_eq!(logs.lines("ERROR", "does not count").len(), 1);
}

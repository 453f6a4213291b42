//! `RateLimitLayer` on the in-memory store, driven through an axum `Router`.

mod rate_limit_support;
use rate_limit_support::{app, from_ip, header, send};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use cacheside::backends::MemoryBackend;
use cacheside::http::RateLimitLayer;
use cacheside::{async_trait, Backend, Breaker, Bytes, Cache, Error, Key};
use http::{Request, StatusCode};

/// Long enough that no test straddles a window boundary (windows are epoch-aligned).
const HOUR: Duration = Duration::from_secs(3600);

fn memory() -> Cache {
    Cache::builder().backend(MemoryBackend::new(10_000)).build()
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
struct Broken {
    legacy: bool,
}

#[async_trait]
impl Backend for Broken {
    fn name(&self) -> &'static str {
        "broken"
    }
    async fn get(&self, _key: Key<'_>) -> Result<Option<Bytes>, Error> {
        Ok(None)
    }
    async fn set(&self, _: Key<'_>, _: Bytes, _: Option<Duration>) -> Result<(), Error> {
        Ok(())
    }
    async fn delete(&self, _key: Key<'_>) -> Result<bool, Error> {
        Ok(false)
    }
    async fn delete_pattern(&self, _: &str, _: &str) -> Result<u64, Error> {
        Ok(0)
    }
    async fn exists(&self, _key: Key<'_>) -> Result<bool, Error> {
        Ok(false)
    }
    async fn ttl(&self, _key: Key<'_>) -> Result<Option<Duration>, Error> {
        Ok(None)
    }
    async fn clear(&self, _namespace: &str) -> Result<u64, Error> {
        Ok(0)
    }
    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }
    async fn increment(
        &self,
        _key: Key<'_>,
        _delta: i64,
        _ttl: Duration,
        _peek: Option<Key<'_>>,
    ) -> Result<(u64, u64), Error> {
        if self.legacy {
            return Err(Error::Unsupported {
                backend: "broken",
                op: "increment",
            });
        }
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        Err(Error::backend("broken", "increment", refused))
    }
}

fn broken(legacy: bool) -> Cache {
    Cache::builder()
        .backend(Broken { legacy })
        .breaker(Breaker {
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
    let cache = Cache::builder().backend(MemoryBackend::new(1_000)).build();
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

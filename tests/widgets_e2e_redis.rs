//! The widgets example end to end with a real `redis-server` (started on a
//! free loopback port), including Redis being killed mid-test.

use widgets_example::{app, db};
mod common;
mod widgets_e2e;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use cacheside::backends::RedisBackend;
use cacheside::testing::RedisServer;
use cacheside::{BreakerSettings, Cache};
use common::run;
use reqwest::StatusCode;

fn server() -> &'static Mutex<RedisServer> {
    static SERVER: OnceLock<Mutex<RedisServer>> = OnceLock::new();
    SERVER.get_or_init(|| Mutex::new(RedisServer::start()))
}

async fn global() -> &'static Cache {
    common::global_cache(|| async {
        let url = server().lock().expect("server").url();
        let backend = RedisBackend::connect(&url)
            .await
            .expect("connect to the test redis");
        // Healthy until the last check kills it: a slow round trip on a
        // loaded machine must not fail open (the checks count queries and
        // misses exactly). A killed server refuses at once, no timeout needed.
        Cache::builder(backend)
            .op_timeout(Duration::from_secs(1))
            .breaker(BreakerSettings {
                threshold: 3,
                cooldown: Duration::from_millis(200),
            })
            .build()
    })
    .await
}

/// Every check in one test: the last one kills Redis, which must not disturb the others.
#[test]
fn widgets_service_on_redis() {
    run(async {
        widgets_e2e::reads_are_cached_and_writes_invalidate().await;
        widgets_e2e::public_route_hits_and_revalidates().await;
        widgets_e2e::unknown_urls_are_not_cached().await;
        widgets_e2e::callers_are_kept_apart().await;
        widgets_e2e::the_rate_limiter_answers_429().await;
        widgets_e2e::metrics_count_what_was_sent().await;
        redis_killed_mid_test_changes_no_response_body().await;
    });
}

async fn redis_killed_mid_test_changes_no_response_body() {
    let svc = widgets_e2e::serve(widgets_e2e::options("e2e-kill")).await;
    let id = svc.create("survivor").await;
    let paths = [
        format!("/widgets/{id}"),
        "/widgets?page=1&size=50".to_string(),
        "/widgets/count".to_string(),
        "/public/catalog".to_string(),
    ];
    let mut before = Vec::new();
    for p in &paths {
        // `no-cache` makes the response cache store the current catalog.
        let r = svc
            .call(
                reqwest::Method::GET,
                p,
                &[("cache-control", "no-cache")],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{p}");
        before.push(r.body);
    }
    assert!(
        global()
            .await
            .exists(&format!("widget:{id}"))
            .await
            .unwrap(),
        "warm in Redis"
    );

    server().lock().expect("server").kill();
    for round in 0..3 {
        for (p, expected) in paths.iter().zip(&before) {
            let r = svc.get(p).await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "{p} with Redis down (round {round})"
            );
            assert_eq!(&r.body, expected, "{p} with Redis down (round {round})");
        }
    }
    assert!(
        global().await.stats().errors > 0,
        "the outage was seen and counted"
    );

    server().lock().expect("server").restart();
    // Hits come back once the breaker probes the restarted server (bounded poll).
    let cache = global().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = svc.get(&paths[0]).await;
        assert_eq!(r.body, before[0]);
        if cache.exists(&format!("widget:{id}")).await.unwrap_or(false) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cache did not recover within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (p, expected) in paths.iter().zip(&before) {
        assert_eq!(&svc.get(p).await.body, expected, "{p} after restart");
    }
}

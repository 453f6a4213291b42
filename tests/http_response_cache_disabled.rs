//! `set_enabled(false)` (what `CACHE_ENABLED=false` sets at startup) switches
//! the response cache off too: requests pass through and no store is touched.
//! A binary of its own: the switch is process-wide.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use cache_core::testing::Fault;
use cacheside::backends::MemoryBackend;
use cacheside::http::ResponseCacheLayer;
use cacheside::Cache;
use common::{broken, Calls};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn x_cache(app: &Router) -> (String, String) {
    let req = Request::get("/r")
        .header("host", "example.com")
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let label = res.headers()["x-cache"].to_str().unwrap().to_owned();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (label, String::from_utf8(body.to_vec()).unwrap())
}

fn app(cache: Cache, calls: &Calls) -> Router {
    let c = calls.clone();
    Router::new()
        .route(
            "/r",
            get(move || {
                let n = c.hit();
                async move { format!("run {n}") }
            }),
        )
        .layer(ResponseCacheLayer::new(cache).ttl(Duration::from_secs(60)))
}

#[tokio::test]
async fn cache_enabled_false_switches_the_response_cache_off() {
    let memory = Cache::builder(MemoryBackend::new(100)).build();
    let calls = Calls::default();
    let warm = app(memory.clone(), &calls);
    assert_eq!(x_cache(&warm).await, ("MISS".into(), "run 1".into()));
    assert_eq!(x_cache(&warm).await, ("HIT".into(), "run 1".into()));

    let counting = broken(Fault::Error);
    let cold = app(Cache::builder(counting.clone()).build(), &Calls::default());

    cacheside::set_enabled(false);
    assert_eq!(x_cache(&warm).await, ("BYPASS".into(), "run 2".into()));
    assert_eq!(x_cache(&warm).await, ("BYPASS".into(), "run 3".into()));
    x_cache(&cold).await;
    assert_eq!(
        counting.total_calls(),
        0,
        "no store operation while disabled"
    );

    cacheside::set_enabled(true);
    assert_eq!(x_cache(&warm).await, ("HIT".into(), "run 1".into()));
}

//! The layers in a plain tower stack, no axum anywhere: `tower::ServiceBuilder`
//! over a `service_fn` speaking `http` types with `http-body-util` bodies.
//! Runs with `--no-default-features --features memory,http`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cacheside::backend::Bytes;
use cacheside::backends::MemoryBackend;
use cacheside::http::{ClientCacheLayer, RateLimitLayer, ResponseCacheLayer};
use cacheside::Cache;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, ServiceBuilder, ServiceExt};

fn memory() -> Cache {
    Cache::builder(MemoryBackend::new(1_000)).build()
}

fn request(method: Method, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "example.com")
        .header("x-api-key", "k1")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A handler counting its runs, answering `items {n}`.
fn counted(
    calls: &Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    let calls = Arc::clone(calls);
    service_fn(move |_req: Request<Full<Bytes>>| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!("items {n}"))))) }
    })
}

#[tokio::test]
async fn the_three_layers_stack_in_a_service_builder() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(
            // No ConnectInfo outside axum: the client is what key_fn says.
            RateLimitLayer::new(memory(), 3, Duration::from_secs(60))
                .key_fn(|parts| Some(format!("{:?}", parts.headers.get("x-api-key")?))),
        )
        .layer(ClientCacheLayer::new().public_prefix("/public", Duration::from_secs(600)))
        .layer(ResponseCacheLayer::new(memory()).ttl(Duration::from_secs(60)))
        .service(counted(&calls));

    let first = svc
        .clone()
        .oneshot(request(Method::GET, "/public/items"))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["x-cache"], "MISS");
    // The response cache's own Cache-Control, kept by the client cache outside it.
    assert_eq!(first.headers()["cache-control"], "max-age=60");
    assert_eq!(first.headers()["ratelimit-limit"], "3");
    assert_eq!(first.headers()["ratelimit-remaining"], "2");
    assert_eq!(
        first.into_body().collect().await.unwrap().to_bytes(),
        "items 1"
    );

    let second = svc
        .clone()
        .oneshot(request(Method::GET, "/public/items"))
        .await
        .unwrap();
    assert_eq!(second.headers()["x-cache"], "HIT");
    assert_eq!(
        second.into_body().collect().await.unwrap().to_bytes(),
        "items 1"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let post = svc
        .clone()
        .oneshot(request(Method::POST, "/api/items"))
        .await
        .unwrap();
    assert_eq!(post.headers()["x-cache"], "BYPASS");
    assert_eq!(post.headers()["cache-control"], "private, no-store");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let limited = svc
        .oneshot(request(Method::GET, "/public/items"))
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(
        limited.into_body().collect().await.unwrap().to_bytes(),
        "Too Many Requests\n"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_request_the_key_fn_does_not_limit_reaches_the_handler_without_fields() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(RateLimitLayer::in_process(0, Duration::from_secs(60)).key_fn(|_| None))
        .service(counted(&calls));
    let res = svc.oneshot(request(Method::GET, "/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.headers().contains_key("ratelimit-limit"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

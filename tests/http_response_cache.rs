//! `cacheside::http::ResponseCacheLayer` driven through axum routers, no network.

mod common;

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use cache_core::testing::Fault;
use cacheside::backends::MemoryBackend;
use cacheside::http::{ResponseCacheLayer, ResponseEntry};
use cacheside::Cache;
use common::{broken, Calls};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn memory() -> Cache {
    Cache::builder(MemoryBackend::new(10_000))
        .default_ttl(Duration::from_secs(60))
        .build()
}

/// The authority every test request names (in its `Host` header, as HTTP/1.1 clients send it).
const HOST: &str = "example.com";

fn get_req(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header("host", HOST)
        .body(Body::empty())
        .unwrap()
}

fn with_header(uri: &str, name: &'static str, value: &str) -> Request<Body> {
    Request::get(uri)
        .header("host", HOST)
        .header(name, value)
        .body(Body::empty())
        .unwrap()
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn x_cache(&self) -> &str {
        self.header("x-cache").unwrap_or("<none>")
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// `GET path` answering `body` and counting calls, behind a response cache over `cache`.
fn counted(path: &str, body: &'static str, calls: &Calls, layer: ResponseCacheLayer) -> Router {
    let calls = calls.clone();
    Router::new()
        .route(
            path,
            get(move || {
                let calls = calls.clone();
                async move {
                    calls.hit();
                    body
                }
            }),
        )
        .layer(layer)
}

fn expected_etag(body: &[u8]) -> String {
    format!("\"{:032x}\"", cacheside::backend::hash::bytes128(body))
}

#[tokio::test]
async fn miss_then_hit_runs_the_handler_once_and_adds_headers() {
    let calls = Calls::default();
    let app = counted(
        "/items",
        "[1,2,3]",
        &calls,
        ResponseCacheLayer::new(memory()),
    );

    let first = send(&app, get_req("/items")).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(first.text(), "[1,2,3]");
    assert_eq!(first.header("cache-control"), Some("max-age=60"));
    assert_eq!(first.header("etag").unwrap(), expected_etag(b"[1,2,3]"));
    assert_eq!(first.header("age"), None);

    let second = send(&app, get_req("/items")).await;
    assert_eq!(second.x_cache(), "HIT");
    assert_eq!(second.text(), "[1,2,3]");
    assert_eq!(second.header("etag"), first.header("etag"));
    let age: u64 = second.header("age").unwrap().parse().unwrap();
    assert!(age <= 1, "age {age}");
    let max_age: u64 = second
        .header("cache-control")
        .unwrap()
        .strip_prefix("max-age=")
        .unwrap()
        .parse()
        .unwrap();
    assert!((59..=60).contains(&max_age), "max-age {max_age}");
    assert_eq!(
        second.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn entry_is_readable_and_without_hop_by_hop_headers() {
    let cache = memory();
    let app = Router::new()
        .route(
            "/h",
            get(|| async { ([("keep-alive", "timeout=5"), ("x-kept", "1")], "body") }),
        )
        .layer(ResponseCacheLayer::new(cache.clone()).ttl(Duration::from_secs(30)));
    assert_eq!(send(&app, get_req("/h")).await.x_cache(), "MISS");
    let Some(ResponseEntry::Response(entry)) =
        cache.get("http:GET:http://example.com/h").await.unwrap()
    else {
        panic!("no response entry under the base key")
    };
    assert_eq!(entry.status, 200);
    assert_eq!(entry.body, b"body");
    assert_eq!(entry.ttl, 30);
    let names: Vec<&str> = entry.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"x-kept"), "{names:?}");
    assert!(names.contains(&"etag"), "{names:?}");
    assert!(!names.contains(&"keep-alive"), "{names:?}");
    let hit = send(&app, get_req("/h")).await;
    assert_eq!(hit.header("x-kept"), Some("1"));
    assert_eq!(hit.header("keep-alive"), None);
}

#[tokio::test]
async fn etag_is_the_same_across_layers_and_caches() {
    let a = counted(
        "/e",
        "same body",
        &Calls::default(),
        ResponseCacheLayer::new(memory()),
    );
    let b = counted(
        "/e",
        "same body",
        &Calls::default(),
        ResponseCacheLayer::new(memory()).key_prefix("other"),
    );
    let ra = send(&a, get_req("/e")).await;
    let rb = send(&b, get_req("/e")).await;
    assert_eq!(ra.header("etag"), rb.header("etag"));
    assert_eq!(ra.header("etag").unwrap(), expected_etag(b"same body"));
}

#[tokio::test]
async fn handler_etag_is_kept() {
    let app = Router::new()
        .route("/t", get(|| async { ([("etag", "\"v1\"")], "x") }))
        .layer(ResponseCacheLayer::new(memory()));
    assert_eq!(
        send(&app, get_req("/t")).await.header("etag"),
        Some("\"v1\"")
    );
    let hit = send(&app, get_req("/t")).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.header("etag"), Some("\"v1\""));
    let nm = send(&app, with_header("/t", "if-none-match", "W/\"v1\"")).await;
    assert_eq!(nm.status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn if_none_match_gives_304_without_body() {
    let calls = Calls::default();
    let app = counted("/n", "payload", &calls, ResponseCacheLayer::new(memory()));
    let etag = send(&app, get_req("/n"))
        .await
        .header("etag")
        .unwrap()
        .to_owned();

    for value in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"nope\", {etag}"),
        "*".to_owned(),
    ] {
        let res = send(&app, with_header("/n", "if-none-match", &value)).await;
        assert_eq!(res.status, StatusCode::NOT_MODIFIED, "{value}");
        assert!(res.body.is_empty());
        assert_eq!(res.header("etag"), Some(etag.as_str()));
        assert_eq!(res.x_cache(), "HIT");
        assert!(res.header("age").is_some());
        assert!(res.header("cache-control").is_some());
    }
    let other = send(&app, with_header("/n", "if-none-match", "\"nope\"")).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.text(), "payload");
    assert_eq!(calls.get(), 1);

    // A miss with a matching If-None-Match is answered with 304 too.
    let fresh = counted(
        "/n",
        "payload",
        &Calls::default(),
        ResponseCacheLayer::new(memory()),
    );
    let res = send(&fresh, with_header("/n", "if-none-match", &etag)).await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    assert_eq!(res.x_cache(), "MISS");
    // …and the full response was stored.
    let full = send(&fresh, get_req("/n")).await;
    assert_eq!((full.x_cache(), full.text()), ("HIT", "payload"));
}

#[tokio::test]
async fn query_order_does_not_change_the_key() {
    let calls = Calls::default();
    let cache = memory();
    let app = counted("/q", "page", &calls, ResponseCacheLayer::new(cache.clone()));
    assert_eq!(send(&app, get_req("/q?b=2&a=1")).await.x_cache(), "MISS");
    assert_eq!(send(&app, get_req("/q?a=1&b=2")).await.x_cache(), "HIT");
    assert_eq!(send(&app, get_req("/q?a=1&b=3")).await.x_cache(), "MISS");
    assert_eq!(calls.get(), 2);
    assert!(cache
        .exists("http:GET:http://example.com/q?a=1&b=2")
        .await
        .unwrap());
}

#[tokio::test]
async fn vary_keeps_variants_apart() {
    let calls = Calls::default();
    let cache = memory();
    let c = calls.clone();
    let app = Router::new()
        .route(
            "/greet",
            get(move |headers: HeaderMap| {
                let c = c.clone();
                async move {
                    c.hit();
                    let lang = headers
                        .get("accept-language")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("en")
                        .to_owned();
                    let body = if lang.starts_with("fr") {
                        "bonjour"
                    } else {
                        "hello"
                    };
                    ([("vary", "Accept-Language")], body)
                }
            }),
        )
        .layer(ResponseCacheLayer::new(cache.clone()));
    let greet = |lang: &str| with_header("/greet", "accept-language", lang);

    let en = send(&app, greet("en")).await;
    assert_eq!((en.x_cache(), en.text()), ("MISS", "hello"));
    let fr = send(&app, greet("fr")).await;
    assert_eq!((fr.x_cache(), fr.text()), ("MISS", "bonjour"));
    let en = send(&app, greet("en")).await;
    assert_eq!((en.x_cache(), en.text()), ("HIT", "hello"));
    let fr = send(&app, greet("fr")).await;
    assert_eq!((fr.x_cache(), fr.text()), ("HIT", "bonjour"));
    assert_eq!(fr.header("vary"), Some("Accept-Language"));
    assert_eq!(calls.get(), 2);
    let index: ResponseEntry = cache
        .get("http:GET:http://example.com/greet")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(index, ResponseEntry::Vary(vec!["accept-language".into()]));
    // HEAD finds the variant too.
    let head = Request::head("/greet")
        .header("host", HOST)
        .header("accept-language", "fr")
        .body(Body::empty())
        .unwrap();
    let head = send(&app, head).await;
    assert_eq!(head.x_cache(), "HIT");
    assert_eq!(head.header("content-length"), Some("7"));
}

fn by_language(calls: &Calls) -> Router {
    let c = calls.clone();
    Router::new().route(
        "/greet",
        get(move |headers: HeaderMap| {
            let c = c.clone();
            async move {
                c.hit();
                tokio::time::sleep(Duration::from_millis(100)).await;
                let fr = headers
                    .get("accept-language")
                    .is_some_and(|v| v.as_bytes().starts_with(b"fr"));
                (
                    [("vary", "accept-language")],
                    if fr { "bonjour" } else { "hello" },
                )
            }
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_misses_on_a_vary_resource_run_the_handler_once() {
    let calls = Calls::default();
    let app = by_language(&calls).layer(ResponseCacheLayer::new(memory()));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(
                async move { send(&app, with_header("/greet", "accept-language", "fr")).await },
            )
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().text(), "bonjour");
    }
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn a_changed_vary_rewrites_the_index() {
    let cache = memory();
    // An old deployment's index said the resource varied on another header.
    cache
        .set(
            "http:GET:http://example.com/greet",
            &ResponseEntry::Vary(vec!["x-old".into()]),
            None,
        )
        .await
        .unwrap();
    let calls = Calls::default();
    let app = by_language(&calls).layer(ResponseCacheLayer::new(cache.clone()));
    let fr = || with_header("/greet", "accept-language", "fr");
    assert_eq!(send(&app, fr()).await.x_cache(), "MISS");
    let index: ResponseEntry = cache
        .get("http:GET:http://example.com/greet")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(index, ResponseEntry::Vary(vec!["accept-language".into()]));
    let hit = send(&app, fr()).await;
    assert_eq!((hit.x_cache(), hit.text()), ("HIT", "bonjour"));
    let en = send(&app, with_header("/greet", "accept-language", "en")).await;
    assert_eq!((en.x_cache(), en.text()), ("MISS", "hello"));
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn vary_star_is_never_stored() {
    let app = Router::new()
        .route("/v", get(|| async { ([("vary", "*")], "x") }))
        .layer(ResponseCacheLayer::new(memory()));
    assert_eq!(send(&app, get_req("/v")).await.x_cache(), "MISS");
    assert_eq!(send(&app, get_req("/v")).await.x_cache(), "MISS");
}

#[tokio::test]
async fn private_responses_are_never_stored() {
    let cache = memory();
    let calls = Calls::default();
    let headers: [(&str, (&'static str, &'static str)); 4] = [
        ("/cookie", ("set-cookie", "session=1")),
        ("/private", ("cache-control", "private, max-age=60")),
        ("/nostore", ("cache-control", "no-store")),
        ("/nostore2", ("cache-control", "max-age=5, No-Store")),
    ];
    let mut router = Router::new();
    for (path, (name, value)) in headers {
        let c = calls.clone();
        router = router.route(
            path,
            get(move || {
                let c = c.clone();
                async move {
                    c.hit();
                    ([(name, value)], "secret")
                }
            }),
        );
    }
    let app = router.layer(ResponseCacheLayer::new(cache.clone()));
    for (path, (name, value)) in headers {
        for _ in 0..2 {
            let res = send(&app, get_req(path)).await;
            assert_eq!(res.x_cache(), "MISS", "{path}");
            assert_eq!(res.text(), "secret");
            assert_eq!(res.header(name), Some(value));
        }
        assert!(!cache
            .exists(&format!("http:GET:http://example.com{path}"))
            .await
            .unwrap());
    }
    assert_eq!(calls.get(), 8);
}

#[tokio::test]
async fn credentials_bypass_without_vary_caller() {
    let calls = Calls::default();
    let app = counted("/me", "me", &calls, ResponseCacheLayer::new(memory()));
    for (name, value) in [("authorization", "Bearer a"), ("cookie", "sid=1")] {
        for _ in 0..2 {
            let res = send(&app, with_header("/me", name, value)).await;
            assert_eq!(res.x_cache(), "BYPASS");
            assert_eq!(res.text(), "me");
        }
    }
    assert_eq!(calls.get(), 4);
    // The anonymous entry was not written by those requests.
    assert_eq!(send(&app, get_req("/me")).await.x_cache(), "MISS");
}

fn bearer(parts: &axum::http::request::Parts) -> Option<String> {
    let token = parts.headers.get("authorization")?.to_str().ok()?;
    token.strip_prefix("Bearer ").map(str::to_owned)
}

#[tokio::test]
async fn vary_caller_keys_per_caller() {
    let calls = Calls::default();
    let c = calls.clone();
    let cache = memory();
    let app = Router::new()
        .route(
            "/me",
            get(move |headers: HeaderMap| {
                let c = c.clone();
                async move {
                    c.hit();
                    let who = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default();
                    format!("hello {who}")
                }
            }),
        )
        .layer(ResponseCacheLayer::new(cache.clone()).vary_caller(bearer));
    let as_user = |t: &str| with_header("/me", "authorization", &format!("Bearer {t}"));

    let a1 = send(&app, as_user("alice")).await;
    assert_eq!((a1.x_cache(), a1.text()), ("MISS", "hello Bearer alice"));
    assert_eq!(a1.header("cache-control"), Some("private, max-age=60"));
    let b1 = send(&app, as_user("bob")).await;
    assert_eq!((b1.x_cache(), b1.text()), ("MISS", "hello Bearer bob"));
    let a2 = send(&app, as_user("alice")).await;
    assert_eq!((a2.x_cache(), a2.text()), ("HIT", "hello Bearer alice"));
    assert!(a2
        .header("cache-control")
        .unwrap()
        .starts_with("private, max-age="));
    let b2 = send(&app, as_user("bob")).await;
    assert_eq!((b2.x_cache(), b2.text()), ("HIT", "hello Bearer bob"));
    assert_eq!(calls.get(), 2);
    let alice = format!("{:032x}", cacheside::backend::hash::bytes128(b"alice"));
    assert!(
        cache
            .exists(&format!("http:GET:http://example.com/me#c={alice}"))
            .await
            .unwrap(),
        "the entry is keyed by a hash of the caller"
    );
    assert!(
        !cache
            .exists("http:GET:http://example.com/me#c=alice")
            .await
            .unwrap(),
        "never by the caller itself (a token would reach key names)"
    );

    // Credentials the function cannot name → bypass.
    let basic = send(&app, with_header("/me", "authorization", "Basic eA==")).await;
    assert_eq!(basic.x_cache(), "BYPASS");
    // No credentials: the shared anonymous entry.
    let anon = send(&app, get_req("/me")).await;
    assert_eq!(anon.x_cache(), "MISS");
    assert_eq!(anon.header("cache-control"), Some("max-age=60"));
    assert_eq!(send(&app, get_req("/me")).await.x_cache(), "HIT");
}

#[tokio::test]
async fn request_no_cache_revalidates_and_replaces_the_entry() {
    let calls = Calls::default();
    let c = calls.clone();
    let app = Router::new()
        .route(
            "/n",
            get(move || {
                let c = c.clone();
                async move { format!("version {}", c.hit()) }
            }),
        )
        .layer(ResponseCacheLayer::new(memory()));
    assert_eq!(send(&app, get_req("/n")).await.text(), "version 1");
    assert_eq!(send(&app, get_req("/n")).await.text(), "version 1");
    let fresh = send(&app, with_header("/n", "cache-control", "no-cache")).await;
    assert_eq!((fresh.x_cache(), fresh.text()), ("MISS", "version 2"));
    let hit = send(&app, get_req("/n")).await;
    assert_eq!((hit.x_cache(), hit.text()), ("HIT", "version 2"));
    assert_eq!(hit.header("etag").unwrap(), expected_etag(b"version 2"));
    let pragma = send(&app, with_header("/n", "pragma", "no-cache")).await;
    assert_eq!(pragma.text(), "version 3");
    assert_eq!(calls.get(), 3);
}

#[tokio::test]
async fn request_no_store_bypasses() {
    let calls = Calls::default();
    let app = counted("/s", "s", &calls, ResponseCacheLayer::new(memory()));
    let res = send(&app, with_header("/s", "cache-control", "no-store")).await;
    assert_eq!(res.x_cache(), "BYPASS");
    assert_eq!(send(&app, get_req("/s")).await.x_cache(), "MISS");
    assert_eq!(send(&app, get_req("/s")).await.x_cache(), "HIT");
    // no-store does not read either.
    let res = send(&app, with_header("/s", "cache-control", "no-store")).await;
    assert_eq!(res.x_cache(), "BYPASS");
    assert_eq!(calls.get(), 3);
}

#[tokio::test]
async fn non_cacheable_status_is_not_stored() {
    let calls = Calls::default();
    let c = calls.clone();
    let app = Router::new()
        .route(
            "/boom",
            get(move || {
                let c = c.clone();
                async move {
                    c.hit();
                    (StatusCode::INTERNAL_SERVER_ERROR, "boom")
                }
            }),
        )
        .route("/created", get(|| async { (StatusCode::CREATED, "made") }))
        .layer(ResponseCacheLayer::new(memory()));
    for _ in 0..2 {
        let res = send(&app, get_req("/boom")).await;
        assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.x_cache(), "MISS");
        assert_eq!(res.text(), "boom");
        assert_eq!(res.header("etag"), None);
    }
    assert_eq!(calls.get(), 2);
    // Neither 404 (here axum's fallback: any URL a scanner makes up) nor 201 is stored by default.
    for _ in 0..2 {
        let nf = send(&app, get_req("/missing")).await;
        assert_eq!((nf.status, nf.x_cache()), (StatusCode::NOT_FOUND, "MISS"));
    }
    assert_eq!(send(&app, get_req("/created")).await.x_cache(), "MISS");
    assert_eq!(send(&app, get_req("/created")).await.x_cache(), "MISS");
}

#[tokio::test]
async fn custom_status_predicate() {
    let app = Router::new()
        .route("/c", get(|| async { (StatusCode::CREATED, "made") }))
        .layer(ResponseCacheLayer::new(memory()).cache_status(|s| s.is_success()));
    assert_eq!(send(&app, get_req("/c")).await.x_cache(), "MISS");
    assert_eq!(send(&app, get_req("/c")).await.x_cache(), "HIT");
}

/// Storing 404s is an opt-in, through the status predicate.
fn with_404(status: StatusCode) -> bool {
    cacheside::http::default_cache_status(status) || status == StatusCode::NOT_FOUND
}

#[tokio::test]
async fn not_found_is_stored_only_when_asked() {
    let app = Router::new()
        .route("/c", get(|| async { "c" }))
        .layer(ResponseCacheLayer::new(memory()).cache_status(with_404));
    assert_eq!(send(&app, get_req("/missing")).await.x_cache(), "MISS");
    let nf = send(&app, get_req("/missing")).await;
    assert_eq!((nf.status, nf.x_cache()), (StatusCode::NOT_FOUND, "HIT"));
}

/// A body of `chunks` without a size hint (streamed, like a file or a proxy).
struct Chunked(VecDeque<Bytes>);

impl http_body::Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// One chunk, then a read error.
struct Failing(Option<Bytes>);

impl http_body::Body for Failing {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Ready(Some(match self.0.take() {
            Some(b) => Ok(http_body::Frame::data(b)),
            None => Err(std::io::Error::other("disk gone")),
        }))
    }
}

#[tokio::test]
async fn a_body_that_fails_is_passed_through_and_not_stored() {
    let cache = memory();
    let app = Router::new()
        .route(
            "/f",
            get(|| async { Response::new(Body::new(Failing(Some(Bytes::from_static(b"part"))))) }),
        )
        .layer(ResponseCacheLayer::new(cache.clone()));
    let res = app.clone().oneshot(get_req("/f")).await.unwrap();
    assert_eq!(res.headers()["x-cache"], "MISS");
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "part");
    let err = body.frame().await.unwrap().unwrap_err();
    assert!(err.to_string().contains("disk gone"), "{err}");
    assert!(!cache.exists("http:GET:http://example.com/f").await.unwrap());
}

fn big(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn bodies_over_the_limit_pass_through_intact() {
    let calls = Calls::default();
    let (c1, c2) = (calls.clone(), calls.clone());
    let cache = memory();
    let app = Router::new()
        .route(
            "/streamed",
            get(move || {
                let c = c1.clone();
                async move {
                    c.hit();
                    let chunks = big(5000).chunks(1000).map(Bytes::copy_from_slice).collect();
                    Response::new(Body::new(Chunked(chunks)))
                }
            }),
        )
        .route(
            "/sized",
            get(move || {
                let c = c2.clone();
                async move {
                    c.hit();
                    big(5000).into_response()
                }
            }),
        )
        .route("/small", get(|| async { big(1500) }))
        .layer(ResponseCacheLayer::new(cache.clone()).max_body_bytes(1500));
    for path in ["/streamed", "/sized"] {
        for _ in 0..2 {
            let res = send(&app, get_req(path)).await;
            assert_eq!(res.status, StatusCode::OK);
            assert_eq!(res.x_cache(), "MISS", "{path}");
            assert_eq!(res.body.as_ref(), big(5000).as_slice(), "{path}");
            assert_eq!(res.header("etag"), None);
        }
        assert!(!cache
            .exists(&format!("http:GET:http://example.com{path}"))
            .await
            .unwrap());
    }
    assert_eq!(calls.get(), 4);
    // Exactly at the limit is stored.
    assert_eq!(send(&app, get_req("/small")).await.x_cache(), "MISS");
    let hit = send(&app, get_req("/small")).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.body.as_ref(), big(1500).as_slice());
}

#[tokio::test]
async fn post_is_never_cached() {
    let calls = Calls::default();
    let c = calls.clone();
    let cache = memory();
    let app = Router::new()
        .route(
            "/p",
            post(move || {
                let c = c.clone();
                async move { format!("post {}", c.hit()) }
            }),
        )
        .layer(ResponseCacheLayer::new(cache.clone()));
    for i in 1..=2 {
        let res = send(
            &app,
            Request::post("/p")
                .header("host", HOST)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(res.x_cache(), "BYPASS");
        assert_eq!(res.text(), format!("post {i}"));
    }
    assert!(!cache.exists("http:GET:http://example.com/p").await.unwrap());
    assert!(!cache.exists("http:POST:/p").await.unwrap());
}

#[tokio::test]
async fn head_is_answered_from_the_get_entry() {
    let calls = Calls::default();
    let app = counted(
        "/h",
        "twelve bytes",
        &calls,
        ResponseCacheLayer::new(memory()),
    );
    let head = || {
        Request::head("/h")
            .header("host", HOST)
            .body(Body::empty())
            .unwrap()
    };
    let cold = send(&app, head()).await;
    assert_eq!(cold.x_cache(), "MISS");
    assert!(cold.body.is_empty());
    // HEAD did not store anything.
    assert_eq!(send(&app, get_req("/h")).await.x_cache(), "MISS");
    let warm = send(&app, head()).await;
    assert_eq!(warm.x_cache(), "HIT");
    assert!(warm.body.is_empty());
    assert_eq!(warm.header("content-length"), Some("12"));
    assert_eq!(warm.header("etag").unwrap(), expected_etag(b"twelve bytes"));
    assert_eq!(calls.get(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_run_the_handler_once() {
    let calls = Calls::default();
    let c = calls.clone();
    let app = Router::new()
        .route(
            "/slow",
            get(move || {
                let c = c.clone();
                async move {
                    c.hit();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    "slow answer"
                }
            }),
        )
        .layer(ResponseCacheLayer::new(memory()));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { send(&app, get_req("/slow")).await })
        })
        .collect();
    let mut misses = 0;
    for t in tasks {
        let res = t.await.unwrap();
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.text(), "slow answer");
        assert_eq!(res.header("etag").unwrap(), expected_etag(b"slow answer"));
        if res.x_cache() == "MISS" {
            misses += 1;
        } else {
            assert_eq!(res.x_cache(), "HIT");
        }
    }
    assert_eq!(calls.get(), 1);
    assert_eq!(misses, 1);
}

#[tokio::test]
async fn a_broken_store_fails_open() {
    let backend = broken(Fault::Error);
    let cache = Cache::builder(backend.clone()).build();
    let calls = Calls::default();
    let c = calls.clone();
    let app = Router::new()
        .route(
            "/b",
            get(move || {
                let c = c.clone();
                async move { format!("fresh {}", c.hit()) }
            }),
        )
        .route("/nope", get(|| async { (StatusCode::BAD_GATEWAY, "down") }))
        .layer(ResponseCacheLayer::new(cache.clone()));
    for i in 1..=3 {
        let res = send(&app, get_req("/b")).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.x_cache(), "MISS");
        assert_eq!(res.text(), format!("fresh {i}"));
        assert!(res.header("etag").is_some());
    }
    let res = send(&app, get_req("/nope")).await;
    assert_eq!(
        (res.status, res.x_cache()),
        (StatusCode::BAD_GATEWAY, "MISS")
    );
    let res = send(&app, with_header("/b", "cache-control", "no-cache")).await;
    assert_eq!((res.x_cache(), res.text()), ("MISS", "fresh 4"));
    assert!(backend.total_calls() > 0);
    assert!(cache.stats().errors > 0);
}

#[tokio::test]
async fn ttl_zero_bypasses() {
    let app = counted(
        "/z",
        "z",
        &Calls::default(),
        ResponseCacheLayer::new(memory()).ttl(Duration::ZERO),
    );
    assert_eq!(send(&app, get_req("/z")).await.x_cache(), "BYPASS");
}

#[tokio::test]
async fn handler_cache_control_is_kept() {
    let app = Router::new()
        .route(
            "/cc",
            get(|| async { ([("cache-control", "public, max-age=5")], "x") }),
        )
        .layer(ResponseCacheLayer::new(memory()));
    let miss = send(&app, get_req("/cc")).await;
    assert_eq!(miss.header("cache-control"), Some("public, max-age=5"));
    let hit = send(&app, get_req("/cc")).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.header("cache-control"), Some("public, max-age=5"));
    assert_eq!(hit.headers.get_all(header::CACHE_CONTROL).iter().count(), 1);
    let _ = HeaderValue::from_static("unused");
}

/// Redis-backed: the layer's entries round-trip through a real server and
/// two processes' worth of layers (two caches on one server) share them.
#[cfg(all(feature = "redis", feature = "testing"))]
#[test]
fn redis_backed_response_cache() {
    use cacheside::backends::RedisBackend;
    use cacheside::testing::RedisServer;

    let server = RedisServer::start();
    common::run(async {
        let connect = || async {
            Cache::builder(RedisBackend::connect(&server.url()).await.unwrap())
                .namespace("web")
                .build()
        };
        let (cache_a, cache_b) = (connect().await, connect().await);
        let calls = Calls::default();
        let a = counted(
            "/r",
            "from redis",
            &calls,
            ResponseCacheLayer::new(cache_a.clone()),
        );
        let b = counted("/r", "from redis", &calls, ResponseCacheLayer::new(cache_b));

        let first = send(&a, get_req("/r?y=2&x=1")).await;
        assert_eq!(first.x_cache(), "MISS");
        assert_eq!(first.header("cache-control"), Some("max-age=3600"));
        let second = send(&b, get_req("/r?x=1&y=2")).await;
        assert_eq!((second.x_cache(), second.text()), ("HIT", "from redis"));
        assert_eq!(second.header("etag"), first.header("etag"));
        let nm = send(
            &b,
            with_header("/r?x=1&y=2", "if-none-match", first.header("etag").unwrap()),
        )
        .await;
        assert_eq!(nm.status, StatusCode::NOT_MODIFIED);
        assert_eq!(calls.get(), 1);
        let ttl = cache_a
            .ttl("http:GET:http://example.com/r?x=1&y=2")
            .await
            .unwrap()
            .unwrap();
        assert!(ttl <= Duration::from_secs(3600) && ttl > Duration::from_secs(3500));
        let entry: ResponseEntry = cache_a
            .get("http:GET:http://example.com/r?x=1&y=2")
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(entry, ResponseEntry::Response(r) if r.body == b"from redis"));
    });
}

#[tokio::test]
async fn a_stored_404_is_never_answered_with_304() {
    // RFC 9110 §13.2.1: If-None-Match applies only to 2xx responses.
    let app = Router::new()
        .route(
            "/gone",
            get(|| async { (StatusCode::NOT_FOUND, "no such thing") }),
        )
        .layer(ResponseCacheLayer::new(memory()).cache_status(with_404));
    let first = send(&app, get_req("/gone")).await;
    assert_eq!(first.status, StatusCode::NOT_FOUND);
    for value in [
        "*".to_owned(),
        first.header("etag").unwrap_or("\"x\"").to_owned(),
    ] {
        let res = send(&app, with_header("/gone", "if-none-match", &value)).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "If-None-Match: {value}");
        assert_eq!(res.text(), "no such thing");
        assert_eq!(res.x_cache(), "HIT");
    }
}

fn host_req(uri: &str, host: &str) -> Request<Body> {
    Request::get(uri)
        .header("host", host)
        .body(Body::empty())
        .unwrap()
}

/// How many entries `cache` holds (its memory store matches patterns).
async fn stored(cache: &Cache) -> u64 {
    cache.delete_pattern("*").await.unwrap()
}

/// `GET /old` answers a 308 to an absolute URL built from the request's
/// `Host`, as frameworks that make absolute redirects do.
fn redirecting(calls: &Calls) -> Router {
    let c = calls.clone();
    Router::new().route(
        "/old",
        get(move |headers: HeaderMap| {
            let c = c.clone();
            async move {
                c.hit();
                let host = headers
                    .get("host")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("localhost")
                    .to_owned();
                (
                    StatusCode::PERMANENT_REDIRECT,
                    [("location", format!("https://{host}/new"))],
                )
            }
        }),
    )
}

#[tokio::test]
async fn the_authority_is_part_of_the_key() {
    let calls = Calls::default();
    let app = redirecting(&calls).layer(ResponseCacheLayer::new(memory()));
    let evil = send(&app, host_req("/old", "evil.example")).await;
    assert_eq!(evil.header("location"), Some("https://evil.example/new"));
    let good = send(&app, host_req("/old", "example.com")).await;
    assert_eq!(good.x_cache(), "MISS");
    assert_eq!(good.header("location"), Some("https://example.com/new"));
    // One authority, other spellings (case, the scheme's default port): one entry.
    for host in ["EXAMPLE.com", "example.com:80"] {
        let res = send(&app, host_req("/old", host)).await;
        assert_eq!(res.x_cache(), "HIT", "{host}");
        assert_eq!(res.header("location"), Some("https://example.com/new"));
    }
    // An absolute-form target names the authority itself.
    let absolute = send(
        &app,
        Request::get("http://example.com/old")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(absolute.x_cache(), "HIT");
    // Another port or another scheme is another origin.
    let port = send(&app, host_req("/old", "example.com:8080")).await;
    assert_eq!(port.x_cache(), "MISS");
    let https = send(
        &app,
        Request::get("https://example.com/old")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(https.x_cache(), "MISS");
    assert_eq!(calls.get(), 4);
}

#[tokio::test]
async fn requests_without_an_authority_are_not_stored() {
    let cache = memory();
    let calls = Calls::default();
    let app = counted("/x", "x", &calls, ResponseCacheLayer::new(cache.clone()));
    let no_host = || Request::get("/x").body(Body::empty()).unwrap();
    let bad_hosts = [
        host_req("/x", ""),
        host_req("/x", "user@example.com"),
        host_req("/x", "a b"),
        Request::get("/x")
            .header("host", "example.com")
            .header("host", "evil.example")
            .body(Body::empty())
            .unwrap(),
    ];
    for req in [no_host(), no_host()].into_iter().chain(bad_hosts) {
        let res = send(&app, req).await;
        assert_eq!((res.x_cache(), res.text()), ("BYPASS", "x"));
    }
    assert_eq!(calls.get(), 6);
    assert_eq!(stored(&cache).await, 0);
}

/// `GET /flag` varies on `X-Flag` and says whether it was absent, empty or set.
fn flagged(calls: &Calls) -> Router {
    let c = calls.clone();
    Router::new().route(
        "/flag",
        get(move |headers: HeaderMap| {
            let c = c.clone();
            async move {
                c.hit();
                let body = match headers.get("x-flag") {
                    None => "absent",
                    Some(v) if v.is_empty() => "empty",
                    Some(_) => "set",
                };
                ([("vary", "X-Flag")], body)
            }
        }),
    )
}

#[tokio::test]
async fn vary_tells_an_absent_header_from_an_empty_one() {
    let calls = Calls::default();
    let app = flagged(&calls).layer(ResponseCacheLayer::new(memory()));
    let empty = || with_header("/flag", "x-flag", "");
    let res = send(&app, empty()).await;
    assert_eq!((res.x_cache(), res.text()), ("MISS", "empty"));
    let res = send(&app, get_req("/flag")).await;
    assert_eq!((res.x_cache(), res.text()), ("MISS", "absent"));
    let res = send(&app, empty()).await;
    assert_eq!((res.x_cache(), res.text()), ("HIT", "empty"));
    let res = send(&app, get_req("/flag")).await;
    assert_eq!((res.x_cache(), res.text()), ("HIT", "absent"));
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn vary_star_anywhere_is_never_stored() {
    let cache = memory();
    let app = Router::new()
        .route(
            "/list",
            get(|| async { ([("vary", "Accept-Encoding, *")], "x") }),
        )
        .route(
            "/lines",
            get(|| async {
                let mut res = "x".into_response();
                let h = res.headers_mut();
                h.append("vary", HeaderValue::from_static("accept"));
                h.append("vary", HeaderValue::from_static("*"));
                res
            }),
        )
        .layer(ResponseCacheLayer::new(cache.clone()));
    for path in ["/list", "/lines"] {
        for _ in 0..2 {
            assert_eq!(send(&app, get_req(path)).await.x_cache(), "MISS", "{path}");
        }
    }
    assert_eq!(stored(&cache).await, 0);
}

/// A body fed through a channel: it ends when the sender is dropped (an
/// event stream, a long download).
struct Channel(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for Channel {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
    }
}

#[tokio::test(start_paused = true)]
async fn an_endless_body_gets_its_status_line_and_headers_at_once() {
    let cache = memory();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(rx)));
    let app = Router::new()
        .route(
            "/events",
            get(move || {
                let rx = slot.lock().unwrap().take();
                async move {
                    let rx = rx.expect("one request");
                    (
                        [("content-type", "text/event-stream")],
                        Body::new(Channel(rx)),
                    )
                }
            }),
        )
        .layer(ResponseCacheLayer::new(cache.clone()));
    tx.send(Bytes::from_static(b"data: 1\n\n")).await.unwrap();
    // The paused clock jumps ahead whenever the test is idle: a layer that
    // waits for the end of the body runs into this bound at once.
    let res = tokio::time::timeout(
        Duration::from_secs(3600),
        app.clone().oneshot(get_req("/events")),
    )
    .await
    .expect("status line and headers arrive while the body is still open")
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["x-cache"], "MISS");
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "data: 1\n\n");
    tx.send(Bytes::from_static(b"data: 2\n\n")).await.unwrap();
    let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(second, "data: 2\n\n");
    drop(tx);
    assert!(body.frame().await.is_none());
    assert_eq!(stored(&cache).await, 0);
}

#[tokio::test]
async fn a_body_of_unknown_length_streams_through_uncached() {
    let cache = memory();
    let calls = Calls::default();
    let (c1, c2) = (calls.clone(), calls.clone());
    let two_chunks = || {
        Chunked(VecDeque::from([
            Bytes::from_static(b"hello "),
            Bytes::from_static(b"world"),
        ]))
    };
    let app = Router::new()
        .route(
            "/unknown",
            get(move || {
                c1.hit();
                async move { Response::new(Body::new(two_chunks())) }
            }),
        )
        // The same body with a Content-Length: its length is known, it is stored.
        .route(
            "/declared",
            get(move || {
                c2.hit();
                async move { ([("content-length", "11")], Body::new(two_chunks())) }
            }),
        )
        .layer(ResponseCacheLayer::new(cache.clone()));
    for _ in 0..2 {
        let res = send(&app, get_req("/unknown")).await;
        assert_eq!((res.x_cache(), res.text()), ("MISS", "hello world"));
        assert_eq!(res.header("etag"), None);
    }
    assert_eq!(send(&app, get_req("/declared")).await.x_cache(), "MISS");
    let hit = send(&app, get_req("/declared")).await;
    assert_eq!((hit.x_cache(), hit.text()), ("HIT", "hello world"));
    assert_eq!(calls.get(), 3);
}

#[tokio::test]
async fn a_handler_that_forbids_storing_is_obeyed() {
    let cache = memory();
    let calls = Calls::default();
    let mut router = Router::new();
    let paths = [
        ("/zero", "max-age=0"),
        ("/no-cache", "no-cache"),
        ("/qualified", "no-cache=\"set-cookie\", max-age=60"),
        ("/shared-zero", "public, max-age=60, s-maxage=0"),
        ("/garbled", "max-age=soon"),
    ];
    for (path, value) in paths {
        let c = calls.clone();
        router = router.route(
            path,
            get(move || {
                c.hit();
                async move { ([("cache-control", value)], "fresh") }
            }),
        );
    }
    let app = router.layer(ResponseCacheLayer::new(cache.clone()));
    for (path, value) in paths {
        for _ in 0..2 {
            let res = send(&app, get_req(path)).await;
            assert_eq!(res.x_cache(), "MISS", "{path}");
            assert_eq!(res.header("cache-control"), Some(value));
        }
    }
    assert_eq!(calls.get(), 10);
    assert_eq!(stored(&cache).await, 0);
}

#[tokio::test]
async fn s_maxage_then_max_age_cap_the_layers_ttl() {
    let cache = memory();
    let paths = [
        ("/shared", "max-age=600, s-maxage=20", 20),
        ("/short", "max-age=10", 10),
        ("/long", "max-age=600", 60),
        ("/shared-long", "s-maxage=600, max-age=5", 60),
    ];
    let mut router = Router::new();
    for (path, value, _) in paths {
        router = router.route(
            path,
            get(move || async move { ([("cache-control", value)], "x") }),
        );
    }
    let app = router.layer(ResponseCacheLayer::new(cache.clone()).ttl(Duration::from_secs(60)));
    for (path, _, ttl) in paths {
        assert_eq!(send(&app, get_req(path)).await.x_cache(), "MISS", "{path}");
        assert_eq!(send(&app, get_req(path)).await.x_cache(), "HIT", "{path}");
        let key = format!("http:GET:http://example.com{path}");
        let Some(ResponseEntry::Response(entry)) = cache.get(&key).await.unwrap() else {
            panic!("{path}: no entry under {key}")
        };
        assert_eq!(entry.ttl, ttl, "{path}");
        let left = cache.ttl(&key).await.unwrap().unwrap();
        assert!(left <= Duration::from_secs(ttl), "{path}: {left:?}");
    }
}

#[tokio::test]
async fn an_entry_past_its_own_ttl_is_not_served() {
    use cacheside::http::StoredResponse;
    let cache = memory();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old = StoredResponse {
        status: 200,
        headers: vec![],
        body: b"old".to_vec(),
        stored_at: now - 100,
        ttl: 10,
        stale_while_revalidate: 0,
        stale_if_error: 0,
    };
    for key in ["http:GET:http://example.com/s"] {
        cache
            .set(key, &ResponseEntry::Response(old.clone()), None)
            .await
            .unwrap();
    }
    let app = Router::new()
        .route("/s", get(|| async { "new" }))
        .layer(ResponseCacheLayer::new(cache.clone()));
    let res = send(&app, get_req("/s")).await;
    assert_eq!((res.x_cache(), res.text()), ("MISS", "new"));
    let res = send(&app, get_req("/s")).await;
    assert_eq!((res.x_cache(), res.text()), ("HIT", "new"));
}

#[tokio::test]
async fn allowed_hosts_limit_what_is_stored() {
    let cache = memory();
    let calls = Calls::default();
    let app = counted(
        "/x",
        "x",
        &calls,
        ResponseCacheLayer::new(cache.clone())
            .allowed_hosts(["Example.com", "api.example.com:8443"]),
    );
    let label = |req| {
        let app = app.clone();
        async move { send(&app, req).await.x_cache().to_owned() }
    };
    assert_eq!(label(host_req("/x", "example.com")).await, "MISS");
    assert_eq!(label(host_req("/x", "EXAMPLE.COM:80")).await, "HIT");
    for host in [
        "evil.example",
        "example.com:8080",
        "api.example.com",
        "sub.example.com",
    ] {
        assert_eq!(label(host_req("/x", host)).await, "BYPASS", "{host}");
    }
    assert_eq!(label(host_req("/x", "api.example.com:8443")).await, "MISS");
    let https = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    assert_eq!(label(https("https://api.example.com:8443/x")).await, "MISS");
    assert_eq!(label(https("https://example.com/x")).await, "MISS");
    assert_eq!(label(https("https://example.com:443/x")).await, "HIT");
    // Stored: http and https of example.com, http and https of api.example.com:8443.
    assert_eq!(stored(&cache).await, 4);
}

#[test]
#[should_panic(expected = "is not an authority")]
fn an_allowed_host_that_is_no_authority_panics_at_startup() {
    let _ = ResponseCacheLayer::new(memory()).allowed_hosts(["https://example.com/"]);
}

#[tokio::test]
async fn a_shorter_ttl_of_a_variant_is_kept() {
    let cache = memory();
    let app = Router::new()
        .route(
            "/v",
            get(|| async { ([("vary", "accept"), ("cache-control", "s-maxage=7")], "v") }),
        )
        .layer(ResponseCacheLayer::new(cache.clone()).ttl(Duration::from_secs(60)));
    let req = || with_header("/v", "accept", "text/plain");
    assert_eq!(send(&app, req()).await.x_cache(), "MISS");
    assert_eq!(send(&app, req()).await.x_cache(), "HIT");
    let base = "http:GET:http://example.com/v";
    let Some(ResponseEntry::Vary(names)) = cache.get(base).await.unwrap() else {
        panic!("no vary index")
    };
    assert_eq!(names, ["accept"]);
    // The variant (`{base}#v={hash of "name:values" lines}`) has the handler's TTL.
    let variant = format!(
        "{base}#v={:032x}",
        cacheside::backend::hash::bytes128(b"accept:text/plain\n")
    );
    let left = cache.ttl(&variant).await.unwrap().expect("the variant");
    assert!(left <= Duration::from_secs(7), "{left:?}");
    // After the vary index came from the store, a new variant gets it too.
    let other = with_header("/v", "accept", "text/html");
    assert_eq!(send(&app, other).await.x_cache(), "MISS");
    let variant = format!(
        "{base}#v={:032x}",
        cacheside::backend::hash::bytes128(b"accept:text/html\n")
    );
    let left = cache
        .ttl(&variant)
        .await
        .unwrap()
        .expect("the second variant");
    assert!(left <= Duration::from_secs(7), "{left:?}");
}

// --- RFC 5861: stale-while-revalidate, stale-if-error -------------------------

/// Past a 1 s `max-age` (stored times are whole seconds: up to two to wait).
async fn past_max_age() {
    tokio::time::sleep(Duration::from_millis(2_100)).await;
}

/// `stale-while-revalidate`: past `max-age`, within the window, the stale
/// response answers at once (`X-Cache: STALE`) while the handler runs in the
/// background (held here: a request that waited for it would hang); its new
/// response is served next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    static VERSION: AtomicU64 = AtomicU64::new(0);
    static HELD: AtomicBool = AtomicBool::new(false);
    let app = Router::new()
        .route(
            "/swr",
            get(|| async {
                let v = VERSION.fetch_add(1, SeqCst) + 1;
                let until = std::time::Instant::now() + Duration::from_secs(20);
                while HELD.load(SeqCst) && std::time::Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // The refreshed response stays fresh: the layer counts ages
                // in whole seconds, so a `max-age=1` one could be stale a
                // millisecond after it was stored, before the loop below sees it.
                let cache_control = if v == 1 {
                    "max-age=1, stale-while-revalidate=30"
                } else {
                    "max-age=60, stale-while-revalidate=30"
                };
                ([(header::CACHE_CONTROL, cache_control)], format!("v{v}"))
            }),
        )
        .layer(ResponseCacheLayer::new(memory()));
    let res = send(&app, get_req("/swr")).await;
    assert_eq!((res.x_cache(), res.text()), ("MISS", "v1"));
    past_max_age().await;
    HELD.store(true, SeqCst);
    let res = tokio::time::timeout(Duration::from_secs(10), send(&app, get_req("/swr")))
        .await
        .expect("a stale-while-revalidate request waited for the handler");
    assert_eq!((res.x_cache(), res.text()), ("STALE", "v1"));
    assert!(res
        .header("age")
        .is_some_and(|a| a.parse::<u64>().unwrap() >= 1));
    // The background run starts (on another task)...
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while VERSION.load(SeqCst) < 2 {
        assert!(std::time::Instant::now() < until, "no background run");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...and more requests meanwhile are stale too, with no second run.
    for _ in 0..5 {
        let res = send(&app, get_req("/swr")).await;
        assert_eq!((res.x_cache(), res.text()), ("STALE", "v1"));
    }
    assert_eq!(
        VERSION.load(SeqCst),
        2,
        "one background run for six stale answers"
    );
    HELD.store(false, SeqCst);
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let res = send(&app, get_req("/swr")).await;
        if res.text() == "v2" {
            assert_eq!(
                res.x_cache(),
                "HIT",
                "the background run stored its response"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "still {} {}",
            res.x_cache(),
            res.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `stale-if-error`: past `max-age`, a handler that answers 5xx (or fails)
/// is answered with the stale response; without the directive its 500 goes
/// through; once it answers well again, its response replaces the entry.
#[tokio::test]
async fn stale_if_error_answers_a_failing_handler_with_the_stale_response() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    static DOWN: AtomicBool = AtomicBool::new(false);
    let answer = |cache_control: &'static str| {
        move || async move {
            if DOWN.load(SeqCst) {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CACHE_CONTROL, cache_control)],
                    "down",
                )
                    .into_response()
            } else {
                ([(header::CACHE_CONTROL, cache_control)], "good").into_response()
            }
        }
    };
    let app = Router::new()
        .route("/sie", get(answer("max-age=1, stale-if-error=60")))
        .route("/plain", get(answer("max-age=1")))
        .layer(ResponseCacheLayer::new(memory()));
    for path in ["/sie", "/plain"] {
        let res = send(&app, get_req(path)).await;
        assert_eq!((res.x_cache(), res.text()), ("MISS", "good"), "{path}");
    }
    past_max_age().await;
    DOWN.store(true, SeqCst);
    let res = send(&app, get_req("/sie")).await;
    assert_eq!(
        (res.status, res.x_cache(), res.text()),
        (StatusCode::OK, "STALE", "good")
    );
    let res = send(&app, get_req("/plain")).await;
    assert_eq!(
        res.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "no stale-if-error: the failure goes through"
    );
    DOWN.store(false, SeqCst);
    let res = send(&app, get_req("/sie")).await;
    assert_eq!(
        (res.x_cache(), res.text()),
        ("MISS", "good"),
        "the handler's answer replaces the entry"
    );
    let res = send(&app, get_req("/sie")).await;
    assert_eq!(res.x_cache(), "HIT");
}

/// A stale-while-revalidate refresh that an invalidation overtook is not
/// stored: the next request runs the handler again instead of getting what
/// the overtaken run read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_refresh_overtaken_by_an_invalidation_is_not_stored() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    static VERSION: AtomicU64 = AtomicU64::new(0);
    static HELD: AtomicBool = AtomicBool::new(false);
    static FINISHED: AtomicU64 = AtomicU64::new(0);
    let cache = memory();
    let app = Router::new()
        .route(
            "/swr2",
            get(|| async {
                let v = VERSION.fetch_add(1, SeqCst) + 1;
                let until = std::time::Instant::now() + Duration::from_secs(20);
                while HELD.load(SeqCst) && std::time::Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                FINISHED.fetch_add(1, SeqCst);
                (
                    [(
                        header::CACHE_CONTROL,
                        "max-age=1, stale-while-revalidate=30",
                    )],
                    format!("v{v}"),
                )
            }),
        )
        .layer(ResponseCacheLayer::new(cache.clone()));
    assert_eq!(send(&app, get_req("/swr2")).await.text(), "v1");
    past_max_age().await;
    HELD.store(true, SeqCst);
    assert_eq!(send(&app, get_req("/swr2")).await.x_cache(), "STALE");
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while VERSION.load(SeqCst) < 2 {
        assert!(std::time::Instant::now() < until, "no background run");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The resource changes while the background run holds its answer.
    cache
        .delete("http:GET:http://example.com/swr2")
        .await
        .unwrap();
    HELD.store(false, SeqCst);
    while FINISHED.load(SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < until,
            "the background run did not end"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = send(&app, get_req("/swr2")).await;
    assert_eq!(
        (res.x_cache(), res.text()),
        ("MISS", "v3"),
        "the overtaken refresh was stored"
    );
}

//! `cacheside::http::ClientCacheLayer` driven through axum routers, no network.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use cacheside::http::ClientCacheLayer;
use tower::ServiceExt;

fn router(layer: ClientCacheLayer) -> Router {
    Router::new()
        .route(
            "/static/app.js",
            get(|| async { "js" }).post(|| async { "posted" }),
        )
        .route("/static/img/logo.png", get(|| async { "png" }))
        .route("/staticky", get(|| async { "not static" }))
        .route("/docs/intro", get(|| async { "docs" }))
        .route("/api/items", get(|| async { "[]" }))
        .route(
            "/api/own",
            get(|| async { ([("cache-control", "no-cache")], "mine") }),
        )
        .route(
            "/static/broken",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .layer(layer)
}

async fn cache_control(app: &Router, method: &str, uri: &str) -> Option<String> {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let all: Vec<_> = res.headers().get_all("cache-control").iter().collect();
    assert!(all.len() <= 1, "{uri}: {all:?}");
    all.first().map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn rules_by_prefix_and_default() {
    let app = router(
        ClientCacheLayer::new()
            .public_prefix("/static", Duration::from_secs(86_400))
            .public_prefix("/static/img/", Duration::from_secs(600))
            .public_prefix("/docs", None),
    );
    let cc = |m, u| cache_control(&app, m, u);
    assert_eq!(
        cc("GET", "/static/app.js").await.as_deref(),
        Some("public, max-age=86400")
    );
    assert_eq!(
        cc("HEAD", "/static/app.js").await.as_deref(),
        Some("public, max-age=86400")
    );
    // Longest prefix wins; trailing slash in the rule does not matter.
    assert_eq!(
        cc("GET", "/static/img/logo.png").await.as_deref(),
        Some("public, max-age=600")
    );
    // Whole path segments only.
    assert_eq!(
        cc("GET", "/staticky").await.as_deref(),
        Some("private, no-store")
    );
    // `None` → the layer's default max-age (60 s).
    assert_eq!(
        cc("GET", "/docs/intro").await.as_deref(),
        Some("public, max-age=60")
    );
    // The API default.
    assert_eq!(
        cc("GET", "/api/items").await.as_deref(),
        Some("private, no-store")
    );
    // Writes and server errors are never public.
    assert_eq!(
        cc("POST", "/static/app.js").await.as_deref(),
        Some("private, no-store")
    );
    assert_eq!(
        cc("GET", "/static/broken").await.as_deref(),
        Some("private, no-store")
    );
    // Not found under a public prefix is still public (the CDN may cache 404s).
    assert_eq!(
        cc("GET", "/static/none.js").await.as_deref(),
        Some("public, max-age=86400")
    );
}

#[tokio::test]
async fn only_where_the_handler_set_none() {
    let app = router(ClientCacheLayer::new().public_prefix("/", Duration::from_secs(5)));
    assert_eq!(
        cache_control(&app, "GET", "/api/own").await.as_deref(),
        Some("no-cache")
    );
    assert_eq!(
        cache_control(&app, "GET", "/api/items").await.as_deref(),
        Some("public, max-age=5")
    );
}

#[tokio::test]
async fn otherwise_none_leaves_other_paths_alone() {
    let app = router(
        ClientCacheLayer::new()
            .public_prefix("/static", None)
            .max_age(Duration::from_secs(9))
            .otherwise(None),
    );
    assert_eq!(cache_control(&app, "GET", "/api/items").await, None);
    assert_eq!(
        cache_control(&app, "GET", "/static/app.js")
            .await
            .as_deref(),
        Some("public, max-age=9")
    );
}

#[tokio::test]
async fn disabled_adds_nothing() {
    let app = router(
        ClientCacheLayer::new()
            .public_prefix("/static", Duration::from_secs(60))
            .enabled(false),
    );
    assert_eq!(cache_control(&app, "GET", "/static/app.js").await, None);
    assert_eq!(cache_control(&app, "GET", "/api/items").await, None);
    assert_eq!(
        cache_control(&app, "GET", "/api/own").await.as_deref(),
        Some("no-cache")
    );
}

fn layer(vars: &'static [(&'static str, &'static str)]) -> ClientCacheLayer {
    ClientCacheLayer::from_lookup(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap()
}

#[tokio::test]
async fn from_lookup_maps_enabled_and_max_age() {
    let app = router(
        layer(&[("CLIENT_CACHE_MAX_AGE", "300")])
            .public_prefix("/static", None)
            .public_prefix("/docs", Duration::from_secs(7)),
    );
    assert_eq!(
        cache_control(&app, "GET", "/static/app.js")
            .await
            .as_deref(),
        Some("public, max-age=300")
    );
    assert_eq!(
        cache_control(&app, "GET", "/docs/intro").await.as_deref(),
        Some("public, max-age=7")
    );
    assert_eq!(
        cache_control(&app, "GET", "/api/items").await.as_deref(),
        Some("private, no-store")
    );

    let off = layer(&[
        ("CLIENT_CACHE_ENABLED", "false"),
        ("CLIENT_CACHE_MAX_AGE", "300"),
    ]);
    let app = router(off.public_prefix("/static", None));
    assert_eq!(cache_control(&app, "GET", "/static/app.js").await, None);
    assert_eq!(cache_control(&app, "GET", "/api/items").await, None);

    // Defaults: enabled, 60 s.
    let app = router(layer(&[]).public_prefix("/static", None));
    assert_eq!(
        cache_control(&app, "GET", "/static/app.js")
            .await
            .as_deref(),
        Some("public, max-age=60")
    );
}

#[test]
fn from_env_reads_the_environment() {
    // The only test in this binary that touches the environment.
    std::env::set_var("CLIENT_CACHE_MAX_AGE", "42");
    std::env::set_var("CLIENT_CACHE_ENABLED", "true");
    let layer = ClientCacheLayer::from_env()
        .unwrap()
        .public_prefix("/static", None);
    std::env::set_var("CLIENT_CACHE_MAX_AGE", "forty");
    let err = ClientCacheLayer::from_env().unwrap_err();
    assert!(err.to_string().contains("CLIENT_CACHE_MAX_AGE"), "{err}");
    std::env::remove_var("CLIENT_CACHE_MAX_AGE");
    std::env::remove_var("CLIENT_CACHE_ENABLED");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let got = rt.block_on(cache_control(&router(layer), "GET", "/static/app.js"));
    assert_eq!(got.as_deref(), Some("public, max-age=42"));
}

#[tokio::test]
async fn outside_a_response_cache() {
    use cacheside::backends::MemoryBackend;
    use cacheside::http::ResponseCacheLayer;
    let cache = cacheside::Cache::builder(MemoryBackend::new(100))
        .default_ttl(Duration::from_secs(30))
        .build();
    let app = Router::new()
        .route("/api/items", get(|| async { "[]" }))
        .layer(ResponseCacheLayer::new(cache))
        .layer(ClientCacheLayer::new());
    let send = |auth: bool| {
        let mut req = Request::get("/api/items").header("host", "example.com");
        if auth {
            req = req.header("authorization", "Bearer t");
        }
        app.clone().oneshot(req.body(Body::empty()).unwrap())
    };
    let res = send(false).await.unwrap();
    assert_eq!(res.headers()["x-cache"], "MISS");
    assert_eq!(res.headers()["cache-control"], "max-age=30");
    let res = send(false).await.unwrap();
    assert_eq!(res.headers()["x-cache"], "HIT");
    let res = send(true).await.unwrap();
    assert_eq!(res.headers()["x-cache"], "BYPASS");
    assert_eq!(res.headers()["cache-control"], "private, no-store");
}

/// The `Cache-Control` of `GET uri` with the request `headers`.
async fn cache_control_with(app: &Router, uri: &str, headers: &[(&str, &str)]) -> Option<String> {
    let mut req = Request::get(uri);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let all: Vec<_> = res.headers().get_all("cache-control").iter().collect();
    assert!(all.len() <= 1, "{uri}: {all:?}");
    all.first().map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn personal_responses_under_a_public_prefix_are_private() {
    let app = Router::new()
        .route("/static/app.js", get(|| async { "js" }))
        .route(
            "/static/login",
            get(|| async { ([("set-cookie", "session=s3cret; HttpOnly")], "welcome") }),
        )
        .layer(ClientCacheLayer::new().public_prefix("/static", Duration::from_secs(600)));
    // A response that sets a cookie.
    assert_eq!(
        cache_control_with(&app, "/static/login", &[])
            .await
            .as_deref(),
        Some("private, max-age=600")
    );
    // A request that carries credentials.
    assert_eq!(
        cache_control_with(&app, "/static/app.js", &[("authorization", "Bearer t")])
            .await
            .as_deref(),
        Some("private, max-age=600")
    );
    // Anything else stays public.
    assert_eq!(
        cache_control_with(&app, "/static/app.js", &[("cookie", "theme=dark")])
            .await
            .as_deref(),
        Some("public, max-age=600")
    );
    assert_eq!(
        cache_control_with(&app, "/static/app.js", &[])
            .await
            .as_deref(),
        Some("public, max-age=600")
    );
}

#[test]
fn malformed_variables_name_the_variable_and_what_is_allowed() {
    for (var, value, allowed) in [
        ("CLIENT_CACHE_MAX_AGE", "1m", "seconds"),
        ("CLIENT_CACHE_ENABLED", "maybe", "true/false"),
    ] {
        let Err(err) = ClientCacheLayer::from_lookup(|n| (n == var).then(|| value.to_string()))
        else {
            panic!("{var}={value} was accepted");
        };
        let err = err.to_string();
        assert!(
            err.contains(var) && err.contains(value) && err.contains(allowed),
            "{err}"
        );
    }
}

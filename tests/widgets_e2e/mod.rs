//! End-to-end checks of the widgets example, over real HTTP on a free
//! loopback port. Included by `widgets_e2e_memory.rs` and `widgets_e2e_redis.rs`,
//! which provide `global()` (the binary's cache over its store).

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

use crate::app::{self, ServiceOptions};
use crate::db::{Db, NewWidget};
use crate::global;

/// A running instance of the service.
pub struct Running {
    pub base: String,
    pub http: Client,
}

/// The database every instance in this test binary shares, as replicas of a
/// service share theirs (they share the cache too).
async fn shared_db() -> Db {
    static DB: tokio::sync::OnceCell<Db> = tokio::sync::OnceCell::const_new();
    DB.get_or_init(|| async {
        let db = Db::open(":memory:").expect("sqlite in memory");
        for (name, price_cents) in [("spanner", 1299), ("sprocket", 450), ("flange", 799)] {
            db.insert(NewWidget {
                name: name.into(),
                price_cents,
            })
            .await
            .expect("seed");
        }
        db
    })
    .await
    .clone()
}

/// Serves the widgets app on 127.0.0.1:<free port>.
pub async fn serve(options: ServiceOptions) -> Running {
    let cache = global().await.clone();
    let app = app::service(shared_db().await, cache, &options).expect("service");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    Running {
        base: format!("http://{addr}"),
        http: Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
    }
}

pub fn options(prefix: &str) -> ServiceOptions {
    ServiceOptions {
        rate_limit: 10_000,
        rate_window: Duration::from_secs(60),
        rate_prefix: prefix.into(),
        catalog_ttl: Duration::from_secs(30),
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Running {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        json: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = json {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        Reply {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.text().await.expect("body"),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, &[], None).await
    }

    pub async fn db_queries(&self) -> u64 {
        let stats: Value =
            serde_json::from_str(&self.get("/stats").await.body).expect("stats json");
        stats["db_queries"].as_u64().expect("db_queries")
    }

    /// Creates a widget and returns its id (ids are unique per instance, so
    /// tests that share a store create their own rows).
    pub async fn create(&self, name: &str) -> i64 {
        let r = self
            .call(
                Method::POST,
                "/widgets",
                &[],
                Some(serde_json::json!({"name": name, "price_cents": 100})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let v: Value = serde_json::from_str(&r.body).expect("json");
        v["id"].as_i64().expect("id")
    }
}

pub fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Read-through and invalidation after PUT and DELETE.
pub async fn reads_are_cached_and_writes_invalidate() {
    let svc = serve(options("e2e-rw")).await;
    let id = svc.create("e2e widget").await;
    let path = format!("/widgets/{id}");
    let first = svc.get(&path).await;
    assert_eq!(first.status, StatusCode::OK);
    let queries = svc.db_queries().await;
    for _ in 0..5 {
        assert_eq!(svc.get(&path).await.body, first.body);
    }
    assert_eq!(svc.db_queries().await, queries, "five hits, no query");

    let put = svc
        .call(
            Method::PUT,
            &path,
            &[],
            Some(serde_json::json!({"name": "e2e renamed", "price_cents": 7})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    let after_put = svc.get(&path).await;
    assert!(after_put.body.contains("e2e renamed"), "{}", after_put.body);

    let del = svc.call(Method::DELETE, &path, &[], None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(svc.get(&path).await.status, StatusCode::NOT_FOUND);
}

/// The response cache on the public route: MISS, HIT, ETag, 304.
pub async fn public_route_hits_and_revalidates() {
    let svc = serve(options("e2e-public")).await;
    let miss = svc.get("/public/catalog").await;
    let hit = svc.get("/public/catalog").await;
    assert_eq!(miss.status, StatusCode::OK);
    assert_eq!(header(&hit, "x-cache"), Some("HIT"), "{:?}", hit.headers);
    assert_eq!(hit.body, miss.body);
    let etag = header(&hit, "etag").expect("etag").to_owned();
    assert!(header(&hit, "cache-control").is_some_and(|v| v.contains("max-age")));
    let not_modified = svc
        .call(
            Method::GET,
            "/public/catalog",
            &[("if-none-match", &etag)],
            None,
        )
        .await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert!(not_modified.body.is_empty());
    // The API is private by default (client cache layer).
    let api = svc.get("/widgets/count").await;
    assert_eq!(header(&api, "cache-control"), Some("private, no-store"));
}

/// Unknown URLs (the router's fallback) never reach the response cache, so
/// a scanner cannot fill it with 404s; a stored 404 would say `HIT`.
pub async fn unknown_urls_are_not_cached() {
    let svc = serve(options("e2e-scan")).await;
    for path in ["/zzz", "/public/zzz", "/public/catalog/zzz"] {
        for _ in 0..2 {
            let r = svc.get(path).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(header(&r, "x-cache"), None, "{path}: {:?}", r.headers);
        }
    }
    let stored = global()
        .await
        .delete_pattern("http:GET:*zzz*")
        .await
        .expect("pattern delete");
    assert_eq!(stored, 0, "404s were stored");
}

/// Each caller gets their own entry.
pub async fn callers_are_kept_apart() {
    let svc = serve(options("e2e-me")).await;
    let ana = svc
        .call(Method::GET, "/me", &[("x-user", "e2e-ana")], None)
        .await;
    let bo = svc
        .call(Method::GET, "/me", &[("x-user", "e2e-bo")], None)
        .await;
    assert!(
        ana.body.contains("e2e-ana") && !ana.body.contains("e2e-bo"),
        "{}",
        ana.body
    );
    assert!(
        bo.body.contains("e2e-bo") && !bo.body.contains("e2e-ana"),
        "{}",
        bo.body
    );
    let q = svc.db_queries().await;
    assert!(svc
        .call(Method::GET, "/me", &[("x-user", "e2e-ana")], None)
        .await
        .body
        .contains("e2e-ana"));
    assert_eq!(svc.db_queries().await, q, "second read of ana is a hit");
    assert_eq!(svc.get("/me").await.status, StatusCode::UNAUTHORIZED);
}

/// Over the limit: 429 with Retry-After and the RateLimit headers.
pub async fn the_rate_limiter_answers_429() {
    let mut opts = options("e2e-429");
    opts.rate_limit = 5;
    let svc = serve(opts).await;
    for i in 0..5u64 {
        let r = svc.get("/widgets/count").await;
        assert_eq!(r.status, StatusCode::OK, "request {i}");
        assert_eq!(header(&r, "ratelimit-limit"), Some("5"));
        assert_eq!(
            header(&r, "ratelimit-remaining"),
            Some((4 - i).to_string().as_str())
        );
    }
    let over = svc.get("/widgets/count").await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&over, "ratelimit-remaining"), Some("0"));
    let retry: u64 = header(&over, "retry-after")
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
}

/// The sum of a Prometheus metric's series whose labels hold every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            series.split('{').next() == Some(name) && labels.iter().all(|lab| series.contains(lab))
        })
        .map(|(_, v)| v.parse::<f64>().expect("a number"))
        .sum()
}

/// `/metrics` after traffic: the names exist and the counts are what was sent.
pub async fn metrics_count_what_was_sent() {
    let svc = serve(options("e2e-metrics")).await;
    let id = svc.create("metered widget").await;
    let path = format!("/widgets/{id}");
    let before = svc.get("/metrics").await;
    assert_eq!(before.status, StatusCode::OK);
    let get_widget = r#"function="get_widget""#;
    let count = |text: &str, name: &str| metric(text, name, &[get_widget]);
    let (hits0, misses0) = (
        count(&before.body, "cacheside_hits_total"),
        count(&before.body, "cacheside_misses_total"),
    );
    let updates0 = metric(
        &before.body,
        "cacheside_invalidations_total",
        &[r#"function="update_widget""#],
    );

    for _ in 0..3 {
        assert_eq!(svc.get(&path).await.status, StatusCode::OK); // 1 miss, 2 hits
    }
    let r = svc
        .call(
            Method::PUT,
            &path,
            &[],
            Some(serde_json::json!({"name": "metered", "price_cents": 5})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(svc.get(&path).await.status, StatusCode::OK); // a miss after the PUT

    let after = svc.get("/metrics").await;
    assert!(
        header(&after, "content-type").is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        after.headers
    );
    let text = &after.body;
    for name in [
        "cacheside_hits_total",
        "cacheside_misses_total",
        "cacheside_invalidations_total",
        "cacheside_body_seconds",
        "cacheside_served_age_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name}")),
            "{name} missing from:\n{text}"
        );
    }
    assert_eq!(count(text, "cacheside_hits_total") - hits0, 2.0, "{text}");
    assert_eq!(
        count(text, "cacheside_misses_total") - misses0,
        2.0,
        "{text}"
    );
    // `update_widget` deletes its key and one pattern per successful PUT.
    assert_eq!(
        metric(
            text,
            "cacheside_invalidations_total",
            &[r#"function="update_widget""#]
        ) - updates0,
        2.0,
        "{text}"
    );
    assert!(
        metric(text, "cacheside_body_seconds_count", &[get_widget]) >= 2.0,
        "{text}"
    );
}

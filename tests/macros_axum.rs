//! `#[cache]` on axum handlers as written in real code: extractor patterns,
//! placeholders into them, `Json` return shapes, method-aware invalidation and
//! per-caller keys. Requests go through a real `Router` (no network).

mod common;

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{request::Parts, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cacheside::backends::MemoryBackend;
use cacheside::Cache;
use common::{run, Calls};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| {
        let cache = Cache::builder(MemoryBackend::new(10_000)).build();
        cacheside::init(cache.clone()).expect("first init");
        cache
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Widget {
    id: u64,
    name: String,
}

#[derive(Clone, Default)]
struct Db {
    calls: Calls,
    renames: Arc<std::sync::Mutex<Vec<(u64, String)>>>,
}

#[derive(Debug)]
struct AppError(StatusCode);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.0, "error").into_response()
    }
}

#[cacheside::cache(key_prefix = "ax:widget", resource_id = "id", expire = 60)]
async fn get_widget(Path(id): Path<u64>, State(db): State<Db>) -> Result<Json<Widget>, AppError> {
    db.calls.hit();
    if id == 0 {
        return Err(AppError(StatusCode::NOT_FOUND));
    }
    Ok(Json(Widget {
        id,
        name: format!("w{id}"),
    }))
}

#[derive(Debug, Deserialize, Serialize)]
struct Page {
    page: u32,
    size: u32,
}

#[cacheside::cache(key = "ax:widgets:page:{q.page}:{q.size}")]
async fn list_widgets(Query(q): Query<Page>, State(db): State<Db>) -> Json<Vec<u32>> {
    db.calls.hit();
    Json((q.page * q.size..q.page * q.size + q.size).collect())
}

#[cacheside::cache(key_prefix = "ax:status", resource_id = "id")]
async fn with_status(Path(id): Path<u64>, State(db): State<Db>) -> (StatusCode, Json<Option<u64>>) {
    db.calls.hit();
    if id == 0 {
        (StatusCode::NOT_FOUND, Json(None))
    } else {
        (StatusCode::OK, Json(Some(id)))
    }
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible router");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn extractor_patterns_and_json_shapes() {
    run(async {
        let cache = cache();
        let db = Db::default();
        let app = Router::new()
            .route("/widgets/{id}", get(get_widget))
            .route("/widgets", get(list_widgets))
            .route("/status/{id}", get(with_status))
            .with_state(db.clone());

        // Result<Json<T>, E>: Ok cached, Err not.
        for _ in 0..3 {
            let (status, body) = send(&app, Method::GET, "/widgets/7", &[]).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body, r#"{"id":7,"name":"w7"}"#);
        }
        assert_eq!(db.calls.get(), 1);
        assert_eq!(
            cache.get::<Widget>("ax:widget:7").await.unwrap(),
            Some(Widget {
                id: 7,
                name: "w7".into()
            })
        );
        for _ in 0..2 {
            assert_eq!(
                send(&app, Method::GET, "/widgets/0", &[]).await.0,
                StatusCode::NOT_FOUND
            );
        }
        assert_eq!(db.calls.get(), 3, "errors are not cached");

        // Json<T> with a Query pattern and placeholders into it.
        let first = send(&app, Method::GET, "/widgets?page=2&size=3", &[]).await;
        let again = send(&app, Method::GET, "/widgets?size=3&page=2", &[]).await;
        assert_eq!(first, (StatusCode::OK, "[6,7,8]".to_string()));
        assert_eq!(again, first);
        assert_eq!(db.calls.get(), 4);
        assert!(cache.exists("ax:widgets:page:2:3").await.unwrap());

        // (StatusCode, Json<T>): 200 cached, 404 not.
        for _ in 0..2 {
            assert_eq!(
                send(&app, Method::GET, "/status/5", &[]).await,
                (StatusCode::OK, "5".into())
            );
            assert_eq!(
                send(&app, Method::GET, "/status/0", &[]).await,
                (StatusCode::NOT_FOUND, "null".into())
            );
        }
        assert_eq!(db.calls.get(), 4 + 1 + 2);
    });
}

/// One handler for GET and PUT, as the FastAPI boilerplate's decorator expects:
/// GET reads through the cache; PUT runs and, on success, invalidates.
#[cacheside::cache(key_prefix = "ax:item", resource_id = "id", extra = ["ax:items:count"], patterns = ["ax:items:page:*"])]
async fn item(
    method: Method,
    Path(id): Path<u64>,
    State(db): State<Db>,
) -> Result<Json<Widget>, AppError> {
    db.calls.hit();
    if method == Method::PUT {
        if id == 13 {
            return Err(AppError(StatusCode::CONFLICT));
        }
        db.renames.lock().unwrap().push((id, "renamed".into()));
    }
    let name = if db.renames.lock().unwrap().iter().any(|(i, _)| *i == id) {
        "renamed"
    } else {
        "original"
    };
    Ok(Json(Widget {
        id,
        name: name.into(),
    }))
}

#[test]
fn method_aware_handlers_read_on_get_and_invalidate_on_successful_mutations() {
    run(async {
        let cache = cache();
        let db = Db::default();
        let app = Router::new()
            .route("/items/{id}", get(item).put(item).delete(item))
            .with_state(db.clone());

        assert!(send(&app, Method::GET, "/items/1", &[])
            .await
            .1
            .contains("original"));
        assert!(send(&app, Method::GET, "/items/1", &[])
            .await
            .1
            .contains("original"));
        assert_eq!(db.calls.get(), 1, "GET cached");
        for k in [
            "ax:items:count",
            "ax:items:page:1",
            "ax:items:page:2",
            "ax:other",
        ] {
            cache.set(k, &1u8, None).await.unwrap();
        }

        // A failed mutation invalidates nothing.
        cache
            .set(
                "ax:item:13",
                &Widget {
                    id: 13,
                    name: "x".into(),
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            send(&app, Method::PUT, "/items/13", &[]).await.0,
            StatusCode::CONFLICT
        );
        assert!(cache.exists("ax:item:13").await.unwrap());
        assert!(cache.exists("ax:items:count").await.unwrap());

        // A successful PUT runs the handler and invalidates key, extra and patterns.
        assert_eq!(
            send(&app, Method::PUT, "/items/1", &[]).await.0,
            StatusCode::OK
        );
        assert_eq!(db.calls.get(), 3);
        for k in [
            "ax:item:1",
            "ax:items:count",
            "ax:items:page:1",
            "ax:items:page:2",
        ] {
            assert!(!cache.exists(k).await.unwrap(), "{k} must be invalidated");
        }
        assert!(cache.exists("ax:other").await.unwrap());

        // The next GET misses and sees the new data.
        assert!(send(&app, Method::GET, "/items/1", &[])
            .await
            .1
            .contains("renamed"));
        assert_eq!(db.calls.get(), 4);
        // DELETE (a mutation) is never served from the cache.
        send(&app, Method::DELETE, "/items/1", &[]).await;
        assert_eq!(db.calls.get(), 5);
    });
}

/// Method-aware through the whole request (`Request` must come last in axum).
#[cacheside::cache(key_prefix = "ax:req", resource_id = "id")]
async fn by_request(Path(id): Path<u64>, State(db): State<Db>, req: Request<Body>) -> Json<String> {
    db.calls.hit();
    Json(format!("{} {id}", req.method()))
}

#[test]
fn a_handler_taking_the_request_is_method_aware() {
    run(async {
        let cache = cache();
        let db = Db::default();
        let app = Router::new()
            .route("/req/{id}", get(by_request).post(by_request))
            .with_state(db.clone());
        assert_eq!(send(&app, Method::GET, "/req/3", &[]).await.1, r#""GET 3""#);
        assert_eq!(send(&app, Method::GET, "/req/3", &[]).await.1, r#""GET 3""#);
        assert_eq!(db.calls.get(), 1, "GET read through the cache");
        assert!(cache.exists("ax:req:3").await.unwrap());
        assert_eq!(
            send(&app, Method::POST, "/req/3", &[]).await.1,
            r#""POST 3""#
        );
        assert_eq!(db.calls.get(), 2, "POST ran the handler");
        assert!(
            !cache.exists("ax:req:3").await.unwrap(),
            "POST invalidated the entry"
        );
    });
}

/// A caller identity from a header, as an auth extractor would provide.
struct Caller {
    sub: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = StatusCode;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
        let sub = parts
            .headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .ok_or(StatusCode::UNAUTHORIZED)?;
        Ok(Caller {
            sub: sub.to_owned(),
        })
    }
}

#[cacheside::cache(key = "ax:me:{caller.sub}")]
async fn me(caller: Caller, State(db): State<Db>) -> Json<String> {
    db.calls.hit();
    Json(format!("profile of {}", caller.sub))
}

#[test]
fn per_caller_entries_when_the_caller_is_in_the_key() {
    run(async {
        let cache = cache();
        let db = Db::default();
        let app = Router::new().route("/me", get(me)).with_state(db.clone());
        for _ in 0..2 {
            assert_eq!(
                send(&app, Method::GET, "/me", &[("x-user", "ana")]).await.1,
                r#""profile of ana""#
            );
            assert_eq!(
                send(&app, Method::GET, "/me", &[("x-user", "bo")]).await.1,
                r#""profile of bo""#
            );
        }
        assert_eq!(db.calls.get(), 2, "one entry per caller");
        assert!(cache.exists("ax:me:ana").await.unwrap());
        assert!(cache.exists("ax:me:bo").await.unwrap());
        assert_eq!(
            send(&app, Method::GET, "/me", &[]).await.0,
            StatusCode::UNAUTHORIZED
        );
    });
}

/// `expire = 0` turns caching off for reads; mutations still invalidate the
/// entries `extra` and `patterns` name (they belong to other functions).
#[cacheside::cache(key_prefix = "ax:nocache", resource_id = "id", expire = 0, extra = ["ax:nocache:list"])]
async fn uncached_item(method: Method, Path(id): Path<u64>) -> Json<u64> {
    let _ = method;
    Json(id)
}

#[test]
fn expire_zero_handlers_still_invalidate_on_mutations() {
    run(async {
        let cache = cache();
        let app = Router::new().route("/nocache/{id}", get(uncached_item).put(uncached_item));
        cache.set("ax:nocache:list", &1u8, None).await.unwrap();
        send(&app, Method::GET, "/nocache/1", &[]).await;
        assert!(
            !cache.exists("ax:nocache:1").await.unwrap(),
            "expire = 0: nothing cached"
        );
        assert!(cache.exists("ax:nocache:list").await.unwrap());
        assert_eq!(
            send(&app, Method::PUT, "/nocache/1", &[]).await.0,
            StatusCode::OK
        );
        assert!(
            !cache.exists("ax:nocache:list").await.unwrap(),
            "the PUT invalidated extra"
        );
    });
}

/// `#[invalidate]` on a handler returning `impl IntoResponse`.
#[cacheside::invalidate(key = "ax:opaque:{id}")]
async fn opaque_delete(Path(id): Path<u64>) -> impl IntoResponse {
    let _ = id;
    StatusCode::NO_CONTENT
}

#[test]
fn invalidate_works_on_impl_into_response_handlers() {
    run(async {
        let cache = cache();
        cache.set("ax:opaque:4", &1u8, None).await.unwrap();
        let app = Router::new().route("/opaque/{id}", axum::routing::delete(opaque_delete));
        assert_eq!(
            send(&app, Method::DELETE, "/opaque/4", &[]).await.0,
            StatusCode::NO_CONTENT
        );
        assert!(!cache.exists("ax:opaque:4").await.unwrap());
    });
}

/// The boilerplate habit: the same `#[cache]` on every route of a resource,
/// on handlers that take no `Method`. The GET handler caches; the PUT handler
/// (with a `Json` body) and the DELETE handler run and invalidate.
#[cacheside::cache(key_prefix = "ax:doc", resource_id = "id", expire = 60)]
async fn read_doc(Path(id): Path<u64>, State(db): State<Db>) -> Json<Widget> {
    db.calls.hit();
    let name = db
        .renames
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(i, _)| *i == id)
        .map_or_else(|| "original".to_owned(), |(_, n)| n.clone());
    Json(Widget { id, name })
}

#[derive(Debug, Deserialize)]
struct Rename {
    name: String,
}

#[cacheside::cache(key_prefix = "ax:doc", resource_id = "id", extra = ["ax:docs:count"], patterns = ["ax:docs:page:*"])]
async fn update_doc(
    Path(id): Path<u64>,
    State(db): State<Db>,
    Json(body): Json<Rename>,
) -> Result<Json<Widget>, AppError> {
    db.calls.hit();
    if body.name.is_empty() {
        return Err(AppError(StatusCode::UNPROCESSABLE_ENTITY));
    }
    db.renames.lock().unwrap().push((id, body.name.clone()));
    Ok(Json(Widget {
        id,
        name: body.name,
    }))
}

#[cacheside::cache(key_prefix = "ax:doc", resource_id = "id")]
async fn delete_doc(Path(id): Path<u64>, State(db): State<Db>) -> (StatusCode, Json<u64>) {
    db.calls.hit();
    db.renames.lock().unwrap().push((id, "deleted".into()));
    (StatusCode::OK, Json(id))
}

async fn send_json(app: &Router, method: Method, uri: &str, json: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(json.to_owned()))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible router");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn the_decorator_on_every_route_caches_gets_and_invalidates_on_mutations() {
    run(async {
        let cache = cache();
        let db = Db::default();
        let app = Router::new()
            .route(
                "/docs/{id}",
                get(read_doc).put(update_doc).delete(delete_doc),
            )
            .with_state(db.clone());
        let get_doc = || send(&app, Method::GET, "/docs/5", &[]);
        assert!(get_doc().await.1.contains("original"));
        assert!(get_doc().await.1.contains("original"));
        assert_eq!(db.calls.get(), 1, "GET read through the cache");
        for k in ["ax:docs:count", "ax:docs:page:1", "ax:other:doc"] {
            cache.set(k, &1u8, None).await.unwrap();
        }

        // A failed PUT (422 from the handler) invalidates nothing.
        let (status, _) = send_json(&app, Method::PUT, "/docs/5", r#"{"name":""}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(cache.exists("ax:doc:5").await.unwrap());
        // A successful PUT with a JSON body runs and invalidates key, extra, patterns.
        let (status, body) = send_json(&app, Method::PUT, "/docs/5", r#"{"name":"new"}"#).await;
        assert_eq!((status, body.contains("new")), (StatusCode::OK, true));
        assert_eq!(db.calls.get(), 3);
        for k in ["ax:doc:5", "ax:docs:count", "ax:docs:page:1"] {
            assert!(!cache.exists(k).await.unwrap(), "{k} must be invalidated");
        }
        assert!(cache.exists("ax:other:doc").await.unwrap());
        assert!(
            get_doc().await.1.contains("new"),
            "the GET after the PUT sees it"
        );
        assert_eq!(db.calls.get(), 4);

        // DELETE, a handler without a body: runs, invalidates.
        assert_eq!(
            send(&app, Method::DELETE, "/docs/5", &[]).await.0,
            StatusCode::OK
        );
        assert_eq!(db.calls.get(), 5);
        assert!(!cache.exists("ax:doc:5").await.unwrap());
        assert!(get_doc().await.1.contains("deleted"));
    });
}

#[test]
fn a_get_handler_mounted_on_put_never_answers_the_put_from_the_cache() {
    run(async {
        let cache = cache();
        let db = Db::default();
        // The mistake the issue names: one handler without `Method` on GET and PUT.
        let app = Router::new()
            .route("/rdocs/{id}", get(read_doc).put(read_doc))
            .with_state(db.clone());
        send(&app, Method::GET, "/rdocs/8", &[]).await;
        send(&app, Method::GET, "/rdocs/8", &[]).await;
        assert_eq!(db.calls.get(), 1);
        assert!(cache.exists("ax:doc:8").await.unwrap());
        for round in 0..3 {
            assert_eq!(
                send(&app, Method::PUT, "/rdocs/8", &[]).await.0,
                StatusCode::OK
            );
            assert_eq!(db.calls.get(), 2 + round, "every PUT runs the handler");
            assert!(!cache.exists("ax:doc:8").await.unwrap(), "and invalidates");
        }
        // HEAD reads like GET.
        send(&app, Method::GET, "/rdocs/8", &[]).await;
        send(&app, Method::HEAD, "/rdocs/8", &[]).await;
        assert_eq!(db.calls.get(), 5);
    });
}

/// A hashed default key leaves `State` out (the application state is not
/// `Hash`, and it is the same for every request): the key is the path's hash.
#[cacheside::cache(key_prefix = "ax:hashed")]
async fn hashed_with_state(Path(id): Path<u64>, State(db): State<Db>) -> Json<u64> {
    db.calls.hit();
    Json(id)
}

#[test]
fn a_hashed_key_leaves_state_out() {
    run(async {
        let _ = cache();
        let db = Db::default();
        let app = Router::new()
            .route("/hashed/{id}", get(hashed_with_state))
            .with_state(db.clone());
        for _ in 0..2 {
            assert_eq!(send(&app, Method::GET, "/hashed/3", &[]).await.1, "3");
            assert_eq!(send(&app, Method::GET, "/hashed/4", &[]).await.1, "4");
        }
        assert_eq!(db.calls.get(), 2, "one entry per path id, state not hashed");
        assert_eq!(
            hashed_with_state_cache_entry(3).key(),
            format!("ax:hashed:{}", cache_core::hash::stable_hex(&(&3u64,)))
        );
    });
}

//! The widgets service: routes, handlers and layers. `main.rs` serves it;
//! the end-to-end tests include this file and serve it on a free port.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

use std::time::Duration;

use cacheside::http::{ClientCacheLayer, RateLimitLayer, ResponseCacheLayer};
use cacheside::Cache;

use crate::db::{Db, DbError, NewWidget, Widget};

/// Errors a handler can answer with.
#[derive(Debug)]
pub enum ApiError {
    NotFound,
    Db(DbError),
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::Db(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::NotFound => (StatusCode::NOT_FOUND, "no such widget").into_response(),
            ApiError::Db(e) => {
                tracing::error!(error = %e.0, "database error");
                (StatusCode::INTERNAL_SERVER_ERROR, "database error").into_response()
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Page {
    #[serde(default = "first_page")]
    pub page: u32,
    #[serde(default = "page_size")]
    pub size: u32,
}

fn first_page() -> u32 {
    1
}
fn page_size() -> u32 {
    20
}

/// Reads one widget: `widget:{id}` for ten minutes.
#[cacheside::cache(key_prefix = "widget", resource_id = "id", expire = 600)]
pub async fn get_widget(
    Path(id): Path<i64>,
    State(db): State<Db>,
) -> Result<Json<Widget>, ApiError> {
    db.get(id).await?.map(Json).ok_or(ApiError::NotFound)
}

/// One page of widgets: `widgets:page:{page}:{size}` for a minute.
#[cacheside::cache(key = "widgets:page:{q.page}:{q.size}", expire = 60)]
pub async fn list_widgets(
    Query(q): Query<Page>,
    State(db): State<Db>,
) -> Result<Json<Vec<Widget>>, ApiError> {
    Ok(Json(db.page(q.page, q.size.clamp(1, 100)).await?))
}

/// How many widgets exist: `widgets:count`.
#[cacheside::cache(key = "widgets:count", expire = 60)]
pub async fn count_widgets(State(db): State<Db>) -> Result<Json<i64>, ApiError> {
    Ok(Json(db.count().await?))
}

/// Creates a widget; the count and every page change.
#[cacheside::invalidate(extra = ["widgets:count"], patterns = ["widgets:page:*"])]
pub async fn create_widget(
    State(db): State<Db>,
    Json(new): Json<NewWidget>,
) -> Result<(StatusCode, Json<Widget>), ApiError> {
    Ok((StatusCode::CREATED, Json(db.insert(new).await?)))
}

/// Replaces a widget; its entry and the pages that list it change.
#[cacheside::invalidate(key_prefix = "widget", resource_id = "id", patterns = ["widgets:page:*"])]
pub async fn update_widget(
    Path(id): Path<i64>,
    State(db): State<Db>,
    Json(new): Json<NewWidget>,
) -> Result<Json<Widget>, ApiError> {
    db.update(id, new)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// Deletes a widget.
#[cacheside::invalidate(key_prefix = "widget", resource_id = "id", extra = ["widgets:count"], patterns = ["widgets:page:*"])]
pub async fn delete_widget(
    Path(id): Path<i64>,
    State(db): State<Db>,
) -> Result<StatusCode, ApiError> {
    if db.delete(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// The caller, from the `X-User` header (stands in for a JWT's `sub`).
pub struct Caller {
    pub sub: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = (StatusCode, &'static str);
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty())
            .map(|s| Caller { sub: s.to_owned() })
            .ok_or((StatusCode::UNAUTHORIZED, "send an X-User header"))
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Me {
    pub user: String,
    pub widgets_visible: i64,
}

/// Per-caller entry: the caller is in the key.
#[cacheside::cache(key = "me:{caller.sub}", expire = 300)]
pub async fn me(caller: Caller, State(db): State<Db>) -> Result<Json<Me>, ApiError> {
    Ok(Json(Me {
        user: caller.sub,
        widgets_visible: db.count().await?,
    }))
}

/// A public, identical-for-everyone page: cached as a whole response by the
/// response cache layer (with ETag / 304), not by `#[cache]`.
pub async fn catalog(State(db): State<Db>) -> Result<Json<Vec<Widget>>, ApiError> {
    Ok(Json(db.page(1, 100).await?))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ServiceStats {
    pub db_queries: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_errors: u64,
}

/// Database queries and cache counters, to watch the cache work.
pub async fn stats(State(db): State<Db>) -> Json<ServiceStats> {
    let cache = cacheside::global().map(|c| c.stats()).unwrap_or_default();
    Json(ServiceStats {
        db_queries: db.queries(),
        cache_hits: cache.hits,
        cache_misses: cache.misses,
        cache_errors: cache.errors,
    })
}

#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub service: &'static str,
}

/// A constant answer (the baseline of `scripts/load.sh`).
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        service: "widgets",
    })
}

/// The routes, without the HTTP layers.
pub fn routes(db: Db) -> Router {
    Router::new()
        .route("/widgets", get(list_widgets).post(create_widget))
        .route("/widgets/count", get(count_widgets))
        .route(
            "/widgets/{id}",
            get(get_widget).put(update_widget).delete(delete_widget),
        )
        .route("/me", get(me))
        .route("/stats", get(stats))
        .route("/health", get(health))
        .route("/metrics", get(prometheus))
        .with_state(db)
}

/// The process's Prometheus recorder, installed on first use (the
/// `metrics` facade takes one recorder per process; cacheside registers a
/// function's handles on its first call, so this runs before any).
pub fn prometheus_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .install_recorder()
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "no Prometheus recorder: /metrics shows nothing of cacheside");
                PrometheusBuilder::new().build_recorder().handle()
            });
        // The recorder is in place: cacheside may register its handles now.
        cacheside::enable_metrics();
        handle
    })
}

/// `GET /metrics`: cacheside's counters and histograms, Prometheus text format.
pub async fn prometheus() -> impl IntoResponse {
    let handle = prometheus_handle();
    handle.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}

/// Knobs of the HTTP layers.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Requests per client per `rate_window`.
    pub rate_limit: u64,
    pub rate_window: Duration,
    /// Prefix of the rate limiter's counters (services sharing a store keep apart).
    pub rate_prefix: String,
    /// How long the public catalog is cached as a whole response.
    pub catalog_ttl: Duration,
}

impl ServiceOptions {
    /// `RATE_LIMIT_PER_MINUTE` (default 600) per client per minute.
    pub fn from_env() -> Result<Self, cacheside::Error> {
        let rate_limit = match std::env::var("RATE_LIMIT_PER_MINUTE") {
            Ok(v) => v.trim().parse().map_err(|_| cacheside::Error::Config {
                var: "RATE_LIMIT_PER_MINUTE",
                value: v,
                allowed: "a whole number of requests, e.g. 600",
            })?,
            Err(_) => 600,
        };
        Ok(ServiceOptions {
            rate_limit,
            rate_window: Duration::from_secs(60),
            rate_prefix: "ratelimit".into(),
            catalog_ttl: Duration::from_secs(30),
        })
    }
}

/// The whole service: routes plus response cache (public catalog), client
/// cache headers and the rate limiter, all keeping state in `cache`.
pub fn service(db: Db, cache: Cache, options: &ServiceOptions) -> Result<Router, cacheside::Error> {
    prometheus_handle();
    // Whole-response caching with ETag/304 for the route that is the same for everyone.
    // `route_layer`, not `layer`: the cache wraps this route only, never the
    // fallback, so unknown URLs (a scanner's) are answered 404 without being stored.
    let public = Router::new()
        .route("/public/catalog", get(catalog))
        .with_state(db.clone())
        .route_layer(ResponseCacheLayer::new(cache.clone()).ttl(options.catalog_ttl));
    Ok(routes(db)
        .merge(public)
        // Outside the response cache, so that its API default does not stop caching there.
        .layer(ClientCacheLayer::from_env()?.public_prefix("/public", Some(options.catalog_ttl)))
        .layer(
            RateLimitLayer::new(cache, options.rate_limit, options.rate_window)
                .key_prefix(&options.rate_prefix),
        ))
}

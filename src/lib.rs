//! # cacheside
//!
//! Cache-aside for async Rust services. Annotate a function once; cacheside
//! builds the key, reads the store, runs the body on a miss (once, however
//! many callers miss together), writes the value back, and steps out of the
//! way when the store fails.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Widget { id: u64, name: String }
//!
//! #[derive(Debug)]
//! struct AppError;
//!
//! #[cacheside::cache(key_prefix = "widget", resource_id = "widget_id", expire = 600)]
//! async fn get_widget(widget_id: u64) -> Result<Widget, AppError> {
//!     Ok(Widget { id: widget_id, name: "spanner".into() }) // the database call
//! }
//!
//! #[cacheside::invalidate(key_prefix = "widget", resource_id = "widget_id", patterns = ["widgets:page:*"])]
//! async fn rename_widget(widget_id: u64, name: &str) -> Result<(), AppError> {
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cacheside::Error> {
//! let cache = cacheside::init_from_env().await?; // CACHE_BACKEND=memory by default
//! get_widget(7).await.unwrap();                    // miss: runs the body, stores
//! get_widget(7).await.unwrap();                    // hit
//! assert!(cache.exists("widget:7").await?);        // the provider API sees the same entry
//! rename_widget(7, "wrench").await.unwrap();       // deletes widget:7
//! assert!(!cache.exists("widget:7").await?);
//! # Ok(()) }
//! ```
//!
//! ## The surface
//!
//! | for | items |
//! |---|---|
//! | annotating functions | [`macro@cache`], [`macro@invalidate`], the companions' [`Entry`] |
//! | starting up | [`init_from_env`], [`init_from_config`], [`Config`], [`BackendKind`], [`init`], [`register`] |
//! | the provider API | [`Cache`], [`CacheBuilder`] (from [`Cache::builder`]), [`Stats`], [`Outcome`] / [`Plain`] / [`NoneCached`], [`BreakerSettings`] |
//! | seeing what the cache does | [`function_stats`] / [`FunctionStats`], spans through `tracing`, metrics (feature `metrics`) |
//! | switching off | [`set_enabled`], [`set_mode`] / [`CacheMode`] (`CACHE_ENABLED`), [`is_enabled`], [`invalidation_enabled`], [`mode`] |
//! | finding caches | [`global`], [`named`] |
//! | errors and logs | [`Error`], [`redact_url`], [`auto_init_failures`] |
//! | stores | [`backends`] (memory, Redis, Redis Cluster, Memcached, and [`backends::connect`]) |
//! | writing a store | [`backend`]: [`Backend`](backend::Backend), [`Key`](backend::Key), [`Bytes`](backend::Bytes), … |
//! | values and keys | [`codec`] (the value envelope, [`codec::Json`], `codec::Bincode` and `codec::Compression` behind the `bincode` and `compression` features), [`keys`] (how key values are encoded) |
//! | HTTP (feature `http`) | [`http`]: response cache, client `Cache-Control`, rate limiter |
//! | tests (feature `testing`) | `testing`: real servers, the conformance suite, a fault-injecting backend |
//!
//! Turn everything off in tests with `CACHE_ENABLED=false` or [`set_enabled`].
// docs.rs (nightly, `--cfg docsrs`): each feature-gated item shows the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod config;
mod connect;
mod entry;
mod registry;
mod runtime;

pub use cache_core::redact_url;
pub use cache_core::{
    codec, keys, BreakerSettings, Cache, CacheBuilder, Error, FailSafe, LocalSettings, NoneCached,
    Outcome, Plain, Stats, DEFAULT_BULK_TIMEOUT, DEFAULT_FENCE_WINDOW, DEFAULT_MAX_VALUE_SIZE,
    DEFAULT_OP_TIMEOUT, DEFAULT_TTL,
};
pub use config::{BackendKind, BackplaneSetting, Config, DEFAULT_CONNECT_TIMEOUT};
pub use entry::Entry;
#[cfg(feature = "metrics")]
pub use runtime::observe::enable_metrics;
pub use runtime::observe::FunctionStats;

/// The per-function view of [`Cache::stats`]: every annotated function
/// called so far in this process, with what its calls counted (hits by
/// tier, misses, stale answers, coalesced callers, store errors, skipped
/// writes, refreshes, invalidations). The same counts go to spans and, with
/// the feature `metrics`, to the `metrics` facade (see the README's
/// "Observability").
///
/// ```
/// #[cacheside::cache(key_prefix = "square", resource_id = "n")]
/// async fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
/// cacheside::init_from_env().await?;
/// square(3).await;
/// square(3).await;
/// let row = cacheside::function_stats()
///     .into_iter()
///     .find(|f| f.function == "square")
///     .expect("square was called");
/// assert_eq!((row.misses, row.hits), (1, 1));
/// # Ok(()) }
/// ```
pub fn function_stats() -> Vec<FunctionStats> {
    runtime::observe::function_stats()
}
pub use registry::{
    auto_init_failures, global, init, invalidation_enabled, is_enabled, mode, named, register,
    set_enabled, set_mode, CacheMode,
};

/// The kit for writing a store: implement [`Backend`](backend::Backend) over bytes, and a
/// [`Cache`] built on it gets the namespace, codec, timeouts, circuit
/// breaker, single-flight and kept invalidations for free.
///
/// ```
/// use std::time::Duration;
/// use cacheside::backend::{async_trait, Backend, Bytes, Key};
/// use cacheside::Error;
///
/// /// A store that keeps nothing (every read misses).
/// struct Forgetful;
///
/// #[async_trait]
/// impl Backend for Forgetful {
///     fn name(&self) -> &'static str { "forgetful" }
///     async fn get(&self, _: Key<'_>) -> Result<Option<Bytes>, Error> { Ok(None) }
///     async fn set(&self, _: Key<'_>, _: Bytes, _: Option<Duration>) -> Result<(), Error> { Ok(()) }
///     async fn delete(&self, _: Key<'_>) -> Result<bool, Error> { Ok(false) }
///     async fn delete_pattern(&self, _: &str, _: &str) -> Result<u64, Error> { Ok(0) }
///     async fn exists(&self, _: Key<'_>) -> Result<bool, Error> { Ok(false) }
///     async fn ttl(&self, _: Key<'_>) -> Result<Option<Duration>, Error> { Ok(None) }
///     async fn clear(&self, _: &str) -> Result<u64, Error> { Ok(0) }
///     async fn ping(&self) -> Result<(), Error> { Ok(()) }
/// }
///
/// let cache = cacheside::Cache::builder(Forgetful).build();
/// assert_eq!(cache.backend_name(), "forgetful");
/// ```
pub mod backend {
    pub use cache_core::backend::{is_tombstone, tombstone, TOMBSTONE_PREFIX};
    pub use cache_core::backplane::{Backplane, BackplaneEvents, Invalidation, Message};
    pub use cache_core::env;
    pub use cache_core::{async_trait, hash, pattern};
    pub use cache_core::{Backend, BoxError, Bytes, Codec, Fence, Key, NullBackend, OncePerBurst};
}

/// Cache-aside around an `async fn`: the key is built from the arguments, a hit
/// returns the stored value, a miss runs the body (once per key, however many
/// callers miss together) and stores what it returns.
///
/// | argument | meaning |
/// |---|---|
/// | `key_prefix = "widget"` | key `widget:{resource_id}`; may hold `{param}` placeholders |
/// | `resource_id = "widget_id"` | the parameter (or pattern binding) whose `Display` ends the key (prefix without `key_prefix`: the function's path, `crate::module::Type::method`) |
/// | `key = "page:{q.page}:{q.size}"` | the whole key template instead (`{param.field}` allowed) |
/// | *(neither)* | `{key_prefix}:` + stable 128-bit hash of all arguments but `self`, `State<…>` and `Method` (they must be `Hash`) |
/// | `expire = 600` | seconds; absent → the cache's default TTL; `0` → not cached |
/// | `version = 2` | mixed into the entries' fingerprint: bump it to drop them at the next deploy |
/// | `cache = "name"` | a cache registered with [`register`] instead of the global one |
/// | `cache_none = true` | for `Option<T>`: cache `None` as well |
/// | `companion = false` / `true` | skip or force the generated `{fn}_cache_entry` function (default: free functions and methods with a visibility; private methods, as trait impls have, get none) |
/// | `handler = false` / `true` | whether the function is an axum handler (default: read from the signature, see below) |
/// | `shared = true` | the response is the same for every caller (silences the credentials warning) |
/// | `local = false` | keep this function's values out of the local tier (every hit reads the store) |
/// | `local_ttl = 5` | seconds this function's values stay in the local tier at most |
/// | `fail_safe_max = 3600` | keep entries this long past `expire`; serve them when the body fails ([`FailSafe`]); `0`: off |
/// | `fail_safe_throttle = 30` | seconds a fallback is served before the failing body is tried again |
/// | `jitter = 0.1` | each stored entry lives `expire × (1 ± 0.1)`, spread uniformly |
/// | `refresh_after = 0.8` | a hit past 80 % of the TTL answers at once and refreshes in the background (body `Send + 'static`) |
/// | `early_expiry_beta = 1.0` | XFetch: probabilistic early refresh weighted by the body's time |
/// | `soft_timeout_ms = 100` | with fail-safe: a stale miss waits this long for the body, then the stale value answers |
/// | `hard_timeout_ms = 5000` | bounds a body running in the background |
/// | `lease_ms = 5000` | single-flight across processes: one body run per key for every process sharing the store |
/// | `tags = ["user:{user_id}"]` | tags the entries carry; `#[invalidate(tags = [...])]` / [`Cache::invalidate_tag`] makes them all a miss |
/// | `expire_with = path::to::fn` | `fn(&T) -> Duration`: the TTL from the cached value (then jittered; zero: not stored) |
/// | `extra = […]`, `patterns = […]` | method-aware handlers only: also invalidated by successful mutations (and `tags`) |
/// | `crate = "path"` | where to find cacheside when it is re-exported |
///
/// `Result<T, E>` caches `Ok` only, `Option<T>` caches `Some` only (decided by
/// the type system, so aliases of either behave the same), any other
/// `T: Serialize + DeserializeOwned` is cached as is. Store failures fail open.
///
/// Placeholder values are encoded ([`keys`]): `%`, `:`, `*`, `?`, `[`, `]` and
/// `\` become `%25`, `%3A`, … so distinct arguments build distinct keys and a
/// value inside an invalidation pattern is a literal. Two placeholders must be
/// separated by text holding `:`.
///
/// **axum handlers** (feature `axum`): extractor patterns work as parameters
/// (`Path(id): Path<u64>`, `Query(q): Query<Page>` with `{q.page}`), and the
/// return types `Json<T>`, `Result<Json<T>, E>` (`Ok` cached) and
/// `(StatusCode, Json<T>)` (cached when `200 OK`) are cached by their value.
/// Every handler is *method-aware*: GET and HEAD read through the cache,
/// other methods run the handler and, when it succeeds, delete the key,
/// `extra` and `patterns`, so one handler can serve `get(h).put(h)` and the
/// same attribute can go on the PUT and DELETE handlers of a resource, as
/// with the FastAPI boilerplate's decorator. The method comes from the
/// handler's `method: Method` or `req: Request` parameter; a handler without
/// one gets a parameter added in front of its own (an extractor of the
/// method), so a PUT is never answered from the cache. A function is taken
/// for a handler when it has no `self` and takes an axum extractor (`Path`,
/// `Query`, `Json`, `Form`, `State`, `Extension`, `ConnectInfo`, …, by the
/// last segment of the type's path) or returns one of the `Json` shapes above;
/// `handler = false` says a function is none (its own types have those
/// names), `handler = true` that one is. A handler called directly (not
/// through a router) passes that parameter first:
/// [`http::RequestMethod`]`(Method::GET)`. The hashed default key
/// leaves `State<…>` and `Method` out; a handler taking the request body
/// (`Json`, `Form`, `Bytes`) needs `resource_id` or `key` (a compile error
/// says so: the body's hash would never match the GET's key).
///
/// **Per-caller entries**: put the caller in the key
/// (`key = "profile:{claims.sub}"`). When a parameter looks like credentials
/// (its type names `Claims`, `Auth…`, `Session`, `Cookie…`, `Token`,
/// `Identity`, `CurrentUser`, `Caller`) but the key does not read it, the
/// macro warns (a `deprecated` warning on that parameter): every caller would
/// get the first caller's response. Add `shared = true` when that is intended.
///
/// Each function gets a typed companion `{fn}_cache_entry(…)` taking the
/// values the key reads and returning an [`Entry`]: `key()`,
/// `invalidate()`, `get()`, `set()`. It takes plain values: `id: u64` for a
/// `Path(id): Path<u64>` parameter, and for a field placeholder (`{q.page}`)
/// the field's value (any `Display`: the key holds its text).
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Serialize, Deserialize, PartialEq, Debug)]
/// struct Page { page: u32, size: u32 }
///
/// #[cacheside::cache(key = "widgets:page:{q.page}:{q.size}", expire = 60)]
/// async fn list_widgets(q: Page) -> Vec<String> {
///     (0..q.size).map(|i| format!("widget {}", q.page * q.size + i)).collect()
/// }
///
/// #[cacheside::cache(key_prefix = "owner", resource_id = "owner_id")]
/// async fn owner_name(owner_id: u64) -> Option<String> {
///     (owner_id == 1).then(|| "ana".to_string())
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
/// let cache = cacheside::init_from_env().await?;
/// assert_eq!(list_widgets(Page { page: 1, size: 2 }).await, ["widget 2", "widget 3"]);
/// assert!(cache.exists("widgets:page:1:2").await?);
/// assert_eq!(list_widgets_cache_entry(1, 2).key(), "widgets:page:1:2"); // the fields' values
///
/// assert_eq!(owner_name(2).await, None);            // None: not cached
/// assert!(!cache.exists("owner:2").await?);
/// assert_eq!(owner_name(1).await.as_deref(), Some("ana"));
/// let entry = owner_name_cache_entry(1);
/// assert_eq!(entry.key(), "owner:1");
/// assert!(entry.invalidate().await?);
/// # Ok(()) }
/// ```
#[doc(inline)]
pub use cache_macros::cache;

/// Deletes cache entries when a mutation succeeds: the key (`key_prefix` +
/// `resource_id`, or `key`), the `extra` keys and every key matching
/// `patterns` (globs: `*`, `?`).
///
/// | argument | meaning |
/// |---|---|
/// | `key_prefix`, `resource_id`, `key` | as in [`macro@cache`] |
/// | `extra = ["widgets:count", "owner:{owner_id}"]` | more keys, with placeholders |
/// | `patterns = ["widgets:page:*"]` | globs; a store without pattern support logs and goes on |
/// | `tags = ["user:{user_id}"]` | tags to invalidate: every entry carrying one is a miss ([`Cache::invalidate_tag`]) |
/// | `before = true` | delete before the body runs (default: after it succeeds) |
/// | `cache = "name"`, `crate = "path"` | as in [`macro@cache`] |
///
/// "Succeeds" means `Ok` for a `Result`; any other return counts as success.
/// Deletion failures are logged and counted, never returned.
///
/// ```
/// #[cacheside::invalidate(key_prefix = "widget", resource_id = "widget_id",
///                         extra = ["owner:{owner_id}:widgets"], patterns = ["widgets:page:*"])]
/// async fn move_widget(widget_id: u64, owner_id: u64) -> Result<(), String> {
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
/// let cache = cacheside::init_from_env().await?;
/// for key in ["widget:3", "owner:9:widgets", "widgets:page:1", "widgets:count"] {
///     cache.set(key, &1u8, None).await?;
/// }
/// move_widget(3, 9).await.unwrap();
/// assert!(!cache.exists("widget:3").await?);
/// assert!(!cache.exists("owner:9:widgets").await?);
/// assert!(!cache.exists("widgets:page:1").await?);
/// assert!(cache.exists("widgets:count").await?); // not named: untouched
/// # Ok(()) }
/// ```
#[doc(inline)]
pub use cache_macros::invalidate;

/// The stores that ship with cacheside, each behind its feature, and
/// [`connect`](backends::connect), which starts the one a [`Config`] names.
pub mod backends {
    pub use crate::connect::{backplane_channel, connect};
    #[cfg(feature = "redis-cluster")]
    pub use cache_backends::RedisClusterBackend;
    #[cfg(feature = "redis-sentinel")]
    pub use cache_backends::RedisSentinel;
    pub use cache_backends::Timeouts;
    #[cfg(feature = "memcached")]
    pub use cache_backends::{MemcachedBackend, MemcachedConfig, MemcachedOptions};
    #[cfg(feature = "memory")]
    pub use cache_backends::{MemoryBackend, MemoryConfig};
    #[cfg(feature = "redis")]
    pub use cache_backends::{RedisBackend, RedisBackplane, RedisConfig, RedisOptions};
    pub use cache_core::NullBackend;
}

/// Reads [`Config::from_env`], connects the store it names, applies
/// `CACHE_ENABLED`, and makes the cache global (see [`init`]).
///
/// Returns the cache for direct use (the provider API). Fails with an
/// [`Error::Config`] naming the variable when a value is malformed, and with
/// [`Error::AlreadyInitialized`] when a global cache exists.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
/// let cache = cacheside::init_from_env().await?;
/// cache.set("greeting", "hello", None).await?;
/// # Ok(()) }
/// ```
pub async fn init_from_env() -> Result<Cache, Error> {
    init_from_config(&Config::from_env()?).await
}

/// Like [`init_from_env`], with a [`Config`] built in code.
pub async fn init_from_config(config: &Config) -> Result<Cache, Error> {
    let cache = connect::connect(config).await?;
    set_mode(config.mode);
    init(cache.clone())?;
    Ok(cache)
}

/// What the macros expand to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::entry::Entry;
    pub use crate::runtime::invalidate::{
        invalidating, invalidation_active, InvalidateSpec, Targets,
    };
    pub use crate::runtime::key::{
        hashed_arg, key_display, push_hash, HashedArg, KeyDisplay, KeyValue, ViaDisplayKey,
        ViaFastKey,
    };
    pub use crate::runtime::kind::{
        none_cached_kind, same_stored, typed_probe, Kind, NoneCachedKind, Probe, TypedProbe,
        ViaAnything, ViaBytes, ViaClone, ViaOutcome, ViaPlain, ViaResult,
    };
    pub use crate::runtime::observe::Observed;
    pub use crate::runtime::{
        assert_cacheable, cached, cached_background, fn_path, hit_value, instance, local_hit,
        uncached_generic_impl, CacheSpec, Lookup,
    };
    pub use cache_core::keys;
    pub use cache_core::{NoneCached, Outcome, Plain};
    pub use std::sync::OnceLock;

    /// Outcomes of axum handlers, for `#[cache]` on them.
    #[cfg(feature = "axum")]
    pub mod http {
        use axum::http::{Method, StatusCode};
        use axum::Json;
        use cache_core::Outcome;
        use serde::{de::DeserializeOwned, Serialize};

        /// GET and HEAD read through the cache; every other method is a mutation.
        pub fn is_read_method(method: &Method) -> bool {
            method == Method::GET || method == Method::HEAD
        }

        pub use crate::http::RequestMethod;

        /// `Json<T>`: always cached.
        pub struct JsonOutcome<T>(pub Json<T>);

        impl<T> From<Json<T>> for JsonOutcome<T> {
            fn from(v: Json<T>) -> Self {
                JsonOutcome(v)
            }
        }

        impl<T: Serialize + DeserializeOwned> Outcome for JsonOutcome<T> {
            type Value = T;
            fn cacheable(&self) -> Option<&T> {
                Some(&self.0 .0)
            }
            fn from_cached(value: T) -> Self {
                JsonOutcome(Json(value))
            }
        }

        /// `Result<Json<T>, E>`: `Ok` cached.
        pub struct JsonResult<T, E>(pub Result<Json<T>, E>);

        impl<T, E> From<Result<Json<T>, E>> for JsonResult<T, E> {
            fn from(v: Result<Json<T>, E>) -> Self {
                JsonResult(v)
            }
        }

        impl<T: Serialize + DeserializeOwned, E> Outcome for JsonResult<T, E> {
            type Value = T;
            fn cacheable(&self) -> Option<&T> {
                self.0.as_ref().ok().map(|j| &j.0)
            }
            fn from_cached(value: T) -> Self {
                JsonResult(Ok(Json(value)))
            }
        }

        /// `(StatusCode, Json<T>)`: cached when the status is `200 OK`.
        pub struct StatusJson<T>(pub (StatusCode, Json<T>));

        impl<T> From<(StatusCode, Json<T>)> for StatusJson<T> {
            fn from(v: (StatusCode, Json<T>)) -> Self {
                StatusJson(v)
            }
        }

        impl<T: Serialize + DeserializeOwned> Outcome for StatusJson<T> {
            type Value = T;
            fn cacheable(&self) -> Option<&T> {
                (self.0 .0 == StatusCode::OK).then_some(&self.0 .1 .0)
            }
            fn from_cached(value: T) -> Self {
                StatusJson((StatusCode::OK, Json(value)))
            }
        }
    }
}

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "http")]
pub mod http;

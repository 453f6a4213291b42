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
//! * Configure from the environment ([`Config`], [`init_from_env`]) or in code
//!   ([`Cache::builder`], [`init`]).
//! * `#[cache]` and `#[invalidate]` are documented on the macros themselves.
//! * Stores: [`backends`]; write your own by implementing [`Backend`].
//! * Turn everything off in tests with `CACHE_ENABLED=false` or [`set_enabled`].
#![warn(missing_docs)]

pub use cache_core::{
    async_trait, codec, global, hash, init, is_enabled, named, pattern, register, set_enabled,
    Backend, BackendKind, Breaker, Bytes, Cache, CacheBuilder, Codec, Config, Entry, Error, Key,
    NullBackend, Stats, DEFAULT_MAX_VALUE_SIZE, DEFAULT_OP_TIMEOUT, DEFAULT_TTL,
};
pub use cache_macros::{cache, invalidate};

/// The stores that ship with cacheside.
pub mod backends {
    pub use cache_backends::connect;
    #[cfg(feature = "memory")]
    pub use cache_backends::MemoryBackend;
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
    let cache = cache_backends::connect(config).await?;
    set_enabled(config.enabled);
    init(cache.clone())?;
    Ok(cache)
}

/// What the macros expand to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use cache_core::runtime::{
        assert_cacheable, cached, hashed_key, invalidating, invalidation_active, Entry, InvalidateSpec, Spec,
        Targets,
    };
    pub use cache_core::{CacheNone, Plain};

    /// Builds the global cache from the environment on the first annotated call.
    pub fn auto_init() -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<crate::Cache, crate::Error>> + Send>,
    > {
        Box::pin(async {
            let config = crate::Config::from_env()?;
            if config.backend == crate::BackendKind::Memory {
                cache_core::runtime::log_default_memory();
            }
            cache_backends::connect(&config).await
        })
    }
}

#[cfg(feature = "testing")]
pub mod testing;

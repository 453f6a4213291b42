//! Where annotated functions find their cache: the global cache, named caches, and the on/off switch.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, OnceLock, PoisonError, RwLock};

use tokio::sync::OnceCell;

use crate::config::parse_bool;
use crate::{Cache, Error};

static GLOBAL: OnceCell<Cache> = OnceCell::const_new();
static NAMED: LazyLock<RwLock<HashMap<String, Cache>>> = LazyLock::new(Default::default);
static ENABLED: LazyLock<AtomicBool> = LazyLock::new(|| AtomicBool::new(enabled_from_env()));

fn enabled_from_env() -> bool {
    match std::env::var("CACHE_ENABLED") {
        Err(_) => true,
        Ok(v) => match parse_bool("CACHE_ENABLED", &v) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "caching stays enabled");
                true
            }
        },
    }
}

/// Makes `cache` the global cache that annotated functions use by default.
///
/// Call it once at startup, before the first cached call. A second call, or
/// a call after the first annotated call initialised a cache from the
/// environment, returns [`Error::AlreadyInitialized`].
pub fn init(cache: Cache) -> Result<(), Error> {
    GLOBAL.set(cache).map_err(|_| Error::AlreadyInitialized)
}

/// The global cache, if one was initialised.
pub fn global() -> Option<Cache> {
    GLOBAL.get().cloned()
}

/// Registers `cache` under `name` for `#[cache(cache = "name")]` and [`named`];
/// returns the cache it replaces, if any.
pub fn register(name: &str, cache: Cache) -> Option<Cache> {
    NAMED
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(name.to_owned(), cache)
}

/// The cache registered under `name`.
pub fn named(name: &str) -> Option<Cache> {
    NAMED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(name)
        .cloned()
}

/// Turns every annotated function on or off at run time (the `CACHE_ENABLED` switch).
///
/// Off, annotated functions run their bodies and touch no store. The provider
/// API ([`Cache`] methods) is not affected.
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether annotated functions use the cache (initially from `CACHE_ENABLED`; default on).
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Builds the default cache from the environment when no `init` ran (supplied by the facade).
pub type AutoInit = fn() -> Pin<Box<dyn Future<Output = Result<Cache, Error>> + Send>>;

/// A cache found for a call: the global one (borrowed for the program's life) or a named one.
#[derive(Debug, Clone)]
pub enum CacheRef {
    /// The global cache.
    Global(&'static Cache),
    /// A registered cache.
    Named(Cache),
}

impl Deref for CacheRef {
    type Target = Cache;
    fn deref(&self) -> &Cache {
        match self {
            CacheRef::Global(c) => c,
            CacheRef::Named(c) => c,
        }
    }
}

static AUTO_INIT_FAILED: OnceLock<()> = OnceLock::new();

/// Finds the cache for an annotated call; `None` means "run uncached".
///
/// Without a name: the global cache, initialised with `auto_init` on first
/// use (logged once). With a name that is not registered: `None` and a
/// warning once per burst.
pub async fn resolve(name: Option<&'static str>, auto_init: AutoInit) -> Option<CacheRef> {
    match name {
        Some(name) => match named(name) {
            Some(c) => Some(CacheRef::Named(c)),
            None => {
                static WARN: crate::guard::WarnOnce = crate::guard::WarnOnce::new();
                if WARN.should_log().is_some() {
                    tracing::warn!(cache = name, "no cache registered under this name; calls run uncached until cacheside::register(\"{name}\", …) is called");
                }
                None
            }
        },
        None => {
            if let Some(c) = GLOBAL.get() {
                return Some(CacheRef::Global(c));
            }
            if AUTO_INIT_FAILED.get().is_some() {
                return None;
            }
            let made = GLOBAL
                .get_or_try_init(|| async {
                    let cache = auto_init().await?;
                    tracing::info!(backend = cache.backend_name(), "no cache initialised; the first cached call built one from the environment (call cacheside::init_from_env() at startup to choose)");
                    Ok::<_, Error>(cache)
                })
                .await;
            match made {
                Ok(c) => Some(CacheRef::Global(c)),
                Err(e) => {
                    if AUTO_INIT_FAILED.set(()).is_ok() {
                        tracing::error!(error = %e, "could not build a cache from the environment; annotated functions run uncached");
                    }
                    None
                }
            }
        }
    }
}

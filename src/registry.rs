//! Where annotated functions find their cache: the global cache, named caches, and the on/off switch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{LazyLock, OnceLock, PoisonError, RwLock};

use cache_core::{Cache, Error, OncePerBurst};
use tokio::sync::OnceCell;

use crate::config::parse_mode;

static GLOBAL: OnceCell<Cache> = OnceCell::const_new();
/// Registered caches. Leaked to `&'static` so that calls resolve them without
/// reference counting; a replaced cache lives on (registration is a startup act).
static NAMED: LazyLock<RwLock<HashMap<String, &'static Cache>>> = LazyLock::new(Default::default);
/// Bumped by every `register`: invalidates the per-thread lookups below.
static NAMED_GENERATION: AtomicU64 = AtomicU64::new(0);
static MODE: LazyLock<AtomicU8> = LazyLock::new(|| AtomicU8::new(mode_from_env() as u8));

fn mode_from_env() -> CacheMode {
    match std::env::var("CACHE_ENABLED") {
        Err(_) => CacheMode::On,
        Ok(v) => match parse_mode("CACHE_ENABLED", &v) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "caching stays enabled");
                CacheMode::On
            }
        },
    }
}

/// What annotated functions do with the cache (`CACHE_ENABLED`).
///
/// ```
/// use cacheside::CacheMode;
/// assert_eq!("invalidate-only".parse::<CacheMode>().unwrap(), CacheMode::InvalidateOnly);
/// assert_eq!("false".parse::<CacheMode>().unwrap(), CacheMode::Off);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum CacheMode {
    /// Read through the cache and invalidate (`CACHE_ENABLED=true`, the default).
    On = 0,
    /// Touch no store at all: `#[cache]` runs its body, `#[invalidate]`
    /// deletes nothing (`CACHE_ENABLED=false`; the switch for tests).
    Off = 1,
    /// Never read or write cached values, but still delete what mutations
    /// invalidate (`CACHE_ENABLED=invalidate-only`): for a worker or a batch
    /// job that shares the store with the cached service and must not leave
    /// stale entries behind, nor serve from the cache itself.
    InvalidateOnly = 2,
}

impl std::str::FromStr for CacheMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        parse_mode("CACHE_ENABLED", s)
    }
}

/// Sets what annotated functions do with the cache (see [`CacheMode`]).
pub fn set_mode(mode: CacheMode) {
    MODE.store(mode as u8, Ordering::Relaxed);
}

/// What annotated functions do with the cache (initially from `CACHE_ENABLED`).
pub fn mode() -> CacheMode {
    match MODE.load(Ordering::Relaxed) {
        0 => CacheMode::On,
        1 => CacheMode::Off,
        _ => CacheMode::InvalidateOnly,
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
///
/// Meant for startup: a registered cache stays alive for the rest of the
/// process (calls hold it without reference counting), also after it is replaced.
pub fn register(name: &str, cache: Cache) -> Option<Cache> {
    let leaked: &'static Cache = Box::leak(Box::new(cache));
    let previous = NAMED
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(name.to_owned(), leaked);
    NAMED_GENERATION.fetch_add(1, Ordering::Release);
    previous.cloned()
}

/// The cache registered under `name`.
pub fn named(name: &str) -> Option<Cache> {
    named_static(name).cloned()
}

fn named_static(name: &str) -> Option<&'static Cache> {
    NAMED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(name)
        .copied()
}

/// `named_static` for a name that is a `&'static str` (as in macro specs),
/// memoised per thread: no lock and no shared write on the hot path.
fn named_fast(name: &'static str) -> Option<&'static Cache> {
    type Memo = Vec<(usize, usize, u64, Option<&'static Cache>)>;
    thread_local! {
        static MEMO: std::cell::RefCell<Memo> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let generation = NAMED_GENERATION.load(Ordering::Acquire);
    let id = (name.as_ptr() as usize, name.len());
    let memoised = MEMO.with(|m| {
        m.borrow()
            .iter()
            .find(|e| (e.0, e.1) == id && e.2 == generation)
            .map(|e| e.3)
    });
    if let Some(found) = memoised {
        return found;
    }
    let found = named_static(name);
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        m.retain(|e| (e.0, e.1) != id);
        if m.len() >= 64 {
            m.clear();
        }
        m.push((id.0, id.1, generation, found));
    });
    found
}

/// Turns every annotated function on or off at run time (the `CACHE_ENABLED` switch).
///
/// Off, annotated functions run their bodies and touch no store (neither
/// `#[cache]` nor `#[invalidate]`). The provider API ([`Cache`] methods) is
/// not affected. See [`set_mode`] for a process that must still invalidate.
pub fn set_enabled(enabled: bool) {
    set_mode(if enabled {
        CacheMode::On
    } else {
        CacheMode::Off
    });
}

/// Whether annotated functions read through the cache ([`CacheMode::On`]).
#[inline]
pub fn is_enabled() -> bool {
    MODE.load(Ordering::Relaxed) == CacheMode::On as u8
}

/// Whether `#[invalidate]` (and mutations of method-aware handlers) delete:
/// every mode but [`CacheMode::Off`].
#[inline]
pub fn invalidation_enabled() -> bool {
    MODE.load(Ordering::Relaxed) != CacheMode::Off as u8
}

/// Set when the lazy start failed: why (redacted), for the repeated log line.
static AUTO_INIT_FAILED: OnceLock<String> = OnceLock::new();
/// Annotated calls that ran uncached because the lazy start failed.
static AUTO_INIT_FAILURES: AtomicU64 = AtomicU64::new(0);
/// Limits the repeated ERROR to one per burst window (10 s).
static AUTO_INIT_LOG: OncePerBurst = OncePerBurst::new();

/// How many annotated calls ran uncached because the lazy start failed: no
/// `init`/`init_from_env` was called and the first annotated call could not
/// build a cache from the environment (a malformed variable, a store that
/// refused the configuration). 0 while the lazy start has not failed.
///
/// The lazy start is tried once; after it failed, every annotated call that
/// would use the global cache runs its body uncached (fail open), counts
/// here, and an ERROR naming the cause is logged at most once per 10 s burst.
/// Call `cacheside::init_from_env()` at startup to turn such a setup into an
/// error instead.
///
/// ```
/// // Nothing failed in this process.
/// assert_eq!(cacheside::auto_init_failures(), 0);
/// ```
pub fn auto_init_failures() -> u64 {
    AUTO_INIT_FAILURES.load(Ordering::Relaxed)
}

/// Counts a call that runs uncached after a failed lazy start; logs once per burst.
fn run_uncached_after_failed_init(reason: &str) {
    let calls = AUTO_INIT_FAILURES.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(suppressed) = AUTO_INIT_LOG.should_log() {
        tracing::error!(error = %reason, uncached_calls = calls, suppressed, "annotated functions still run uncached: no cache was initialised and building one from the environment failed; fix the variable named and restart (call cacheside::init_from_env() at startup to stop on such errors)");
    }
}

/// Finds the cache for an annotated call; `None` means "run uncached".
///
/// The cache a call would use when it is ready now (the global one built,
/// the named one registered), without waiting and without logging: the
/// macros' synchronous fast path. `None`: ask [`resolve`].
#[inline]
pub(crate) fn resolve_ready(name: Option<&'static str>) -> Option<&'static Cache> {
    match name {
        Some(name) => named_fast(name),
        None => GLOBAL.get(),
    }
}

/// Without a name: the global cache, built from the environment on first
/// use (logged once). With a name that is not registered: `None` and a
/// warning once per burst.
pub(crate) async fn resolve(name: Option<&'static str>) -> Option<&'static Cache> {
    match name {
        Some(name) => match named_fast(name) {
            Some(c) => Some(c),
            None => {
                static WARN: OncePerBurst = OncePerBurst::new();
                if WARN.should_log().is_some() {
                    tracing::warn!(cache = name, "no cache registered under this name; calls run uncached until cacheside::register(\"{name}\", …) is called");
                }
                None
            }
        },
        None => {
            if let Some(c) = GLOBAL.get() {
                return Some(c);
            }
            if let Some(reason) = AUTO_INIT_FAILED.get() {
                run_uncached_after_failed_init(reason);
                return None;
            }
            let made = GLOBAL
                .get_or_try_init(|| async {
                    let cache = crate::connect::from_env_lazily().await?;
                    tracing::info!(backend = cache.backend_name(), "no cache initialised; the first cached call built one from the environment (call cacheside::init_from_env() at startup to choose)");
                    Ok::<_, Error>(cache)
                })
                .await;
            match made {
                Ok(c) => Some(c),
                Err(e) => {
                    let reason = cache_core::redact_url(&e.to_string());
                    match AUTO_INIT_FAILED.set(reason.clone()) {
                        Ok(()) => {
                            AUTO_INIT_FAILURES.fetch_add(1, Ordering::Relaxed);
                            // Opens the burst window: the next ERROR comes 10 s of calls later.
                            let _ = AUTO_INIT_LOG.should_log();
                            tracing::error!(error = %reason, "could not build a cache from the environment; annotated functions run uncached (counted in cacheside::auto_init_failures(), logged again once per 10 s burst)");
                        }
                        Err(_) => run_uncached_after_failed_init(&reason),
                    }
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache_core::NullBackend;

    #[test]
    fn a_re_registered_name_is_seen_by_threads_that_memoised_the_old_one() {
        const NAME: &str = "registry-test-cache";
        let first = Cache::builder(NullBackend).namespace("one").build();
        assert!(register(NAME, first).is_none());
        assert_eq!(named_fast(NAME).map(Cache::namespace), Some("one"));
        let second = Cache::builder(NullBackend).namespace("two").build();
        let replaced = register(NAME, second).expect("replaces the first");
        assert_eq!(replaced.namespace(), "one");
        assert_eq!(named_fast(NAME).map(Cache::namespace), Some("two"));
        let seen_elsewhere =
            std::thread::spawn(|| named_fast(NAME).map(|c| c.namespace().to_owned()))
                .join()
                .unwrap();
        assert_eq!(seen_elsewhere.as_deref(), Some("two"));
        assert!(named_fast("registry-test-missing").is_none());
    }
}

//! What the `#[cache]` and `#[invalidate]` macros call. Not a public API: reached
//! through `cacheside::__private` and free to change between minor versions.

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use crate::cache::Outcome;
use crate::registry::{is_enabled, resolve, AutoInit};
use crate::Error;

/// Static description of one annotated function.
#[derive(Debug)]
pub struct Spec {
    /// The function's name, for logs.
    pub function: &'static str,
    /// `cache = "name"`, or the global cache.
    pub cache: Option<&'static str>,
    /// `expire` in seconds; `None` = the cache's default; `Some(0)` = not cached.
    pub expire: Option<u64>,
    /// Builds the global cache when none was initialised.
    pub auto_init: AutoInit,
}

impl Spec {
    /// Whether the wrapper should compute a key at all (enabled and not `expire = 0`).
    #[inline]
    pub fn active(&self) -> bool {
        self.expire != Some(0) && is_enabled()
    }
}

/// The `#[cache]` wrapper: cache-aside around `body`, fail-open.
///
/// `key` is `None` when [`Spec::active`] was false; then `body` just runs.
pub async fn cached<O, Fut>(spec: &'static Spec, key: Option<String>, body: Fut) -> O
where
    O: Outcome,
    Fut: Future<Output = O>,
{
    let Some(key) = key else {
        return body.await;
    };
    let Some(cache) = resolve(spec.cache, spec.auto_init).await else {
        return body.await;
    };
    let full = cache.full_key(&key);
    let ttl = match spec.expire {
        Some(secs) => Duration::from_secs(secs),
        None => cache.default_ttl(),
    };
    let (out, encode_error) = cache.read_through(&full, ttl, body).await;
    if let Some(e) = encode_error {
        cache.note_failure("encode", &full, &e);
    }
    out
}

/// Static description of one `#[invalidate]` function.
#[derive(Debug)]
pub struct InvalidateSpec {
    /// The function's name, for logs.
    pub function: &'static str,
    /// `cache = "name"`, or the global cache.
    pub cache: Option<&'static str>,
    /// Delete before the body runs instead of after it succeeds.
    pub before: bool,
    /// Builds the global cache when none was initialised.
    pub auto_init: AutoInit,
}

/// Keys and patterns one `#[invalidate]` call removes.
#[derive(Debug, Default)]
pub struct Targets {
    /// Exact keys (the main key, then `extra`).
    pub keys: Vec<String>,
    /// Glob patterns.
    pub patterns: Vec<String>,
}

/// The `#[invalidate]` wrapper. `targets` is `None` when caching is disabled.
pub async fn invalidating<R, Fut>(
    spec: &'static InvalidateSpec,
    targets: Option<Targets>,
    succeeded: fn(&R) -> bool,
    body: Fut,
) -> R
where
    Fut: Future<Output = R>,
{
    let Some(targets) = targets else {
        return body.await;
    };
    if spec.before {
        invalidate_now(spec, &targets).await;
        return body.await;
    }
    let out = body.await;
    if succeeded(&out) {
        // The mutation is done: if this caller is dropped before the deletes
        // finish (a client disconnecting from a PUT), they finish in a task.
        let mut pending = PendingInvalidation {
            spec,
            targets: Some(targets),
        };
        if let Some(targets) = pending.targets.as_ref() {
            invalidate_now(spec, targets).await;
        }
        pending.targets = None;
    }
    out
}

/// Deletes that must happen even if the caller goes away mid-way.
struct PendingInvalidation {
    spec: &'static InvalidateSpec,
    targets: Option<Targets>,
}

impl Drop for PendingInvalidation {
    fn drop(&mut self) {
        let Some(targets) = self.targets.take() else {
            return;
        };
        let spec = self.spec;
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move { invalidate_now(spec, &targets).await });
            }
            Err(_) => tracing::warn!(
                function = spec.function,
                "invalidation interrupted outside a tokio runtime; entries expire by TTL"
            ),
        }
    }
}

/// Deletes every target, fail-open: one failure does not stop the others.
pub async fn invalidate_now(spec: &'static InvalidateSpec, targets: &Targets) {
    let Some(cache) = resolve(spec.cache, spec.auto_init).await else {
        return;
    };
    for key in &targets.keys {
        if let Err(e) = cache.delete(key).await {
            cache.note_failure("invalidation", key, &e);
        }
    }
    for pattern in &targets.patterns {
        match cache.delete_pattern(pattern).await {
            Ok(_) => {}
            Err(Error::PatternNotSupported { backend }) => {
                tracing::warn!(function = spec.function, backend, pattern, "this backend cannot delete by pattern; the exact keys were deleted, entries matching the pattern expire by TTL");
            }
            Err(e) => cache.note_failure("pattern invalidation", pattern, &e),
        }
    }
}

/// Whether `#[invalidate]` should compute its targets.
#[inline]
pub fn invalidation_active() -> bool {
    is_enabled()
}

/// Typed handle on one entry of a `#[cache]` function, returned by its
/// generated `…_cache_entry` companion.
///
/// It computes the key exactly like the wrapper does, so it always reaches
/// the entry the function wrote, in whichever cache the function uses.
#[derive(Debug)]
pub struct Entry<T> {
    key: String,
    spec: &'static Spec,
    _value: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Entry<T> {
    #[doc(hidden)]
    pub fn new(spec: &'static Spec, key: String) -> Self {
        Entry {
            key,
            spec,
            _value: PhantomData,
        }
    }

    /// The key (without the cache's namespace).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Removes the entry; true when it was there. `Ok(false)` when no cache is available.
    pub async fn invalidate(&self) -> Result<bool, Error> {
        match resolve(self.spec.cache, self.spec.auto_init).await {
            Some(cache) => cache.delete(&self.key).await,
            None => Ok(false),
        }
    }

    /// Reads the cached value, if any.
    pub async fn get(&self) -> Result<Option<T>, Error> {
        match resolve(self.spec.cache, self.spec.auto_init).await {
            Some(cache) => cache.get(&self.key).await,
            None => Ok(None),
        }
    }

    /// Writes a value (for warming), with the function's own TTL.
    pub async fn set(&self, value: &T) -> Result<(), Error> {
        let Some(cache) = resolve(self.spec.cache, self.spec.auto_init).await else {
            return Ok(());
        };
        let ttl = self.spec.expire.map(Duration::from_secs);
        if ttl == Some(Duration::ZERO) {
            return Ok(());
        }
        cache.set(&self.key, value, ttl).await
    }
}

/// Builds the argument-hash part of a key: `{prefix}:{hash}`.
pub fn hashed_key<H: std::hash::Hash + ?Sized>(prefix: &str, args: &H) -> String {
    let mut s = String::with_capacity(prefix.len() + 33);
    s.push_str(prefix);
    s.push(':');
    s.push_str(&crate::hash::stable_hex(args));
    s
}

/// Compile-time check emitted with the span of the cached type, so a type
/// that is not `Serialize + DeserializeOwned` is reported where it is written.
#[inline(always)]
pub fn assert_cacheable<T: Serialize + DeserializeOwned>() {}

/// Logs that the default in-memory store was chosen implicitly.
pub fn log_default_memory() {
    tracing::info!("cacheside uses the in-memory store (CACHE_BACKEND unset or memory); entries are per process");
}

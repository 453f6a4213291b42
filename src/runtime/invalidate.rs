//! The `#[invalidate]` wrapper (and mutations of method-aware handlers):
//! delete the targets when the body succeeds, even if the caller goes away.

use std::future::Future;

use cache_core::Error;

use crate::registry::{invalidation_enabled, resolve};

/// Static description of one `#[invalidate]` function.
#[derive(Debug)]
pub struct InvalidateSpec {
    /// The function's name, for logs.
    pub function: &'static str,
    /// `cache = "name"`, or the global cache.
    pub cache: Option<&'static str>,
    /// Delete before the body runs instead of after it succeeds.
    pub before: bool,
    /// What this function's invalidations counted.
    pub observed: super::observe::Observed,
}

/// Keys and patterns one `#[invalidate]` call removes.
#[derive(Debug, Default)]
pub struct Targets {
    /// Exact keys (the main key, then `extra`).
    pub keys: Vec<String>,
    /// Glob patterns.
    pub patterns: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
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
    let Some(cache) = resolve(spec.cache).await else {
        return;
    };
    let n = targets.keys.len() + targets.patterns.len() + targets.tags.len();
    super::observe::invalidated(&spec.observed, spec.function, spec.cache, n as u64);
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
    for tag in &targets.tags {
        if let Err(e) = cache.invalidate_tag(tag).await {
            cache.note_failure("tag invalidation", tag, &e);
        }
    }
}

/// Whether `#[invalidate]` should compute its targets (every
/// [`CacheMode`](crate::CacheMode) but `Off`).
#[inline]
pub fn invalidation_active() -> bool {
    invalidation_enabled()
}

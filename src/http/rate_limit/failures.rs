//! Store failures (see [Store failures](super#store-failures)): the check
//! of a shared store when the layer is applied, and how failed checks are
//! counted and logged (once per burst, with the number held back).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::layer::{Counters, Settings};
use super::{bump, RATE_LIMIT_STORAGE_URI};
use crate::Error;

impl Settings {
    /// Counts a request the store could not decide on and logs it, once per burst.
    pub(super) fn store_failed(&self, e: &Error) {
        let total = if self.fail_open {
            bump(&self.counts.failed_open)
        } else {
            bump(&self.counts.failed_closed)
        };
        if let Some(suppressed) = self.store_burst.should_log() {
            self.log_store_failure(e, suppressed, total, "a request");
        }
    }

    fn log_store_failure(&self, e: &Error, suppressed: u64, total: u64, during: &str) {
        let backend = self.cache.backend_name();
        let outcome = if self.fail_open {
            "requests pass unlimited (fail_open(true), the default)"
        } else {
            "requests are answered 503 (fail_open(false))"
        };
        if matches!(e, Error::Unsupported { .. }) {
            tracing::error!(
                backend,
                error = %e,
                suppressed,
                total,
                "rate limiter cannot limit: its {backend} store does not count (no Backend::increment), so {outcome}; implement Backend::increment for it, or give the limiter a built-in store (RateLimitLayer::from_env with {RATE_LIMIT_STORAGE_URI}=redis://…)"
            );
        } else {
            tracing::warn!(
                backend,
                error = %e,
                suppressed,
                total,
                "rate limiter cannot limit: its {backend} store failed during {during}, so {outcome} until it answers; check the server and {RATE_LIMIT_STORAGE_URI} (or the URL of the cache given to RateLimitLayer::new)"
            );
        }
    }

    /// Checks once that a shared store counts (in the background, when a runtime is at hand).
    pub(super) fn probe_in_background(self: &Arc<Self>) {
        if !matches!(self.counters, Counters::Given) || self.probed.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // The first request reports a failing store instead.
        };
        if self.probed.swap(true, Ordering::AcqRel) {
            return;
        }
        let settings = Arc::clone(self);
        runtime.spawn(async move { settings.probe().await });
    }

    /// One counter operation that changes nothing (`delta = 0` on a probe key).
    async fn probe(&self) {
        let key = format!("{}:{{probe}}:0", self.prefix);
        if let Err(e) = self
            .cache
            .increment(&key, 0, Duration::from_secs(1), None)
            .await
        {
            let total = bump(&self.counts.store_errors);
            if let Some(suppressed) = self.store_burst.should_log() {
                self.log_store_failure(&e, suppressed, total, "the startup check");
            }
        }
    }
}

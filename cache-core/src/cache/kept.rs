//! Kept invalidations: a delete, pattern delete or clear the store did not
//! take is kept (see [`crate::pending`]) and delivered when it answers again.

use super::stats::bump;
use super::Cache;
use crate::backend::Key;
use crate::guard::Bound;
use crate::pending::{Batch, Pushed, Target};
use crate::Error;

impl Cache {
    /// After an invalidation: kept when the store did not take it; when it
    /// did, it supersedes what was kept before it started.
    pub(super) fn settle(
        &self,
        result: Result<(), &Error>,
        target: Target<'_>,
        upto: u64,
        what: &str,
    ) {
        match result {
            Ok(()) => {
                // First drop what this one made redundant, then deliver the
                // rest: a delivery started before would send a superseded
                // clear after a fresh write and wipe it.
                self.inner
                    .pending
                    .superseded(target, upto, self.inner.prefix.len());
                if !self.inner.pending.is_empty() {
                    self.deliver_pending();
                }
            }
            Err(e) if e.is_store_failure() => self.keep_invalidation(target, what, e),
            Err(_) => {}
        }
    }

    /// Keeps an invalidation the store did not take (see [`crate::pending`]).
    pub(super) fn keep_invalidation(&self, target: Target<'_>, what: &str, err: &Error) {
        bump(&self.inner.counters.invalidations_queued);
        if self.inner.pending.push(target) == Pushed::Collapsed {
            bump(&self.inner.counters.invalidation_overflows);
            tracing::error!(
                backend = self.backend_name(),
                namespace = self.namespace(),
                "more than 1024 invalidations are waiting for the store; they collapse into one clear() \
                 of the namespace, delivered when the store answers again (until then every read misses)"
            );
        }
        if let Some(suppressed) = self.inner.warn.should_log() {
            tracing::warn!(backend = self.backend_name(), error = %err, suppressed, "cache {what} failed; kept, and delivered when the store answers again (until then reads of what it covers miss)");
        }
    }

    /// Starts delivering kept invalidations in a task (one at a time).
    pub(super) fn deliver_pending(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(batch) = self.inner.pending.take() else {
            return;
        };
        let cache = self.clone();
        handle.spawn(async move { cache.deliver(batch).await });
    }

    async fn deliver(&self, batch: Batch) {
        let inner = &*self.inner;
        let prefix = inner.prefix.as_str();
        let mut sent = 0u64;
        for full in batch.keys.keys() {
            if !inner.pending.holds(&Target::Key(full)) {
                continue; // superseded since the batch was taken
            }
            let key = Key::new(full, prefix.len().min(full.len()));
            if self
                .call_store(
                    "delete",
                    Bound::Op,
                    inner.backend.invalidate(key, inner.fence_window),
                )
                .await
                .is_err()
            {
                return inner.pending.failed();
            }
            sent += 1;
        }
        for pattern in batch.patterns.keys() {
            if !inner.pending.holds(&Target::Pattern(pattern)) {
                continue;
            }
            match self
                .call_store(
                    "delete_pattern",
                    Bound::Within(inner.bulk_timeout),
                    inner.backend.delete_pattern(prefix, pattern),
                )
                .await
            {
                Ok(_) | Err(Error::PatternNotSupported { .. }) => sent += 1,
                Err(_) => return inner.pending.failed(),
            }
        }
        for tag in batch.tags.keys() {
            if !inner.pending.holds(&Target::Tag(tag)) {
                continue;
            }
            // The time of delivery: later than the invalidation, so it kills
            // at least what it should have (and what was stored meanwhile).
            let version = crate::clock::unix_ms().to_string();
            let key = Key::new(tag, prefix.len().min(tag.len()));
            let set = inner.backend.set(
                key,
                version.into_bytes().into(),
                Some(super::read_through::TAG_TTL),
            );
            if self.call_store("set", Bound::Op, set).await.is_err() {
                return inner.pending.failed();
            }
            sent += 1;
        }
        if batch.clear.is_some() && inner.pending.holds(&Target::Clear) {
            let cleared = self
                .call_store(
                    "clear",
                    Bound::Within(inner.bulk_timeout),
                    inner.backend.clear(prefix),
                )
                .await;
            if cleared.is_err() {
                return inner.pending.failed();
            }
            sent += 1;
        }
        inner.pending.delivered(&batch);
        for _ in 0..sent {
            bump(&inner.counters.invalidations_delivered);
        }
        tracing::info!(
            backend = self.backend_name(),
            delivered = sent,
            "the cache store answers again; kept invalidations delivered"
        );
    }
}

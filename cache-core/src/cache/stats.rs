//! [`Stats`], and the striped counters behind it.

use crate::stripe::{self, Padded, STRIPES};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one [`Cache`](super::Cache), read with [`Cache::stats`](super::Cache::stats).
///
/// ```
/// let s = cache_core::Stats::default();
/// assert_eq!(s.hit_ratio(), 0.0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Reads that found a valid entry.
    pub hits: u64,
    /// Reads that found nothing (or an entry that did not decode).
    pub misses: u64,
    /// Store failures, timeouts, undecodable entries, skipped-by-breaker calls.
    pub errors: u64,
    /// Callers that waited for another caller's miss instead of running the body.
    pub coalesced: u64,
    /// Values not written because they were over the size limit.
    pub skipped: u64,
    /// Invalidations the store did not take (circuit open, timeout, error),
    /// kept to be delivered when it answers again.
    pub invalidations_queued: u64,
    /// Kept invalidations delivered later.
    pub invalidations_delivered: u64,
    /// Times more than 1,024 kept invalidations collapsed into one `clear()`
    /// of the namespace (logged as an error).
    pub invalidation_overflows: u64,
    /// Hits served by the local tier (decoded values in this process); also counted in `hits`.
    pub local_hits: u64,
    /// Entries the local tier dropped to stay within its bounds.
    pub local_evictions: u64,
    /// Times the local tier was emptied because the backplane came back
    /// after a loss (it may have missed invalidations meanwhile).
    pub local_flushes: u64,
    /// Fills not stored because an invalidation overtook them (refused by
    /// the store's fence, or by the local tier's log).
    pub fenced_fills: u64,
    /// Times the backplane connection was lost.
    pub backplane_disconnects: u64,
    /// Backplane messages that could not be sent, or that arrived unreadable.
    pub backplane_failures: u64,
    /// Stale values served by fail-safe, because the body failed or the
    /// store could not be read ([`FailSafe`](crate::FailSafe)).
    pub stale_served: u64,
    /// Early refreshes started (`refresh_after`, `early_expiry_beta`).
    pub refreshes: u64,
    /// Tags invalidated by this cache ([`Cache::invalidate_tag`](super::Cache::invalidate_tag)).
    pub tag_invalidations: u64,
}

impl Stats {
    /// `hits / (hits + misses)`, or 0 before any read.
    pub fn hit_ratio(&self) -> f64 {
        Counter::ratio(self.hits, self.misses)
    }
}

/// One statistic, striped per thread (see `crate::stripe`) so that
/// threads counting hits at the same time do not fight over one cache line.
#[doc(hidden)] // for the facade's per-function statistics, not API
#[derive(Default)]
pub struct Counter([Padded<AtomicU64>; STRIPES]);

impl Counter {
    /// `hits / (hits + misses)`, or 0 before any read: every hit ratio's formula.
    pub fn ratio(hits: u64, misses: u64) -> f64 {
        match hits.saturating_add(misses) {
            0 => 0.0,
            total => hits as f64 / total as f64,
        }
    }

    /// Zero (for `static`s).
    pub const fn new() -> Counter {
        #[allow(clippy::declare_interior_mutable_const)] // a fresh zero per stripe, by design
        const ZERO: Padded<AtomicU64> = Padded(AtomicU64::new(0));
        Counter([ZERO; STRIPES])
    }

    /// The total over every stripe.
    pub fn load(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }

    /// Adds one, on this thread's stripe.
    #[inline]
    pub fn bump(&self) {
        bump(self);
    }

    /// Adds `n`, on this thread's stripe.
    #[inline]
    pub fn add(&self, n: u64) {
        self.add_at(stripe::index(), n);
    }

    /// Adds `n` on `stripe` (the caller's thread's, looked up once for two counters).
    #[inline]
    pub(crate) fn add_at(&self, stripe: usize, n: u64) {
        self.0[stripe].0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one on `stripe` with a plain load and store, no locked
    /// read-modify-write (a `lock xadd` costs a hit more than all the rest
    /// of the counting). Exact while each stripe has one thread; with more
    /// than [`STRIPES`] threads counting at once, two sharing a stripe can
    /// lose an increment. For per-function statistics only.
    #[inline]
    pub(crate) fn bump_unsynced_at(&self, stripe: usize) {
        let s = &self.0[stripe].0;
        s.store(s.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

/// The counters of one cache.
#[derive(Default)]
pub(super) struct Counters {
    /// Hits served from the store (a local hit counts in `local_hits` only; `stats()` adds them).
    pub(super) hits: Counter,
    pub(super) misses: Counter,
    pub(super) errors: Counter,
    pub(super) coalesced: Counter,
    pub(super) skipped: Counter,
    pub(super) invalidations_queued: Counter,
    pub(super) invalidations_delivered: Counter,
    pub(super) invalidation_overflows: Counter,
    pub(super) local_hits: Counter,
    pub(super) fenced_fills: Counter,
    pub(super) backplane_disconnects: Counter,
    pub(super) backplane_failures: Counter,
    pub(super) stale_served: Counter,
    pub(super) refreshes: Counter,
    pub(super) tag_invalidations: Counter,
}

/// Adds one to `c` (on this thread's stripe).
pub(super) fn bump(c: &Counter) {
    c.0[stripe::index()].0.fetch_add(1, Ordering::Relaxed);
}

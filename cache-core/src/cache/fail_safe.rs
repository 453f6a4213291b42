//! Fail-safe: entries kept past their TTL, served when a fresh value cannot
//! be had (the body fails, panics or the store is unreachable), and the
//! body not retried for a key more often than the throttle.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Keep entries up to `max` past their TTL and serve them, stale, when the
/// fresh value cannot be had: the body returns what is not cached (an
/// `Err`, a `None`), panics, or the store cannot be read. After such a
/// fallback the stale value counts as fresh again for `throttle`, so a
/// failing source is asked at most once per key per throttle period (across
/// processes on a shared store: the throttled entry is written back,
/// fenced like any fill).
///
/// Off unless set: [`CacheBuilder::fail_safe`](crate::CacheBuilder::fail_safe)
/// for a cache, `#[cache(fail_safe_max = …)]` for a function,
/// `CACHE_FAIL_SAFE_MAX` / `CACHE_FAIL_SAFE_THROTTLE` from the environment.
///
/// An invalidation removes the entry, stale part included: what was
/// invalidated is never served, not even as a fallback.
///
/// ```
/// use std::time::Duration;
/// use cache_core::FailSafe;
/// let fs = FailSafe::new(Duration::from_secs(3600)).throttle(Duration::from_secs(10));
/// assert_eq!(fs.max, Duration::from_secs(3600));
/// assert_eq!(FailSafe::new(Duration::from_secs(60)).throttle, FailSafe::DEFAULT_THROTTLE);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailSafe {
    /// How long past its TTL an entry is kept to fall back on.
    pub max: Duration,
    /// How long a fallback value is served as fresh before the body is tried again.
    pub throttle: Duration,
}

impl FailSafe {
    /// The throttle of [`FailSafe::new`]: 30 s.
    pub const DEFAULT_THROTTLE: Duration = Duration::from_secs(30);

    /// Entries kept `max` past their TTL, with the default throttle.
    pub const fn new(max: Duration) -> FailSafe {
        FailSafe {
            max,
            throttle: Self::DEFAULT_THROTTLE,
        }
    }

    /// The same, with another throttle (at least 1 ms: a zero throttle would
    /// let every caller of a failing key run the body).
    pub fn throttle(self, throttle: Duration) -> FailSafe {
        FailSafe {
            throttle: throttle.max(Duration::from_millis(1)),
            ..self
        }
    }

    /// `None` for a zero `max` (fail-safe off).
    pub(crate) fn active(this: Option<FailSafe>) -> Option<FailSafe> {
        this.filter(|fs| !fs.max.is_zero())
    }
}

/// A future's output, or the panic that ended it.
pub(super) struct CatchUnwind<F>(pub(super) Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        // The future is not polled again after a panic (it is dropped with
        // `self`), so no broken invariant of it is observed.
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

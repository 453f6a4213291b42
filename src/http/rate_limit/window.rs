//! The sliding-window counter (see [the algorithm](super#algorithm-sliding-window-counter)):
//! one store round trip per request, the estimate over the trailing window,
//! and the [`Decision`] with the `RateLimit-*` fields it answers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderValue, RETRY_AFTER};

use super::layer::Settings;
use super::{bump, RATE_LIMIT_LIMIT_HEADER, RATE_LIMIT_REMAINING_HEADER, RATE_LIMIT_RESET_HEADER};
use crate::Error;

/// The outcome of one [`RateLimitLayer::check`](super::RateLimitLayer::check).
///
/// ```
/// # use std::time::Duration;
/// # use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
/// # let cache = Cache::builder(MemoryBackend::new(100)).build();
/// let limiter = RateLimitLayer::new(cache, 5, Duration::from_secs(60));
/// let decision = limiter.check("api-key-1").await?;
/// assert!(decision.allowed);
/// assert_eq!((decision.limit, decision.remaining), (5, 4));
/// assert_eq!(decision.retry_after, None);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// True when the request is within the limit.
    pub allowed: bool,
    /// The limit (`RateLimit-Limit`).
    pub limit: u64,
    /// Requests left in the trailing window (`RateLimit-Remaining`).
    pub remaining: u64,
    /// Time until capacity frees (`RateLimit-Reset`, rounded up to seconds).
    pub reset: Duration,
    /// For a rejected request: when the next one would pass (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// Writes `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`
    /// (and `Retry-After` for a rejection) into `headers`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use cacheside::{backends::MemoryBackend, http::RateLimitLayer, Cache};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
    /// # let cache = Cache::builder(MemoryBackend::new(100)).build();
    /// let limiter = RateLimitLayer::new(cache, 5, Duration::from_secs(60));
    /// let mut headers = http::HeaderMap::new();
    /// limiter.check("client").await?.write_headers(&mut headers);
    /// assert_eq!(headers["ratelimit-limit"], "5");
    /// assert_eq!(headers["ratelimit-remaining"], "4");
    /// # Ok(()) }
    /// ```
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert(RATE_LIMIT_LIMIT_HEADER, HeaderValue::from(self.limit));
        headers.insert(
            RATE_LIMIT_REMAINING_HEADER,
            HeaderValue::from(self.remaining),
        );
        headers.insert(
            RATE_LIMIT_RESET_HEADER,
            HeaderValue::from(ceil_secs(self.reset)),
        );
        if let Some(after) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(ceil_secs(after).max(1)));
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Settings {
    /// Counts one request of `client` at `now_ms` and decides on it.
    pub(super) async fn check(&self, client: &str, now_ms: u64) -> Result<Decision, Error> {
        let w = self.window_ms;
        let index = now_ms / w;
        let elapsed = now_ms % w;
        let base = format!("{}:{{{}}}:{w}:", self.prefix, client_tag(client));
        let current = format!("{base}{index}");
        // Window 0 (a window longer than the time since 1970) has no predecessor.
        let previous = index.checked_sub(1).map(|p| format!("{base}{p}"));
        let ttl = Duration::from_millis(w.saturating_mul(2)) + Duration::from_secs(1);
        let (count, prev) = match self
            .cache
            .increment(&current, 1, ttl, previous.as_deref())
            .await
        {
            Ok(counts) => counts,
            Err(e) => {
                bump(&self.counts.store_errors);
                return Err(e);
            }
        };
        let window = Window {
            limit: self.limit,
            w,
            elapsed,
            prev,
        };
        if window.estimate(count) <= self.limit {
            bump(&self.counts.allowed);
            return Ok(window.decision(true, count));
        }
        bump(&self.counts.limited);
        // Rejected: give the unit back, so that only requests that pass count.
        let count = match self.cache.increment(&current, -1, ttl, None).await {
            Ok((after, _)) => after,
            Err(e) => {
                tracing::debug!(error = %e, "rate limit refund failed; the window over-counts by one");
                count
            }
        };
        Ok(window.decision(false, count))
    }
}

/// One client's sliding window at the time of a request.
#[derive(Debug, Clone, Copy)]
struct Window {
    limit: u64,
    /// Window length, ms.
    w: u64,
    /// Time since the current window began, ms (`< w`).
    elapsed: u64,
    /// Count of the previous window.
    prev: u64,
}

impl Window {
    /// Estimated requests in the trailing window with `count` in the current one.
    fn estimate(&self, count: u64) -> u64 {
        count.saturating_add(weighted(self.prev, self.w - self.elapsed, self.w))
    }

    /// The estimate `t` ms from now if no request comes meanwhile.
    fn estimate_after(&self, count: u64, t: u64) -> u64 {
        let at = self.elapsed.saturating_add(t);
        if at < self.w {
            count.saturating_add(weighted(self.prev, self.w - at, self.w))
        } else if at < 2 * self.w {
            // The current window has become the previous one.
            weighted(count, 2 * self.w - at, self.w)
        } else {
            0
        }
    }

    /// Milliseconds until one more request would pass (`None`: never, for limit 0).
    fn wait_for_room(&self, count: u64) -> Option<u64> {
        let fits = |t: u64| self.estimate_after(count, t) < self.limit;
        let end = 2 * self.w - self.elapsed;
        if !fits(end) {
            return None;
        }
        let (mut lo, mut hi) = (0, end);
        if fits(lo) {
            return Some(0);
        }
        // `fits` is monotone in t: find the first t where it holds.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    }

    fn decision(&self, allowed: bool, count: u64) -> Decision {
        let estimate = self.estimate(count);
        let remaining = if allowed {
            self.limit.saturating_sub(estimate)
        } else {
            0
        };
        let until_room = Duration::from_millis(self.wait_for_room(count).unwrap_or(self.w).max(1));
        let reset = if remaining == 0 {
            until_room
        } else {
            Duration::from_millis(self.w - self.elapsed)
        };
        Decision {
            allowed,
            limit: self.limit,
            remaining,
            reset,
            retry_after: (!allowed).then_some(until_room),
        }
    }
}

/// `⌊count × part / whole⌋` without overflow.
fn weighted(count: u64, part: u64, whole: u64) -> u64 {
    (u128::from(count) * u128::from(part) / u128::from(whole.max(1))) as u64
}

/// The client as it appears in counter keys: 32 hex digits of its stable
/// 128-bit hash, never the key itself (it may be an API key), and never
/// braces (they would break the `{hash tag}`).
fn client_tag(client: &str) -> String {
    format!("{:032x}", crate::backend::hash::bytes128(client.as_bytes()))
}

/// Milliseconds since the Unix epoch: where the windows are aligned.
pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win(limit: u64, w: u64, elapsed: u64, prev: u64) -> Window {
        Window {
            limit,
            w,
            elapsed,
            prev,
        }
    }

    #[test]
    fn estimate_weights_the_previous_window_by_overlap() {
        assert_eq!(win(10, 1000, 0, 8).estimate(1), 9);
        assert_eq!(win(10, 1000, 500, 8).estimate(1), 5);
        assert_eq!(win(10, 1000, 999, 8).estimate(1), 1);
        assert_eq!(win(10, 1000, 250, 0).estimate(3), 3);
    }

    #[test]
    fn decisions_and_headers() {
        // Fresh window, 3 of 10 used.
        let d = win(10, 60_000, 15_000, 0).decision(true, 3);
        assert_eq!((d.allowed, d.remaining, d.retry_after), (true, 7, None));
        assert_eq!(d.reset, Duration::from_millis(45_000));
        // Exactly at the limit: nothing remains, reset = when room frees.
        let d = win(2, 60_000, 0, 0).decision(true, 2);
        assert_eq!(d.remaining, 0);
        // Room once this window's 2 requests weigh less than 2: 1 ms into the next window.
        assert_eq!(d.reset, Duration::from_millis(60_001));
        // Rejected with a previous window twice over: room once its weight halves.
        let d = win(10, 1000, 0, 20).decision(false, 0);
        assert!(!d.allowed);
        let after = d.retry_after.unwrap();
        assert_eq!(after, Duration::from_millis(501));
        assert_eq!(d.reset, after);
        let mut h = HeaderMap::new();
        d.write_headers(&mut h);
        assert_eq!(h[RATE_LIMIT_LIMIT_HEADER], "10");
        assert_eq!(h[RATE_LIMIT_REMAINING_HEADER], "0");
        assert_eq!(h[RATE_LIMIT_RESET_HEADER], "1");
        assert_eq!(h[RETRY_AFTER], "1");
    }

    #[test]
    fn wait_for_room_is_the_first_fitting_instant() {
        for (limit, w, elapsed, prev, count) in [
            (5, 1000, 100, 7, 3),
            (1, 60_000, 59_999, 1, 1),
            (100, 3_600_000, 1_000, 250, 99),
            (3, 10, 9, 3, 3),
        ] {
            let win = win(limit, w, elapsed, prev);
            let t = win.wait_for_room(count).unwrap();
            assert!(win.estimate_after(count, t) < limit);
            if t > 0 {
                assert!(win.estimate_after(count, t - 1) >= limit);
            }
            assert!(t <= 2 * w - elapsed);
        }
        assert_eq!(win(0, 1000, 0, 0).wait_for_room(0), None);
    }

    #[test]
    fn client_tags_are_stable_hashes_never_the_key() {
        // Pinned: every process and version must agree, or a fleet stops sharing counters.
        assert_eq!(
            client_tag("10.0.0.1"),
            format!("{:032x}", crate::backend::hash::bytes128(b"10.0.0.1"))
        );
        for client in [
            "10.0.0.1",
            "2001:db8::1",
            "",
            "a}b",
            "{x}",
            "with space",
            "é",
            "sk_live_secret",
            &"k".repeat(200),
        ] {
            let tag = client_tag(client);
            assert_eq!(tag.len(), 32, "{client:?} → {tag}");
            assert!(
                tag.bytes().all(|b| b.is_ascii_hexdigit()),
                "{client:?} → {tag}"
            );
            assert!(
                client.len() < 3 || !tag.contains(client),
                "{client:?} → {tag}"
            );
        }
        assert_ne!(client_tag("a}b"), client_tag("a{b"));
    }
}

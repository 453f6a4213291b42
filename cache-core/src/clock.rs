//! The clock the tier and entry freshness read.
//!
//! In production: `std::time::Instant` for the tier's own deadlines and the
//! system clock, in milliseconds since the Unix epoch, for the freshness
//! stamped into an entry (another process reads it, so it must be wall time;
//! processes whose clocks disagree by *d* see an entry turn stale *d* apart).
//! In this crate's unit tests both follow tokio's clock, so a test with the
//! clock paused moves time with `tokio::time::advance`, exactly.

use std::time::Instant;

/// Now, for deadlines inside this process.
#[inline]
pub(crate) fn now() -> Instant {
    #[cfg(not(test))]
    {
        Instant::now()
    }
    #[cfg(test)]
    {
        tokio::time::Instant::now().into_std()
    }
}

/// Milliseconds since the Unix epoch, for freshness other processes read.
pub(crate) fn unix_ms() -> u64 {
    #[cfg(not(test))]
    {
        use std::time::{SystemTime, UNIX_EPOCH};
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    #[cfg(test)]
    {
        // An anchor an hour before the first call: every (paused) runtime
        // of the test process starts after it, so the difference moves with
        // tokio's clock.
        use std::sync::OnceLock;
        use std::time::Duration;
        static ANCHOR: OnceLock<Instant> = OnceLock::new();
        let anchor = *ANCHOR.get_or_init(|| {
            let now = Instant::now();
            now.checked_sub(Duration::from_secs(3600)).unwrap_or(now)
        });
        1_700_000_000_000 + now().saturating_duration_since(anchor).as_millis() as u64
    }
}

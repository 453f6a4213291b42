//! Keeping a failing store cheap: the circuit breaker and log-burst limiting.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Milliseconds on tokio's clock (the one the op timeouts use, and the one a
/// paused test runtime controls; std's clock outside a runtime), counted from
/// a process-wide anchor.
///
/// Each paused runtime has a clock of its own, frozen near the real time the
/// runtime was built: that can be *before* the anchor, when another thread or
/// runtime took the anchor later. The count is therefore biased, not clamped
/// at the anchor: clamping made every reading of such a clock 0, so a
/// cool-down never ended on it.
fn now_ms() -> u64 {
    static ANCHOR: OnceLock<std::time::Instant> = OnceLock::new();
    let anchor = *ANCHOR.get_or_init(std::time::Instant::now);
    ms_from(anchor, tokio::time::Instant::now().into_std())
}

/// About 35 years either side of the anchor; keeps every reading above 0,
/// which [`Circuit`] uses to mean "closed".
const ANCHOR_BIAS_MS: u64 = 1 << 40;

fn ms_from(anchor: std::time::Instant, now: std::time::Instant) -> u64 {
    match now.checked_duration_since(anchor) {
        Some(after) => ANCHOR_BIAS_MS.saturating_add(after.as_millis() as u64),
        None => ANCHOR_BIAS_MS.saturating_sub(anchor.duration_since(now).as_millis() as u64),
    }
}

/// Circuit breaker settings: after `threshold` consecutive store failures the
/// cache skips the store for `cooldown`, then lets one probe through.
///
/// ```
/// use std::time::Duration;
/// let b = cache_core::Breaker { threshold: 3, cooldown: Duration::from_secs(1) };
/// assert_eq!(cache_core::Breaker::default().threshold, 5);
/// # let _ = b;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    /// Consecutive failures that open the circuit (0 disables the breaker).
    pub threshold: u32,
    /// How long the circuit stays open before a probe.
    pub cooldown: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            threshold: 5,
            cooldown: Duration::from_secs(2),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Circuit {
    cfg: Breaker,
    failures: AtomicU32,
    /// 0 = closed; otherwise the `now_ms()` at which a probe may go through.
    open_until: AtomicU64,
    probing: AtomicBool,
}

pub(crate) enum Admit {
    Go,
    Probe,
    Skip,
}

impl Circuit {
    pub(crate) fn new(cfg: Breaker) -> Self {
        Circuit {
            cfg,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    pub(crate) fn admit(&self) -> Admit {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Admit::Go;
        }
        if now_ms() < until {
            return Admit::Skip;
        }
        // Cool-down over: exactly one caller probes, the rest keep skipping.
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            Admit::Probe
        } else {
            Admit::Skip
        }
    }

    pub(crate) fn success(&self, admitted: &Admit) {
        // Read before writing: on the hot path the count is already 0, and an
        // unconditional store would bounce this cache line between cores on every hit.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Release);
        }
        if matches!(admitted, Admit::Probe) || self.open_until.load(Ordering::Acquire) != 0 {
            if self.open_until.swap(0, Ordering::AcqRel) != 0 {
                tracing::info!("cache store answers again; circuit closed");
            }
            self.probing.store(false, Ordering::Release);
        }
    }

    /// Records a failure; true when this failure opened (or re-opened) the circuit.
    pub(crate) fn failure(&self, admitted: &Admit) -> bool {
        if self.cfg.threshold == 0 {
            return false;
        }
        let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if matches!(admitted, Admit::Probe) || n >= self.cfg.threshold {
            let cooldown = u64::try_from(self.cfg.cooldown.as_millis()).unwrap_or(u64::MAX);
            let until = now_ms().saturating_add(cooldown.max(1));
            let was = self.open_until.swap(until, Ordering::AcqRel);
            self.probing.store(false, Ordering::Release);
            return was == 0 || matches!(admitted, Admit::Probe);
        }
        false
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }
}

/// Logs a warning at most once per burst window, counting what it held back.
#[derive(Debug, Default)]
pub(crate) struct WarnOnce {
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl WarnOnce {
    pub(crate) const fn new() -> Self {
        WarnOnce {
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }
}

const BURST_WINDOW_MS: u64 = 10_000;

impl WarnOnce {
    /// Returns `Some(suppressed_since_last)` when this call should log.
    pub(crate) fn should_log(&self) -> Option<u64> {
        let now = now_ms() + BURST_WINDOW_MS; // offset so that the first call always logs
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < BURST_WINDOW_MS {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last_ms
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn opens_after_threshold_and_probes_once_after_cooldown() {
        let c = Circuit::new(Breaker {
            threshold: 2,
            cooldown: Duration::ZERO,
        });
        assert!(matches!(c.admit(), Admit::Go));
        assert!(!c.failure(&Admit::Go));
        assert!(c.failure(&Admit::Go), "second failure opens");
        assert!(c.is_open());
        // Zero cool-down (clamped to 1 ms): wait it out without asserting on time.
        let deadline = Instant::now() + Duration::from_secs(5);
        let probe = loop {
            match c.admit() {
                Admit::Probe => break Admit::Probe,
                _ if Instant::now() > deadline => panic!("no probe within 5 s"),
                _ => std::thread::yield_now(),
            }
        };
        assert!(matches!(c.admit(), Admit::Skip), "only one probe at a time");
        c.success(&probe);
        assert!(!c.is_open());
        assert!(matches!(c.admit(), Admit::Go));
    }

    #[test]
    fn a_clock_behind_the_anchor_still_counts() {
        // A paused runtime's clock can stand before the anchor another test took.
        let anchor = Instant::now() + Duration::from_secs(1);
        let now = anchor - Duration::from_millis(700);
        let before = ms_from(anchor, now);
        let later = ms_from(anchor, now + Duration::from_millis(60));
        assert_eq!(later - before, 60, "readings before the anchor still move");
        assert!(before > 0, "0 means a closed circuit");
        assert_eq!(
            ms_from(anchor, anchor + Duration::from_millis(5)) - ms_from(anchor, anchor),
            5
        );
    }

    #[test]
    fn a_paused_runtime_started_before_the_anchor_ends_its_cool_down() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        // Real time passes while the paused clock stays put; then the anchor is taken
        // (unless another test took it earlier, when this test checks the ordinary case).
        std::thread::sleep(Duration::from_millis(20));
        let _ = now_ms();
        rt.block_on(async {
            let c = Circuit::new(Breaker {
                threshold: 1,
                cooldown: Duration::from_millis(50),
            });
            c.failure(&Admit::Go);
            assert!(matches!(c.admit(), Admit::Skip));
            tokio::time::sleep(Duration::from_millis(60)).await;
            assert!(matches!(c.admit(), Admit::Probe), "the cool-down is over");
        });
    }

    #[test]
    fn threshold_zero_never_opens() {
        let c = Circuit::new(Breaker {
            threshold: 0,
            cooldown: Duration::from_secs(60),
        });
        for _ in 0..100 {
            c.failure(&Admit::Go);
        }
        assert!(!c.is_open());
    }

    #[test]
    fn warn_once_logs_first_then_suppresses() {
        let w = WarnOnce::default();
        assert_eq!(w.should_log(), Some(0));
        assert_eq!(w.should_log(), None);
        assert_eq!(w.should_log(), None);
        assert_eq!(w.suppressed.load(Ordering::Relaxed), 2);
    }
}

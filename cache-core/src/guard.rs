//! Keeping a failing store cheap: may a cache use its store now, and for how long.
//!
//! [`StoreGate`] answers that one question for every store operation of a
//! cache: it bounds the operation (the op timeout, a longer bulk bound, or
//! what is left of a call's budget) and runs it through the [`Circuit`]
//! (opened by [`BreakerSettingsSettings`]). [`OncePerBurst`] keeps the logs of a
//! failing part to one line per burst.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::Error;

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
/// let b = cache_core::BreakerSettings { threshold: 3, cooldown: Duration::from_secs(1) };
/// assert_eq!(cache_core::BreakerSettings::default().threshold, 5);
/// # let _ = b;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit (0 disables the breaker).
    pub threshold: u32,
    /// How long the circuit stays open before a probe.
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            threshold: 5,
            cooldown: Duration::from_secs(2),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Circuit {
    cfg: BreakerSettings,
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
    pub(crate) fn new(cfg: BreakerSettings) -> Self {
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

/// How long one store operation may take.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bound {
    /// The cache's op timeout, from now.
    Op,
    /// A bound of its own, from now (bulk operations, the rest of a budget).
    Within(Duration),
    /// `limit` taken earlier, ending at `deadline`: a read-through call takes
    /// one reading of the clock for its read and its write.
    Until(Duration, tokio::time::Instant),
}

/// `limit` from now; an op timeout too large to add is "about 30 years", as in `tokio::time::timeout`.
pub(crate) fn deadline_after(limit: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(limit)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

/// Whether a cache may use its store now, and for how long (see the module docs).
#[derive(Debug)]
pub(crate) struct StoreGate {
    circuit: Circuit,
    op_timeout: Duration,
    /// In-process stores are neither bounded nor broken.
    in_process: bool,
}

impl StoreGate {
    pub(crate) fn new(breaker: BreakerSettings, op_timeout: Duration, in_process: bool) -> Self {
        StoreGate {
            circuit: Circuit::new(breaker),
            op_timeout,
            in_process,
        }
    }

    pub(crate) fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// True while the circuit is open (failing store: skip optional work).
    pub(crate) fn is_open(&self) -> bool {
        self.circuit.is_open()
    }

    /// The op timeout from now for a store outside the process; `None` for
    /// an in-process store (not bounded).
    pub(crate) fn call_deadline(&self) -> Option<tokio::time::Instant> {
        (!self.in_process).then(|| deadline_after(self.op_timeout))
    }

    /// Runs one store operation within `bound`, through the circuit.
    ///
    /// `answered` runs when the store answered (a success, or an error that
    /// is not a store failure). A timeout under a bound shorter than the op
    /// timeout (the remainder of a call's budget) is the budget running out,
    /// not evidence that the store is failing: it does not count towards
    /// opening the circuit. A cancelled probe counts as a failed one, so the
    /// circuit never stays "probing" forever.
    pub(crate) async fn run<T>(
        &self,
        backend: &'static str,
        op: &'static str,
        bound: Bound,
        fut: impl Future<Output = Result<T, Error>>,
        answered: impl FnOnce(),
    ) -> Result<T, Error> {
        if self.in_process {
            return fut.await;
        }
        let (limit, deadline) = match bound {
            Bound::Op => (self.op_timeout, deadline_after(self.op_timeout)),
            Bound::Within(limit) => (limit, deadline_after(limit)),
            Bound::Until(limit, deadline) => (limit, deadline),
        };
        let admitted = self.circuit.admit();
        if matches!(admitted, Admit::Skip) {
            return Err(Error::CircuitOpen { backend });
        }
        let probe = ProbeGuard {
            circuit: &self.circuit,
            armed: matches!(admitted, Admit::Probe),
        };
        let (result, budget_ran_out) = match tokio::time::timeout_at(deadline, fut).await {
            Ok(r) => (r, false),
            Err(_) => (
                Err(Error::Timeout {
                    backend,
                    op,
                    after: limit,
                }),
                limit < self.op_timeout,
            ),
        };
        probe.disarm();
        match &result {
            Err(_) if budget_ran_out && !matches!(admitted, Admit::Probe) => {}
            Err(e) if e.is_store_failure() => {
                if self.circuit.failure(&admitted) {
                    tracing::warn!(backend, "cache store keeps failing; circuit opened, calls skip the store until a probe succeeds");
                }
            }
            _ => {
                self.circuit.success(&admitted);
                answered();
            }
        }
        result
    }
}

/// Reports a cancelled probe as a failed one (see [`StoreGate::run`]).
struct ProbeGuard<'a> {
    circuit: &'a Circuit,
    armed: bool,
}

impl ProbeGuard<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.circuit.failure(&Admit::Probe);
        }
    }
}

/// Says "log now" at most once per burst window (10 s on tokio's clock),
/// counting the calls it held back: a part that cannot do its job says so
/// once per burst, not once per call.
///
/// ```
/// use cache_core::OncePerBurst;
/// static STORE_DOWN: OncePerBurst = OncePerBurst::new();
/// if let Some(suppressed) = STORE_DOWN.should_log() {
///     // tracing::warn!(suppressed, "store down; serving without it");
///     assert_eq!(suppressed, 0);
/// }
/// assert_eq!(STORE_DOWN.should_log(), None, "the same burst");
/// ```
#[derive(Debug, Default)]
pub struct OncePerBurst {
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl OncePerBurst {
    /// A limiter that lets the first call log.
    pub const fn new() -> Self {
        OncePerBurst {
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }
}

const BURST_WINDOW_MS: u64 = 10_000;

impl OncePerBurst {
    /// `Some(calls held back since the last line)` when this call should log.
    pub fn should_log(&self) -> Option<u64> {
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
        let c = Circuit::new(BreakerSettings {
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
            let c = Circuit::new(BreakerSettings {
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
        let c = Circuit::new(BreakerSettings {
            threshold: 0,
            cooldown: Duration::from_secs(60),
        });
        for _ in 0..100 {
            c.failure(&Admit::Go);
        }
        assert!(!c.is_open());
    }

    #[test]
    fn once_per_burst_logs_first_then_suppresses() {
        let w = OncePerBurst::default();
        assert_eq!(w.should_log(), Some(0));
        assert_eq!(w.should_log(), None);
        assert_eq!(w.should_log(), None);
        assert_eq!(w.suppressed.load(Ordering::Relaxed), 2);
    }
}

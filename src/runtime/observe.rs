//! What a cached call shows: one `tracing` span per call, per-function
//! counters ([`function_stats`](crate::function_stats)) and, with the feature
//! `metrics`, counters and histograms through the `metrics` facade.
//!
//! The span (`cacheside.call`, level DEBUG) carries the function
//! (`code.function.name`, OpenTelemetry's name for it), the cache, the key
//! prefix, the store (`db.system.name`), and once the call is answered its
//! outcome (`hit`, `miss`, `stale`, `coalesced`), the tier a hit came from
//! (`local`, `store`), the time in the store and in the body, and the age of
//! a value served from the cache. The key itself is recorded only when the
//! cache says so ([`CacheBuilder::record_keys`](cache_core::CacheBuilder::record_keys),
//! `CACHE_TRACE_KEYS`): keys are built from arguments and can hold user data.
//! A span that no subscriber wants costs a level check; so does the
//! `debug!` event each call ends with.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use cache_core::report::{Answer, Source};
use cache_core::{Cache, Counter, Error, Report};
use tracing::field::Empty;
use tracing::Span;

/// What one annotated function counted, in every process-wide cache it used.
pub struct Observed {
    hits_local: Counter,
    hits_store: Counter,
    misses: Counter,
    stale_served: Counter,
    coalesced: Counter,
    errors: Counter,
    skipped: Counter,
    refreshes: Counter,
    invalidations: Counter,
    registered: AtomicBool,
    #[cfg(feature = "metrics")]
    metrics: std::sync::OnceLock<metrics_out::Handles>,
}

impl Observed {
    /// Nothing counted yet (for the macros' `static`s).
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Observed {
        Observed {
            hits_local: Counter::new(),
            hits_store: Counter::new(),
            misses: Counter::new(),
            stale_served: Counter::new(),
            coalesced: Counter::new(),
            errors: Counter::new(),
            skipped: Counter::new(),
            refreshes: Counter::new(),
            invalidations: Counter::new(),
            registered: AtomicBool::new(false),
            #[cfg(feature = "metrics")]
            metrics: std::sync::OnceLock::new(),
        }
    }

    /// The counter of local-tier hits, which the cache bumps with its own.
    #[inline]
    pub(crate) fn local_hits(&self) -> &Counter {
        &self.hits_local
    }

    /// Lists this function in [`function_stats`](crate::function_stats) (once).
    #[inline]
    fn register(&'static self, function: &'static str, cache: Option<&'static str>) {
        if !self.registered.load(Ordering::Relaxed) {
            self.register_now(function, cache);
        }
    }

    #[cold]
    #[inline(never)]
    fn register_now(&'static self, function: &'static str, cache: Option<&'static str>) {
        let mut rows = ROWS.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.registered.swap(true, Ordering::Relaxed) {
            rows.push(Row {
                function,
                cache,
                observed: self,
            });
        }
    }

    fn stats(&self, function: &'static str, cache: Option<&'static str>) -> FunctionStats {
        let local_hits = self.hits_local.load();
        FunctionStats {
            function,
            cache,
            hits: local_hits + self.hits_store.load(),
            local_hits,
            misses: self.misses.load(),
            stale_served: self.stale_served.load(),
            coalesced: self.coalesced.load(),
            errors: self.errors.load(),
            skipped: self.skipped.load(),
            refreshes: self.refreshes.load(),
            invalidations: self.invalidations.load(),
        }
    }
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("hits", &(self.hits_local.load() + self.hits_store.load()))
            .field("misses", &self.misses.load())
            .finish_non_exhaustive()
    }
}

struct Row {
    function: &'static str,
    cache: Option<&'static str>,
    observed: &'static Observed,
}

static ROWS: Mutex<Vec<Row>> = Mutex::new(Vec::new());

/// The counters of one annotated function (a `#[cache]` function, or an
/// `#[invalidate]` one: its `invalidations`), from [`function_stats`](crate::function_stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionStats {
    /// The function's name.
    pub function: &'static str,
    /// Its `cache = "…"`; `None`: the global cache.
    pub cache: Option<&'static str>,
    /// Calls answered by a live entry (local tier and store).
    pub hits: u64,
    /// Of `hits`, those answered by the local tier (no store round trip).
    pub local_hits: u64,
    /// Calls that ran the body.
    pub misses: u64,
    /// Calls answered by a stale entry (fail-safe, soft timeout).
    pub stale_served: u64,
    /// Calls answered by another caller's body (single-flight).
    pub coalesced: u64,
    /// Store failures and undecodable values met by the calls (they were answered anyway).
    pub errors: u64,
    /// Values not stored: over the size limit.
    pub skipped: u64,
    /// Background refreshes started.
    pub refreshes: u64,
    /// Keys, patterns and tags invalidated (mutations, `#[invalidate]`).
    pub invalidations: u64,
}

impl FunctionStats {
    /// `hits / (hits + misses)`, or 0 before any call.
    pub fn hit_ratio(&self) -> f64 {
        Counter::ratio(self.hits, self.misses)
    }
}

/// Every annotated function called so far in this process, with its counters.
pub(crate) fn function_stats() -> Vec<FunctionStats> {
    let rows = ROWS.lock().unwrap_or_else(PoisonError::into_inner);
    rows.iter()
        .map(|r| r.observed.stats(r.function, r.cache))
        .collect()
}

/// Whether anyone may want the span or the event of a call: a subscriber
/// whose filter lets DEBUG through (one atomic load when it does not).
#[inline]
fn traced() -> bool {
    tracing::level_enabled!(tracing::Level::DEBUG)
}

/// The span of one cached call (disabled, and nearly free, when no subscriber wants it).
#[inline]
pub(crate) fn call_span(
    function: &'static str,
    cache_name: Option<&'static str>,
    key_prefix: &'static str,
    cache: &Cache,
    key: &str,
) -> Span {
    if !traced() {
        return Span::none();
    }
    let span = tracing::debug_span!(
        "cacheside.call",
        otel.kind = "internal",
        code.function.name = function,
        cacheside.cache = cache_name.unwrap_or("global"),
        cacheside.key_prefix = key_prefix,
        db.system.name = cache.backend_name(),
        cacheside.key = Empty,
        cacheside.outcome = Empty,
        cacheside.tier = Empty,
        cacheside.store_ms = Empty,
        cacheside.body_ms = Empty,
        cacheside.age_ms = Empty,
        cacheside.store_error = Empty,
    );
    if !span.is_disabled() && cache.records_keys() {
        span.record("cacheside.key", key);
    }
    span
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Counts, records and reports one answered call.
#[inline]
pub(crate) fn finish(
    observed: &'static Observed,
    function: &'static str,
    cache_name: Option<&'static str>,
    cache: &Cache,
    span: &Span,
    report: &Report,
    encode_error: Option<&Error>,
) {
    observed.register(function, cache_name);
    let (skipped, errors) = count(observed, report, encode_error);
    if traced() {
        record(span, report);
    }
    #[cfg(feature = "metrics")]
    if metrics_on() {
        metrics_out::call(
            observed, function, cache_name, cache, report, skipped, errors,
        );
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (cache, skipped, errors);
}

/// The per-function counters of one call; whether its value was skipped,
/// and how many errors it met.
#[inline]
fn count(observed: &Observed, report: &Report, encode_error: Option<&Error>) -> (bool, u64) {
    match (report.answer, report.source) {
        (Answer::Hit, Some(Source::Local)) => observed.hits_local.bump(),
        (Answer::Hit, _) => observed.hits_store.bump(),
        (Answer::Miss, _) => observed.misses.bump(),
        (Answer::Stale, _) => observed.stale_served.bump(),
        (Answer::Coalesced, _) => observed.coalesced.bump(),
    }
    let skipped = matches!(encode_error, Some(Error::ValueTooLarge { .. }));
    let errors = u64::from(report.store_error) + u64::from(encode_error.is_some() && !skipped);
    if skipped {
        observed.skipped.bump();
    }
    if errors > 0 {
        observed.errors.add(errors);
    }
    (skipped, errors)
}

/// The span's fields once the call is answered, and the event that ends it.
#[cold]
#[inline(never)]
fn record(span: &Span, report: &Report) {
    if !span.is_disabled() {
        span.record("cacheside.outcome", report.answer.as_str());
        if let Some(source) = report.source {
            span.record("cacheside.tier", source.as_str());
        }
        if let Some(store) = report.store {
            span.record("cacheside.store_ms", ms(store));
        }
        if let Some(body) = report.body {
            span.record("cacheside.body_ms", ms(body));
        }
        if let Some(age) = report.age {
            span.record("cacheside.age_ms", ms(age));
        }
        if report.store_error {
            span.record("cacheside.store_error", true);
        }
    }
    tracing::debug!(
        parent: span,
        outcome = report.answer.as_str(),
        tier = report.source.map_or("none", Source::as_str),
        "cache {}",
        report.answer.as_str()
    );
}

/// Whether a synchronous local hit is shown (a span, metrics): asked
/// before the lookup, so that the hit's value is not kept across the check.
#[inline]
pub(crate) fn hits_shown() -> bool {
    metrics_on() || traced()
}

/// The synchronous local hit of the `#[cache]` wrapper when
/// [`hits_shown`]: its span and metrics. (It is counted already:
/// `Cache::local_hit` bumped `local_hits`. No `register` either: a value is
/// in the local tier only after a call through `cached`, whose `finish`
/// registered.)
#[cold]
#[inline(never)]
pub(crate) fn local_hit(
    observed: &'static Observed,
    function: &'static str,
    cache_name: Option<&'static str>,
    key_prefix: &'static str,
    cache: &Cache,
    full: &str,
    ttl: Duration,
) {
    let span = call_span(function, cache_name, key_prefix, cache, full);
    let report = Report {
        answer: Answer::Hit,
        source: Some(Source::Local),
        // A second lookup, for the age: only for someone who reads it.
        age: cache.local_age(full, ttl),
        ..Report::default()
    };
    if traced() {
        record(&span, &report);
    }
    #[cfg(feature = "metrics")]
    if metrics_on() {
        metrics_out::call(observed, function, cache_name, cache, &report, false, 0);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (observed, function, cache_name, cache);
}

/// Whether [`enable_metrics`] was called (feature `metrics`).
#[inline]
pub(crate) fn metrics_on() -> bool {
    #[cfg(feature = "metrics")]
    return METRICS.load(Ordering::Relaxed);
    #[cfg(not(feature = "metrics"))]
    false
}

#[cfg(feature = "metrics")]
static METRICS: AtomicBool = AtomicBool::new(false);

/// Starts sending cacheside's counters and histograms to the `metrics`
/// facade's recorder (feature `metrics`). Call it once the recorder is
/// installed (e.g. `metrics_exporter_prometheus::PrometheusBuilder::install_recorder`):
/// each function registers its handles with the recorder of its first call
/// after this. Until then, and without the call, nothing is sent and a hit
/// pays nothing for the feature.
#[cfg(feature = "metrics")]
pub fn enable_metrics() {
    METRICS.store(true, Ordering::Relaxed);
}

/// A background refresh started.
pub(crate) fn refresh_started(observed: &'static Observed) {
    observed.refreshes.bump();
}

/// `n` keys, patterns or tags invalidated by `function`.
pub(crate) fn invalidated(
    observed: &'static Observed,
    function: &'static str,
    cache_name: Option<&'static str>,
    n: u64,
) {
    observed.register(function, cache_name);
    observed.invalidations.add(n);
    tracing::debug!(function, invalidated = n, "cache invalidation");
    #[cfg(feature = "metrics")]
    if metrics_on() {
        metrics_out::invalidated(observed, function, cache_name, n);
    }
}

#[cfg(feature = "metrics")]
mod metrics_out {
    //! The counters and histograms, through the `metrics` facade. Handles
    //! are registered on a function's first call after [`enable_metrics`],
    //! with the recorder installed then.

    use super::*;
    use metrics::{counter, describe_counter, describe_histogram, histogram, Unit};

    pub(super) struct Handles {
        hits_local: metrics::Counter,
        hits_store: metrics::Counter,
        misses: metrics::Counter,
        stale_served: metrics::Counter,
        coalesced: metrics::Counter,
        errors: metrics::Counter,
        skipped: metrics::Counter,
        refreshes: metrics::Counter,
        invalidations: metrics::Counter,
        store_seconds: metrics::Histogram,
        body_seconds: metrics::Histogram,
        age_seconds: metrics::Histogram,
    }

    fn describe() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            describe_counter!(
                "cacheside_hits_total",
                "Calls answered by a live cache entry, by tier (local, store)."
            );
            describe_counter!(
                "cacheside_misses_total",
                "Calls that ran the function's body."
            );
            describe_counter!(
                "cacheside_stale_served_total",
                "Calls answered by a stale entry (fail-safe, soft timeout)."
            );
            describe_counter!(
                "cacheside_coalesced_total",
                "Calls answered by another caller's body (single-flight)."
            );
            describe_counter!(
                "cacheside_errors_total",
                "Store failures and undecodable values met by calls (answered anyway)."
            );
            describe_counter!(
                "cacheside_skipped_total",
                "Values not stored: over the size limit."
            );
            describe_counter!("cacheside_refreshes_total", "Background refreshes started.");
            describe_counter!(
                "cacheside_invalidations_total",
                "Keys, patterns and tags invalidated."
            );
            describe_histogram!(
                "cacheside_store_seconds",
                Unit::Seconds,
                "Time a call spent reading the store."
            );
            describe_histogram!(
                "cacheside_body_seconds",
                Unit::Seconds,
                "Time the function's body took."
            );
            describe_histogram!(
                "cacheside_served_age_seconds",
                Unit::Seconds,
                "Age of the values served from the cache (past the TTL: stale)."
            );
        });
    }

    fn handles(
        observed: &'static Observed,
        function: &'static str,
        cache_name: Option<&'static str>,
    ) -> &'static Handles {
        observed.metrics.get_or_init(|| {
            describe();
            let cache = cache_name.unwrap_or("global");
            let c = |name: &'static str| counter!(name, "cache" => cache, "function" => function);
            let h = |name: &'static str| histogram!(name, "cache" => cache, "function" => function);
            Handles {
                hits_local: counter!("cacheside_hits_total", "cache" => cache, "function" => function, "tier" => "local"),
                hits_store: counter!("cacheside_hits_total", "cache" => cache, "function" => function, "tier" => "store"),
                misses: c("cacheside_misses_total"),
                stale_served: c("cacheside_stale_served_total"),
                coalesced: c("cacheside_coalesced_total"),
                errors: c("cacheside_errors_total"),
                skipped: c("cacheside_skipped_total"),
                refreshes: c("cacheside_refreshes_total"),
                invalidations: c("cacheside_invalidations_total"),
                store_seconds: h("cacheside_store_seconds"),
                body_seconds: h("cacheside_body_seconds"),
                age_seconds: h("cacheside_served_age_seconds"),
            }
        })
    }

    pub(super) fn call(
        observed: &'static Observed,
        function: &'static str,
        cache_name: Option<&'static str>,
        _cache: &Cache,
        report: &Report,
        skipped: bool,
        errors: u64,
    ) {
        let m = handles(observed, function, cache_name);
        match (report.answer, report.source) {
            (Answer::Hit, Some(Source::Local)) => m.hits_local.increment(1),
            (Answer::Hit, _) => m.hits_store.increment(1),
            (Answer::Miss, _) => m.misses.increment(1),
            (Answer::Stale, _) => m.stale_served.increment(1),
            (Answer::Coalesced, _) => m.coalesced.increment(1),
        }
        if skipped {
            m.skipped.increment(1);
        }
        if errors > 0 {
            m.errors.increment(errors);
        }
        if let Some(store) = report.store {
            m.store_seconds.record(store.as_secs_f64());
        }
        if let Some(body) = report.body {
            m.body_seconds.record(body.as_secs_f64());
        }
        if let (Some(age), Answer::Hit | Answer::Stale) = (report.age, report.answer) {
            m.age_seconds.record(age.as_secs_f64());
        }
    }

    pub(super) fn invalidated(
        observed: &'static Observed,
        function: &'static str,
        cache_name: Option<&'static str>,
        n: u64,
    ) {
        handles(observed, function, cache_name)
            .invalidations
            .increment(n);
    }

    pub(super) fn refresh(
        observed: &'static Observed,
        function: &'static str,
        cache_name: Option<&'static str>,
    ) {
        handles(observed, function, cache_name)
            .refreshes
            .increment(1);
    }
}

/// A background refresh started, for the metrics too.
pub(crate) fn refresh(
    observed: &'static Observed,
    function: &'static str,
    cache_name: Option<&'static str>,
) {
    refresh_started(observed);
    #[cfg(feature = "metrics")]
    if metrics_on() {
        metrics_out::refresh(observed, function, cache_name);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (function, cache_name);
}

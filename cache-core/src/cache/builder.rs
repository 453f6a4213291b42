//! [`CacheBuilder`]: every option of a [`Cache`] but its store has a default.

use std::sync::Arc;
use std::time::Duration;

use super::fail_safe::FailSafe;
use super::stats::Counters;
use super::{
    Cache, Inner, Tier, DEFAULT_BULK_TIMEOUT, DEFAULT_MAX_VALUE_SIZE, DEFAULT_OP_TIMEOUT,
    DEFAULT_TTL,
};
use crate::backend::Backend;
use crate::backplane::Backplane;
use crate::codec::{Codec, MsgPack};
use crate::flight::Flights;
use crate::guard::{BreakerSettings, OncePerBurst, StoreGate};
use crate::local::{LocalSettings, LocalTier};
use crate::pending::Pending;

/// Builds a [`Cache`] over the store given to [`Cache::builder`]; every
/// other option has a default.
///
/// ```
/// use std::time::Duration;
/// use cache_core::{codec::Json, BreakerSettings, Cache, NullBackend};
/// let cache = Cache::builder(NullBackend)
///     .codec(Json)
///     .op_timeout(Duration::from_millis(50))
///     .max_value_size(512 * 1024)
///     .breaker(BreakerSettings { threshold: 3, cooldown: Duration::from_secs(1) })
///     .build();
/// assert_eq!(cache.backend_name(), "none");
/// ```
#[must_use]
pub struct CacheBuilder {
    backend: Box<dyn Backend>,
    codec: Box<dyn Codec>,
    namespace: String,
    default_ttl: Duration,
    op_timeout: Duration,
    bulk_timeout: Duration,
    max_value_size: usize,
    breaker: BreakerSettings,
    local: Option<LocalSettings>,
    backplane: Option<Box<dyn Backplane>>,
    fence_window: Duration,
    fail_safe: Option<FailSafe>,
    jitter: f64,
    lease: Option<Duration>,
    record_keys: bool,
    #[cfg(feature = "compression")]
    compression: Option<crate::codec::Compression>,
}

/// Default life of the tombstone an invalidation leaves (see [`CacheBuilder::fence_window`]).
pub const DEFAULT_FENCE_WINDOW: Duration = Duration::from_secs(60);

impl CacheBuilder {
    pub(super) fn new(backend: Box<dyn Backend>) -> Self {
        CacheBuilder {
            backend,
            codec: Box::new(MsgPack),
            namespace: String::new(),
            default_ttl: DEFAULT_TTL,
            op_timeout: DEFAULT_OP_TIMEOUT,
            bulk_timeout: DEFAULT_BULK_TIMEOUT,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            breaker: BreakerSettings::default(),
            local: None,
            backplane: None,
            fence_window: DEFAULT_FENCE_WINDOW,
            fail_safe: None,
            jitter: 0.0,
            lease: None,
            record_keys: false,
            #[cfg(feature = "compression")]
            compression: None,
        }
    }

    /// A prefix for every key (`"{namespace}:{key}"`); empty means none.
    ///
    /// The namespace is encoded like a key value (see [`crate::keys`]), so no
    /// namespace can reach into another: `app` and `app:eu` are stored as
    /// `app:…` and `app%3Aeu:…`, and `clear()` of one leaves the other. A
    /// cache without a namespace is the root of the store: its keys are
    /// stored as given and its `clear()` removes every entry.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_owned();
        self
    }

    /// TTL for writes that name none (default one hour).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The value codec (default [`MsgPack`]).
    pub fn codec(mut self, codec: impl Codec) -> Self {
        self.codec = Box::new(codec);
        self
    }

    /// Upper bound on each store operation (default 250 ms); in-process stores are not bounded.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Upper bound on [`Cache::delete_pattern`] and [`Cache::clear`], which
    /// scan the store (default 30 s).
    pub fn bulk_timeout(mut self, timeout: Duration) -> Self {
        self.bulk_timeout = timeout;
        self
    }

    /// Largest encoded value written (default 4 MiB); the backend's own limit applies if lower.
    ///
    /// With `compress` (feature `compression`), this bounds the entry before
    /// compression (and no reader inflates a payload past it), while the
    /// backend's limit applies to the compressed bytes it stores: a 3 MiB
    /// value that compresses to 400 KiB fits Memcached's 1 MiB.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Compresses the payload of entries this cache writes when it is at
    /// least the threshold and compressing saves bytes (off by default;
    /// feature `compression`; `CACHE_COMPRESS_MIN_BYTES` in the facade).
    ///
    /// Only the store's bytes are compressed: the envelope header stays
    /// readable (freshness, tags, fences work as before), and the local tier
    /// keeps decoded values, so its hits inflate nothing. Entries written
    /// uncompressed (by older versions, or below the threshold) are read as
    /// before; a process built without the feature reads compressed entries
    /// as misses.
    ///
    /// ```
    /// use cache_core::{codec::Compression, Cache, NullBackend};
    /// let cache = Cache::builder(NullBackend)
    ///     .compress(Compression::lz4(16 * 1024))
    ///     .build();
    /// assert_eq!(cache.compression(), Some(Compression::lz4(16 * 1024)));
    /// ```
    #[cfg(feature = "compression")]
    pub fn compress(mut self, compression: crate::codec::Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// Circuit breaker settings (default: 5 consecutive failures, 2 s cool-down).
    pub fn breaker(mut self, breaker: BreakerSettings) -> Self {
        self.breaker = breaker;
        self
    }

    /// A local tier of decoded values in front of the store, bounded by
    /// `settings` (off by default over a remote store; an in-process store
    /// such as `MemoryBackend` *is* such a tier, whatever this says).
    ///
    /// Hits of functions whose values are `Clone` are then served from this
    /// process without a round trip or a decode. Over a store that other
    /// processes share, give the cache a [`backplane`](Self::backplane)
    /// too: without one, another process's invalidation reaches this tier
    /// only when the entry's local TTL ends.
    pub fn local(mut self, settings: LocalSettings) -> Self {
        self.local = Some(settings);
        self
    }

    /// The channel to the other processes of this store: invalidations made
    /// here are published on it, and those received drop entries from the
    /// local tier. A lost connection flushes the tier when it comes back.
    pub fn backplane(mut self, backplane: impl Backplane) -> Self {
        self.backplane = Some(Box::new(backplane));
        self
    }

    /// [`backplane`](Self::backplane) already boxed.
    pub fn backplane_boxed(mut self, backplane: Box<dyn Backplane>) -> Self {
        self.backplane = Some(backplane);
        self
    }

    /// How long the tombstone of an invalidation stays in a fencing store
    /// (default 60 s). A fill whose read came before the invalidation is
    /// refused by the store while the tombstone lives; a fill whose body
    /// took longer than this window (less two op timeouts) is not written.
    pub fn fence_window(mut self, window: Duration) -> Self {
        self.fence_window = window;
        self
    }

    /// Fail-safe for this cache's reads through [`get_or_set`](Cache::get_or_set),
    /// [`get_or_compute`](Cache::get_or_compute) and `#[cache]` functions that
    /// do not set their own (see [`FailSafe`]). Off by default; a zero `max`
    /// turns it off.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Cache, FailSafe, NullBackend};
    /// let cache = Cache::builder(NullBackend)
    ///     .fail_safe(FailSafe::new(Duration::from_secs(3600)))
    ///     .build();
    /// assert_eq!(cache.fail_safe().map(|f| f.max), Some(Duration::from_secs(3600)));
    /// ```
    pub fn fail_safe(mut self, fail_safe: FailSafe) -> Self {
        self.fail_safe = FailSafe::active(Some(fail_safe));
        self
    }

    /// Spreads the TTL of what this cache's reads store (`get_or_set`, and
    /// `#[cache]` functions without their own `jitter`): each entry lives
    /// `ttl × (1 ± jitter)`, uniformly, so a batch written together does not
    /// expire together. Clamped to `[0, 1]`; 0 (the default) is exact TTLs.
    /// Explicit `set` calls keep the TTL they name.
    ///
    /// ```
    /// use cache_core::{Cache, NullBackend};
    /// let cache = Cache::builder(NullBackend).jitter(0.1).build();
    /// assert_eq!(cache.jitter(), 0.1);
    /// assert_eq!(Cache::builder(NullBackend).jitter(7.0).build().jitter(), 1.0);
    /// ```
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// Single-flight across processes for this cache's reads: concurrent
    /// misses of one key in many processes run the body once. The first
    /// takes a lease in the store (Redis `SET NX PX`, Memcached `ms … ME`)
    /// for `lease`, runs the body and stores the value; the others poll the
    /// store until it is there, or until the lease expires (a dead leader)
    /// and one of them takes over. Every failure fails open: the body runs.
    /// Choose `lease` longer than the body takes: a leader still running
    /// when its lease ends is joined by a second one. Off by default (each
    /// miss costs one more store write); `#[cache(lease_ms = N)]` sets it per
    /// function.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Cache, NullBackend};
    /// let cache = Cache::builder(NullBackend).lease(Duration::from_secs(5)).build();
    /// assert_eq!(cache.lease(), Some(Duration::from_secs(5)));
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = (!lease.is_zero()).then_some(lease);
        self
    }

    /// Records each call's key in its tracing span (`cacheside.key`). Off by
    /// default: keys are built from arguments and can hold user data (an
    /// email, a name); turn it on where traces may hold them. The
    /// environment's switch is `CACHE_TRACE_KEYS=true`.
    ///
    /// ```
    /// use cache_core::{Cache, NullBackend};
    /// let cache = Cache::builder(NullBackend).record_keys(true).build();
    /// assert!(cache.records_keys());
    /// ```
    pub fn record_keys(mut self, on: bool) -> Self {
        self.record_keys = on;
        self
    }

    /// Finishes the cache.
    pub fn build(self) -> Cache {
        let backend = self.backend;
        let in_process = backend.is_in_process();
        let max_value_size = backend
            .max_value_size()
            .map_or(self.max_value_size, |b| b.min(self.max_value_size));
        let prefix = if self.namespace.is_empty() {
            String::new()
        } else {
            format!("{}:", crate::keys::part(&self.namespace))
        };
        let tier = match (backend.local_tier(), self.local) {
            (Some(shared), _) => Tier::Store(shared.0),
            (None, Some(settings)) => Tier::Front(Arc::new(LocalTier::new(settings))),
            (None, None) => Tier::Off,
        };
        let cache = Cache {
            inner: Arc::new(Inner {
                backend,
                codec: self.codec,
                namespace: self.namespace,
                prefix,
                default_ttl: self.default_ttl,
                bulk_timeout: self.bulk_timeout,
                max_value_size,
                max_payload: self.max_value_size,
                #[cfg(feature = "compression")]
                compression: self.compression,
                counters: Counters::default(),
                flights: Flights::default(),
                gate: StoreGate::new(self.breaker, self.op_timeout, in_process),
                warn: OncePerBurst::default(),
                pending: Pending::default(),
                tier,
                fence_window: self.fence_window,
                fail_safe: self.fail_safe,
                jitter: self.jitter,
                lease: self.lease,
                record_keys: self.record_keys,
                refreshing: Default::default(),
                backplane: self.backplane,
                origin: super::origin_id(),
                subscribed: std::sync::Once::new(),
                backplane_up: tokio::sync::watch::Sender::new(false),
            }),
        };
        cache.subscribe_if_in_runtime();
        cache
    }
}

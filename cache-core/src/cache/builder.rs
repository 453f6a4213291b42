//! [`CacheBuilder`]: every option of a [`Cache`] but its store has a default.

use std::sync::Arc;
use std::time::Duration;

use super::stats::Counters;
use super::{
    Cache, Inner, DEFAULT_BULK_TIMEOUT, DEFAULT_MAX_VALUE_SIZE, DEFAULT_OP_TIMEOUT, DEFAULT_TTL,
};
use crate::backend::Backend;
use crate::codec::{Codec, MsgPack};
use crate::flight::Flights;
use crate::guard::{BreakerSettings, OncePerBurst, StoreGate};
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
}

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
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Circuit breaker settings (default: 5 consecutive failures, 2 s cool-down).
    pub fn breaker(mut self, breaker: BreakerSettings) -> Self {
        self.breaker = breaker;
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
        Cache {
            inner: Arc::new(Inner {
                backend,
                codec: self.codec,
                namespace: self.namespace,
                prefix,
                default_ttl: self.default_ttl,
                bulk_timeout: self.bulk_timeout,
                max_value_size,
                counters: Counters::default(),
                flights: Flights::default(),
                gate: StoreGate::new(self.breaker, self.op_timeout, in_process),
                warn: OncePerBurst::default(),
                pending: Pending::default(),
            }),
        }
    }
}

//! The rate limiter's own in-process counter store: counters only, bounded,
//! and never shared with cached data (so a cache full of hot entries cannot
//! evict them).
//!
//! A moka cache (the memory backend) is the wrong home for counters: its
//! TinyLFU admission keeps hot cached entries and refuses or evicts a fresh
//! counter, and every evicted counter is a client let through again. This
//! store admits every counter; when it is full it first drops expired
//! counters, then the one closest to expiry (the oldest window: the least
//! useful to an estimate), counts that, and logs it once per burst.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::backend::{async_trait, Backend, Bytes, Key};
use crate::Error;

use crate::backend::OncePerBurst;

/// The name the store reports ([`Cache::backend_name`](crate::Cache::backend_name)).
pub(super) const NAME: &str = "memory";

/// Shards of a store with at least this many counters per shard; smaller stores have one.
const MIN_PER_SHARD: usize = 1_024;
const MAX_SHARDS: usize = 16;

/// What the limiter reads from its store: evictions caused by a full store.
#[derive(Debug, Default)]
pub(super) struct Evictions {
    pub(super) count: AtomicU64,
    pub(super) burst: OncePerBurst,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    value: u64,
    expires_at: Instant,
}

/// See the module docs.
pub(super) struct CounterStore {
    shards: Box<[Mutex<HashMap<String, Slot>>]>,
    per_shard: usize,
    capacity: u64,
    hasher: RandomState,
    evictions: Arc<Evictions>,
}

impl std::fmt::Debug for CounterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterStore")
            .field("capacity", &self.capacity)
            .field("counters", &self.len())
            .finish()
    }
}

impl CounterStore {
    /// A store of at most about `capacity` counters (at least 1 per shard).
    pub(super) fn new(capacity: u64, evictions: Arc<Evictions>) -> Self {
        let capacity = capacity.max(1);
        let wanted = usize::try_from(capacity).unwrap_or(usize::MAX);
        let shards = (wanted / MIN_PER_SHARD).clamp(1, MAX_SHARDS);
        CounterStore {
            shards: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: wanted.div_ceil(shards).max(1),
            capacity,
            hasher: RandomState::new(),
            evictions,
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, HashMap<String, Slot>> {
        let i = (self.hasher.hash_one(key) % self.shards.len() as u64) as usize;
        // A panic while holding the lock cannot leave a map half-updated
        // (every update is a single insert or remove), so a poisoned lock is usable.
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }

    fn live(&self, key: &str, now: Instant) -> Option<Slot> {
        self.shard(key)
            .get(key)
            .copied()
            .filter(|s| s.expires_at > now)
    }

    /// The increment contract of [`Backend::increment`] for one key, at `now`.
    fn add(&self, key: &str, delta: i64, ttl: Duration, now: Instant) -> u64 {
        let mut map = self.shard(key);
        if let Some(slot) = map.get_mut(key).filter(|s| s.expires_at > now) {
            slot.value = if delta < 0 {
                slot.value.saturating_sub(delta.unsigned_abs())
            } else {
                slot.value.saturating_add(delta.unsigned_abs())
            };
            return slot.value;
        }
        // Absent or expired: a refund never creates a counter.
        if delta <= 0 {
            map.remove(key);
            return 0;
        }
        if !map.contains_key(key) && map.len() >= self.per_shard {
            map.retain(|_, s| s.expires_at > now);
            if map.len() >= self.per_shard {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, s)| s.expires_at)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    map.remove(&oldest);
                    self.evicted();
                }
            }
        }
        let value = delta.unsigned_abs();
        let expires_at = now
            .checked_add(ttl)
            .unwrap_or(now + Duration::from_secs(86_400 * 365));
        map.insert(key.to_owned(), Slot { value, expires_at });
        value
    }

    fn evicted(&self) {
        let total = self.evictions.count.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(suppressed) = self.evictions.burst.should_log() {
            tracing::warn!(
                capacity = self.capacity,
                evicted_total = total,
                suppressed,
                "rate limiter: the in-process counter store is full ({} counters, two per active client), so the counters closest to expiry are dropped and those clients are limited leniently; raise it with RateLimitLayer::max_counters, or keep counters in Redis/Memcached (RATE_LIMIT_STORAGE_URI)",
                self.capacity
            );
        }
    }

    fn remove_where(&self, pred: impl Fn(&str) -> bool, now: Instant) -> u64 {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut map = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.retain(|k, s| {
                if pred(k) {
                    removed += u64::from(s.expires_at > now);
                    false
                } else {
                    true
                }
            });
        }
        removed
    }
}

#[async_trait]
impl Backend for CounterStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn is_in_process(&self) -> bool {
        true
    }

    /// A counter as ASCII decimal (as the memory backend and Redis store them).
    async fn get(&self, key: Key<'_>) -> Result<Option<Bytes>, Error> {
        Ok(self
            .live(key.as_str(), Instant::now())
            .map(|s| Bytes::from(s.value.to_string())))
    }

    async fn set(&self, _key: Key<'_>, _value: Bytes, _ttl: Option<Duration>) -> Result<(), Error> {
        Err(Error::backend(
            NAME,
            "set",
            "this is the rate limiter's counter store, it holds counters only; write cached values to your own Cache",
        ))
    }

    async fn delete(&self, key: Key<'_>) -> Result<bool, Error> {
        let now = Instant::now();
        Ok(self
            .shard(key.as_str())
            .remove(key.as_str())
            .is_some_and(|s| s.expires_at > now))
    }

    async fn delete_pattern(&self, namespace: &str, glob: &str) -> Result<u64, Error> {
        Ok(self.remove_where(
            |k| {
                k.strip_prefix(namespace)
                    .is_some_and(|local| crate::backend::pattern::matches(glob, local))
            },
            Instant::now(),
        ))
    }

    async fn exists(&self, key: Key<'_>) -> Result<bool, Error> {
        Ok(self.live(key.as_str(), Instant::now()).is_some())
    }

    async fn ttl(&self, key: Key<'_>) -> Result<Option<Duration>, Error> {
        let now = Instant::now();
        Ok(self
            .live(key.as_str(), now)
            .map(|s| s.expires_at.saturating_duration_since(now)))
    }

    async fn clear(&self, namespace: &str) -> Result<u64, Error> {
        Ok(self.remove_where(|k| k.starts_with(namespace), Instant::now()))
    }

    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Exact under any concurrency: the read-add-write of a key runs under its shard's lock.
    async fn increment(
        &self,
        key: Key<'_>,
        delta: i64,
        ttl: Duration,
        peek: Option<Key<'_>>,
    ) -> Result<(u64, u64), Error> {
        let now = Instant::now();
        let value = self.add(key.as_str(), delta, ttl, now);
        let peeked = peek
            .and_then(|p| self.live(p.as_str(), now))
            .map_or(0, |s| s.value);
        Ok((value, peeked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(capacity: u64) -> CounterStore {
        CounterStore::new(capacity, Arc::default())
    }

    #[test]
    fn counts_refunds_and_expiry() {
        let s = store(100);
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        assert_eq!(s.add("a", -1, ttl, t0), 0, "a refund creates nothing");
        assert!(s.live("a", t0).is_none());
        assert_eq!(s.add("a", 1, ttl, t0), 1);
        assert_eq!(s.add("a", 2, ttl, t0 + Duration::from_secs(9)), 3);
        assert_eq!(s.add("a", -5, ttl, t0), 0, "never below 0");
        // The expiry is set at creation and kept by later increments.
        assert_eq!(s.add("a", 1, ttl, t0 + Duration::from_secs(10)), 1);
    }

    #[test]
    fn a_full_store_drops_expired_then_the_closest_to_expiry_and_counts_it() {
        let s = store(3);
        let t0 = Instant::now();
        let short = Duration::from_secs(5);
        let long = Duration::from_secs(50);
        s.add("expired", 1, Duration::from_millis(1), t0);
        s.add("soon", 1, short, t0);
        s.add("later", 1, long, t0);
        // Full: the expired counter goes, nothing is evicted.
        s.add("new1", 1, long, t0 + Duration::from_secs(1));
        assert_eq!(s.evictions.count.load(Ordering::Relaxed), 0);
        // Full of live counters: the one closest to expiry goes, and it is counted.
        s.add("new2", 1, long, t0 + Duration::from_secs(1));
        assert_eq!(s.evictions.count.load(Ordering::Relaxed), 1);
        let now = t0 + Duration::from_secs(2);
        assert!(s.live("soon", now).is_none());
        for kept in ["later", "new1", "new2"] {
            assert!(s.live(kept, now).is_some(), "{kept}");
        }
        // Existing counters are updated without evicting anything.
        assert_eq!(s.add("later", 1, long, now), 2);
        assert_eq!(s.evictions.count.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn large_stores_are_sharded_and_hold_their_capacity() {
        let s = store(100_000);
        assert_eq!(s.shards.len(), MAX_SHARDS);
        assert!(s.per_shard * s.shards.len() >= 100_000);
        assert_eq!(store(10).shards.len(), 1);
    }
}

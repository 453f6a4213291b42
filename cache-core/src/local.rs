//! The local tier: decoded values kept in this process, in front of any store.
//!
//! A hit hands out a clone of the value (an `Arc` clone when the function
//! returns `Arc<T>`) without touching bytes. The tier is bounded by entries
//! and by bytes (an entry weighs its encoded size, measured on the miss
//! path), each entry lives at most [`LocalSettings::ttl`], and eviction is
//! CLOCK (second chance) per shard: a hit only sets a flag that is already
//! set on a hot entry, and a shard's read lock is striped per thread
//! (`crate::stripe`), so hits on many cores do not write shared memory.
//!
//! Over a remote store the tier holds typed values only; over the in-process
//! store (`CACHE_BACKEND=memory`) it *is* the store, and keeps the encoded
//! bytes beside the typed value so that the provider API (and a read with
//! another type) reads exactly what the macros wrote.
//!
//! Every invalidation the tier learns of, local or from the backplane, is
//! also written to a short log; a value read or computed before such an
//! invalidation (its log position taken before) is not inserted.

use std::any::Any;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashTable;

use crate::stripe::{ReadGuard, StripedRwLock, WriteGuard};

use crate::backplane::Invalidation;
use crate::codec::Salt;

/// Bounds of the local tier (`CACHE_LOCAL_MAX_ENTRIES`, `CACHE_LOCAL_MAX_BYTES`, `CACHE_LOCAL_TTL`).
///
/// ```
/// use cache_core::LocalSettings;
/// let s = LocalSettings::default();
/// assert_eq!((s.max_entries, s.max_bytes, s.ttl.as_secs()), (10_000, 64 << 20, 60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSettings {
    /// Entries at most.
    pub max_entries: usize,
    /// Encoded bytes of the values at most (keys not counted).
    pub max_bytes: usize,
    /// Longest an entry stays in the tier; never longer than its own TTL.
    pub ttl: Duration,
}

impl LocalSettings {
    /// 10,000 entries, 64 MiB, 60 s (see the README for why).
    pub const DEFAULT: LocalSettings = LocalSettings {
        max_entries: 10_000,
        max_bytes: 64 << 20,
        ttl: Duration::from_secs(60),
    };
}

impl Default for LocalSettings {
    fn default() -> Self {
        LocalSettings::DEFAULT
    }
}

/// A local tier an in-process store owns and hands to every [`Cache`](crate::Cache)
/// built over it (or over its clones), so that they share entries the way
/// they would share the store's ([`Backend::local_tier`](crate::Backend::local_tier)).
///
/// ```
/// use cache_core::{LocalSettings, SharedTier};
/// let tier = SharedTier::new(LocalSettings::default());
/// let same = tier.clone(); // the same entries
/// # let _ = same;
/// ```
#[derive(Clone)]
pub struct SharedTier(pub(crate) Arc<LocalTier>);

impl SharedTier {
    /// A new, empty tier bounded by `settings`.
    pub fn new(settings: LocalSettings) -> SharedTier {
        SharedTier(Arc::new(LocalTier::new(settings)))
    }
}

impl std::fmt::Debug for SharedTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTier").finish_non_exhaustive()
    }
}

/// A type-erased decoded value.
pub(crate) type AnyValue = Arc<dyn Any + Send + Sync>;

/// How a typed value goes into the tier and comes out again: made where the
/// value type is known to be `Clone + Send + Sync + 'static`.
///
/// ```
/// use cache_core::Typed;
/// let typed = Typed::<String>::new();
/// # let _ = typed;
/// ```
pub struct Typed<V> {
    pub(crate) keep: fn(&V) -> AnyValue,
    pub(crate) take: fn(&(dyn Any + Send + Sync)) -> Option<V>,
}

impl<V> Clone for Typed<V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for Typed<V> {}

impl<V: Clone + Send + Sync + 'static> Typed<V> {
    /// The tier keeps a clone of each value and hands out clones.
    pub const fn new() -> Self {
        Typed {
            keep: |v| Arc::new(v.clone()),
            take: |any| any.downcast_ref::<V>().cloned(),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Default for Typed<V> {
    fn default() -> Self {
        Typed::new()
    }
}

/// What a lookup found.
pub(crate) enum Found<V> {
    /// A live entry of the asked type and salt.
    Value(V),
    /// A live entry with bytes but no usable typed value.
    Bytes(Bytes),
    /// An entry past its freshness but kept for fail-safe: what it holds
    /// (the typed value when it is of the asked type and salt, the bytes
    /// when kept), to serve only when the fresh value cannot be had.
    Stale {
        /// The typed value, when usable.
        value: Option<V>,
        /// The encoded entry, when kept.
        bytes: Option<Bytes>,
        /// How long the entry is still kept.
        left: Duration,
    },
    /// Nothing usable.
    Miss,
}

struct Slot {
    key: Box<str>,
    hash: u64,
    id: u64,
    typed: Option<(AnyValue, Salt)>,
    bytes: Option<Bytes>,
    /// Until when the entry is fresh (an `Instant`: a hit compares, it does not subtract).
    fresh: Instant,
    /// When the entry dies: `fresh`, or later for an entry kept for fail-safe.
    expires: Instant,
    /// Until when the entry is fresh where it came from (the store): what
    /// early refresh decides by; `fresh` may end sooner (the tier's own TTL).
    until: Instant,
    /// How long its value took to compute, in milliseconds (XFetch's δ).
    body_ms: u32,
    /// The tags it carries (stored names): a tag invalidation removes it.
    tags: Option<Arc<[String]>>,
    weight: usize,
    used: AtomicBool,
}

#[derive(Default)]
struct Shard {
    table: HashTable<Slot>,
    /// CLOCK order: `(hash, id)` of entries, oldest first; stale records are skipped.
    ring: VecDeque<(u64, u64)>,
    bytes: usize,
}

impl Slot {
    /// The typed value, when it is of `typed`'s type and of `salt`.
    #[inline]
    fn typed_value<V>(&self, salt: Salt, typed: Option<Typed<V>>) -> Option<V> {
        match (typed, &self.typed) {
            (Some(typed), Some((value, s))) if *s == salt => (typed.take)(&**value),
            _ => None,
        }
    }
}

/// How long an entry lives in the tier: fresh, then kept stale (fail-safe);
/// and the tags it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Life {
    /// Served as a hit for this long.
    pub(crate) fresh: Duration,
    /// Then kept this long, served only when a fresh value cannot be had.
    pub(crate) stale: Duration,
    /// How long the entry stays fresh where it came from (at least `fresh`
    /// in effect: early refresh reads the smaller of the two).
    pub(crate) until: Duration,
    /// How long its value took to compute, in milliseconds.
    pub(crate) body_ms: u32,
    /// Its tags (stored names), if any.
    pub(crate) tags: Option<Arc<[String]>>,
}

impl Life {
    /// Fresh for `ttl`, never stale.
    pub(crate) fn fresh(ttl: Duration) -> Life {
        Life::kept(ttl, Duration::ZERO)
    }

    /// Fresh for `fresh`, then stale for `stale`.
    pub(crate) fn kept(fresh: Duration, stale: Duration) -> Life {
        Life {
            fresh,
            stale,
            until: fresh,
            body_ms: 0,
            tags: None,
        }
    }
}

/// A shard: its lock's readers do not share a written cache line (see `crate::stripe`).
type Padded = StripedRwLock<Shard>;

/// The tier's clock in milliseconds: real, or moved by hand in tests.
pub(crate) enum Clock {
    Real,
    /// Tests: a start and the milliseconds since, moved by hand.
    #[allow(dead_code)] // tests
    Manual(Instant, Arc<AtomicU64>),
}

impl Clock {
    #[inline]
    fn now(&self) -> Instant {
        match self {
            Clock::Real => crate::clock::now(),
            Clock::Manual(start, ms) => *start + Duration::from_millis(ms.load(Ordering::Relaxed)),
        }
    }
}

/// `now + ttl`, or (for a TTL past what an `Instant` holds) a date no process lives to see.
fn expiry(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// Invalidations seen lately, so that an insert can tell whether one came
/// after the read it carries.
struct FenceLog {
    seq: AtomicU64,
    recent: Mutex<VecDeque<(u64, Invalidation)>>,
}

const LOG_CAPACITY: usize = 512;

impl FenceLog {
    fn record(&self, what: Invalidation) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = self.seq.load(Ordering::Relaxed) + 1;
        recent.push_back((seq, what));
        if recent.len() > LOG_CAPACITY {
            recent.pop_front();
        }
        self.seq.store(seq, Ordering::Release);
    }

    /// True when no invalidation after `since` covers `key`.
    fn clear_since(&self, since: u64, key: &str, tags: &[String]) -> bool {
        if self.seq.load(Ordering::Acquire) == since {
            return true;
        }
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        match recent.front() {
            // Entries after `since` were dropped from the log: cannot tell.
            Some(&(first, _)) if first > since + 1 => false,
            _ => recent
                .iter()
                .filter(|(seq, _)| *seq > since)
                .all(|(_, what)| !what.covers_tagged(key, tags)),
        }
    }
}

/// Counters of the tier, read into [`Stats`](crate::Stats).
#[derive(Default)]
pub(crate) struct TierCounters {
    pub(crate) evictions: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) refused: AtomicU64,
}

/// The tier: shards of entries under a read-write lock each.
pub(crate) struct LocalTier {
    shards: Box<[Padded]>,
    shift: u32,
    hasher: foldhash::quality::RandomState,
    entries_per_shard: usize,
    bytes_per_shard: usize,
    ttl: Duration,
    clock: Clock,
    log: FenceLog,
    next_id: AtomicU64,
    pub(crate) counters: TierCounters,
}

#[inline]
fn read(shard: &Padded) -> ReadGuard<'_, Shard> {
    shard.read()
}

fn write(shard: &Padded) -> WriteGuard<'_, Shard> {
    shard.write()
}

impl LocalTier {
    pub(crate) fn new(settings: LocalSettings) -> LocalTier {
        Self::with_clock(settings, Clock::Real)
    }

    pub(crate) fn with_clock(settings: LocalSettings, clock: Clock) -> LocalTier {
        // Enough shards that two cores rarely meet on one lock, few enough
        // that a small tier still evicts close to least-recently-used.
        let count: usize = if settings.max_entries >= 4096 { 16 } else { 4 };
        LocalTier {
            shards: (0..count).map(|_| Padded::default()).collect(),
            shift: 64 - count.trailing_zeros(),
            hasher: foldhash::quality::RandomState::default(),
            entries_per_shard: settings.max_entries.div_ceil(count).max(1),
            bytes_per_shard: settings.max_bytes.div_ceil(count).max(1),
            ttl: settings.ttl,
            clock,
            log: FenceLog {
                seq: AtomicU64::new(0),
                recent: Mutex::new(VecDeque::new()),
            },
            next_id: AtomicU64::new(1),
            counters: TierCounters::default(),
        }
    }

    #[inline]
    fn locate(&self, key: &str) -> (u64, &Padded) {
        let hash = self.hasher.hash_one(key);
        (hash, &self.shards[(hash >> self.shift) as usize])
    }

    /// The log position to pass to [`insert`](Self::insert) for a value read or computed from now on.
    pub(crate) fn seq(&self) -> u64 {
        self.log.seq.load(Ordering::Acquire)
    }

    /// The live entry under `key`: its value when it holds one of `typed`'s
    /// type and of `salt`, else its bytes, else a miss.
    pub(crate) fn lookup<V>(&self, key: &str, salt: Salt, typed: Option<Typed<V>>) -> Found<V> {
        let (hash, shard) = self.locate(key);
        let now = self.clock.now();
        let shard = read(shard);
        let Some(slot) = shard.table.find(hash, |s| &*s.key == key) else {
            return Found::Miss;
        };
        if slot.fresh <= now {
            if slot.expires <= now {
                return Found::Miss;
            }
            return Found::Stale {
                value: slot.typed_value(salt, typed),
                bytes: slot.bytes.clone(),
                left: slot.expires - now,
            };
        }
        if !slot.used.load(Ordering::Relaxed) {
            slot.used.store(true, Ordering::Relaxed);
        }
        if let Some(v) = slot.typed_value(salt, typed) {
            return Found::Value(v);
        }
        match &slot.bytes {
            Some(b) => Found::Bytes(b.clone()),
            None => Found::Miss,
        }
    }

    /// Remaining life of the fresh entry under `key` (`None`: absent or
    /// stale), and how long it is kept after that for fail-safe.
    pub(crate) fn remaining(&self, key: &str) -> Option<Life> {
        let (hash, shard) = self.locate(key);
        let now = self.clock.now();
        let shard = read(shard);
        let slot = shard.table.find(hash, |s| &*s.key == key)?;
        (slot.fresh > now).then(|| Life {
            fresh: slot.fresh - now,
            stale: slot.expires - slot.fresh,
            until: slot.until.saturating_duration_since(now),
            body_ms: slot.body_ms,
            tags: slot.tags.clone(),
        })
    }

    /// Inserts (or replaces) the entry under `key`, unless an invalidation
    /// covering it was seen after `since` (then false, counted): fresh for
    /// `life.fresh` (capped by the tier's own TTL), then kept stale for
    /// `life.stale` (fail-safe; zero without it).
    pub(crate) fn insert(
        &self,
        key: &str,
        typed: Option<(AnyValue, Salt)>,
        bytes: Option<Bytes>,
        weight: usize,
        life: Life,
        since: u64,
    ) -> bool {
        let ttl = life.fresh.min(self.ttl);
        if ttl.is_zero() || weight > self.bytes_per_shard {
            return false;
        }
        let (hash, shard) = self.locate(key);
        let now = self.clock.now();
        let fresh = expiry(now, ttl);
        let expires = expiry(fresh, life.stale);
        let until = expiry(now, life.until);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut guard = write(shard);
        // Checked under the shard lock: an invalidation records itself
        // before it takes this lock to remove, so it either refuses this
        // insert here or removes what it inserted.
        let tags: &[String] = life.tags.as_deref().unwrap_or_default();
        if !self.log.clear_since(since, key, tags) {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let shard = &mut *guard;
        let slot = Slot {
            key: key.into(),
            hash,
            id,
            typed,
            bytes,
            fresh,
            expires,
            until,
            body_ms: life.body_ms,
            tags: life.tags,
            weight,
            used: AtomicBool::new(false),
        };
        match shard.table.find_mut(hash, |s| &*s.key == key) {
            Some(old) => {
                shard.bytes = shard.bytes - old.weight + weight;
                *old = slot;
            }
            None => {
                shard.bytes += weight;
                shard.table.insert_unique(hash, slot, |s| s.hash);
            }
        }
        shard.ring.push_back((hash, id));
        self.evict(shard);
        true
    }

    /// CLOCK: from the oldest record, skip stale ones, give a used entry a
    /// second chance, evict the first unused (or dead) one; until the shard
    /// is within its bounds.
    fn evict(&self, shard: &mut Shard) {
        let now = self.clock.now();
        let mut budget = 2 * shard.ring.len() + 2;
        while (shard.table.len() > self.entries_per_shard || shard.bytes > self.bytes_per_shard)
            && budget > 0
        {
            budget -= 1;
            let Some((hash, id)) = shard.ring.pop_front() else {
                break;
            };
            let Ok(entry) = shard.table.find_entry(hash, |s| s.id == id) else {
                continue; // replaced or removed since
            };
            let slot = entry.get();
            if slot.used.load(Ordering::Relaxed) && slot.expires > now {
                slot.used.store(false, Ordering::Relaxed);
                shard.ring.push_back((hash, id));
                continue;
            }
            let (removed, _) = entry.remove();
            shard.bytes -= removed.weight;
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
        // Records of replaced and removed entries pile up under churn: rebuild.
        if shard.ring.len() > 2 * shard.table.len() + 64 {
            shard.ring = shard.table.iter().map(|s| (s.hash, s.id)).collect();
        }
    }

    /// Removes `key` now; true when a live entry was there. Not logged (see [`invalidate`](Self::invalidate)).
    pub(crate) fn remove(&self, key: &str) -> bool {
        let (hash, shard) = self.locate(key);
        let now = self.clock.now();
        let mut shard = write(shard);
        match shard.table.find_entry(hash, |s| &*s.key == key) {
            Ok(entry) => {
                let (slot, _) = entry.remove();
                shard.bytes -= slot.weight;
                slot.expires > now
            }
            Err(_) => false,
        }
    }

    /// Logs `what` (so that reads and fills that started before it do not
    /// insert) and removes every entry it covers; returns how many live ones.
    pub(crate) fn invalidate(&self, what: Invalidation) -> u64 {
        self.log.record(what.clone());
        if let Invalidation::Key(key) = &what {
            return u64::from(self.remove(key));
        }
        let now = self.clock.now();
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = write(shard);
            let mut freed = 0;
            shard.table.retain(|s| {
                if what.covers_tagged(&s.key, s.tags.as_deref().unwrap_or_default()) {
                    freed += s.weight;
                    removed += u64::from(s.expires > now);
                    false
                } else {
                    true
                }
            });
            shard.bytes -= freed;
        }
        removed
    }

    /// Drops every entry (the backplane came back: what it missed is unknown); counted.
    pub(crate) fn flush(&self) {
        self.invalidate(Invalidation::Clear {
            namespace: String::new(),
        });
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
    }

    /// Live entries (for tests and stats).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let now = self.clock.now();
        self.shards
            .iter()
            .map(|s| read(s).table.iter().filter(|e| e.expires > now).count())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(max_entries: usize, max_bytes: usize) -> (LocalTier, Arc<AtomicU64>) {
        let ms = Arc::new(AtomicU64::new(0));
        let t = LocalTier::with_clock(
            LocalSettings {
                max_entries,
                max_bytes,
                ttl: Duration::from_secs(60),
            },
            Clock::Manual(Instant::now(), ms.clone()),
        );
        (t, ms)
    }

    fn put(t: &LocalTier, key: &str, v: u32, ttl: Duration) -> bool {
        let since = t.seq();
        t.insert(
            key,
            Some(((Typed::<u32>::new().keep)(&v), Salt::NONE)),
            None,
            10,
            Life::fresh(ttl),
            since,
        )
    }

    fn get(t: &LocalTier, key: &str) -> Option<u32> {
        match t.lookup(key, Salt::NONE, Some(Typed::<u32>::new())) {
            Found::Value(v) => Some(v),
            _ => None,
        }
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn typed_round_trip_and_type_or_salt_mismatch_is_no_value() {
        let (t, _) = tier(100, 1 << 20);
        assert!(put(&t, "a", 7, MIN));
        assert_eq!(get(&t, "a"), Some(7));
        assert!(matches!(
            t.lookup::<String>("a", Salt::NONE, Some(Typed::new())),
            Found::Miss
        ));
        assert!(matches!(
            t.lookup("a", Salt::of_version(2), Some(Typed::<u32>::new())),
            Found::Miss
        ));
    }

    #[test]
    fn entries_expire_at_the_shorter_of_their_ttl_and_the_tiers() {
        let (t, ms) = tier(100, 1 << 20);
        put(&t, "short", 1, Duration::from_secs(5));
        put(&t, "long", 2, Duration::from_secs(3600));
        ms.store(4_999, Ordering::Relaxed);
        assert_eq!((get(&t, "short"), get(&t, "long")), (Some(1), Some(2)));
        ms.store(5_000, Ordering::Relaxed);
        assert_eq!(get(&t, "short"), None);
        assert_eq!(
            t.remaining("long").map(|l| l.fresh),
            Some(Duration::from_millis(55_000))
        );
        ms.store(60_000, Ordering::Relaxed);
        assert_eq!(get(&t, "long"), None, "the tier's own TTL caps the entry's");
    }

    #[test]
    fn a_kept_entry_turns_stale_then_dies() {
        let (t, ms) = tier(100, 1 << 20);
        let since = t.seq();
        let life = Life::kept(Duration::from_secs(5), Duration::from_secs(100));
        let kept = Some(((Typed::<u32>::new().keep)(&9), Salt::NONE));
        assert!(t.insert("k", kept, None, 10, life, since));
        assert_eq!(get(&t, "k"), Some(9));
        ms.store(5_000, Ordering::Relaxed);
        assert_eq!(get(&t, "k"), None, "stale is not a hit");
        assert!(t.remaining("k").is_none());
        let stale = |salt| match t.lookup("k", salt, Some(Typed::<u32>::new())) {
            Found::Stale { value, .. } => value,
            _ => None,
        };
        assert_eq!(stale(Salt::NONE), Some(9));
        assert_eq!(
            stale(Salt::of_version(3)),
            None,
            "another salt's stale value is not usable"
        );
        // The tier's own TTL caps the fresh part, not the kept part.
        ms.store(104_999, Ordering::Relaxed);
        assert_eq!(stale(Salt::NONE), Some(9));
        ms.store(105_000, Ordering::Relaxed);
        assert!(matches!(
            t.lookup("k", Salt::NONE, Some(Typed::<u32>::new())),
            Found::Miss
        ));
    }

    #[test]
    fn entry_bound_evicts_unused_entries_first() {
        let (t, _) = tier(8, 1 << 20); // 4 shards of 2
        for i in 0..200 {
            put(&t, &format!("k{i}"), i, MIN);
            assert!(t.len() <= 8, "over the bound after {i}: {}", t.len());
        }
        // A hot key survives a stream of cold ones.
        let (t, _) = tier(8, 1 << 20);
        put(&t, "hot", 1, MIN);
        for i in 0..200 {
            assert_eq!(get(&t, "hot"), Some(1), "hot key evicted at {i}");
            put(&t, &format!("cold{i}"), i, MIN);
        }
    }

    #[test]
    fn byte_bound_counts_weights_and_refuses_a_value_larger_than_a_shard() {
        let (t, _) = tier(1000, 400); // 4 shards of 100 bytes, entries weigh 10
        for i in 0..100 {
            put(&t, &format!("k{i}"), i, MIN);
        }
        assert!(t.len() <= 40, "{}", t.len());
        let since = t.seq();
        assert!(!t.insert(
            "big",
            None,
            Some(Bytes::from(vec![0; 101])),
            101,
            Life::fresh(MIN),
            since
        ));
    }

    #[test]
    fn invalidations_remove_and_fence_inserts_that_started_before_them() {
        let (t, _) = tier(100, 1 << 20);
        put(&t, "app:user:1", 1, MIN);
        put(&t, "app:user:2", 2, MIN);
        put(&t, "app:item:1", 3, MIN);
        put(&t, "other:user:1", 4, MIN);
        let before = t.seq();
        let n = t.invalidate(Invalidation::Pattern {
            namespace: "app:".into(),
            glob: "user:*".into(),
        });
        assert_eq!(n, 2);
        assert_eq!(get(&t, "app:item:1"), Some(3));
        assert_eq!(get(&t, "other:user:1"), Some(4));
        // A value read before the pattern delete may predate it: refused.
        let v = (Typed::<u32>::new().keep)(&9);
        assert!(!t.insert(
            "app:user:1",
            Some((v.clone(), Salt::NONE)),
            None,
            1,
            Life::fresh(MIN),
            before
        ));
        // Other keys were not covered: accepted.
        assert!(t.insert(
            "app:item:2",
            Some((v.clone(), Salt::NONE)),
            None,
            1,
            Life::fresh(MIN),
            before
        ));
        // A read that started after it: accepted.
        assert!(put(&t, "app:user:1", 5, MIN));
        assert_eq!(t.counters.refused.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_log_that_lost_entries_refuses_every_older_insert() {
        let (t, _) = tier(100, 1 << 20);
        let before = t.seq();
        for i in 0..=LOG_CAPACITY {
            t.invalidate(Invalidation::Key(format!("x{i}")));
        }
        let v = (Typed::<u32>::new().keep)(&1);
        assert!(!t.insert(
            "unrelated",
            Some((v, Salt::NONE)),
            None,
            1,
            Life::fresh(MIN),
            before
        ));
    }

    #[test]
    fn flush_drops_everything_and_counts() {
        let (t, _) = tier(100, 1 << 20);
        put(&t, "a", 1, MIN);
        put(&t, "b", 2, MIN);
        t.flush();
        assert_eq!(t.len(), 0);
        assert_eq!(t.counters.flushes.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn replacing_keeps_the_byte_count_right() {
        let (t, _) = tier(100, 40); // 4 shards of 10 bytes
        for _ in 0..50 {
            assert!(put(&t, "same", 1, MIN), "a replace must not be refused");
        }
        assert_eq!(get(&t, "same"), Some(1));
    }
}

//! The cache-aside path: read the entry, on a miss run the body once per
//! key (single-flight), write what is cacheable; and the entry I/O under it
//! (read and decode, encode and write), shared with the provider API.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use super::fail_safe::{CatchUnwind, FailSafe};
use super::report::{Answer, Report, Source};
use super::stats::bump;
use super::{Cache, Tier};
use crate::backend::{Fence, Key};
use crate::backplane::Invalidation;
use crate::clock;
use crate::codec::{self, Salt, Storable};
use crate::flight::{self, Role};
use crate::guard::Bound;
use crate::local::{Found, Life, LocalTier, Typed};
use crate::pending::Target;
use crate::{Error, Outcome};

/// How one call uses the local tier: the value type's [`Typed`] when it is
/// `Clone` (`None`: the tier cannot hand out values of it), and the call's
/// own local TTL (`#[cache(local_ttl = N)]`). [`TierUse::OFF`] keeps the
/// call's values out of a tier in front of a remote store (`local = false`);
/// over the in-process store the tier is the store and holds them as bytes.
pub struct TierUse<V> {
    /// Hands values in and out of the tier; `None`: not kept decoded.
    pub typed: Option<Typed<V>>,
    /// Caps the tier's TTL for this call's entries.
    pub ttl: Option<Duration>,
}

impl<V> Clone for TierUse<V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for TierUse<V> {}

impl<V> TierUse<V> {
    /// Not kept decoded.
    pub const OFF: TierUse<V> = TierUse {
        typed: None,
        ttl: None,
    };
}

/// How one call reads through the cache: what [`read_through`](Cache::read_through)
/// takes beside the key, the salt and the body.
#[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
pub struct Policy<V> {
    /// The TTL of what the call stores.
    pub ttl: Duration,
    /// How the call uses the local tier.
    pub tier: TierUse<V>,
    /// Fail-safe ([`FailSafe`]); `None`: off.
    pub fail_safe: Option<FailSafe>,
    /// Each stored entry lives `ttl × (1 ± jitter)`, uniformly spread (0: exactly `ttl`).
    pub jitter: f64,
    /// The TTL from the value (`#[cache(expire_with = …)]`), in place of
    /// `ttl` (then jittered); zero: the value is not stored.
    pub ttl_of: Option<fn(&V) -> Duration>,
    /// When a hit starts a background refresh ([`read_through_or_hand_back`](Cache::read_through_or_hand_back)).
    pub refresh: Option<Refresh>,
    /// How long a miss with a stale fallback waits for the body before the
    /// fallback answers ([`read_through_or_hand_back`](Cache::read_through_or_hand_back)).
    pub soft_timeout: Option<Duration>,
    /// Single-flight across processes: the lease a leader holds in the
    /// store while its body runs (how long a dead leader blocks the others).
    pub lease: Option<Duration>,
    /// The tags of what the call stores, as stored ([`Cache::tag_key`]).
    pub tags: Option<Arc<[String]>>,
    /// Whether the caller shows the [`Report`]'s `age` (a span or metrics
    /// are on): a hit in the local tier then looks up how long its entry has left.
    pub observe: bool,
}

impl<V> Clone for Policy<V> {
    fn clone(&self) -> Self {
        Policy {
            tags: self.tags.clone(),
            ..*self
        }
    }
}

/// Early refresh: when a hit starts a background refresh of its entry.
#[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refresh {
    /// `refresh_after = 0.8`: once 80 % of the TTL has passed.
    pub after: Option<f64>,
    /// `early_expiry_beta = 1.0` (XFetch): early with a probability that
    /// grows as the expiry nears, weighted by the time the body took.
    pub beta: Option<f64>,
}

impl Refresh {
    /// Whether a hit with `left` of its freshness (of `ttl`), whose value took
    /// `body_ms` to compute, starts a refresh.
    pub(crate) fn due(&self, left: Duration, ttl: Duration, body_ms: u32) -> bool {
        if let Some(after) = self.after {
            if left <= ttl.mul_f64((1.0 - after).clamp(0.0, 1.0)) {
                return true;
            }
        }
        match self.beta {
            // Vattani et al.: recompute when now − δ·β·ln(U) ≥ expiry, U uniform in (0, 1].
            Some(beta) if beta > 0.0 && body_ms > 0 => {
                let delta = f64::from(body_ms) / 1000.0;
                let u = 1.0 - unit_random();
                -delta * beta * u.ln() >= left.as_secs_f64()
            }
            _ => false,
        }
    }
}

/// What [`read_through_or_hand_back`](Cache::read_through_or_hand_back) did.
#[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
pub enum Served<O: Outcome, Fut> {
    /// The call's answer; `refresh`: the body, unrun, when a hit's early refresh is due.
    Done {
        /// The answer.
        out: O,
        /// An encode error of the value stored, to log.
        error: Option<Error>,
        /// The unused body, to refresh the entry with in the background.
        refresh: Option<Fut>,
        /// How the call was answered.
        report: Report,
    },
    /// A miss with a stale fallback under a soft timeout: the body, unrun.
    HandedBack {
        /// The fallback.
        stale: O::Value,
        /// The body, for the caller to run in the background.
        body: Fut,
    },
    /// A refresh that stored nothing (its body failed, or another caller filled the key).
    Nothing,
}

/// What the wait on another process's lease ended with.
enum Fleet<V> {
    /// This caller holds the lease (its token): it runs the body.
    Lead(Bytes),
    /// The holder stored the value.
    Filled(V, Bytes),
    /// A refresh whose key another process holds: that is the refresh.
    Skip,
    /// No lease to be had (the store cannot, or cannot be reached): run the body.
    Open,
}

/// The store key of the lease of the entry `full` (namespace `prefix_len`
/// bytes long): `{namespace}%lease:{key}`. Encoded key values never hold
/// `%l`, so the lease of one entry is never another entry.
fn lease_key(full: &str, prefix_len: usize) -> String {
    format!("{}%lease:{}", &full[..prefix_len], &full[prefix_len..])
}

/// How [`Cache::read_through_in`] was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    HandBack,
    Refresh,
}

/// This process's claim on the early refresh of one key ([`Cache::start_refresh`]).
#[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
pub struct RefreshGuard {
    cache: Cache,
    full: String,
}

impl Drop for RefreshGuard {
    fn drop(&mut self) {
        self.cache
            .inner
            .refreshing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.full);
    }
}

fn millis32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl<V> Policy<V> {
    /// `ttl`, the tier use, nothing else.
    pub fn new(ttl: Duration, tier: TierUse<V>) -> Policy<V> {
        Policy {
            ttl,
            tier,
            fail_safe: None,
            jitter: 0.0,
            ttl_of: None,
            refresh: None,
            soft_timeout: None,
            lease: None,
            tags: None,
            observe: false,
        }
    }

    /// Whether fills stamp their freshness into the entry (fail-safe and
    /// early refresh read it).
    fn stamps(&self) -> bool {
        FailSafe::active(self.fail_safe).is_some() || self.refresh.is_some()
    }

    /// The envelope extras of a fill of a value with `ttl` that took `body`
    /// to compute, for a read that started at `since_ms`.
    fn stamp(
        &self,
        ttl: Duration,
        stale_for: Duration,
        body: Duration,
        since_ms: u64,
    ) -> Stamp<'_> {
        Stamp {
            fresh: self.stamps().then(|| stamp(ttl, stale_for, body)),
            tagged: self
                .tags
                .as_deref()
                .map(|tags| codec::Tagged { since_ms, tags }),
        }
    }
}

/// What an entry's envelope carries beside the value.
#[derive(Clone, Copy, Default)]
pub(super) struct Stamp<'a> {
    fresh: Option<codec::Freshness>,
    tagged: Option<codec::Tagged<'a>>,
}

/// How long a tag's invalidation is remembered in the store, and so the
/// longest a tagged entry is stored: 30 days.
pub(super) const TAG_TTL: Duration = Duration::from_secs(30 * 86_400);

impl<V> Policy<V> {
    /// The TTL a fill of `value` gets.
    fn ttl_for(&self, value: &V) -> Duration {
        let ttl = self.ttl_of.map_or(self.ttl, |of| of(value));
        jittered(ttl, self.jitter)
    }
}

/// `ttl × (1 + u)`, `u` uniform in `[-jitter, jitter)` (`jitter` clamped to `[0, 1]`).
fn jittered(ttl: Duration, jitter: f64) -> Duration {
    if jitter.is_nan() || jitter <= 0.0 || ttl.is_zero() {
        return ttl;
    }
    let spread = jitter.min(1.0) * (2.0 * unit_random() - 1.0);
    // A TTL too large to scale (`Duration::MAX` for "forever") stays as it is.
    Duration::try_from_secs_f64(ttl.as_secs_f64() * (1.0 + spread).max(0.0)).unwrap_or(ttl)
}

#[cfg(test)]
pub(super) fn jittered_for_tests(ttl: Duration, jitter: f64) -> Duration {
    jittered(ttl, jitter)
}

/// A uniform draw from `[0, 1)`: a per-thread SplitMix64 stream seeded by
/// the standard library's random hasher keys (no dependency; not for secrets).
fn unit_random() -> f64 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x5EED);
            h.finish()
        });
    }
    let x = STATE.with(|s| {
        let next = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        s.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    });
    (x >> 11) as f64 / (1u64 << 53) as f64
}

impl Fill<'_> {
    /// How long the store keeps the entry: fresh, then kept; a tagged entry
    /// at most as long as a tag's invalidation is remembered.
    fn store_ttl(&self) -> Duration {
        let ttl = self.ttl.saturating_add(self.stale_for);
        match self.tags {
            Some(_) => ttl.min(TAG_TTL),
            None => ttl,
        }
    }
}

/// A stale entry kept for fail-safe, met on the way to the body (or, in
/// a refresh, the fresh entry it replaces).
struct Stale<V> {
    value: V,
    /// Its encoded form, when it came as bytes.
    bytes: Option<Bytes>,
    /// How long it is still kept.
    left: Duration,
    /// Whether the store holds it (a network store, or the in-process one),
    /// not only this process's tier in front of a store.
    in_store: bool,
}

impl<V> Stale<V> {
    /// The entry a refresh replaces (never served as a fallback: a failed
    /// refresh leaves it in place).
    fn refreshed(value: V) -> Stale<V> {
        Stale {
            value,
            bytes: None,
            left: Duration::ZERO,
            in_store: true,
        }
    }
}

/// What a fenced read of a network store found.
enum Read<T> {
    /// A fresh entry: its value, its encoded size, and how long it stays
    /// fresh when it says (an entry stamped with its freshness).
    Fresh {
        value: T,
        bytes: Bytes,
        size: usize,
        left: Option<Duration>,
        body_ms: u32,
        /// The entry's tags (stored names), for the local tier.
        tags: Option<Arc<[String]>>,
    },
    /// An entry past its freshness, kept for fail-safe.
    Stale {
        value: T,
        bytes: Bytes,
        left: Duration,
    },
    /// Nothing usable.
    Miss,
}

/// The freshness stamped into a fill's entry.
fn stamp(ttl: Duration, stale_for: Duration, body: Duration) -> codec::Freshness {
    let now = clock::unix_ms();
    let fresh_until_ms = now.saturating_add(millis(ttl));
    codec::Freshness {
        fresh_until_ms,
        stale_until_ms: fresh_until_ms.saturating_add(millis(stale_for)),
        body_ms: u32::try_from(body.as_millis()).unwrap_or(u32::MAX),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What a fill carries from the read before it.
#[derive(Clone, Copy)]
struct Fill<'a> {
    full: &'a str,
    /// Fresh for this long…
    ttl: Duration,
    /// …then kept this long for fail-safe (zero without it).
    stale_for: Duration,
    local_ttl: Duration,
    /// How long the body took (stamped, for XFetch).
    body_ms: u32,
    /// The tags of the entry (stored names): the local tier keeps them.
    tags: Option<&'a Arc<[String]>>,
    salt: Salt,
    budget: Duration,
    fence: &'a Fence,
    started: tokio::time::Instant,
    since: u64,
}

impl Cache {
    /// The in-process tier when it is the store.
    #[inline]
    pub(super) fn tier_store(&self) -> Option<&LocalTier> {
        self.inner.tier.store()
    }

    /// The hit in the local tier of decoded values, synchronous, for the
    /// macros' fast path (the rest of [`read_through`](Cache::read_through)
    /// is not entered): `None` on anything but a live entry of `typed`'s
    /// type and of `salt` (then `read_through` takes the call, and its own
    /// lookup counts the miss).
    #[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
    #[inline]
    pub fn local_hit<V>(
        &self,
        full: &str,
        salt: Salt,
        typed: Typed<V>,
        also: &super::Counter,
    ) -> Option<V> {
        let inner = &*self.inner;
        let t = match &inner.tier {
            Tier::Store(t) | Tier::Front(t) => t,
            Tier::Off => return None,
        };
        self.ensure_subscribed();
        match t.lookup(full, salt, Some(typed)) {
            Found::Value(v) => {
                // The cache's count and the caller's (its function's), on one stripe.
                let stripe = crate::stripe::index();
                inner.counters.local_hits.add_at(stripe, 1);
                also.bump_unsynced_at(stripe);
                Some(v)
            }
            _ => None,
        }
    }

    /// How old the local tier's live entry under `full` is, for an entry
    /// that lives `ttl` (`None`: no such entry).
    #[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
    pub fn local_age(&self, full: &str, ttl: Duration) -> Option<Duration> {
        let t = match &self.inner.tier {
            Tier::Store(t) | Tier::Front(t) => t,
            Tier::Off => return None,
        };
        ttl.checked_sub(t.remaining(full)?.until)
    }

    /// The namespace prefix of every key of this cache (`""` without a namespace).
    #[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
    #[inline]
    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The cache-aside path shared by [`get_or_set`](Cache::get_or_set) and the macros:
    /// the local tier; the store; on a miss, single-flight; run `body`;
    /// store what is cacheable, fenced against invalidations that overtook it.
    ///
    /// Never fails: store errors fall back to `body`. An encode error is
    /// returned beside the value so each caller decides how loud to be.
    ///
    /// With `fail_safe`, entries are kept past `ttl` and a stale one found
    /// on the way answers when `body` gives nothing cacheable or panics, or
    /// when the store cannot be read ([`FailSafe`]).
    #[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
    pub async fn read_through<O, Fut>(
        &self,
        full: &str,
        salt: Salt,
        body: Fut,
        policy: Policy<O::Value>,
    ) -> (O, Option<Error>)
    where
        O: Outcome,
        Fut: Future<Output = O>,
    {
        let (out, error, _) = self.read_through_reported(full, salt, body, policy).await;
        (out, error)
    }

    /// [`read_through`](Cache::read_through), and how the call was answered.
    #[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
    pub async fn read_through_reported<O, Fut>(
        &self,
        full: &str,
        salt: Salt,
        body: Fut,
        policy: Policy<O::Value>,
    ) -> (O, Option<Error>, Report)
    where
        O: Outcome,
        Fut: Future<Output = O>,
    {
        match self
            .read_through_in(full, salt, body, policy, Mode::Plain)
            .await
        {
            Served::Done {
                out, error, report, ..
            } => (out, error, report),
            // Only `Mode::HandBack` hands a body back, only `Mode::Refresh` ends with nothing.
            Served::HandedBack { stale, .. } => (
                O::from_cached(stale),
                None,
                Report::default().answered(Answer::Stale, None),
            ),
            Served::Nothing => unreachable!("a plain read always answers"),
        }
    }

    /// [`read_through`](Cache::read_through) for a caller that can run the
    /// body in the background (it is `Send + 'static`): a hit whose early
    /// refresh is due comes back with the unused body to refresh with
    /// ([`refresh`](Cache::refresh)); a miss with a stale fallback and a
    /// soft timeout hands the body back with the fallback, unrun, for the
    /// caller to spawn ([`Policy::soft_timeout`]).
    #[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
    pub async fn read_through_or_hand_back<O, Fut>(
        &self,
        full: &str,
        salt: Salt,
        body: Fut,
        policy: Policy<O::Value>,
    ) -> Served<O, Fut>
    where
        O: Outcome,
        Fut: Future<Output = O>,
    {
        self.read_through_in(full, salt, body, policy, Mode::HandBack)
            .await
    }

    /// An early refresh: runs `body` although the entry may be fresh, and
    /// replaces the entry with its value, fenced by the entry it read (a
    /// refresh that an invalidation or another refresh overtook does not
    /// land). A body that fails leaves the entry as it is.
    #[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
    pub async fn refresh<O, Fut>(&self, full: &str, salt: Salt, body: Fut, policy: Policy<O::Value>)
    where
        O: Outcome,
        Fut: Future<Output = O>,
    {
        bump(&self.inner.counters.refreshes);
        let _ = self
            .read_through_in(full, salt, body, policy, Mode::Refresh)
            .await;
    }

    /// Claims the early refresh of `full` in this process: `None` while
    /// another is under way (released when the guard drops).
    #[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
    pub fn start_refresh(&self, full: &str) -> Option<RefreshGuard> {
        let mut running = self
            .inner
            .refreshing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        running.insert(full.to_owned()).then(|| RefreshGuard {
            cache: self.clone(),
            full: full.to_owned(),
        })
    }

    /// Counts a stale value served by a caller that stopped waiting for the body (soft timeout).
    #[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
    pub fn note_stale_served(&self) {
        bump(&self.inner.counters.stale_served);
    }

    async fn read_through_in<O, Fut>(
        &self,
        full: &str,
        salt: Salt,
        body: Fut,
        policy: Policy<O::Value>,
        mode: Mode,
    ) -> Served<O, Fut>
    where
        O: Outcome,
        Fut: Future<Output = O>,
    {
        let inner = &*self.inner;
        self.ensure_subscribed();
        let (ttl, tier) = (policy.ttl, policy.tier);
        let fail_safe = FailSafe::active(policy.fail_safe);
        let stale_for = fail_safe.map_or(Duration::ZERO, |fs| fs.max);
        // Early refresh reads how long an entry stays fresh: only asked for when it can act.
        let refresh = policy.refresh.filter(|_| mode == Mode::HandBack);
        let done = |out: O, refresh_with: Option<Fut>, report: Report| Served::Done {
            out,
            error: None,
            refresh: refresh_with,
            report,
        };
        let mut report = Report::default();
        // How old an entry with `left` of its `ttl` (or of its keep, past it) is.
        let age_of = |left: Duration, ttl: Duration| ttl.checked_sub(left);
        // The tier this call uses: the store itself, or one in front of it
        // for values it can hand out.
        let local = match &inner.tier {
            Tier::Store(t) => Some(&**t),
            Tier::Front(t) if tier.typed.is_some() => Some(&**t),
            _ => None,
        };
        let tier_is_store = matches!(inner.tier, Tier::Store(_));
        // The local tier's life of an entry of this call that stays `ttl` in the store.
        let local_ttl = |ttl: Duration| tier.ttl.map_or(ttl, |t| t.min(ttl));
        let since = local.map_or(0, |t| t.seq());
        // A stale entry met on the way: the fallback of fail-safe (and, in a
        // refresh, the fresh entry being replaced).
        let mut stale: Option<Stale<O::Value>> = None;
        if let Some(t) = local {
            match t.lookup(full, salt, tier.typed) {
                Found::Value(v) if mode == Mode::Refresh => {
                    // As the store, this is the entry the refresh replaces; in
                    // front of one, the refresh reads the store's (and its fence).
                    stale = tier_is_store.then(|| Stale::refreshed(v));
                }
                Found::Value(v) => {
                    bump(&inner.counters.local_hits);
                    // The entry's life: for the refresh, and for the age a span or metrics show.
                    let life = (refresh.is_some() || policy.observe)
                        .then(|| t.remaining(full))
                        .flatten();
                    let due = refresh
                        .zip(life.as_ref())
                        .is_some_and(|(r, life)| r.due(life.until, ttl, life.body_ms));
                    report.age = life.and_then(|life| age_of(life.until, ttl));
                    let report = report.answered(Answer::Hit, Some(Source::Local));
                    return done(O::from_cached(v), due.then_some(body), report);
                }
                Found::Bytes(bytes) if tier_is_store && mode != Mode::Refresh => {
                    if let Some(v) = self.open_kept::<O::Value>(t, full, &bytes, salt) {
                        let life = t.remaining(full);
                        let due = refresh
                            .zip(life.as_ref())
                            .is_some_and(|(r, life)| r.due(life.until, ttl, life.body_ms));
                        report.age = life.as_ref().and_then(|life| age_of(life.until, ttl));
                        if let (Some(typed), Some(left)) = (tier.typed, life) {
                            // Written by the provider API: keep it decoded from now on.
                            let kept = Some(((typed.keep)(&v), salt));
                            t.insert(full, kept, Some(bytes.clone()), bytes.len(), left, since);
                        }
                        let report = report.answered(Answer::Hit, Some(Source::Local));
                        return done(O::from_cached(v), due.then_some(body), report);
                    }
                }
                Found::Stale { value, bytes, left } if fail_safe.is_some() => {
                    let value = value.or_else(|| {
                        let bytes = bytes.as_deref()?;
                        self.open_entry::<O::Value>(bytes, salt).ok()
                    });
                    stale = value.map(|value| Stale {
                        value,
                        bytes,
                        left,
                        in_store: tier_is_store,
                    });
                }
                _ => {}
            }
        }
        // One store budget per call: the write after the body gets what the
        // read left of the op timeout, so a hanging store costs a call at most
        // one timeout plus the body's own time.
        let deadline = inner.gate.call_deadline();
        let started = tokio::time::Instant::now();
        // A tag invalidated from now on kills what this call stores.
        let since_ms = if policy.tags.is_some() {
            clock::unix_ms()
        } else {
            0
        };
        let mut fence = Fence::None;
        let mut unreadable = false;
        if tier_is_store {
            if mode != Mode::Refresh {
                bump(&inner.counters.misses);
            }
        } else {
            let read = self.read_fenced::<O::Value>(full, deadline, salt).await;
            report.store = Some(started.elapsed());
            match read {
                Ok((Read::Fresh { value, bytes, .. }, f)) if mode == Mode::Refresh => {
                    // The entry this refresh replaces, while it is unchanged.
                    fence = f;
                    stale = Some(Stale {
                        bytes: Some(bytes),
                        ..Stale::refreshed(value)
                    });
                }
                Ok((
                    Read::Fresh {
                        value,
                        size,
                        left,
                        body_ms,
                        tags,
                        ..
                    },
                    _,
                )) => {
                    if let (Some(t), Some(typed)) = (local, tier.typed) {
                        let until = policy.ttl_of.map_or(ttl, |of| of(&value));
                        let until = left.map_or(until, |left| left.min(until));
                        let life = Life {
                            fresh: local_ttl(until),
                            stale: stale_for,
                            until,
                            body_ms,
                            tags,
                        };
                        t.insert(
                            full,
                            Some(((typed.keep)(&value), salt)),
                            None,
                            size,
                            life,
                            since,
                        );
                    }
                    let due = refresh
                        .zip(left)
                        .is_some_and(|(r, left)| r.due(left, ttl, body_ms));
                    report.age = left.and_then(|left| age_of(left, ttl));
                    let report = report.answered(Answer::Hit, Some(Source::Store));
                    return done(O::from_cached(value), due.then_some(body), report);
                }
                Ok((Read::Stale { value, bytes, left }, f)) => {
                    fence = f;
                    if fail_safe.is_some() {
                        stale = Some(Stale {
                            value,
                            bytes: Some(bytes),
                            left,
                            in_store: true,
                        });
                    }
                }
                Ok((Read::Miss, f)) => {
                    fence = f;
                    // The store has no entry (deleted, tombstoned, killed by a
                    // tag): a stale copy only this process's tier holds must
                    // not answer for it.
                    stale = stale.filter(|s| s.in_store);
                }
                Err(e) => {
                    self.note_failure("read", full, &e);
                    unreadable = true;
                    report.store_error = true;
                }
            }
        }
        let write_budget = deadline.map_or(inner.gate.op_timeout(), |d| {
            d.saturating_duration_since(tokio::time::Instant::now())
        });
        let fill = Fill {
            full,
            ttl,
            stale_for,
            local_ttl: local_ttl(ttl),
            body_ms: 0,
            tags: policy.tags.as_ref(),
            salt,
            budget: write_budget,
            fence: &fence,
            started,
            since,
        };
        let fallback = match (unreadable, fail_safe) {
            (true, Some(fs)) if mode != Mode::Refresh => stale.take().map(|s| (fs, s)),
            _ => None,
        };
        if let Some((fs, s)) = fallback {
            // The store cannot be read and this process holds a stale value:
            // it answers, and the body (whose result could not be stored
            // either) is not run, for the throttle.
            report.age = age_of(s.left, ttl + stale_for);
            let source = Some(if s.in_store {
                Source::Store
            } else {
                Source::Local
            });
            let out = self.fall_back(&fill, s, fs, local, tier, || false).await.0;
            return done(
                O::from_cached(out),
                None,
                report.answered(Answer::Stale, source),
            );
        }
        if mode == Mode::Refresh && unreadable {
            return Served::Nothing;
        }
        if let (Mode::HandBack, Some(_)) = (mode, policy.soft_timeout) {
            if let Some(s) = stale.take() {
                // The caller runs the body in the background and waits for it
                // at most the soft timeout, with this fallback in hand.
                return Served::HandedBack {
                    stale: s.value,
                    body,
                };
            }
        }
        // What a body's outcome stores, after `body_time`: the fill (its TTL
        // from the value), and the sealed bytes (the leader shares them).
        let seal = |out: &O, body_time: Duration| {
            let entry_ttl = out.cacheable().map_or(ttl, |v| policy.ttl_for(v));
            let fill = Fill {
                ttl: entry_ttl,
                local_ttl: local_ttl(entry_ttl),
                body_ms: millis32(body_time),
                ..fill
            };
            let stamped = policy.stamp(entry_ttl, stale_for, body_time, since_ms);
            let (sealed, encode_error) = self.encode_outcome(full, out, salt, stamped);
            (fill, sealed, encode_error)
        };
        match inner.flights.join(full) {
            Role::Leader(guard) => {
                // The previous leader of this key may have finished between
                // our read and our join: its value is in the tier by now.
                if let (Some(t), Some(_), false) = (local, tier.typed, mode == Mode::Refresh) {
                    if let Found::Value(v) = t.lookup(full, salt, tier.typed) {
                        bump(&inner.counters.coalesced);
                        return done(
                            O::from_cached(v),
                            None,
                            report.answered(Answer::Coalesced, None),
                        );
                    }
                }
                // Across processes: one leader per key holds the lease in the store.
                let mut lease = None;
                if let (Some(lease_ttl), false) = (policy.lease, tier_is_store) {
                    match self.fleet::<O::Value>(full, lease_ttl, salt, mode).await {
                        Fleet::Lead(token) => lease = Some(token),
                        Fleet::Filled(value, bytes) => {
                            bump(&inner.counters.coalesced);
                            guard.land(Some(bytes));
                            let report = report.answered(Answer::Coalesced, None);
                            return done(O::from_cached(value), None, report);
                        }
                        Fleet::Skip => return Served::Nothing,
                        Fleet::Open => {}
                    }
                }
                let body_started = tokio::time::Instant::now();
                let ran = match (&stale, fail_safe) {
                    // A panic is caught only when there is a value to answer in its place.
                    (Some(_), Some(_)) => CatchUnwind(Box::pin(body)).await,
                    _ => Ok(body.await),
                };
                report.body = Some(body_started.elapsed());
                let failed = ran.as_ref().map_or(true, |out| out.cacheable().is_none());
                if failed && mode == Mode::Refresh {
                    // The entry stays as it is; the caller is a background task.
                    drop(guard);
                    self.release_lease(full, lease).await;
                    return Served::Nothing;
                }
                // Invalidated while the body ran: the stale value is no fallback.
                let fallback = match (failed, fail_safe) {
                    (true, Some(fs)) if !guard.is_stale() => stale.take().map(|s| (fs, s)),
                    _ => None,
                };
                if let Some((fs, s)) = fallback {
                    if ran.is_err() {
                        tracing::warn!(
                            key = full,
                            "the cached function panicked; answering with the stale value (fail-safe)"
                        );
                    }
                    report.age = age_of(s.left, ttl + stale_for);
                    let source = Some(if s.in_store {
                        Source::Store
                    } else {
                        Source::Local
                    });
                    let (value, shared) = self
                        .fall_back(&fill, s, fs, local, tier, || guard.is_stale())
                        .await;
                    guard.land(shared);
                    self.release_lease(full, lease).await;
                    let report = report.answered(Answer::Stale, source);
                    return done(O::from_cached(value), None, report);
                }
                let out = match ran {
                    Ok(out) => out,
                    Err(panic) => std::panic::resume_unwind(panic),
                };
                let (fill, sealed, encode_error) = seal(&out, body_started.elapsed());
                guard.land(sealed.clone());
                // A zero TTL from `expire_with`: shared with the waiting callers, not stored.
                let sealed = sealed.filter(|_| !fill.ttl.is_zero());
                if let (Some(bytes), Some(value)) = (sealed, out.cacheable()) {
                    // Invalidated while the body ran: its value may predate the mutation.
                    if guard.is_stale() {
                        bump(&inner.counters.fenced_fills);
                    } else {
                        self.fill(&fill, bytes, value, local, tier, || guard.is_stale())
                            .await;
                    }
                }
                drop(guard);
                self.release_lease(full, lease).await;
                Served::Done {
                    out,
                    error: encode_error,
                    refresh: None,
                    report,
                }
            }
            Role::Follower(rx) => {
                // An invalidation from here on makes what this caller computes stale too.
                let epoch = inner.flights.epoch();
                if let Some(bytes) = flight::follow(rx).await {
                    if let Ok(v) = self.open_entry::<O::Value>(&bytes, salt) {
                        bump(&inner.counters.coalesced);
                        return done(
                            O::from_cached(v),
                            None,
                            report.answered(Answer::Coalesced, None),
                        );
                    }
                }
                if mode == Mode::Refresh {
                    // Another caller was filling this key: that is the refresh.
                    return Served::Nothing;
                }
                // The leader had nothing to share (error, None, cancelled):
                // run our own body, and store what it gives like a leader would.
                let body_started = tokio::time::Instant::now();
                let out = body.await;
                report.body = Some(body_started.elapsed());
                let (fill, sealed, encode_error) = seal(&out, body_started.elapsed());
                let sealed = sealed.filter(|_| !fill.ttl.is_zero());
                let stale_fill = || inner.flights.epoch() != epoch;
                if let (Some(bytes), Some(value)) = (sealed, out.cacheable()) {
                    if stale_fill() {
                        bump(&inner.counters.fenced_fills);
                    } else {
                        self.fill(&fill, bytes, value, local, tier, stale_fill)
                            .await;
                    }
                }
                Served::Done {
                    out,
                    error: encode_error,
                    refresh: None,
                    report,
                }
            }
        }
    }

    /// Whether one of `tags` (stored names) was invalidated at or after
    /// `since_ms`: one store read per tag. A tag that cannot be read counts
    /// as invalidated (a miss is never wrong).
    async fn tags_dead(&self, since_ms: u64, tags: &[String]) -> bool {
        let inner = &*self.inner;
        if inner.pending.covers_tags(tags) {
            // A tag invalidation this process could not deliver yet.
            self.deliver_pending();
            return true;
        }
        for tag in tags {
            let ours = tag
                .strip_prefix(inner.prefix.as_str())
                .is_some_and(|rest| rest.starts_with("%tag:"));
            if !ours {
                // Not a tag of this cache (foreign or corrupt bytes): a miss.
                return true;
            }
            let get = inner.backend.get(Key::new(tag, inner.prefix.len()));
            match self.call_store("get", Bound::Op, get).await {
                Ok(None) => {}
                Ok(Some(version)) => {
                    let at = std::str::from_utf8(&version)
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok());
                    if at.is_none_or(|at| at >= since_ms) {
                        return true;
                    }
                }
                Err(e) => {
                    self.note_failure("get", tag, &e);
                    return true;
                }
            }
        }
        false
    }

    /// Waits for the lease of `full` in the store: taken (this caller leads),
    /// or the holder's value appears, or the holder's lease expires and is
    /// taken here, all within about twice the lease; any store failure, or a
    /// store without leases, fails open (the body runs here).
    async fn fleet<V: DeserializeOwned>(
        &self,
        full: &str,
        lease_ttl: Duration,
        salt: Salt,
        mode: Mode,
    ) -> Fleet<V> {
        let inner = &*self.inner;
        let lease_full = lease_key(full, inner.prefix.len());
        let key = Key::new(&lease_full, inner.prefix.len());
        let token = crate::backend::tombstone();
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(5);
        let mut waited = false;
        loop {
            let taken = self
                .call_store(
                    "lease",
                    Bound::Op,
                    inner.backend.lease(key, &token, lease_ttl),
                )
                .await;
            match taken {
                Ok(true) if !waited => return Fleet::Lead(token),
                Ok(true) => {
                    // Free after a wait: the holder may have filled and
                    // released between our last read and this lease.
                    // Anything else (no value, a kept invalidation, a
                    // failed read): this caller leads.
                    return match self.fleet_read::<V>(full, salt).await {
                        Ok(Some((v, bytes))) => {
                            self.release_lease(full, Some(token)).await;
                            Fleet::Filled(v, bytes)
                        }
                        _ => Fleet::Lead(token),
                    };
                }
                Ok(false) if mode == Mode::Refresh => return Fleet::Skip,
                Ok(false) => {}
                Err(Error::Unsupported { .. }) => {
                    static ONCE: crate::OncePerBurst = crate::OncePerBurst::new();
                    if ONCE.should_log().is_some() {
                        tracing::warn!(store = inner.backend.name(), "this store has no leases: single-flight across processes is off (each process runs its own body)");
                    }
                    return Fleet::Open;
                }
                Err(e) => {
                    self.note_failure("lease", full, &e);
                    return Fleet::Open;
                }
            }
            if started.elapsed() >= lease_ttl.saturating_mul(2) {
                return Fleet::Open;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            waited = true;
            match self.fleet_read::<V>(full, salt).await {
                Ok(Some((v, bytes))) => return Fleet::Filled(v, bytes),
                Ok(None) => {}
                Err(()) => return Fleet::Open,
            }
        }
    }

    /// A lease waiter's read of `full`: the holder's value when it is there,
    /// fresh, and not invalidated (by a tag, or a kept invalidation: then
    /// `Err`, as for a store failure, which is noted).
    async fn fleet_read<V: DeserializeOwned>(
        &self,
        full: &str,
        salt: Salt,
    ) -> Result<Option<(V, Bytes)>, ()> {
        let inner = &*self.inner;
        let get = inner.backend.get(self.key(full));
        match self.call_store("get", Bound::Op, get).await {
            Ok(Some(bytes)) => {
                if inner.pending.covers(full, inner.prefix.len()) {
                    // A kept invalidation covers it: the store may hold the old value.
                    return Err(());
                }
                let now = clock::unix_ms();
                let fresh = codec::freshness(&bytes).is_none_or(|f| f.is_fresh_at(now));
                let alive = match codec::entry_tags(&bytes) {
                    Some((since, tags)) => !self.tags_dead(since, &tags).await,
                    None => true,
                };
                Ok((fresh && alive)
                    .then(|| self.open_entry::<V>(&bytes, salt).ok())
                    .flatten()
                    .map(|v| (v, bytes)))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.note_failure("get", full, &e);
                Err(())
            }
        }
    }

    /// Gives a lease back (best effort: one that cannot be released expires).
    async fn release_lease(&self, full: &str, token: Option<Bytes>) {
        let Some(token) = token else { return };
        let inner = &*self.inner;
        let lease_full = lease_key(full, inner.prefix.len());
        let key = Key::new(&lease_full, inner.prefix.len());
        let released = self
            .call_store("release", Bound::Op, inner.backend.release(key, &token))
            .await;
        if let Err(e) = released {
            self.note_failure("release", full, &e);
        }
    }

    /// Fail-safe's fallback: `stale` answers the call, and counts as fresh
    /// again for the throttle (at most what is left of its kept time): in
    /// this process's tier, and in the store when it came from there,
    /// written like a fill (fenced by the read that found it, so that it
    /// cannot land over an invalidation that came after). Returns the value,
    /// and the bytes to share with the callers waiting on this one.
    async fn fall_back<V>(
        &self,
        fill: &Fill<'_>,
        stale: Stale<V>,
        fs: FailSafe,
        local: Option<&LocalTier>,
        tier: TierUse<V>,
        invalidated: impl Fn() -> bool,
    ) -> (V, Option<Bytes>)
    where
        V: Serialize + DeserializeOwned,
    {
        let inner = &*self.inner;
        bump(&inner.counters.stale_served);
        let fresh_for = fs.throttle.min(stale.left);
        let stale_for = stale.left - fresh_for;
        let now = clock::unix_ms();
        let stamp = codec::Freshness {
            fresh_until_ms: now.saturating_add(millis(fresh_for)),
            stale_until_ms: now.saturating_add(millis(stale.left)),
            body_ms: 0,
        };
        let bytes = match &stale.bytes {
            Some(bytes) => codec::restamp(bytes, stamp).map(Bytes::from),
            None => self
                .encode_for_fill(
                    fill.full,
                    &stale.value,
                    fill.salt,
                    Stamp {
                        fresh: Some(stamp),
                        tagged: None,
                    },
                )
                .ok()
                .flatten(),
        };
        if invalidated() {
            bump(&inner.counters.fenced_fills);
            return (stale.value, bytes);
        }
        let throttled = Fill {
            ttl: fresh_for,
            stale_for,
            local_ttl: fresh_for.min(fill.local_ttl),
            ..*fill
        };
        match (&bytes, stale.in_store) {
            (Some(b), true) => {
                self.fill(
                    &throttled,
                    b.clone(),
                    &stale.value,
                    local,
                    tier,
                    invalidated,
                )
                .await
            }
            // Only this process's tier held it: throttle here.
            _ => {
                if let Some(t) = local {
                    let typed = tier
                        .typed
                        .map(|typed| ((typed.keep)(&stale.value), fill.salt));
                    let weight = bytes.as_ref().map_or(0, Bytes::len);
                    let kept = bytes.clone().filter(|_| inner.tier.store().is_some());
                    let life = Life {
                        tags: fill.tags.cloned(),
                        ..Life::kept(throttled.local_ttl, stale_for)
                    };
                    t.insert(fill.full, typed, kept, weight, life, fill.since);
                }
            }
        }
        (stale.value, bytes)
    }

    /// Decodes an entry of the in-process tier; one that does not decode as
    /// `T` is removed and counted (like an undecodable entry of a store).
    fn open_kept<T: DeserializeOwned>(
        &self,
        tier: &LocalTier,
        full: &str,
        bytes: &[u8],
        salt: Salt,
    ) -> Option<T> {
        let counters = &self.inner.counters;
        match self.open_entry::<T>(bytes, salt) {
            Ok(v) => {
                bump(&counters.hits);
                Some(v)
            }
            Err(reason) => {
                bump(&counters.misses);
                bump(&counters.errors);
                tracing::warn!(key = full, expected = std::any::type_name::<T>(), %reason, "cache entry does not decode; treating as a miss and deleting it");
                tier.remove(full);
                None
            }
        }
    }

    /// The encoded cacheable part of `out` (`None`: nothing to store), and an encode error.
    fn encode_outcome<O: Outcome>(
        &self,
        full: &str,
        out: &O,
        salt: Salt,
        stamped: Stamp<'_>,
    ) -> (Option<Bytes>, Option<Error>) {
        match out.cacheable() {
            Some(v) => match self.encode_for_fill(full, v, salt, stamped) {
                Ok(b) => (b, None),
                Err(e) => (None, Some(e)),
            },
            None => (None, None),
        }
    }

    /// Stores a miss's value: in the in-process tier; or in the store,
    /// fenced (the write lands only if no invalidation came after the read),
    /// and then in the local tier unless the store refused it or the tier
    /// heard of an invalidation since the read. Skipped when the read used
    /// the whole budget (the store hangs or is down, already counted) or the
    /// circuit is open; then the tier still keeps the value (fail-safe: it
    /// is fresh, and the store cannot be invalidated meanwhile either).
    /// When `stale()` turns true while the write is in flight (an
    /// invalidation in this process landed meanwhile), the write is undone.
    async fn fill<V>(
        &self,
        fill: &Fill<'_>,
        bytes: Bytes,
        value: &V,
        local: Option<&LocalTier>,
        tier: TierUse<V>,
        stale: impl Fn() -> bool,
    ) {
        let inner = &*self.inner;
        let full = fill.full;
        let weight = bytes.len();
        // `local` is the in-process store (bytes kept) or a tier in front of
        // a network store for a type it can hand out (typed kept).
        let keep = |t: &LocalTier, bytes: Option<Bytes>, fresh: Duration| {
            let typed = tier.typed.map(|typed| ((typed.keep)(value), fill.salt));
            let life = Life {
                fresh,
                stale: fill.stale_for,
                until: fill.ttl,
                body_ms: fill.body_ms,
                tags: fill.tags.cloned(),
            };
            t.insert(full, typed, bytes, weight, life, fill.since);
        };
        if let Some(t) = inner.tier.store() {
            keep(t, Some(bytes), fill.ttl);
            return;
        }
        let mut landed = true;
        if !fill.budget.is_zero() && !inner.gate.is_open() {
            match self.write_fenced(fill, bytes).await {
                Ok(true) => {}
                Ok(false) => {
                    bump(&inner.counters.fenced_fills);
                    landed = false;
                }
                Err(e) => self.note_failure("write", full, &e),
            }
            if stale() {
                let undo = self
                    .call_store(
                        "delete",
                        Bound::Op,
                        inner.backend.invalidate(self.key(full), inner.fence_window),
                    )
                    .await;
                if let Err(e) = undo {
                    if e.is_store_failure() {
                        self.keep_invalidation(Target::Key(full), "undo of a stale write", &e);
                    }
                }
                return;
            }
        }
        if let (true, Some(t)) = (landed, local) {
            keep(t, None, fill.local_ttl);
        }
    }

    /// The store write of a fill: conditional on what the read saw
    /// ([`Backend::set_fenced`](crate::Backend::set_fenced)). `Ok(false)`:
    /// refused, an invalidation overtook it; also when the body outlived
    /// the fence window (the tombstone that would refuse it may be gone).
    async fn write_fenced(&self, fill: &Fill<'_>, bytes: Bytes) -> Result<bool, Error> {
        let inner = &*self.inner;
        if *fill.fence != Fence::None {
            let margin = inner.gate.op_timeout().saturating_mul(2);
            if fill.started.elapsed() + margin >= inner.fence_window {
                return Ok(false);
            }
        }
        let key = self.key(fill.full);
        let upto = inner.pending.seq();
        let result = self
            .call_store(
                "set",
                Bound::Within(fill.budget),
                inner
                    .backend
                    .set_fenced(key, bytes, Some(fill.store_ttl()), fill.fence),
            )
            .await;
        if let Ok(true) = result {
            // A fresh value replaced whatever a kept delete of this key was for.
            inner
                .pending
                .superseded(Target::Key(fill.full), upto, inner.prefix.len());
        }
        result
    }

    /// [`read_entry`](Self::read_entry) through
    /// [`Backend::get_fenced`](crate::Backend::get_fenced): the value with
    /// its encoded size, or what a fill must find to land.
    async fn read_fenced<T: DeserializeOwned>(
        &self,
        full: &str,
        deadline: Option<tokio::time::Instant>,
        salt: Salt,
    ) -> Result<(Read<T>, Fence), Error> {
        let inner = &*self.inner;
        if inner.pending.covers(full, inner.prefix.len()) {
            bump(&inner.counters.misses);
            self.deliver_pending();
            // The kept delete is not in the store yet: a fill would be undone by it.
            return Ok((Read::Miss, Fence::None));
        }
        let get = inner.backend.get_fenced(self.key(full));
        let (got, fence) = match deadline {
            Some(deadline) => {
                self.call_store("get", Bound::Until(inner.gate.op_timeout(), deadline), get)
                    .await?
            }
            None => get.await?,
        };
        let Some(bytes) = got else {
            bump(&inner.counters.misses);
            return Ok((Read::Miss, fence));
        };
        let size = bytes.len();
        let tagged = codec::entry_tags(&bytes);
        if let Some((since, tags)) = &tagged {
            if self.tags_dead(*since, tags).await {
                // Killed by a tag: a miss, whose fill replaces it while unchanged.
                bump(&inner.counters.misses);
                return Ok((Read::Miss, fence));
            }
        }
        let now = codec::freshness(&bytes).map(|f| (f, clock::unix_ms()));
        if let Some((f, now)) = now.filter(|(f, now)| !f.is_fresh_at(*now)) {
            // Past its freshness: a miss, whose fill replaces this entry
            // only while it is unchanged (the fence); kept, it is fail-safe's fallback.
            bump(&inner.counters.misses);
            let left = Duration::from_millis(f.stale_until_ms.saturating_sub(now));
            let value = self.open_entry::<T>(&bytes, salt).ok();
            return Ok(match value.filter(|_| !left.is_zero()) {
                Some(value) => (Read::Stale { value, bytes, left }, fence),
                None => (Read::Miss, fence),
            });
        }
        match self
            .decode_or_delete::<T>(full, &bytes, deadline, salt)
            .await?
        {
            Some(value) => {
                let left = now.map(|(f, now)| Duration::from_millis(f.fresh_until_ms - now));
                let body_ms = now.map_or(0, |(f, _)| f.body_ms);
                let tags = tagged.map(|(_, tags)| Arc::from(tags));
                let read = Read::Fresh {
                    value,
                    bytes,
                    size,
                    left,
                    body_ms,
                    tags,
                };
                Ok((read, fence))
            }
            // Deleted: absent now, as far as this read knows.
            None => Ok((Read::Miss, Fence::None)),
        }
    }

    /// Reads and decodes the entry under `full`, bounded by `deadline`
    /// (from [`StoreGate::call_deadline`](crate::guard::StoreGate::call_deadline); `None`: an in-process store).
    ///
    /// An entry that does not decode as `T` (wrong type, wrong fingerprint
    /// `salt`, corrupt bytes) is a miss: it is deleted and counted as an
    /// error. Store failures are returned (uncounted) for the caller to
    /// propagate or fail open on.
    pub(super) async fn read_entry<T: DeserializeOwned>(
        &self,
        full: &str,
        deadline: Option<tokio::time::Instant>,
        salt: Salt,
    ) -> Result<Option<T>, Error> {
        let inner = &*self.inner;
        if let Some(t) = self.tier_store() {
            return Ok(match t.lookup::<T>(full, salt, None) {
                Found::Bytes(bytes) => self.open_kept(t, full, &bytes, salt),
                _ => {
                    bump(&inner.counters.misses);
                    None
                }
            });
        }
        if inner.pending.covers(full, inner.prefix.len()) {
            // A kept invalidation covers this key: the store may still hold
            // the old value. A miss, and another try at delivering.
            bump(&inner.counters.misses);
            self.deliver_pending();
            return Ok(None);
        }
        let get = inner.backend.get(self.key(full));
        let got = match deadline {
            Some(deadline) => {
                self.call_store("get", Bound::Until(inner.gate.op_timeout(), deadline), get)
                    .await
            }
            None => get.await,
        };
        let Some(bytes) = got? else {
            bump(&inner.counters.misses);
            return Ok(None);
        };
        if codec::freshness(&bytes).is_some_and(|f| !f.is_fresh_at(clock::unix_ms())) {
            // Kept past its TTL for fail-safe: expired, to every reader but that fallback.
            bump(&inner.counters.misses);
            return Ok(None);
        }
        if let Some((since, tags)) = codec::entry_tags(&bytes) {
            if self.tags_dead(since, &tags).await {
                bump(&inner.counters.misses);
                return Ok(None);
            }
        }
        self.decode_or_delete(full, &bytes, deadline, salt).await
    }

    /// Decodes a stored entry as `T`; one that does not decode is a miss,
    /// deleted and counted.
    async fn decode_or_delete<T: DeserializeOwned>(
        &self,
        full: &str,
        bytes: &[u8],
        deadline: Option<tokio::time::Instant>,
        salt: Salt,
    ) -> Result<Option<T>, Error> {
        let inner = &*self.inner;
        match self.open_entry::<T>(bytes, salt) {
            Ok(v) => {
                bump(&inner.counters.hits);
                Ok(Some(v))
            }
            Err(reason) => {
                bump(&inner.counters.misses);
                bump(&inner.counters.errors);
                tracing::warn!(key = full, expected = std::any::type_name::<T>(), %reason, "cache entry does not decode; treating as a miss and deleting it");
                // The delete shares the call's one budget: a store that
                // answers the read and then hangs costs one op timeout, not two.
                let delete = inner.backend.delete(self.key(full));
                match deadline {
                    Some(deadline) => {
                        self.call_store(
                            "delete",
                            Bound::Until(inner.gate.op_timeout(), deadline),
                            delete,
                        )
                        .await?
                    }
                    None => delete.await?,
                };
                Ok(None)
            }
        }
    }

    /// Opens an entry of this cache: the envelope checked, a compressed
    /// payload inflated (at most once, within the cache's bound), decoded.
    pub(super) fn open_entry<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
        salt: Salt,
    ) -> Result<T, codec::CodecError> {
        codec::open_bounded(&*self.inner.codec, bytes, salt, self.inner.max_payload)
    }

    /// The envelope plus the encoded value (compressed when the cache says
    /// so); a value over the size limit is counted in `skipped` and refused
    /// with [`Error::ValueTooLarge`]: before compression over the builder's
    /// bound, after it over the store's.
    pub(super) fn encode_entry<T: Storable + ?Sized>(
        &self,
        value: &T,
        salt: Salt,
        stamped: Stamp<'_>,
    ) -> Result<Bytes, Error> {
        let codec = &*self.inner.codec;
        let sealed = match stamped.tagged {
            Some(tagged) => {
                // A tagged entry that is not stamped otherwise is fresh for as long as it is stored.
                let fresh = stamped.fresh.unwrap_or(codec::Freshness {
                    fresh_until_ms: u64::MAX,
                    stale_until_ms: u64::MAX,
                    body_ms: 0,
                });
                codec::seal_tagged(codec, value, salt, fresh, tagged)
            }
            None => codec::seal_fresh(codec, value, salt, stamped.fresh),
        };
        let bytes = sealed.map_err(|e| Error::Encode {
            codec: codec.name(),
            message: e.0,
        })?;
        let too_large = |size: usize, limit: usize| -> Result<Bytes, Error> {
            bump(&self.inner.counters.skipped);
            Err(Error::ValueTooLarge { size, limit })
        };
        // Without compression the stored bytes are these: the tighter of the
        // two limits applies now, and is the one the error names.
        #[cfg(feature = "compression")]
        let first_limit = match self.inner.compression {
            Some(_) => self.inner.max_payload,
            None => self.inner.max_payload.min(self.inner.max_value_size),
        };
        #[cfg(not(feature = "compression"))]
        let first_limit = self.inner.max_payload.min(self.inner.max_value_size);
        if bytes.len() > first_limit {
            return too_large(bytes.len(), first_limit);
        }
        #[cfg(feature = "compression")]
        let bytes = match self.inner.compression {
            Some(compression) => codec::compress(bytes, compression),
            None => bytes,
        };
        if bytes.len() > self.inner.max_value_size {
            return too_large(bytes.len(), self.inner.max_value_size);
        }
        Ok(Bytes::from(bytes))
    }

    /// [`encode_entry`](Cache::encode_entry) for the cache-aside path: an oversize value
    /// is skipped (logged), not an error. `Ok(None)` = skipped.
    fn encode_for_fill<T: Storable + ?Sized>(
        &self,
        full: &str,
        value: &T,
        salt: Salt,
        stamped: Stamp<'_>,
    ) -> Result<Option<Bytes>, Error> {
        match self.encode_entry(value, salt, stamped) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(Error::ValueTooLarge { size, limit }) => {
                tracing::warn!(
                    key = full,
                    size,
                    limit,
                    "value over the cache's size limit; not stored"
                );
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes an encoded entry within `limit`; a success supersedes kept
    /// deletes of the key that started before it.
    pub(super) async fn write_entry(
        &self,
        full: &str,
        bytes: Bytes,
        ttl: Duration,
        limit: Duration,
    ) -> Result<(), Error> {
        if let Some(t) = self.tier_store() {
            let weight = bytes.len();
            t.insert(full, None, Some(bytes), weight, Life::fresh(ttl), t.seq());
            return Ok(());
        }
        let key = self.key(full);
        let upto = self.inner.pending.seq();
        let result = self
            .call_store(
                "set",
                Bound::Within(limit),
                self.inner.backend.set(key, bytes, Some(ttl)),
            )
            .await;
        if result.is_ok() {
            // A fresh value replaced whatever a kept delete of this key was for.
            self.inner
                .pending
                .superseded(Target::Key(full), upto, self.inner.prefix.len());
        }
        result
    }

    /// [`get`](Cache::get) with the fingerprint salt of an annotated function.
    #[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
    pub async fn get_salted<T: DeserializeOwned>(
        &self,
        key: &str,
        salt: Salt,
    ) -> Result<Option<T>, Error> {
        self.read_entry(&self.full_key(key), self.inner.gate.call_deadline(), salt)
            .await
            .inspect_err(|_| bump(&self.inner.counters.errors))
    }

    /// [`set`](Cache::set) with the fingerprint salt of an annotated function.
    #[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
    pub async fn set_salted<T: Storable + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
        salt: Salt,
    ) -> Result<(), Error> {
        let bytes = self.encode_entry(value, salt, Stamp::default())?;
        let full = self.full_key(key);
        let result = self
            .write_entry(
                &full,
                bytes,
                self.resolve_ttl(ttl),
                self.inner.gate.op_timeout(),
            )
            .await;
        if self.inner.tier.store().is_none() {
            // Other processes (and this one's tier) drop their copies of the old value.
            self.spread(Invalidation::Key(full.into_owned())).await;
        }
        result
    }
}

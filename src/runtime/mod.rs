//! What the `#[cache]` and `#[invalidate]` macros call. Not a public API: reached
//! through `cacheside::__private` and free to change between minor versions.
//!
//! This file holds the `#[cache]` wrapper ([`cached`]) and the pieces of its
//! key; `kind` decides through the type system how a return type is cached;
//! `invalidate` is the `#[invalidate]` wrapper; the companion's [`Entry`]
//! lives in `crate::entry`.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use cache_core::codec::Salt;
use cache_core::{Cache, FailSafe, Outcome, Policy, Refresh, Served, TierUse, Typed};
use serde::{de::DeserializeOwned, Serialize};

use crate::registry::{is_enabled, resolve};

pub mod invalidate;
pub mod key;
pub mod kind;
pub mod observe;

use tracing::Instrument;

/// Static description of one annotated function.
#[derive(Debug)]
pub struct CacheSpec {
    /// The function's name, for logs.
    pub function: &'static str,
    /// The key's prefix as written (`key_prefix`, or a `key` template's text
    /// before its first placeholder), for spans: no argument values.
    pub key_prefix: &'static str,
    /// `cache = "name"`, or the global cache.
    pub cache: Option<&'static str>,
    /// What this function's calls counted (`runtime::observe`).
    pub observed: observe::Observed,
    /// `expire` in seconds; `None` = the cache's default; `Some(0)` = not cached.
    pub expire: Option<u64>,
    /// `#[cache(version = N)]` (0: none), mixed into every entry's fingerprint.
    pub version: u32,
    /// `#[cache(local = false)]` makes this false: values are not kept decoded in the local tier.
    pub local: bool,
    /// `#[cache(local_ttl = N)]`: caps the local tier's TTL for this function's values.
    pub local_ttl: Option<u64>,
    /// `#[cache(fail_safe_max = N)]` seconds (`Some(0)`: off); `None`: the cache's fail-safe.
    pub fail_safe_max: Option<u64>,
    /// `#[cache(fail_safe_throttle = N)]` seconds; `None`: the cache's (or the default) throttle.
    pub fail_safe_throttle: Option<u64>,
    /// `#[cache(jitter = F)]`; `None`: the cache's.
    pub jitter: Option<f64>,
    /// `#[cache(refresh_after = F)]`: a hit past this fraction of the TTL refreshes in the background.
    pub refresh_after: Option<f64>,
    /// `#[cache(early_expiry_beta = B)]`: XFetch's β.
    pub early_expiry_beta: Option<f64>,
    /// `#[cache(soft_timeout_ms = N)]`: how long a miss with a stale fallback waits for the body.
    pub soft_timeout_ms: Option<u64>,
    /// `#[cache(hard_timeout_ms = N)]`: the bound of a body running in the background.
    pub hard_timeout_ms: Option<u64>,
    /// `#[cache(lease_ms = N)]`: single-flight across processes (`Some(0)`: off); `None`: the cache's.
    pub lease_ms: Option<u64>,
    /// The annotated function's crate version (`CARGO_PKG_VERSION`), mixed
    /// into the fingerprint of types whose shape cannot be traced whole.
    pub crate_version: &'static str,
    /// The two above as a [`Salt`], computed on first use.
    pub salt: OnceLock<Salt>,
    /// Whether the function belongs to a generic `impl` (from its path), computed on first use.
    pub generic_impl: OnceLock<bool>,
}

impl CacheSpec {
    /// How this function's calls read through `cache`; `tags` as the
    /// template builds them (stored under [`Cache::tag_key`]).
    pub fn policy<V>(
        &self,
        cache: &Cache,
        typed: Option<Typed<V>>,
        ttl_of: Option<fn(&V) -> Duration>,
        tags: Option<Vec<String>>,
    ) -> Policy<V> {
        let ttl = self.ttl(cache);
        let tier = TierUse {
            typed: typed.filter(|_| self.local),
            ttl: self.local_ttl.map(Duration::from_secs),
        };
        let refresh =
            (self.refresh_after.is_some() || self.early_expiry_beta.is_some()).then_some(Refresh {
                after: self.refresh_after,
                beta: self.early_expiry_beta,
            });
        Policy {
            fail_safe: self.fail_safe(cache),
            jitter: self.jitter.unwrap_or_else(|| cache.jitter()),
            ttl_of,
            refresh,
            soft_timeout: self.soft_timeout_ms.map(Duration::from_millis),
            tags: tags.map(|tags| tags.iter().map(|t| cache.tag_key(t)).collect()),
            lease: match self.lease_ms {
                Some(0) => None,
                Some(ms) => Some(Duration::from_millis(ms)),
                None => cache.lease(),
            },
            ..Policy::new(ttl, tier)
        }
    }

    /// The TTL of this function's entries in `cache`.
    fn ttl(&self, cache: &Cache) -> Duration {
        self.expire
            .map_or_else(|| cache.default_ttl(), Duration::from_secs)
    }

    /// `hard_timeout_ms`: the bound of a body running in the background
    /// (default [`DEFAULT_HARD_TIMEOUT`]: a hung body must not pin a task forever).
    fn hard_timeout(&self) -> Option<Duration> {
        Some(
            self.hard_timeout_ms
                .map_or(DEFAULT_HARD_TIMEOUT, Duration::from_millis),
        )
    }

    /// This function's fail-safe: its own arguments over the cache's.
    pub fn fail_safe(&self, cache: &Cache) -> Option<FailSafe> {
        let secs = Duration::from_secs;
        let base = match self.fail_safe_max {
            Some(0) => return None,
            Some(max) => Some(
                cache
                    .fail_safe()
                    .map_or(FailSafe::new(secs(max)), |fs| FailSafe {
                        max: secs(max),
                        ..fs
                    }),
            ),
            None => cache.fail_safe(),
        };
        match (base, self.fail_safe_throttle) {
            (Some(fs), Some(t)) => Some(fs.throttle(secs(t))),
            (fs, _) => fs,
        }
    }

    /// Whether the wrapper should compute a key at all (enabled and not `expire = 0`).
    #[inline]
    pub fn active(&self) -> bool {
        self.expire != Some(0) && is_enabled()
    }

    /// The fingerprint salt of this function's entries; `instance` names the
    /// type parameters of a generic function's instantiation.
    #[inline]
    pub fn salt(&self, instance: Option<&'static str>) -> Salt {
        let base = *self.salt.get_or_init(|| {
            Salt::of_version(self.version).with_untraced(&format!("crate|{}", self.crate_version))
        });
        match instance {
            None => base,
            Some(types) => base.with(types),
        }
    }
}

/// What [`local_hit`] found.
pub enum Lookup<V> {
    /// A live decoded value: the call is answered.
    Hit(V),
    /// Anything else: the key (without the cache's namespace) for [`cached`].
    Miss(String),
}

thread_local! {
    /// The buffer a hit builds its key in: a hit allocates nothing.
    static KEY_BUFFER: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// A key buffer grown past this by one long key is not kept for the next.
const KEPT_KEY_CAPACITY: usize = 1024;

/// The `#[cache]` wrapper's synchronous first step: builds the key (`key`
/// appends it) and, when the cache is ready and keeps this call's values
/// decoded, answers from its local tier without entering [`cached`].
///
/// Only a live value of the right type and salt answers here; every other
/// case (no cache yet, a store hit, a provider-written entry, a miss) goes
/// to [`cached`] with the key, whose own lookup counts it.
#[inline]
pub fn local_hit<V>(
    spec: &'static CacheSpec,
    instance: Option<&'static str>,
    typed: Option<Typed<V>>,
    key: impl FnOnce(&mut String),
) -> Lookup<V> {
    let ready = match (typed, crate::registry::resolve_ready(spec.cache)) {
        (Some(typed), Some(cache)) if spec.local => Some((typed, cache)),
        _ => None,
    };
    let Some((typed, cache)) = ready else {
        let mut own = String::new();
        key(&mut own);
        return Lookup::Miss(own);
    };
    KEY_BUFFER.with(|buffer| {
        // Taken, not borrowed: a `Display` of a key value that itself made a
        // cached call would find the buffer empty, not borrowed.
        let mut full = buffer.take();
        full.clear();
        full.push_str(cache.key_prefix());
        let at = full.len();
        key(&mut full);
        let shown = observe::hits_shown();
        let found = cache.local_hit(
            &full,
            spec.salt(instance),
            typed,
            spec.observed.local_hits(),
        );
        let out = match found {
            Some(v) => {
                if shown {
                    observe::local_hit(
                        &spec.observed,
                        spec.function,
                        spec.cache,
                        spec.key_prefix,
                        cache,
                        &full,
                        spec.ttl(cache),
                    );
                }
                Lookup::Hit(v)
            }
            None => Lookup::Miss(full[at..].to_owned()),
        };
        if full.capacity() <= KEPT_KEY_CAPACITY {
            buffer.replace(full);
        }
        out
    })
}

/// The return value of a [`local_hit`].
#[inline]
pub fn hit_value<R, K: kind::Kind<R>>(kind: K, value: kind::StoredBy<K, R>) -> R {
    kind.unwrap(<K::O as Outcome>::from_cached(value))
}

/// The `#[cache]` wrapper: cache-aside around `body`, fail-open.
///
/// `key` is `None` when [`CacheSpec::active`] was false; then `body` just runs.
/// `typed` hands the stored type in and out of the local tier (`None`: it
/// is not `Clone`; see [`kind::TypedProbe`]).
/// `instance` is the type parameters of a generic function (see [`instance`]).
/// `ttl_of` is `#[cache(expire_with = f)]`: the TTL from the value;
/// `tags`, `#[cache(tags = [...])]` resolved for this call.
pub async fn cached<O, Fut>(
    spec: &'static CacheSpec,
    key: Option<String>,
    instance: Option<&'static str>,
    typed: Option<Typed<O::Value>>,
    ttl_of: Option<fn(&O::Value) -> Duration>,
    tags: Option<Vec<String>>,
    body: Fut,
) -> O
where
    O: Outcome,
    Fut: Future<Output = O>,
{
    let Some(key) = key else {
        return body.await;
    };
    let Some(cache) = resolve(spec.cache).await else {
        return body.await;
    };
    let full = cache.full_key(&key);
    let (call, policy) = Call::open(spec, cache, &full, typed, ttl_of, tags);
    let (out, encode_error, report) = cache
        .read_through_reported(&full, spec.salt(instance), body, policy)
        .instrument(call.span.clone())
        .await;
    call.finish(&full, &report, encode_error.as_ref());
    out
}

/// What [`cached`] and [`cached_background`] do around the read: one
/// call's span, and its counters and events once it is answered.
struct Call {
    spec: &'static CacheSpec,
    cache: &'static Cache,
    span: tracing::Span,
}

impl Call {
    /// The span of a call on `full`, and its policy (which reports what it
    /// did only when someone listens: a span, or metrics).
    fn open<V>(
        spec: &'static CacheSpec,
        cache: &'static Cache,
        full: &str,
        typed: Option<Typed<V>>,
        ttl_of: Option<fn(&V) -> Duration>,
        tags: Option<Vec<String>>,
    ) -> (Call, Policy<V>) {
        let span = observe::call_span(spec.function, spec.cache, spec.key_prefix, cache, full);
        let mut policy = spec.policy(cache, typed, ttl_of, tags);
        policy.observe = !span.is_disabled() || observe::metrics_on();
        (Call { spec, cache, span }, policy)
    }

    /// Counts and records the answer to the call on `full`; a value that
    /// could not be encoded (hence was not stored) is noted as a failure too.
    fn finish(
        &self,
        full: &str,
        report: &cache_core::Report,
        encode_error: Option<&cache_core::Error>,
    ) {
        if let Some(e) = encode_error {
            self.cache.note_failure("encode", full, e);
        }
        self.record(report, encode_error);
    }

    /// Records an answer the read did not give (a stale value or the body's
    /// own after a soft timeout).
    fn answered(&self, answer: cache_core::report::Answer) {
        let report = cache_core::Report {
            answer,
            ..cache_core::Report::default()
        };
        self.record(&report, None);
    }

    fn record(&self, report: &cache_core::Report, encode_error: Option<&cache_core::Error>) {
        let spec = self.spec;
        observe::finish(
            &spec.observed,
            spec.function,
            spec.cache,
            self.cache,
            &self.span,
            report,
            encode_error,
        );
    }
}

/// The `#[cache]` wrapper of a function with work that outlives the call
/// (`refresh_after`, `early_expiry_beta`, `soft_timeout_ms`): [`cached`],
/// and a hit whose early refresh is due starts one refresh per key in the
/// background, and a miss with a stale fallback waits for the body at most
/// the soft timeout (the body then finishes in the background, bounded by
/// the hard timeout, and its value is stored). The body must be
/// `Send + 'static`: arguments owned, not borrowed (no `&self`).
pub async fn cached_background<O, Fut>(
    spec: &'static CacheSpec,
    key: Option<String>,
    instance: Option<&'static str>,
    typed: Option<Typed<O::Value>>,
    ttl_of: Option<fn(&O::Value) -> Duration>,
    tags: Option<Vec<String>>,
    body: Fut,
) -> O
where
    O: Outcome + Send + 'static,
    O::Value: Send + Sync,
    Fut: Background<O>,
{
    let Some(key) = key else {
        return body.await;
    };
    let Some(cache) = resolve(spec.cache).await else {
        return body.await;
    };
    let full = cache.full_key(&key).into_owned();
    let salt = spec.salt(instance);
    let (call, policy) = Call::open(spec, cache, &full, typed, ttl_of, tags);
    match cache
        .read_through_or_hand_back(&full, salt, body, policy.clone())
        .instrument(call.span.clone())
        .await
    {
        Served::Done {
            out,
            error,
            refresh,
            report,
        } => {
            call.finish(&full, &report, error.as_ref());
            if let Some(body) = refresh {
                if let Some(claim) = cache.start_refresh(&full) {
                    observe::refresh(&spec.observed, spec.function, spec.cache);
                    let bounded = bounded(body, spec.hard_timeout());
                    tokio::spawn(async move {
                        let _claim = claim;
                        cache.refresh(&full, salt, bounded, policy).await;
                    });
                }
            }
            out
        }
        Served::HandedBack { stale, body } => {
            let soft = policy.soft_timeout.unwrap_or(Duration::ZERO);
            let bounded = bounded(body, spec.hard_timeout());
            // Spawned: a caller that gives up (or is dropped) does not cancel it.
            let mut run = tokio::spawn(async move {
                cache
                    .read_through::<Bounded<O>, _>(&full, salt, bounded, policy)
                    .await
                    .0
            });
            let stale_served = || {
                cache.note_stale_served();
                call.answered(cache_core::report::Answer::Stale);
                O::from_cached(stale)
            };
            match tokio::time::timeout(soft, &mut run).await {
                Ok(Ok(Bounded::Done(out))) => {
                    call.answered(cache_core::report::Answer::Miss);
                    out
                }
                Ok(Ok(Bounded::TimedOut)) | Err(_) => stale_served(),
                Ok(Err(join)) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                Ok(Err(_)) => stale_served(),
            }
        }
        Served::Nothing => unreachable!("only a refresh ends with nothing"),
    }
}

/// How long a body running in the background (a refresh, a soft-timed-out
/// miss) may take when `hard_timeout_ms` is not set: 60 s.
pub const DEFAULT_HARD_TIMEOUT: Duration = Duration::from_secs(60);

/// A body that can run in the background: `Send + 'static` (arguments
/// owned, not borrowed), with a message that says so.
#[diagnostic::on_unimplemented(
    message = "`refresh_after`, `early_expiry_beta` and `soft_timeout_ms` run the body in the background: it must be `Send + 'static`",
    note = "take the arguments by value (an `Arc` for shared state, not `&self`), or drop those arguments"
)]
pub trait Background<O>: Future<Output = O> + Send + 'static {}
impl<O, F: Future<Output = O> + Send + 'static> Background<O> for F {}

/// A body's outcome, or its hard timeout.
enum Bounded<O> {
    Done(O),
    TimedOut,
}

impl<O: Outcome> Outcome for Bounded<O> {
    type Value = O::Value;
    fn cacheable(&self) -> Option<&O::Value> {
        match self {
            Bounded::Done(out) => out.cacheable(),
            Bounded::TimedOut => None,
        }
    }
    fn from_cached(value: O::Value) -> Self {
        Bounded::Done(O::from_cached(value))
    }
}

/// `body`, cut at `hard` (`None`: unbounded).
async fn bounded<O, Fut: Future<Output = O>>(body: Fut, hard: Option<Duration>) -> Bounded<O> {
    match hard {
        Some(hard) => tokio::time::timeout(hard, body)
            .await
            .map_or(Bounded::TimedOut, Bounded::Done),
        None => Bounded::Done(body.await),
    }
}

/// What the type parameters of a generic annotated function instantiate to,
/// for its fingerprint salt: `type_name::<(T, U)>()` (and `Self` for a
/// method of a generic `impl`), so one instantiation never reads another's
/// entries. `None` for a function that is not generic.
///
/// `fn_path` is the function's path ([`fn_path`]); `self_type` the
/// `type_name` of `Self` when the function has a receiver.
///
/// A function of a generic `impl` without a receiver cannot name its
/// instantiation: it returns `Err` and the wrapper runs uncached (logged once).
#[allow(clippy::result_unit_err)] // a private API of the macros; the caller only branches
#[inline]
pub fn instance(
    spec: &'static CacheSpec,
    fn_path: &'static str,
    params: Option<&'static str>,
    self_type: Option<&'static str>,
) -> Result<Option<&'static str>, ()> {
    let generic_impl = *spec
        .generic_impl
        .get_or_init(|| has_inferred_parameter(fn_path));
    match (generic_impl, self_type, params) {
        (false, _, params) => Ok(params),
        (true, Some(this), None) => Ok(Some(this)),
        (true, Some(this), Some(params)) => Ok(Some(leak_join(this, params))),
        (true, None, _) => Err(()),
    }
}

/// `a|b`, made once per distinct pair and kept (a handful per program).
fn leak_join(a: &'static str, b: &'static str) -> &'static str {
    use std::collections::HashMap;
    use std::sync::{Mutex, PoisonError};
    static JOINED: std::sync::LazyLock<Mutex<HashMap<(usize, usize), &'static str>>> =
        std::sync::LazyLock::new(Default::default);
    let mut map = JOINED.lock().unwrap_or_else(PoisonError::into_inner);
    map.entry((a.as_ptr() as usize ^ a.len(), b.as_ptr() as usize ^ b.len()))
        .or_insert_with(|| Box::leak(format!("{a}|{b}").into_boxed_str()))
}

/// True when a `type_name` path holds a generic parameter that `type_name`
/// prints as `_` (`crate::Repo<_>::get`): the path of a function in a generic `impl`.
fn has_inferred_parameter(path: &str) -> bool {
    let b = path.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    b.iter().enumerate().any(|(i, &c)| {
        c == b'_' && (i == 0 || !word(b[i - 1])) && b.get(i + 1).is_none_or(|&n| !word(n))
    })
}

/// Logs, once per function, that a function of a generic `impl` runs uncached.
pub fn uncached_generic_impl(spec: &'static CacheSpec, fn_path: &'static str) {
    static WARNED: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let id = spec as *const CacheSpec as usize;
    if !warned.contains(&id) {
        warned.push(id);
        tracing::warn!(function = fn_path, "this #[cache] function belongs to a generic impl and has no `self` receiver, so its entries could not tell one instantiation from another: it runs uncached. Give it a `&self` receiver, or move it out of the generic impl");
    }
}

/// The path of the function a `#[cache]` wrapper was generated for, from the
/// `type_name` of a function item nested in it (`crate::m::Type::get::__cacheside_here`)
/// less `suffix`.
///
/// ```
/// # use cacheside::__private::fn_path;
/// struct Repo;
/// impl Repo {
///     fn get() -> &'static str { fn __cacheside_here() {} fn_path(__cacheside_here, "::__cacheside_here") }
/// }
/// assert!(Repo::get().ends_with("Repo::get"), "{}", Repo::get());
/// ```
pub fn fn_path<F>(_item: F, suffix: &'static str) -> &'static str {
    let name = std::any::type_name::<F>();
    name.strip_suffix(suffix).unwrap_or(name)
}

/// Compile-time check emitted with the span of the cached type, so a type
/// that is not `Serialize + DeserializeOwned` is reported where it is written.
#[inline(always)]
pub fn assert_cacheable<T: Serialize + DeserializeOwned>() {}

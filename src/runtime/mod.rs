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
use cache_core::{Cache, FailSafe, Outcome, Policy, TierUse, Typed};
use serde::{de::DeserializeOwned, Serialize};

use crate::registry::{is_enabled, resolve};

pub mod invalidate;
pub mod key;
pub mod kind;

/// Static description of one annotated function.
#[derive(Debug)]
pub struct CacheSpec {
    /// The function's name, for logs.
    pub function: &'static str,
    /// `cache = "name"`, or the global cache.
    pub cache: Option<&'static str>,
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
    /// The annotated function's crate version (`CARGO_PKG_VERSION`), mixed
    /// into the fingerprint of types whose shape cannot be traced whole.
    pub crate_version: &'static str,
    /// The two above as a [`Salt`], computed on first use.
    pub salt: OnceLock<Salt>,
    /// Whether the function belongs to a generic `impl` (from its path), computed on first use.
    pub generic_impl: OnceLock<bool>,
}

impl CacheSpec {
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
        let found = cache.local_hit(&full, spec.salt(instance), typed);
        let out = match found {
            Some(v) => Lookup::Hit(v),
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
/// `ttl_of` is `#[cache(expire_with = f)]`: the TTL from the value.
pub async fn cached<O, Fut>(
    spec: &'static CacheSpec,
    key: Option<String>,
    instance: Option<&'static str>,
    typed: Option<Typed<O::Value>>,
    ttl_of: Option<fn(&O::Value) -> Duration>,
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
    let ttl = match spec.expire {
        Some(secs) => Duration::from_secs(secs),
        None => cache.default_ttl(),
    };
    let tier = TierUse {
        typed: typed.filter(|_| spec.local),
        ttl: spec.local_ttl.map(Duration::from_secs),
    };
    let policy = Policy {
        ttl,
        tier,
        fail_safe: spec.fail_safe(cache),
        jitter: spec.jitter.unwrap_or_else(|| cache.jitter()),
        ttl_of,
    };
    let (out, encode_error) = cache
        .read_through(&full, spec.salt(instance), body, policy)
        .await;
    if let Some(e) = encode_error {
        cache.note_failure("encode", &full, &e);
    }
    out
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

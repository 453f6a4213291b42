//! What the `#[cache]` and `#[invalidate]` macros call. Not a public API: reached
//! through `cacheside::__private` and free to change between minor versions.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use crate::cache::{NoneCached, Outcome, Plain};
use crate::codec::Salt;
use crate::registry::{invalidation_enabled, is_enabled, resolve, AutoInit};
use crate::Error;

/// Static description of one annotated function.
#[derive(Debug)]
pub struct Spec {
    /// The function's name, for logs.
    pub function: &'static str,
    /// `cache = "name"`, or the global cache.
    pub cache: Option<&'static str>,
    /// `expire` in seconds; `None` = the cache's default; `Some(0)` = not cached.
    pub expire: Option<u64>,
    /// Builds the global cache when none was initialised.
    pub auto_init: AutoInit,
    /// `#[cache(version = N)]` (0: none), mixed into every entry's fingerprint.
    pub version: u32,
    /// The annotated function's crate version (`CARGO_PKG_VERSION`), mixed
    /// into the fingerprint of types whose shape cannot be traced whole.
    pub crate_version: &'static str,
    /// The two above as a [`Salt`], computed on first use.
    pub salt: OnceLock<Salt>,
    /// Whether the function belongs to a generic `impl` (from its path), computed on first use.
    pub generic_impl: OnceLock<bool>,
}

impl Spec {
    /// Whether the wrapper should compute a key at all (enabled and not `expire = 0`).
    #[inline]
    pub fn active(&self) -> bool {
        self.expire != Some(0) && is_enabled()
    }

    /// The fingerprint salt of this function's entries; `instance` names the
    /// type parameters of a generic function's instantiation.
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

/// The `#[cache]` wrapper: cache-aside around `body`, fail-open.
///
/// `key` is `None` when [`Spec::active`] was false; then `body` just runs.
/// `instance` is the type parameters of a generic function (see [`instance`]).
pub async fn cached<O, Fut>(
    spec: &'static Spec,
    key: Option<String>,
    instance: Option<&'static str>,
    body: Fut,
) -> O
where
    O: Outcome,
    Fut: Future<Output = O>,
{
    let Some(key) = key else {
        return body.await;
    };
    let Some(cache) = resolve(spec.cache, spec.auto_init).await else {
        return body.await;
    };
    let full = cache.full_key(&key);
    let ttl = match spec.expire {
        Some(secs) => Duration::from_secs(secs),
        None => cache.default_ttl(),
    };
    let (out, encode_error) = cache
        .read_through(&full, ttl, spec.salt(instance), body)
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
pub fn instance(
    spec: &'static Spec,
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
pub fn uncached_generic_impl(spec: &'static Spec, fn_path: &'static str) {
    static WARNED: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let id = spec as *const Spec as usize;
    if !warned.contains(&id) {
        warned.push(id);
        tracing::warn!(function = fn_path, "this #[cache] function belongs to a generic impl and has no `self` receiver, so its entries could not tell one instantiation from another: it runs uncached. Give it a `&self` receiver, or move it out of the generic impl");
    }
}

/// Picks, through the type system, how a return type maps to what is cached
/// (autoref specialisation): a type that implements [`Outcome`] (`Result`,
/// `Option`, also behind a type alias) is used as is, any other
/// `Serialize + DeserializeOwned` type is cached whole ([`Plain`]).
///
/// The macro calls `(&Probe::<R>::new()).__cacheside_kind()`.
pub struct Probe<R>(PhantomData<fn() -> R>);

impl<R> Probe<R> {
    /// A probe for the return type `R`.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Probe(PhantomData)
    }
}

/// `R` is an [`Outcome`] itself (first choice of the probe).
pub trait ViaOutcome<R> {
    /// The kind that maps `R` to itself.
    fn __cacheside_kind(&self) -> OutcomeKind<R>;
}

impl<R: Outcome> ViaOutcome<R> for Probe<R> {
    fn __cacheside_kind(&self) -> OutcomeKind<R> {
        OutcomeKind(PhantomData)
    }
}

/// `R` is cached whole (second choice of the probe).
pub trait ViaPlain<R> {
    /// The kind that wraps `R` in [`Plain`].
    fn __cacheside_kind(&self) -> PlainKind<R>;
}

impl<R: Serialize + DeserializeOwned> ViaPlain<R> for &Probe<R> {
    fn __cacheside_kind(&self) -> PlainKind<R> {
        PlainKind(PhantomData)
    }
}

/// How a return type `R` travels through the cache: as an [`Outcome`] `O`.
pub trait Kind<R>: Copy {
    /// The outcome the cache handles.
    type O: Outcome;
    /// `R` into the outcome.
    fn wrap(self, r: R) -> Self::O;
    /// The outcome back into `R`.
    fn unwrap(self, o: Self::O) -> R;
}

/// [`Kind`] of a return type that is an [`Outcome`].
pub struct OutcomeKind<R>(PhantomData<fn() -> R>);
/// [`Kind`] of a return type cached whole.
pub struct PlainKind<R>(PhantomData<fn() -> R>);
/// [`Kind`] of an `Option` (or an alias of one) whose `None` is cached too.
pub struct NoneCachedKind<R>(PhantomData<fn() -> R>);

macro_rules! copy_kind {
    ($($k:ident),*) => {$(
        impl<R> Clone for $k<R> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<R> Copy for $k<R> {}
    )*};
}
copy_kind!(OutcomeKind, PlainKind, NoneCachedKind);

impl<R: Outcome> Kind<R> for OutcomeKind<R> {
    type O = R;
    fn wrap(self, r: R) -> R {
        r
    }
    fn unwrap(self, o: R) -> R {
        o
    }
}

impl<R: Serialize + DeserializeOwned> Kind<R> for PlainKind<R> {
    type O = Plain<R>;
    fn wrap(self, r: R) -> Plain<R> {
        Plain(r)
    }
    fn unwrap(self, o: Plain<R>) -> R {
        o.0
    }
}

/// An `Option`, also behind a type alias (for `cache_none = true`).
#[diagnostic::on_unimplemented(
    message = "`cache_none` applies to functions returning Option<T>; `{Self}` is not an Option",
    label = "not an Option"
)]
pub trait OptionLike {
    /// The `T` of `Option<T>`.
    type Inner: Serialize + DeserializeOwned;
    /// Into a plain `Option`.
    fn into_option(self) -> Option<Self::Inner>;
    /// From a plain `Option`.
    fn from_option(o: Option<Self::Inner>) -> Self;
}

impl<T: Serialize + DeserializeOwned> OptionLike for Option<T> {
    type Inner = T;
    fn into_option(self) -> Option<T> {
        self
    }
    fn from_option(o: Option<T>) -> Self {
        o
    }
}

/// The kind for `cache_none = true` (a function, so that a return type that
/// is no `Option` gets `OptionLike`'s message, on the return type).
pub fn none_cached_kind<R: OptionLike>() -> NoneCachedKind<R> {
    NoneCachedKind(PhantomData)
}

impl<R: OptionLike> Kind<R> for NoneCachedKind<R> {
    type O = NoneCached<R::Inner>;
    fn wrap(self, r: R) -> NoneCached<R::Inner> {
        NoneCached(r.into_option())
    }
    fn unwrap(self, o: NoneCached<R::Inner>) -> R {
        R::from_option(o.0)
    }
}

/// The stored type of a [`Kind`]: what the companion's [`Entry`] reads and writes.
pub type StoredBy<K, R> = <<K as Kind<R>>::O as Outcome>::Value;

/// Pins at compile time that the companion's written stored type `S` is
/// the one the type system picked for the wrapper (they differ when the
/// return type is an alias of `Result`/`Option`, which the macro cannot see through).
pub fn same_stored<S, K: Kind<R>, R>(_kind: K)
where
    StoredBy<K, R>: SameAs<S>,
{
}

/// `Self` is `T`.
#[diagnostic::on_unimplemented(
    message = "#[cache] cannot name this function's cached type for its `…_cache_entry` companion: the return type is an alias (of Result or Option?)",
    note = "write the return type out (e.g. `Result<Widget, AppError>` instead of `ApiResult<Widget>`), or add `companion = false`"
)]
pub trait SameAs<T> {}
impl<T> SameAs<T> for T {}

/// Did a call succeed (for invalidation on mutations)? Through the type
/// system, so an alias of `Result` counts its `Err` as a failure.
pub trait ViaResult<R> {
    /// `Result::is_ok`.
    fn __cacheside_succeeded(&self) -> fn(&R) -> bool;
}

impl<T, E> ViaResult<Result<T, E>> for Probe<Result<T, E>> {
    fn __cacheside_succeeded(&self) -> fn(&Result<T, E>) -> bool {
        Result::is_ok
    }
}

/// Any return type that is not a `Result` counts as success.
pub trait ViaAnything<R> {
    /// Always true.
    fn __cacheside_succeeded(&self) -> fn(&R) -> bool;
}

impl<R> ViaAnything<R> for &Probe<R> {
    fn __cacheside_succeeded(&self) -> fn(&R) -> bool {
        |_| true
    }
}

/// Static description of one `#[invalidate]` function.
#[derive(Debug)]
pub struct InvalidateSpec {
    /// The function's name, for logs.
    pub function: &'static str,
    /// `cache = "name"`, or the global cache.
    pub cache: Option<&'static str>,
    /// Delete before the body runs instead of after it succeeds.
    pub before: bool,
    /// Builds the global cache when none was initialised.
    pub auto_init: AutoInit,
}

/// Keys and patterns one `#[invalidate]` call removes.
#[derive(Debug, Default)]
pub struct Targets {
    /// Exact keys (the main key, then `extra`).
    pub keys: Vec<String>,
    /// Glob patterns.
    pub patterns: Vec<String>,
}

/// The `#[invalidate]` wrapper. `targets` is `None` when caching is disabled.
pub async fn invalidating<R, Fut>(
    spec: &'static InvalidateSpec,
    targets: Option<Targets>,
    succeeded: fn(&R) -> bool,
    body: Fut,
) -> R
where
    Fut: Future<Output = R>,
{
    let Some(targets) = targets else {
        return body.await;
    };
    if spec.before {
        invalidate_now(spec, &targets).await;
        return body.await;
    }
    let out = body.await;
    if succeeded(&out) {
        // The mutation is done: if this caller is dropped before the deletes
        // finish (a client disconnecting from a PUT), they finish in a task.
        let mut pending = PendingInvalidation {
            spec,
            targets: Some(targets),
        };
        if let Some(targets) = pending.targets.as_ref() {
            invalidate_now(spec, targets).await;
        }
        pending.targets = None;
    }
    out
}

/// Deletes that must happen even if the caller goes away mid-way.
struct PendingInvalidation {
    spec: &'static InvalidateSpec,
    targets: Option<Targets>,
}

impl Drop for PendingInvalidation {
    fn drop(&mut self) {
        let Some(targets) = self.targets.take() else {
            return;
        };
        let spec = self.spec;
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move { invalidate_now(spec, &targets).await });
            }
            Err(_) => tracing::warn!(
                function = spec.function,
                "invalidation interrupted outside a tokio runtime; entries expire by TTL"
            ),
        }
    }
}

/// Deletes every target, fail-open: one failure does not stop the others.
pub async fn invalidate_now(spec: &'static InvalidateSpec, targets: &Targets) {
    let Some(cache) = resolve(spec.cache, spec.auto_init).await else {
        return;
    };
    for key in &targets.keys {
        if let Err(e) = cache.delete(key).await {
            cache.note_failure("invalidation", key, &e);
        }
    }
    for pattern in &targets.patterns {
        match cache.delete_pattern(pattern).await {
            Ok(_) => {}
            Err(Error::PatternNotSupported { backend }) => {
                tracing::warn!(function = spec.function, backend, pattern, "this backend cannot delete by pattern; the exact keys were deleted, entries matching the pattern expire by TTL");
            }
            Err(e) => cache.note_failure("pattern invalidation", pattern, &e),
        }
    }
}

/// Whether `#[invalidate]` should compute its targets (every
/// [`CacheMode`](crate::CacheMode) but `Off`).
#[inline]
pub fn invalidation_active() -> bool {
    invalidation_enabled()
}

/// Typed handle on one entry of a `#[cache]` function, returned by its
/// generated `…_cache_entry` companion.
///
/// It computes the key exactly like the wrapper does, so it always reaches
/// the entry the function wrote, in whichever cache the function uses.
#[derive(Debug)]
pub struct Entry<T> {
    key: String,
    spec: &'static Spec,
    instance: Option<&'static str>,
    _value: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Entry<T> {
    #[doc(hidden)]
    pub fn new(spec: &'static Spec, key: String, instance: Option<&'static str>) -> Self {
        Entry {
            key,
            spec,
            instance,
            _value: PhantomData,
        }
    }

    /// The key (without the cache's namespace).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Removes the entry; true when it was there. `Ok(false)` when no cache is available.
    pub async fn invalidate(&self) -> Result<bool, Error> {
        match resolve(self.spec.cache, self.spec.auto_init).await {
            Some(cache) => cache.delete(&self.key).await,
            None => Ok(false),
        }
    }

    /// Reads the cached value, if any.
    pub async fn get(&self) -> Result<Option<T>, Error> {
        match resolve(self.spec.cache, self.spec.auto_init).await {
            Some(cache) => {
                cache
                    .get_salted(&self.key, self.spec.salt(self.instance))
                    .await
            }
            None => Ok(None),
        }
    }

    /// Writes a value (for warming), with the function's own TTL.
    pub async fn set(&self, value: &T) -> Result<(), Error> {
        let Some(cache) = resolve(self.spec.cache, self.spec.auto_init).await else {
            return Ok(());
        };
        let ttl = self.spec.expire.map(Duration::from_secs);
        if ttl == Some(Duration::ZERO) {
            return Ok(());
        }
        cache
            .set_salted(&self.key, value, ttl, self.spec.salt(self.instance))
            .await
    }
}

/// The path of the function a `#[cache]` wrapper was generated for, from the
/// `type_name` of a function item nested in it (`crate::m::Type::get::__cacheside_here`)
/// less `suffix`.
///
/// ```
/// # use cache_core::runtime::fn_path;
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

/// Builds the argument-hash part of a key: `{prefix}:{hash}`.
pub fn hashed_key<H: std::hash::Hash + ?Sized>(prefix: &str, args: &H) -> String {
    let mut s = String::with_capacity(prefix.len() + 33);
    s.push_str(prefix);
    s.push(':');
    s.push_str(&crate::hash::stable_hex(args));
    s
}

/// Compile-time check emitted with the span of the cached type, so a type
/// that is not `Serialize + DeserializeOwned` is reported where it is written.
#[inline(always)]
pub fn assert_cacheable<T: Serialize + DeserializeOwned>() {}

/// Logs that the default in-memory store was chosen implicitly.
pub fn log_default_memory() {
    tracing::info!("cacheside uses the in-memory store (CACHE_BACKEND unset or memory); entries are per process");
}

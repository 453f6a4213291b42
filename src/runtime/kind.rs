//! How a return type travels through the cache, decided by the type system
//! (autoref specialisation): the macro cannot see through type aliases, the
//! compiler can.

use std::marker::PhantomData;

use cache_core::{NoneCached, Outcome, Plain, Typed};
use serde::{de::DeserializeOwned, Serialize};

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

/// The stored type of a [`Kind`]: what the companion's [`Entry`](crate::Entry) reads and writes.
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

/// Whether a stored type `V` can live decoded in the local tier, by autoref:
/// `Clone + Send + Sync + 'static` gives `Some(Typed)`, anything else `None`
/// (its values are then read from the store and decoded each hit).
pub struct TypedProbe<V>(PhantomData<fn() -> V>);

impl<V> TypedProbe<V> {
    /// A probe for the stored type `V`.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        TypedProbe(PhantomData)
    }
}

/// The probe of the stored type of the call's [`Kind`].
pub fn typed_probe<R, K: Kind<R>>(_kind: &K) -> TypedProbe<StoredBy<K, R>> {
    TypedProbe(PhantomData)
}

/// `V` can be cloned out of the local tier (first choice of the probe).
pub trait ViaClone<V> {
    /// `Some`: values of `V` are kept decoded.
    fn __cacheside_typed(&self) -> Option<Typed<V>>;
}

impl<V: Clone + Send + Sync + 'static> ViaClone<V> for TypedProbe<V> {
    fn __cacheside_typed(&self) -> Option<Typed<V>> {
        Some(Typed::new())
    }
}

/// `V` cannot be handed out of the local tier (second choice of the probe).
pub trait ViaBytes<V> {
    /// `None`: values of `V` are not kept decoded.
    fn __cacheside_typed(&self) -> Option<Typed<V>>;
}

impl<V> ViaBytes<V> for &TypedProbe<V> {
    fn __cacheside_typed(&self) -> Option<Typed<V>> {
        None
    }
}

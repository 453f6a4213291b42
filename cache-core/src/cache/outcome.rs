//! [`Outcome`]: which part of a function's return value is cached.

use serde::{de::DeserializeOwned, Serialize};

/// How a function's return value maps to what is cached.
///
/// Implemented for [`Plain`] (cache every value), `Result<T, E>` (cache `Ok`),
/// `Option<T>` (cache `Some`) and [`NoneCached`] (cache `Some` and `None`). The
/// `#[cache]` macro picks the impl from the written return type.
///
/// ```
/// use cache_core::Outcome;
/// let ok: Result<u8, String> = Ok(1);
/// assert_eq!(ok.cacheable(), Some(&1));
/// let err: Result<u8, String> = Err("no".into());
/// assert_eq!(err.cacheable(), None);
/// assert_eq!(<Option<u8> as Outcome>::from_cached(3), Some(3));
/// ```
pub trait Outcome: Sized {
    /// The stored type.
    type Value: Serialize + DeserializeOwned;
    /// The part worth caching, if any.
    fn cacheable(&self) -> Option<&Self::Value>;
    /// Rebuilds the return value from a cached one.
    fn from_cached(value: Self::Value) -> Self;
}

/// A return value cached as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plain<T>(pub T);

impl<T> From<T> for Plain<T> {
    fn from(value: T) -> Self {
        Plain(value)
    }
}

impl<T> From<Option<T>> for NoneCached<T> {
    fn from(value: Option<T>) -> Self {
        NoneCached(value)
    }
}

impl<T: Serialize + DeserializeOwned> Outcome for Plain<T> {
    type Value = T;
    fn cacheable(&self) -> Option<&T> {
        Some(&self.0)
    }
    fn from_cached(value: T) -> Self {
        Plain(value)
    }
}

impl<T: Serialize + DeserializeOwned, E> Outcome for Result<T, E> {
    type Value = T;
    fn cacheable(&self) -> Option<&T> {
        self.as_ref().ok()
    }
    fn from_cached(value: T) -> Self {
        Ok(value)
    }
}

impl<T: Serialize + DeserializeOwned> Outcome for Option<T> {
    type Value = T;
    fn cacheable(&self) -> Option<&T> {
        self.as_ref()
    }
    fn from_cached(value: T) -> Self {
        Some(value)
    }
}

/// An `Option` whose `None` is cached too (`#[cache(cache_none = true)]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoneCached<T>(pub Option<T>);

impl<T: Serialize + DeserializeOwned> Outcome for NoneCached<T> {
    type Value = Option<T>;
    fn cacheable(&self) -> Option<&Option<T>> {
        Some(&self.0)
    }
    fn from_cached(value: Option<T>) -> Self {
        NoneCached(value)
    }
}

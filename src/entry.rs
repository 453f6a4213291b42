//! [`Entry`]: the typed handle the `…_cache_entry` companions return.

use std::marker::PhantomData;
use std::time::Duration;

use cache_core::Error;
use serde::{de::DeserializeOwned, Serialize};

use crate::registry::resolve;
use crate::runtime::CacheSpec;

/// Typed handle on one entry of a `#[cache]` function, returned by its
/// generated `…_cache_entry` companion.
///
/// It computes the key exactly like the wrapper does, so it always reaches
/// the entry the function wrote, in whichever cache the function uses.
#[derive(Debug)]
pub struct Entry<T> {
    key: String,
    spec: &'static CacheSpec,
    instance: Option<&'static str>,
    _value: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Entry<T> {
    #[doc(hidden)]
    pub fn new(spec: &'static CacheSpec, key: String, instance: Option<&'static str>) -> Self {
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
        match resolve(self.spec.cache).await {
            Some(cache) => cache.delete(&self.key).await,
            None => Ok(false),
        }
    }

    /// Reads the cached value, if any.
    pub async fn get(&self) -> Result<Option<T>, Error> {
        match resolve(self.spec.cache).await {
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
        let Some(cache) = resolve(self.spec.cache).await else {
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

//! [`NullBackend`]: a store that keeps nothing (`CACHE_BACKEND=none`).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Backend, Error, Key};

/// Stores nothing; every read misses. Useful to measure a service without
/// caching while keeping the code paths (keys, single-flight) in place.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = cache_core::Cache::builder(cache_core::NullBackend).build();
/// cache.set("k", &1u8, None).await.unwrap();
/// assert_eq!(cache.get::<u8>("k").await.unwrap(), None);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NullBackend;

#[async_trait]
impl Backend for NullBackend {
    fn name(&self) -> &'static str {
        "none"
    }
    fn is_in_process(&self) -> bool {
        true
    }
    async fn get(&self, _key: Key<'_>) -> Result<Option<Bytes>, Error> {
        Ok(None)
    }
    async fn set(&self, _key: Key<'_>, _value: Bytes, _ttl: Option<Duration>) -> Result<(), Error> {
        Ok(())
    }
    async fn delete(&self, _key: Key<'_>) -> Result<bool, Error> {
        Ok(false)
    }
    async fn delete_pattern(&self, _namespace: &str, _pattern: &str) -> Result<u64, Error> {
        Ok(0)
    }
    async fn exists(&self, _key: Key<'_>) -> Result<bool, Error> {
        Ok(false)
    }
    async fn ttl(&self, _key: Key<'_>) -> Result<Option<Duration>, Error> {
        Ok(None)
    }
    async fn clear(&self, _namespace: &str) -> Result<u64, Error> {
        Ok(0)
    }
    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }
    /// Keeps no counter: every increment sees a fresh key (`delta`, 0 for a refund) and every
    /// peek an absent one (`0`), just as every read misses. A rate limiter on
    /// this store therefore only stops requests heavier than the whole limit.
    async fn increment(
        &self,
        _key: Key<'_>,
        delta: i64,
        _ttl: Duration,
        _peek: Option<Key<'_>>,
    ) -> Result<(u64, u64), Error> {
        Ok((delta.max(0) as u64, 0))
    }
}

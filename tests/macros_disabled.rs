//! `set_enabled(false)` (what `CACHE_ENABLED=false` sets at startup) turns every
//! annotated function into a plain call that touches no store;
//! `CacheMode::InvalidateOnly` (`CACHE_ENABLED=invalidate-only`) keeps invalidation.

mod common;

use cache_core::testing::{Fault, Op};
use cacheside::Cache;
use common::{broken, Calls};
use std::sync::OnceLock;

static CALLS: OnceLock<Calls> = OnceLock::new();

#[cacheside::cache(key = "off:{id}")]
async fn cached(id: u32) -> u32 {
    CALLS.get_or_init(Calls::default).hit();
    id
}

#[cacheside::invalidate(key = "off:{id}")]
async fn mutate(id: u32) -> Result<(), String> {
    let _ = id;
    Ok(())
}

#[tokio::test]
async fn disabled_calls_never_touch_the_store() {
    // A store that counts every call: it must see none.
    let backend = broken(Fault::Error);
    cacheside::init(Cache::builder(backend.clone()).build()).unwrap();
    cacheside::set_enabled(false);
    assert!(!cacheside::is_enabled());
    for _ in 0..3 {
        assert_eq!(cached(1).await, 1);
        mutate(1).await.unwrap();
    }
    assert_eq!(CALLS.get().unwrap().get(), 3, "body ran every time");
    assert_eq!(
        backend.total_calls(),
        0,
        "no store operation while disabled"
    );

    // invalidate-only: a worker that shares the store reads nothing from it,
    // writes nothing to it, and still deletes what its mutations invalidate.
    cacheside::set_mode(cacheside::CacheMode::InvalidateOnly);
    assert!(!cacheside::is_enabled() && cacheside::invalidation_enabled());
    for _ in 0..3 {
        assert_eq!(cached(2).await, 2);
    }
    assert_eq!(CALLS.get().unwrap().get(), 6, "body ran every time");
    assert_eq!(
        backend.total_calls(),
        0,
        "no cached read or write in invalidate-only mode"
    );
    mutate(2).await.unwrap();
    assert_eq!(
        backend.total_calls(),
        1,
        "the mutation's delete reached the store"
    );
    assert_eq!(backend.calls(Op::Delete), 1, "and it was a delete");

    cacheside::set_enabled(true);
    cached(1).await;
    assert!(
        backend.total_calls() > 1,
        "enabled again: the store is used"
    );
}

//! Fenced fills on Memcached against a real `memcached`: `invalidate`
//! leaves a tombstone, `get_fenced` hands out what a fill must still find,
//! `set_fenced` lands only if it does.

mod common;
use common::eventually;

use std::time::Duration;

use cache_backends::MemcachedBackend;
use cache_core::{Backend, Bytes, Fence, Key};
use cacheside::testing::MemcachedServer;

/// A namespaced key, so every test runs under a namespace generation too.
fn key(full: &str) -> Key<'_> {
    Key::new(full, "fence:".len())
}

const MINUTE: Option<Duration> = Some(Duration::from_secs(60));

/// The invalidation window of tests that do not wait for it to end.
const LONG: Duration = Duration::from_secs(60);

async fn backend(server: &MemcachedServer) -> MemcachedBackend {
    MemcachedBackend::connect(&[server.addr()])
        .await
        .expect("connect to the test memcached")
}

fn bytes(v: &'static str) -> Bytes {
    Bytes::from_static(v.as_bytes())
}

#[tokio::test]
async fn an_absent_fenced_fill_lands_when_nothing_changed() {
    let server = MemcachedServer::start();
    let b = backend(&server).await;
    let k = key("fence:a");
    assert_eq!(b.get_fenced(k).await.unwrap(), (None, Fence::Absent));
    assert!(b
        .set_fenced(k, bytes("v"), MINUTE, &Fence::Absent)
        .await
        .unwrap());
    assert_eq!(b.get(k).await.unwrap(), Some(bytes("v")));
    // A live value reads with its CAS as the fence (for a fail-safe refresh).
    let (value, fence) = b.get_fenced(k).await.unwrap();
    assert_eq!(value, Some(bytes("v")));
    assert!(
        matches!(&fence, Fence::Token(t) if t.len() == 8),
        "{fence:?}"
    );
    // A second fill read as absent before the first landed does not land.
    assert!(!b
        .set_fenced(k, bytes("w"), MINUTE, &Fence::Absent)
        .await
        .unwrap());
    assert_eq!(b.get(k).await.unwrap(), Some(bytes("v")));
}

#[tokio::test]
async fn a_fill_read_before_an_invalidation_does_not_land() {
    let server = MemcachedServer::start();
    let b = backend(&server).await;

    // Read absent, then invalidated.
    let k = key("fence:absent");
    let (_, fence) = b.get_fenced(k).await.unwrap();
    assert_eq!(fence, Fence::Absent);
    b.invalidate(k, LONG).await.unwrap();
    assert!(!b
        .set_fenced(k, bytes("stale"), MINUTE, &fence)
        .await
        .unwrap());
    assert_eq!(b.get(k).await.unwrap(), None);

    // Read a tombstone, then invalidated again: the new tombstone's CAS differs.
    let k = key("fence:token");
    b.set(k, bytes("v1"), MINUTE).await.unwrap();
    assert!(b.invalidate(k, LONG).await.unwrap());
    let (value, fence) = b.get_fenced(k).await.unwrap();
    assert_eq!(value, None);
    assert!(
        matches!(&fence, Fence::Token(t) if t.len() == 8),
        "{fence:?}"
    );
    assert!(
        !b.invalidate(k, LONG).await.unwrap(),
        "only a tombstone was there"
    );
    assert!(!b
        .set_fenced(k, bytes("stale"), MINUTE, &fence)
        .await
        .unwrap());
    assert_eq!(b.get(k).await.unwrap(), None);
}

#[tokio::test]
async fn a_fill_read_after_the_invalidation_lands_with_its_token() {
    let server = MemcachedServer::start();
    let b = backend(&server).await;
    let k = key("fence:after");
    b.set(k, bytes("v1"), MINUTE).await.unwrap();
    assert!(b.invalidate(k, LONG).await.unwrap());
    let (value, fence) = b.get_fenced(k).await.unwrap();
    assert_eq!(value, None);
    assert!(matches!(fence, Fence::Token(_)), "{fence:?}");
    assert!(b.set_fenced(k, bytes("v2"), MINUTE, &fence).await.unwrap());
    assert_eq!(b.get(k).await.unwrap(), Some(bytes("v2")));
    assert!(b.exists(k).await.unwrap());
    // The token was used up: the item changed with the first fill.
    assert!(!b.set_fenced(k, bytes("v3"), MINUTE, &fence).await.unwrap());
    assert_eq!(b.get(k).await.unwrap(), Some(bytes("v2")));
}

#[tokio::test]
async fn a_newer_plain_set_defeats_an_absent_fenced_fill() {
    let server = MemcachedServer::start();
    let b = backend(&server).await;
    let k = key("fence:newer");
    let (_, fence) = b.get_fenced(k).await.unwrap();
    assert_eq!(fence, Fence::Absent);
    b.set(k, bytes("newer"), MINUTE).await.unwrap();
    assert!(!b
        .set_fenced(k, bytes("older"), MINUTE, &fence)
        .await
        .unwrap());
    assert_eq!(b.get(k).await.unwrap(), Some(bytes("newer")));
}

#[tokio::test]
async fn tombstones_are_invisible_to_get_exists_and_ttl() {
    let server = MemcachedServer::start();
    let b = backend(&server).await;
    let k = key("fence:hidden");
    b.set(k, bytes("v"), MINUTE).await.unwrap();
    assert!(b.ttl(k).await.unwrap().is_some());
    assert!(b.invalidate(k, LONG).await.unwrap());
    assert_eq!(b.get(k).await.unwrap(), None);
    assert!(!b.exists(k).await.unwrap());
    assert_eq!(b.ttl(k).await.unwrap(), None);
    assert!(matches!(
        b.get_fenced(k).await.unwrap(),
        (None, Fence::Token(_))
    ));
    // Nor is it a live entry to delete.
    assert!(!b.delete(k).await.unwrap());
}

#[tokio::test]
async fn the_tombstone_expires_after_its_window() {
    let server = MemcachedServer::start();
    let b = backend(&server).await;
    let k = key("fence:window");
    b.set(k, bytes("v"), MINUTE).await.unwrap();
    assert!(b.invalidate(k, Duration::from_secs(1)).await.unwrap());
    eventually("the tombstone expired", Duration::from_secs(10), || {
        let b = b.clone();
        async move { b.get_fenced(k).await.unwrap() == (None, Fence::Absent) }
    })
    .await;
    assert!(b
        .set_fenced(k, bytes("w"), MINUTE, &Fence::Absent)
        .await
        .unwrap());
    assert_eq!(b.get(k).await.unwrap(), Some(bytes("w")));
}

/// A fill fenced by a value's CAS whose item then expired (not
/// invalidated: that leaves a tombstone) lands as a fill that found the key
/// empty, and only while it is: it is not refused and counted as fenced.
#[tokio::test]
async fn a_fill_whose_fenced_item_expired_lands_while_the_key_is_empty() {
    let server = MemcachedServer::start();
    let b = backend(&server).await;
    let k = key("fence:expired");
    b.set(k, bytes("old"), Some(Duration::from_secs(1)))
        .await
        .unwrap();
    let (value, fence) = b.get_fenced(k).await.unwrap();
    assert_eq!(value, Some(bytes("old")));
    assert!(matches!(fence, Fence::Token(_)), "{fence:?}");
    eventually("the item expired", Duration::from_secs(10), || {
        let b = b.clone();
        async move { b.get(k).await.unwrap().is_none() }
    })
    .await;
    assert!(b.set_fenced(k, bytes("new"), MINUTE, &fence).await.unwrap());
    assert_eq!(b.get(k).await.unwrap(), Some(bytes("new")));
    // Landed as an add: with the key filled meanwhile, the same fence loses.
    let k2 = key("fence:expired-then-filled");
    b.set(k2, bytes("old"), Some(Duration::from_secs(1)))
        .await
        .unwrap();
    let (_, fence) = b.get_fenced(k2).await.unwrap();
    eventually("the second item expired", Duration::from_secs(10), || {
        let b = b.clone();
        async move { b.get(k2).await.unwrap().is_none() }
    })
    .await;
    b.set(k2, bytes("other"), MINUTE).await.unwrap();
    assert!(!b
        .set_fenced(k2, bytes("new"), MINUTE, &fence)
        .await
        .unwrap());
    assert_eq!(b.get(k2).await.unwrap(), Some(bytes("other")));
}

#[tokio::test]
async fn invalidating_an_absent_key_returns_false_and_still_fences() {
    let server = MemcachedServer::start();
    let b = backend(&server).await;
    let k = key("fence:never");
    let (_, fence) = b.get_fenced(k).await.unwrap();
    assert_eq!(fence, Fence::Absent);
    assert!(!b.invalidate(k, LONG).await.unwrap());
    assert!(!b
        .set_fenced(k, bytes("stale"), MINUTE, &fence)
        .await
        .unwrap());
    assert_eq!(b.get(k).await.unwrap(), None);
    assert!(matches!(
        b.get_fenced(k).await.unwrap(),
        (None, Fence::Token(_))
    ));
}

#[tokio::test]
async fn fences_hold_across_backends_and_for_hashed_keys() {
    // Two backends are two processes: one's invalidation stops the other's fill.
    let server = MemcachedServer::start();
    let (reader, writer) = (backend(&server).await, backend(&server).await);
    let long = format!("fence:{}", "x".repeat(300));
    for k in [key("fence:shared"), key("fence:with space"), key(&long)] {
        let (_, fence) = reader.get_fenced(k).await.unwrap();
        assert_eq!(fence, Fence::Absent);
        writer.invalidate(k, LONG).await.unwrap();
        assert!(!reader
            .set_fenced(k, bytes("stale"), MINUTE, &fence)
            .await
            .unwrap());
        let (_, fence) = reader.get_fenced(k).await.unwrap();
        assert!(reader
            .set_fenced(k, bytes("fresh"), MINUTE, &fence)
            .await
            .unwrap());
        assert_eq!(writer.get(k).await.unwrap(), Some(bytes("fresh")), "{k:?}");
    }
}

#[tokio::test]
async fn a_fence_from_another_store_never_lands_and_none_is_a_plain_write() {
    let server = MemcachedServer::start();
    let b = backend(&server).await;
    let k = key("fence:foreign");
    let foreign = Fence::Token(cache_core::backend::tombstone());
    assert!(!b.set_fenced(k, bytes("v"), MINUTE, &foreign).await.unwrap());
    assert_eq!(b.get(k).await.unwrap(), None);
    b.invalidate(k, LONG).await.unwrap();
    assert!(b
        .set_fenced(k, bytes("v"), MINUTE, &Fence::None)
        .await
        .unwrap());
    assert_eq!(b.get(k).await.unwrap(), Some(bytes("v")));
}

#[tokio::test]
async fn a_clear_retires_tombstones_and_the_entries_fence_by_their_cas() {
    // After a clear, the old entry still occupies the key: a fenced read
    // fences by its CAS, since an add would never land on it.
    let server = MemcachedServer::start();
    let b = backend(&server).await;
    let k = key("fence:cleared");
    b.set(k, bytes("old"), MINUTE).await.unwrap();
    b.clear("fence:").await.unwrap();
    let (value, fence) = b.get_fenced(k).await.unwrap();
    assert_eq!(value, None);
    assert!(matches!(fence, Fence::Token(_)), "{fence:?}");
    assert!(b.set_fenced(k, bytes("new"), MINUTE, &fence).await.unwrap());
    assert_eq!(b.get(k).await.unwrap(), Some(bytes("new")));
}

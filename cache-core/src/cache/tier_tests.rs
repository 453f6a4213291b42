//! Unit tests of the local tier inside the cache: in front of a store, as
//! the in-process store, coherence over a backplane, fenced fills.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use super::*;
use crate::backplane::BackplaneEvents;
use crate::testing::MapStore;
use crate::{LocalSettings, TierUse, Typed};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Widget {
    id: u64,
    name: String,
}

fn widget(id: u64) -> Widget {
    Widget {
        id,
        name: format!("w{id}"),
    }
}

const TYPED: TierUse<Widget> = TierUse {
    typed: Some(Typed::new()),
    ttl: None,
};

/// Reads `key` through the macros' path, counting body runs.
async fn read(cache: &Cache, key: &str, runs: &AtomicUsize, value: Widget) -> Widget {
    let full = cache.full_key(key).into_owned();
    let (out, err): (Plain<Widget>, _) = cache
        .read_through(
            &full,
            Salt::NONE,
            async {
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Plain(value)
            },
            Policy::new(Duration::from_secs(600), TYPED),
        )
        .await;
    assert!(err.is_none());
    out.0
}

/// A store that hands its entries to the cache's tier, like MemoryBackend.
#[derive(Clone)]
pub(super) struct TierStore(MapStore, crate::SharedTier);

impl Default for TierStore {
    fn default() -> Self {
        TierStore(
            MapStore::default(),
            crate::SharedTier::new(LocalSettings {
                max_entries: 100,
                max_bytes: 1 << 20,
                ttl: Duration::MAX,
            }),
        )
    }
}

#[async_trait::async_trait]
impl Backend for TierStore {
    fn name(&self) -> &'static str {
        "tier"
    }
    fn is_in_process(&self) -> bool {
        true
    }
    fn local_tier(&self) -> Option<crate::SharedTier> {
        Some(self.1.clone())
    }
    async fn get(&self, key: Key<'_>) -> Result<Option<bytes::Bytes>, Error> {
        self.0.get(key).await
    }
    async fn set(
        &self,
        key: Key<'_>,
        value: bytes::Bytes,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        self.0.set(key, value, ttl).await
    }
    async fn delete(&self, key: Key<'_>) -> Result<bool, Error> {
        self.0.delete(key).await
    }
    async fn delete_pattern(&self, ns: &str, glob: &str) -> Result<u64, Error> {
        self.0.delete_pattern(ns, glob).await
    }
    async fn exists(&self, key: Key<'_>) -> Result<bool, Error> {
        self.0.exists(key).await
    }
    async fn ttl(&self, key: Key<'_>) -> Result<Option<Duration>, Error> {
        self.0.ttl(key).await
    }
    async fn clear(&self, ns: &str) -> Result<u64, Error> {
        self.0.clear(ns).await
    }
    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }
}

#[tokio::test]
async fn over_the_in_process_store_the_tier_is_the_store() {
    let store = TierStore::default();
    let cache = Cache::builder(store.clone()).namespace("app").build();
    let runs = AtomicUsize::new(0);
    assert_eq!(read(&cache, "w:1", &runs, widget(1)).await, widget(1));
    assert_eq!(read(&cache, "w:1", &runs, widget(9)).await, widget(1));
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    let s = cache.stats();
    assert_eq!((s.hits, s.local_hits, s.misses), (1, 1, 1));
    // Nothing went to the backend: the tier holds the entries.
    assert_eq!(store.0.get(Key::plain("app:w:1")).await.unwrap(), None);
    // The provider API reads what the macros wrote (from the kept bytes).
    assert_eq!(cache.get::<Widget>("w:1").await.unwrap(), Some(widget(1)));
    assert!(cache.exists("w:1").await.unwrap());
    assert!(cache.ttl("w:1").await.unwrap().unwrap() <= Duration::from_secs(600));
    // Another type is a miss: the entry is dropped and counted, as on any store.
    assert_eq!(cache.get::<u32>("w:1").await.unwrap(), None);
    assert!(cache.stats().errors >= 1);
    assert!(!cache.exists("w:1").await.unwrap());
    // An entry set by the provider API is decoded once, then kept decoded.
    cache.set("w:2", &widget(2), None).await.unwrap();
    assert_eq!(read(&cache, "w:2", &runs, widget(0)).await, widget(2));
    let before = cache.stats().local_hits;
    assert_eq!(read(&cache, "w:2", &runs, widget(0)).await, widget(2));
    assert_eq!(cache.stats().local_hits, before + 1);
    // Deletes, patterns and clear act on the tier.
    assert!(cache.delete("w:2").await.unwrap());
    read(&cache, "w:3", &runs, widget(3)).await;
    read(&cache, "x:3", &runs, widget(3)).await;
    assert_eq!(cache.delete_pattern("w:*").await.unwrap(), 1);
    assert!(cache.exists("x:3").await.unwrap());
    assert_eq!(cache.clear().await.unwrap(), 1);
    assert!(!cache.exists("x:3").await.unwrap());
    // Another cache over a clone of the store sees the same entries.
    read(&cache, "w:4", &runs, widget(4)).await;
    let other = Cache::builder(store.clone()).namespace("app").build();
    assert_eq!(other.get::<Widget>("w:4").await.unwrap(), Some(widget(4)));
    other.delete("w:4").await.unwrap();
    assert!(!cache.exists("w:4").await.unwrap());
}

#[tokio::test]
async fn in_front_of_a_store_hits_are_local_and_a_type_without_clone_reads_the_store() {
    let store = MapStore::default();
    let cache = Cache::builder(store.clone())
        .local(LocalSettings::default())
        .build();
    let runs = AtomicUsize::new(0);
    read(&cache, "w:1", &runs, widget(1)).await;
    // The store has it too (other processes read it there).
    assert!(store.get(Key::plain("w:1")).await.unwrap().is_some());
    // Changed behind the cache's back: the tier still serves its copy.
    store.delete(Key::plain("w:1")).await.unwrap();
    assert_eq!(read(&cache, "w:1", &runs, widget(9)).await, widget(1));
    assert_eq!(cache.stats().local_hits, 1);
    // Through the cache, a delete drops the local copy.
    cache.delete("w:1").await.unwrap();
    assert_eq!(read(&cache, "w:1", &runs, widget(5)).await, widget(5));
    // TierUse::OFF (local = false, or a type that is not Clone) goes to the store.
    let (out, _): (Plain<Widget>, _) = cache
        .read_through(
            "w:1",
            Salt::NONE,
            async { Plain(widget(7)) },
            Policy::new(Duration::from_secs(60), TierUse::OFF),
        )
        .await;
    assert_eq!(out.0, widget(5), "read from the store, not the body");
}

/// An in-process backplane: every publish reaches every subscriber at once.
#[derive(Clone, Default)]
struct Bus(Arc<Mutex<Vec<Arc<dyn BackplaneEvents>>>>);

impl Bus {
    fn each(&self, f: impl Fn(&dyn BackplaneEvents)) {
        for s in self.0.lock().unwrap().iter() {
            f(&**s);
        }
    }
}

#[async_trait::async_trait]
impl Backplane for Bus {
    fn name(&self) -> &'static str {
        "bus"
    }
    async fn publish(&self, payload: &[u8]) -> Result<(), Error> {
        self.each(|s| s.message(payload));
        Ok(())
    }
    fn subscribe(&self, events: Arc<dyn BackplaneEvents>) {
        events.connected();
        self.0.lock().unwrap().push(events);
    }
}

fn replica(store: &MapStore, bus: &Bus) -> Cache {
    Cache::builder(store.clone())
        .namespace("app")
        .local(LocalSettings::default())
        .backplane(bus.clone())
        .build()
}

#[tokio::test]
async fn an_invalidation_in_one_replica_drops_the_others_local_copies() {
    let (store, bus) = (MapStore::default(), Bus::default());
    let (a, b) = (replica(&store, &bus), replica(&store, &bus));
    let runs = AtomicUsize::new(0);
    for c in [&a, &b] {
        read(c, "w:1", &runs, widget(1)).await;
        read(c, "w:2", &runs, widget(2)).await;
        read(c, "u:1", &runs, widget(3)).await;
    }
    assert_eq!(
        runs.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "b read the store"
    );
    a.delete("w:1").await.unwrap();
    assert_eq!(read(&b, "w:1", &runs, widget(10)).await, widget(10));
    // A provider set is an invalidation for the other replicas too.
    a.set("w:2", &widget(20), None).await.unwrap();
    assert_eq!(read(&b, "w:2", &runs, widget(0)).await, widget(20));
    a.delete_pattern("u:*").await.unwrap();
    assert_eq!(read(&b, "u:1", &runs, widget(30)).await, widget(30));
    a.clear().await.unwrap();
    assert_eq!(read(&b, "w:1", &runs, widget(40)).await, widget(40));
    assert_eq!(
        a.stats().backplane_failures + b.stats().backplane_failures,
        0
    );
}

#[tokio::test]
async fn a_fill_that_an_invalidation_overtook_lands_nowhere() {
    let (store, bus) = (MapStore::default(), Bus::default());
    let (a, b) = (replica(&store, &bus), replica(&store, &bus));
    let runs = AtomicUsize::new(0);
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    // A starts a slow read of v1 ...
    let slow = async {
        let full = a.full_key("w:1").into_owned();
        let (out, _): (Plain<Widget>, _) = a
            .read_through(
                &full,
                Salt::NONE,
                async {
                    let v1 = widget(1);
                    started_tx.send(()).unwrap();
                    held.await.unwrap();
                    Plain(v1)
                },
                Policy::new(Duration::from_secs(600), TYPED),
            )
            .await;
        out.0
    };
    // ... B writes v2 and invalidates, then A's read completes.
    let mutate = async {
        started.await.unwrap();
        b.delete("w:1").await.unwrap();
        release.send(()).unwrap();
    };
    let (v, ()) = tokio::join!(slow, mutate);
    assert_eq!(
        v,
        widget(1),
        "the caller itself gets what its body returned"
    );
    // Neither the store nor any tier holds v1.
    assert_eq!(store.get(Key::plain("app:w:1")).await.unwrap(), None);
    for c in [&a, &b] {
        assert_eq!(read(c, "w:1", &runs, widget(2)).await, widget(2));
    }
    assert!(a.stats().fenced_fills >= 1, "{:?}", a.stats());
}

#[tokio::test]
async fn the_store_fence_refuses_a_fill_whose_read_came_before_an_invalidation_elsewhere() {
    // No backplane: only the store's tombstone can stop the fill.
    let store = MapStore::default();
    let a = Cache::builder(store.clone()).build();
    let b = Cache::builder(store.clone()).build();
    let runs = AtomicUsize::new(0);
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let slow = a.read_through::<Plain<Widget>, _>(
        "w:1",
        Salt::NONE,
        async {
            started_tx.send(()).unwrap();
            held.await.unwrap();
            Plain(widget(1))
        },
        Policy::new(Duration::from_secs(600), TierUse::OFF),
    );
    let mutate = async {
        started.await.unwrap();
        b.delete("w:1").await.unwrap();
        release.send(()).unwrap();
    };
    tokio::join!(slow, mutate);
    assert_eq!(a.stats().fenced_fills, 1);
    assert_eq!(read(&b, "w:1", &runs, widget(2)).await, widget(2));
    assert_eq!(read(&a, "w:1", &runs, widget(3)).await, widget(2));
}

#[tokio::test]
async fn a_backplane_that_comes_back_flushes_the_tier_and_counts() {
    let (store, bus) = (MapStore::default(), Bus::default());
    let a = replica(&store, &bus);
    let runs = AtomicUsize::new(0);
    read(&a, "w:1", &runs, widget(1)).await;
    bus.each(|s| s.disconnected());
    bus.each(|s| s.disconnected()); // reported once
                                    // While it is down, the tier keeps serving (bounded by the local TTL).
    read(&a, "w:1", &runs, widget(9)).await;
    assert_eq!(a.stats().local_hits, 1);
    bus.each(|s| s.connected());
    let s = a.stats();
    assert_eq!(s.backplane_disconnects, 1);
    assert!(
        s.local_flushes >= 2,
        "first connect and the reconnect: {s:?}"
    );
    // The next read goes to the store.
    store
        .set(
            Key::plain("app:w:1"),
            a.encode_entry(&widget(5), Salt::NONE, Default::default())
                .unwrap(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(read(&a, "w:1", &runs, widget(0)).await, widget(5));
    // Garbage on the channel also flushes (and counts).
    bus.each(|s| s.message(b"not a message"));
    assert_eq!(a.stats().backplane_failures, 1);
}

// --- tags ------------------------------------------------------------------

/// Reads `key` carrying `tags`, through the macros' path.
async fn read_tagged(
    cache: &Cache,
    key: &str,
    tags: &[&str],
    runs: &AtomicUsize,
    value: Widget,
) -> Widget {
    let full = cache.full_key(key).into_owned();
    let stored: Arc<[String]> = tags.iter().map(|t| cache.tag_key(t)).collect();
    let (out, err): (Plain<Widget>, _) = cache
        .read_through(
            &full,
            Salt::NONE,
            async {
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Plain(value)
            },
            Policy {
                tags: Some(stored),
                ..Policy::new(Duration::from_secs(600), TYPED)
            },
        )
        .await;
    assert!(err.is_none());
    out.0
}

#[tokio::test]
async fn a_tag_invalidated_in_one_replica_is_a_miss_everywhere_local_tiers_included() {
    use std::sync::atomic::Ordering::SeqCst;
    let (store, bus) = (MapStore::default(), Bus::default());
    let (a, b) = (replica(&store, &bus), replica(&store, &bus));
    let runs = AtomicUsize::new(0);
    for c in [&a, &b] {
        read_tagged(c, "w:1", &["user:7", "widgets"], &runs, widget(1)).await;
        read_tagged(c, "w:2", &["user:8", "widgets"], &runs, widget(2)).await;
        read_tagged(c, "w:3", &["user:7"], &runs, widget(3)).await;
    }
    assert_eq!(runs.load(SeqCst), 3, "b read a's fills, then its own tier");
    a.invalidate_tag("user:7").await.unwrap();
    // Reads that start in the invalidation's own millisecond store dead
    // entries (the conservative side of a millisecond clock): step past it.
    tokio::time::sleep(Duration::from_millis(3)).await;
    // b's local copies of the tagged entries went with the backplane message.
    assert_eq!(
        read_tagged(&b, "w:1", &["user:7", "widgets"], &runs, widget(10)).await,
        widget(10)
    );
    assert_eq!(
        read_tagged(&b, "w:3", &["user:7"], &runs, widget(30)).await,
        widget(30)
    );
    assert_eq!(
        read_tagged(&b, "w:2", &["user:8", "widgets"], &runs, widget(0)).await,
        widget(2),
        "another tag's entry stays"
    );
    assert_eq!(runs.load(SeqCst), 5);
    // A replica without the message (no backplane) still sees it through the store.
    let lone = Cache::builder(store.clone()).namespace("app").build();
    assert_eq!(
        read_tagged(&lone, "w:2", &["user:8"], &runs, widget(0)).await,
        widget(2)
    );
    lone.invalidate_tag("widgets").await.unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    let fresh = Cache::builder(store.clone()).namespace("app").build();
    assert_eq!(
        read_tagged(&fresh, "w:2", &["user:8", "widgets"], &runs, widget(20)).await,
        widget(20)
    );
    // The provider API reads a dead entry as absent.
    assert_eq!(fresh.get::<Widget>("w:3").await.unwrap(), Some(widget(30)));
    fresh.invalidate_tag("user:7").await.unwrap();
    assert_eq!(fresh.get::<Widget>("w:3").await.unwrap(), None);
    assert_eq!(a.stats().tag_invalidations, 1);
}

#[tokio::test]
async fn a_fill_that_started_before_a_tag_invalidation_lands_dead() {
    let store = MapStore::default();
    let (a, b) = (
        Cache::builder(store.clone()).build(),
        Cache::builder(store.clone()).build(),
    );
    let runs = AtomicUsize::new(0);
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let slow = async {
        let full = a.full_key("w:1").into_owned();
        let (out, _): (Plain<Widget>, _) = a
            .read_through(
                &full,
                Salt::NONE,
                async {
                    held.await.unwrap();
                    Plain(widget(1))
                },
                Policy {
                    tags: Some(Arc::from([a.tag_key("user:7")])),
                    ..Policy::new(Duration::from_secs(600), TierUse::OFF)
                },
            )
            .await;
        out.0
    };
    let mutate = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        b.invalidate_tag("user:7").await.unwrap();
        release.send(()).unwrap();
    };
    let (got, ()) = tokio::join!(slow, mutate);
    assert_eq!(got, widget(1), "the slow caller gets what it computed");
    assert_eq!(
        read_tagged(&b, "w:1", &["user:7"], &runs, widget(2)).await,
        widget(2),
        "what it stored predates the invalidation: a miss"
    );
}

#[tokio::test]
async fn over_the_in_process_store_a_tag_invalidation_drops_the_tagged_entries() {
    let cache = Cache::builder(TierStore::default()).build();
    let runs = AtomicUsize::new(0);
    read_tagged(&cache, "w:1", &["user:7"], &runs, widget(1)).await;
    read_tagged(&cache, "w:2", &["user:8"], &runs, widget(2)).await;
    cache.invalidate_tag("user:7").await.unwrap();
    assert_eq!(
        read_tagged(&cache, "w:1", &["user:7"], &runs, widget(10)).await,
        widget(10)
    );
    assert_eq!(
        read_tagged(&cache, "w:2", &["user:8"], &runs, widget(0)).await,
        widget(2)
    );
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_tag_invalidation_the_store_refuses_is_kept_and_delivered() {
    use crate::testing::{Fault, Faulty, Op};
    let store = Faulty::new(MapStore::default());
    let a = Cache::builder(store.clone()).build();
    let runs = AtomicUsize::new(0);
    read_tagged(&a, "w:1", &["user:7"], &runs, widget(1)).await;
    store.inject(Op::Set, Fault::Error);
    assert!(
        a.invalidate_tag("user:7").await.is_err(),
        "the error is returned"
    );
    assert_eq!(
        a.stats().invalidations_queued,
        1,
        "and the invalidation kept"
    );
    store.clear_faults();
    // Until delivered this process reads the tag's entries as misses; the
    // read that finds it kept starts the delivery.
    assert_eq!(a.get::<Widget>("w:1").await.unwrap(), None);
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while a.stats().invalidations_delivered == 0 {
        assert!(
            std::time::Instant::now() < until,
            "not delivered: {:?}",
            a.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Delivered: another cache over the store sees the entry dead too.
    let b = Cache::builder(store.clone()).build();
    assert_eq!(b.get::<Widget>("w:1").await.unwrap(), None);
}

// --- review regressions (session 9) ------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_lease_waiter_never_takes_a_tag_killed_entry_for_the_holders_value() {
    let store = MapStore::default();
    let b = Cache::builder(store.clone())
        .lease(Duration::from_secs(1))
        .build();
    let runs = AtomicUsize::new(0);
    read_tagged(&b, "w:1", &["user:7"], &runs, widget(1)).await;
    b.invalidate_tag("user:7").await.unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    // Another process holds the lease of w:1 (and dies with it).
    let lease = format!("{}%lease:{}", "", "w:1");
    assert!(store
        .lease(Key::plain(&lease), b"other", Duration::from_millis(500))
        .await
        .unwrap());
    let got = read_tagged(&b, "w:1", &["user:7"], &runs, widget(2)).await;
    assert_eq!(
        got,
        widget(2),
        "the dead entry was taken for the holder's value"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stale_local_copy_does_not_answer_for_an_entry_the_store_no_longer_has() {
    let store = MapStore::default();
    let a = Cache::builder(store.clone())
        .local(LocalSettings::default())
        .fail_safe(crate::FailSafe::new(Duration::from_secs(3600)))
        .build();
    let policy = || Policy {
        fail_safe: a.fail_safe(),
        ..Policy::new(Duration::from_secs(10), TYPED)
    };
    let full = a.full_key("w:1").into_owned();
    let (out, _): (Result<Widget, &str>, _) = a
        .read_through(&full, Salt::NONE, async { Ok(widget(1)) }, policy())
        .await;
    assert_eq!(out, Ok(widget(1)));
    tokio::time::advance(Duration::from_secs(11)).await;
    // Deleted by a process this one does not hear from (no backplane).
    let other = Cache::builder(store.clone()).build();
    other.delete("w:1").await.unwrap();
    let (out, _): (Result<Widget, &str>, _) = a
        .read_through(&full, Salt::NONE, async { Err("db down") }, policy())
        .await;
    assert_eq!(
        out,
        Err("db down"),
        "a deleted entry came back as a fallback"
    );
}

#[tokio::test]
async fn a_tag_invalidation_during_a_body_sends_later_callers_to_their_own_body() {
    let cache = Cache::builder(MapStore::default()).build();
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let tags = || Some(Arc::<[String]>::from([cache.tag_key("user:7")]));
    let full = cache.full_key("w:1").into_owned();
    let slow = cache.read_through::<Plain<Widget>, _>(
        &full,
        Salt::NONE,
        async {
            held.await.unwrap();
            Plain(widget(1))
        },
        Policy {
            tags: tags(),
            ..Policy::new(Duration::from_secs(600), TierUse::OFF)
        },
    );
    let later = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        cache.invalidate_tag("user:7").await.unwrap();
        // Joins no flight begun before the invalidation.
        let read = cache.read_through::<Plain<Widget>, _>(
            &full,
            Salt::NONE,
            async { Plain(widget(2)) },
            Policy {
                tags: tags(),
                ..Policy::new(Duration::from_secs(600), TierUse::OFF)
            },
        );
        let (out, _) = tokio::join!(read, async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = release.send(());
        });
        out.0 .0
    };
    let ((first, _), second) = tokio::join!(slow, later);
    assert_eq!(first.0, widget(1));
    assert_eq!(
        second,
        widget(2),
        "a caller after the invalidation got the old body's value"
    );
}

//! The Redis parts of the hybrid tier against real servers: fenced fills and
//! tombstones (one server and a cluster), and the pub/sub backplane through
//! a kill, a restart and a SIGSTOP.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_backends::RedisBackplane;
use cache_core::backend::is_tombstone;
use cache_core::backplane::{Backplane, BackplaneEvents};
use cache_core::{Backend, Bytes, Fence, Key};
use cacheside::backends::{RedisBackend, RedisClusterBackend, RedisOptions};
use cacheside::testing::{RedisCluster, RedisServer, Reply};
use common::eventually;

const MINUTE: Option<Duration> = Some(Duration::from_secs(60));
const WINDOW: Duration = Duration::from_secs(60);
/// Bound on the waits for an outcome (never asserted as a duration).
const LIMIT: Duration = Duration::from_secs(10);
/// The backplane's publish timeout and PING answer bound in these tests.
const OP: Duration = Duration::from_millis(250);

fn v(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The fencing contract, on any fencing backend.
async fn fenced_fills(b: &dyn Backend) {
    // A fill after a read that found nothing lands when nothing changed.
    let k = Key::plain("hybrid:quiet");
    let (value, fence) = b.get_fenced(k).await.unwrap();
    assert_eq!((value, &fence), (None, &Fence::Absent));
    assert!(b.set_fenced(k, v("one"), MINUTE, &fence).await.unwrap());
    assert_eq!(b.get(k).await.unwrap(), Some(v("one")));
    // A live entry reads with a token (what a fail-safe refresh must still
    // find): a replace with it lands while the entry is unchanged...
    let (value, fence) = b.get_fenced(k).await.unwrap();
    assert_eq!(value, Some(v("one")));
    assert!(matches!(fence, Fence::Token(_)), "{fence:?}");
    assert!(b.set_fenced(k, v("two"), MINUTE, &fence).await.unwrap());
    assert_eq!(b.get(k).await.unwrap(), Some(v("two")));
    // ...not once it changed (here: by that replace)...
    assert!(!b.set_fenced(k, v("three"), MINUTE, &fence).await.unwrap());
    // ...nor after an invalidation.
    let (_, live) = b.get_fenced(k).await.unwrap();
    assert!(b.invalidate(k, WINDOW).await.unwrap());
    assert!(!b.set_fenced(k, v("old"), MINUTE, &live).await.unwrap());
    assert_eq!(b.get(k).await.unwrap(), None);
    // Fence::None writes unconditionally.
    assert!(b
        .set_fenced(k, v("two"), MINUTE, &Fence::None)
        .await
        .unwrap());
    assert_eq!(b.get(k).await.unwrap(), Some(v("two")));

    // Absent fence, overtaken by an invalidation: the fill does not land.
    let k = Key::plain("hybrid:raced");
    let (_, absent) = b.get_fenced(k).await.unwrap();
    assert_eq!(absent, Fence::Absent);
    assert!(
        !b.invalidate(k, WINDOW).await.unwrap(),
        "nothing live was there"
    );
    assert!(!b.set_fenced(k, v("stale"), MINUTE, &absent).await.unwrap());
    // The tombstone is invisible to get / exists / ttl.
    assert_eq!(b.get(k).await.unwrap(), None);
    assert!(!b.exists(k).await.unwrap());
    assert_eq!(b.ttl(k).await.unwrap(), None);

    // Token fence from a read after the invalidation, overtaken by another one.
    let (value, token) = b.get_fenced(k).await.unwrap();
    assert_eq!(value, None);
    let Fence::Token(t) = &token else {
        panic!("a read of a tombstone gives its token, got {token:?}")
    };
    assert!(is_tombstone(t));
    assert!(
        !b.invalidate(k, WINDOW).await.unwrap(),
        "a tombstone is not live"
    );
    assert!(!b.set_fenced(k, v("stale"), MINUTE, &token).await.unwrap());
    assert_eq!(b.get(k).await.unwrap(), None);

    // A later fill, whose read came after the last invalidation, lands.
    let (_, fresh) = b.get_fenced(k).await.unwrap();
    assert!(matches!(&fresh, Fence::Token(t2) if t2 != t), "{fresh:?}");
    assert!(b.set_fenced(k, v("fresh"), MINUTE, &fresh).await.unwrap());
    assert_eq!(b.get(k).await.unwrap(), Some(v("fresh")));
    assert!(b.exists(k).await.unwrap());
    let ttl = b.ttl(k).await.unwrap().expect("the fill's TTL");
    assert!(
        ttl > Duration::from_secs(50) && ttl <= Duration::from_secs(60),
        "{ttl:?}"
    );

    // Invalidating a live entry says so; a tombstone's delete removes it but answers false.
    assert!(b.invalidate(k, WINDOW).await.unwrap());
    assert!(!b.exists(k).await.unwrap());
    assert!(!b.delete(k).await.unwrap());
    assert_eq!(b.get_fenced(k).await.unwrap(), (None, Fence::Absent));
    // A Token-fenced fill without expiry.
    b.invalidate(k, WINDOW).await.unwrap();
    let (_, token) = b.get_fenced(k).await.unwrap();
    assert!(b.set_fenced(k, v("forever"), None, &token).await.unwrap());
    assert!(b.exists(k).await.unwrap());
    assert_eq!(b.ttl(k).await.unwrap(), None);
    assert!(
        b.delete(k).await.unwrap(),
        "a live entry's delete answers true"
    );

    // A tombstone expires after its window; then a read is Absent again.
    let k = Key::plain("hybrid:short");
    b.invalidate(k, Duration::from_millis(100)).await.unwrap();
    eventually("the tombstone expires", LIMIT, || async {
        b.get_fenced(k).await.unwrap() == (None, Fence::Absent)
    })
    .await;
    let (_, fence) = b.get_fenced(k).await.unwrap();
    assert!(b.set_fenced(k, v("after"), MINUTE, &fence).await.unwrap());
    assert_eq!(b.get(k).await.unwrap(), Some(v("after")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fences_fills_with_tombstones() {
    let server = RedisServer::start();
    let backend = RedisBackend::connect(&server.url()).await.unwrap();
    fenced_fills(&backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_a_pool_fences_fills_with_tombstones() {
    let server = RedisServer::start();
    let options = RedisOptions {
        pool_size: 3,
        ..RedisOptions::default()
    };
    let backend = RedisBackend::connect_with(&server.url(), options)
        .await
        .unwrap();
    fenced_fills(&backend).await;
    // Three connections besides the one asking: the pool is really there.
    let Reply::Bulk(Some(list)) = server.command(&[b"CLIENT", b"LIST"]).unwrap() else {
        panic!("CLIENT LIST")
    };
    let list = String::from_utf8_lossy(&list);
    let pooled = list
        .lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .count();
    assert!(pooled >= 3, "{pooled} other clients:\n{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_fences_fills_with_tombstones() {
    let cluster = RedisCluster::start(3);
    let backend = RedisClusterBackend::connect(&cluster.node_urls())
        .await
        .unwrap();
    fenced_fills(&backend).await;
}

/// What a backplane reported.
#[derive(Default)]
struct Seen {
    messages: Mutex<Vec<Vec<u8>>>,
    connected: AtomicUsize,
    disconnected: AtomicUsize,
}

impl BackplaneEvents for Seen {
    fn message(&self, payload: &[u8]) {
        self.messages.lock().unwrap().push(payload.to_vec());
    }
    fn disconnected(&self) {
        self.disconnected.fetch_add(1, Ordering::SeqCst);
    }
    fn connected(&self) {
        self.connected.fetch_add(1, Ordering::SeqCst);
    }
}

impl Seen {
    fn counts(&self) -> (usize, usize) {
        (
            self.connected.load(Ordering::SeqCst),
            self.disconnected.load(Ordering::SeqCst),
        )
    }
    fn has(&self, payload: &[u8]) -> bool {
        self.messages.lock().unwrap().iter().any(|m| m == payload)
    }
}

fn subscribed(backplane: &RedisBackplane) -> Arc<Seen> {
    let seen = Arc::new(Seen::default());
    backplane.subscribe(seen.clone());
    seen
}

/// Publishes `payload` from `from` until `to` has it (a publish may fail while a connection comes back).
async fn delivered(from: &RedisBackplane, to: &Seen, payload: &[u8]) {
    eventually("the message arrives", LIMIT, || async {
        if to.has(payload) {
            return true;
        }
        let _ = from.publish(payload).await;
        to.has(payload)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backplane_delivers_and_survives_a_kill_and_restart() {
    let mut server = RedisServer::start();
    let a = RedisBackplane::new(&server.url(), "cs-test", OP).unwrap();
    let b = RedisBackplane::new(&server.url(), "cs-test", OP).unwrap();
    let seen_a = subscribed(&a);
    let seen_b = subscribed(&b);
    eventually("both subscribe", LIMIT, || async {
        seen_a.counts() == (1, 0) && seen_b.counts() == (1, 0)
    })
    .await;
    a.publish(b"first").await.unwrap();
    eventually("b receives", LIMIT, || async { seen_b.has(b"first") }).await;
    assert!(
        format!("{b:?}").contains("cs-test"),
        "Debug names the channel"
    );

    server.kill();
    eventually("b sees the loss", LIMIT, || async {
        seen_b.counts() == (1, 1)
    })
    .await;
    assert!(a.publish(b"lost").await.is_err());
    server.restart();
    eventually("b subscribes again", LIMIT, || async {
        seen_b.counts().0 == 2
    })
    .await;
    assert_eq!(
        seen_b.counts(),
        (2, 1),
        "one disconnected per loss, however many attempts failed"
    );
    delivered(&a, &seen_b, b"second").await;
    eventually("a subscribes again too", LIMIT, || async {
        seen_a.counts() == (2, 1)
    })
    .await;
    delivered(&b, &seen_a, b"third").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backplane_notices_a_hung_server() {
    let server = RedisServer::start();
    let backplane = RedisBackplane::new(&server.url(), "cs-test", OP).unwrap();
    let seen = subscribed(&backplane);
    eventually("subscribed", LIMIT, || async { seen.counts() == (1, 0) }).await;
    server.pause();
    // The PING every second, unanswered within OP, finds it out: nothing
    // else can, as a frozen server closes no connection. (Bounded by LIMIT,
    // not by PING_EVERY + OP: a loaded machine delays the ticks.)
    eventually("the hung server is a loss", LIMIT, || async {
        seen.counts() == (1, 1)
    })
    .await;
    server.resume();
    eventually("subscribed again", LIMIT, || async {
        seen.counts() == (2, 1)
    })
    .await;
    let other = RedisBackplane::new(&server.url(), "cs-test", OP).unwrap();
    delivered(&other, &seen, b"after the pause").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_backplane_ends_its_subscription() {
    let server = RedisServer::start();
    let backplane = RedisBackplane::new(&server.url(), "cs-drop", OP).unwrap();
    let seen = subscribed(&backplane);
    eventually("subscribed", LIMIT, || async { seen.counts() == (1, 0) }).await;
    let subscribers = || match server.command(&[b"PUBSUB", b"NUMSUB", b"cs-drop"]) {
        Ok(Reply::Array(Some(items))) => match items.get(1) {
            Some(Reply::Int(n)) => *n,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    assert_eq!(subscribers(), 1);
    drop(backplane);
    eventually("the subscription ends", LIMIT, || async {
        subscribers() == 0
    })
    .await;
    assert_eq!(seen.counts(), (1, 0), "a drop is not a loss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_backplane_moves_to_the_next_node() {
    let cluster = RedisCluster::start(3);
    let nodes = cluster.node_urls();
    let reversed: Vec<String> = nodes.iter().rev().cloned().collect();
    let sub =
        RedisBackplane::with_options(&nodes, "cs-cluster", OP, &RedisOptions::default()).unwrap();
    let publisher =
        RedisBackplane::with_options(&reversed, "cs-cluster", OP, &RedisOptions::default())
            .unwrap();
    let seen = subscribed(&sub);
    eventually("subscribed", LIMIT, || async { seen.counts() == (1, 0) }).await;
    // Published on the last node, received through the first.
    publisher.publish(b"across").await.unwrap();
    eventually("received across nodes", LIMIT, || async {
        seen.has(b"across")
    })
    .await;
    // The first node goes away: the subscription moves on.
    let first = cluster.ports()[0];
    let _ = cluster.command(first, &[b"SHUTDOWN", b"NOSAVE"]);
    eventually("the loss is seen and the next node used", LIMIT, || async {
        seen.counts() == (2, 1)
    })
    .await;
    delivered(&publisher, &seen, b"after the move").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backplane_authenticates_from_the_url_and_never_shows_the_password() {
    let server = RedisServer::start_with_password("s3cret-pw");
    let url = server.url_with_password("s3cret-pw");
    let a = RedisBackplane::new(&url, "cs-auth", OP).unwrap();
    let b = RedisBackplane::new(&url, "cs-auth", OP).unwrap();
    let seen = subscribed(&b);
    eventually("subscribed with the password", LIMIT, || async {
        seen.counts() == (1, 0)
    })
    .await;
    a.publish(b"secret-free").await.unwrap();
    eventually("received", LIMIT, || async { seen.has(b"secret-free") }).await;
    assert!(!format!("{a:?}").contains("s3cret"), "{a:?}");
    let wrong = RedisBackplane::new(&server.url_with_password("wr0ng-pw"), "cs-auth", OP).unwrap();
    let err = wrong.publish(b"x").await.unwrap_err().to_string();
    assert!(!err.contains("wr0ng-pw"), "{err}");
}

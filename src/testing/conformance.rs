//! The conformance suite: what every cacheside store must do, checked through the [`Cache`] API.
//!
//! The built-in memory, Redis, Redis Cluster and Memcached backends all pass
//! it. Run it against your own [`Backend`] to check that the
//! macros and the provider API will behave the same on it.
//!
//! You give [`run`] a factory: `make(namespace)` returns a [`Cache`] with that
//! namespace over **one shared store** (each call must reach the same data).
//! [`shared_store`] builds it for a store whose clones share their data (the
//! built-in backends' do); write the closure yourself for anything else, such
//! as a new connection per namespace.
//! Every check asks for its own fresh, unique namespaces, so checks never see
//! each other's keys and can share one server; [`Capabilities`] says what the
//! store cannot do (pattern deletion), and the suite then checks that it says
//! so clearly instead. Each check is also a public function, to run one at a
//! time. A failing check panics with a message that starts with its name.
//!
//! Run it from an integration test with a multi-threaded runtime (the
//! concurrency checks spawn tasks):
//!
//! ```no_run
//! use std::time::Duration;
//! use cacheside::testing::conformance;
//!
//! # #[cfg(feature = "memory")]
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn my_backend_conforms() {
//!     // Your store here; one instance, shared by every namespace.
//!     let store = cacheside::backends::MemoryBackend::new(100_000);
//!     let make = conformance::shared_store(store, Duration::from_secs(5));
//!     conformance::run(make, conformance::Capabilities { patterns: true, counters: true }).await;
//! }
//! # fn main() {}
//! ```
//!
//! Checks: [`round_trip`], [`overwrite`], [`delete_reports_presence`],
//! [`exists`], [`ttl_reported`], [`ttl_expiry`], [`delete_pattern`],
//! [`namespaces_isolated`], [`clear_namespace`], [`binary_and_empty_values`],
//! [`unicode_keys`], [`hostile_keys`], [`large_values`],
//! [`concurrent_writers`], [`single_flight`], [`fail_safe`], [`tags`]; and, for
//! fencing stores, [`fenced_fills`].

use std::collections::{BTreeMap, BTreeSet};
use std::future::{ready, Future, Ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::backend::Backend;
use crate::{Cache, Error, FailSafe};
use cache_core::{Policy, TierUse};

/// What the store under test can do; the suite checks the rest is refused cleanly.
///
/// ```
/// let caps = cacheside::testing::conformance::Capabilities { patterns: false, counters: true };
/// assert!(!caps.patterns);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `delete_pattern` works; when false it must return [`Error::PatternNotSupported`] and delete nothing.
    pub patterns: bool,
    /// `increment` works (the rate limiter needs it); when false it must return [`Error::Unsupported`].
    pub counters: bool,
}

/// A namespace no other check (and no other run) uses: `cf-<check>-<pid>-<n>-<time>`.
fn fresh_namespace(check: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "cf-{check}-{}-{}-{nanos:x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

async fn cache_for<F, Fut>(make: &F, check: &str) -> Cache
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    let ns = fresh_namespace(check);
    let cache = make(&ns).await;
    assert_eq!(
        cache.namespace(),
        ns,
        "[{check}] the factory must return a Cache with the namespace it was given"
    );
    cache
}

/// Unwraps a store result, naming the check and the step on failure.
fn ok<T>(check: &str, step: &str, r: Result<T, Error>) -> T {
    r.unwrap_or_else(|e| panic!("[{check}] {step} failed: {e}"))
}

/// The factory [`run`] takes, for a store whose clones share their data (as
/// the built-in backends' do): `make(namespace)` is a [`Cache`] with that
/// namespace over a clone of `store`, each operation bounded by `op_timeout`
/// (in-process stores are not bounded).
///
/// ```
/// use std::time::Duration;
/// use cacheside::testing::{conformance, MapStore};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let make = conformance::shared_store(MapStore::default(), Duration::from_secs(1));
/// let cache = make("app").await;
/// assert_eq!(cache.namespace(), "app");
/// conformance::round_trip(&make).await;
/// # }
/// ```
pub fn shared_store<B: Backend + Clone>(
    store: B,
    op_timeout: Duration,
) -> impl Fn(&str) -> Ready<Cache> {
    move |namespace| {
        ready(
            Cache::builder(store.clone())
                .namespace(namespace)
                .op_timeout(op_timeout)
                .build(),
        )
    }
}

/// Runs every check, one after the other, and panics on the first failure.
///
/// `make(namespace)` must return a [`Cache`] with that namespace over the one
/// store under test. Each check prints its name and duration to stderr.
///
/// ```
/// use cacheside::{testing::conformance, Cache};
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// // The factory written out (`shared_store` builds this one): every namespace over one store.
/// let store = cacheside::testing::MapStore::default();
/// let make = |ns: &str| {
///     let cache = Cache::builder(store.clone()).namespace(ns).build();
///     async move { cache }
/// };
/// conformance::run(make, conformance::Capabilities { patterns: true, counters: true }).await;
/// # }
/// ```
pub async fn run<F, Fut>(make: F, caps: Capabilities)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    macro_rules! check {
        ($name:ident $(, $arg:expr)?) => {{
            let started = Instant::now();
            $name(&make $(, $arg)?).await;
            eprintln!("conformance: {} ok ({:?})", stringify!($name), started.elapsed());
        }};
    }
    check!(round_trip);
    check!(overwrite);
    check!(delete_reports_presence);
    check!(exists);
    check!(ttl_reported);
    check!(ttl_expiry);
    check!(delete_pattern, caps);
    check!(namespaces_isolated);
    check!(nested_namespaces);
    check!(clear_namespace);
    check!(binary_and_empty_values);
    check!(unicode_keys);
    check!(hostile_keys);
    check!(large_values);
    check!(concurrent_writers);
    check!(single_flight);
    check!(counters, caps);
    check!(fail_safe);
    check!(tags);
}

/// `set` then `get` returns the value; an absent key reads as `None`.
///
/// Every check has this signature; run one alone while working on a backend:
///
/// ```
/// # #[cfg(feature = "memory")]
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// use cacheside::{testing::conformance, Cache};
/// let store = cacheside::backends::MemoryBackend::new(1_000);
/// let make = |ns: &str| {
///     let cache = Cache::builder(store.clone()).namespace(ns).build();
///     async move { cache }
/// };
/// conformance::round_trip(&make).await;
/// conformance::delete_pattern(&make, conformance::Capabilities { patterns: true, counters: true }).await;
/// # }
/// # #[cfg(not(feature = "memory"))] fn main() {}
/// ```
pub async fn round_trip<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "round_trip";
    let cache = cache_for(make, C).await;
    assert_eq!(
        ok(
            C,
            "get of an absent key",
            cache.get::<String>("absent").await
        ),
        None
    );
    ok(C, "set", cache.set("widget:7", "spanner", None).await);
    assert_eq!(
        ok(C, "get", cache.get::<String>("widget:7").await).as_deref(),
        Some("spanner"),
        "[{C}] a value written with set must read back"
    );
    let tuple = (7u64, "seven".to_owned(), vec![1.5f64, -2.0], Some(true));
    ok(C, "set of a tuple", cache.set("tuple", &tuple, None).await);
    assert_eq!(
        ok(C, "get of a tuple", cache.get("tuple").await),
        Some(tuple),
        "[{C}] a compound value must read back unchanged"
    );
}

/// A second `set` replaces the first value.
pub async fn overwrite<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "overwrite";
    let cache = cache_for(make, C).await;
    ok(C, "first set", cache.set("k", "first", None).await);
    ok(C, "second set", cache.set("k", "second", None).await);
    assert_eq!(
        ok(C, "get", cache.get::<String>("k").await).as_deref(),
        Some("second"),
        "[{C}] the second write must win"
    );
}

/// `delete` returns true when the key was there, then false; the key is gone.
pub async fn delete_reports_presence<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "delete_reports_presence";
    let cache = cache_for(make, C).await;
    ok(C, "set", cache.set("k", &1u32, None).await);
    ok(C, "set of a neighbour", cache.set("k2", &2u32, None).await);
    assert!(
        ok(C, "first delete", cache.delete("k").await),
        "[{C}] deleting a present key must return true"
    );
    assert!(
        !ok(C, "second delete", cache.delete("k").await),
        "[{C}] deleting an absent key must return false"
    );
    assert_eq!(
        ok(C, "get after delete", cache.get::<u32>("k").await),
        None,
        "[{C}] a deleted key must read as None"
    );
    assert_eq!(
        ok(C, "get of the neighbour", cache.get::<u32>("k2").await),
        Some(2),
        "[{C}] delete must not touch other keys"
    );
}

/// `exists` follows set and delete.
pub async fn exists<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "exists";
    let cache = cache_for(make, C).await;
    assert!(
        !ok(C, "exists before set", cache.exists("k").await),
        "[{C}] an absent key must not exist"
    );
    ok(C, "set", cache.set("k", "v", None).await);
    assert!(
        ok(C, "exists after set", cache.exists("k").await),
        "[{C}] a written key must exist"
    );
    ok(C, "delete", cache.delete("k").await);
    assert!(
        !ok(C, "exists after delete", cache.exists("k").await),
        "[{C}] a deleted key must not exist"
    );
}

/// `ttl` is present, positive and at most what was set; `None` for an absent key.
pub async fn ttl_reported<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "ttl_reported";
    let cache = cache_for(make, C).await;
    let set_ttl = Duration::from_secs(60);
    ok(C, "set", cache.set("k", "v", Some(set_ttl)).await);
    let ttl = ok(C, "ttl", cache.ttl("k").await)
        .unwrap_or_else(|| panic!("[{C}] a key written with a TTL must report one"));
    assert!(
        ttl <= set_ttl,
        "[{C}] remaining TTL {ttl:?} exceeds the {set_ttl:?} that was set"
    );
    assert!(
        ttl > Duration::ZERO,
        "[{C}] a live key must have a positive TTL, got {ttl:?}"
    );
    assert_eq!(
        ok(C, "ttl of an absent key", cache.ttl("absent").await),
        None,
        "[{C}] an absent key has no TTL"
    );
    // The cache's default TTL applies when none is given.
    ok(
        C,
        "set with the default ttl",
        cache.set("d", "v", None).await,
    );
    let d = ok(C, "ttl with the default", cache.ttl("d").await).unwrap_or_else(|| {
        panic!("[{C}] a write without TTL gets the cache's default TTL, so must report one")
    });
    assert!(
        d <= cache.default_ttl(),
        "[{C}] TTL {d:?} exceeds the default {:?}",
        cache.default_ttl()
    );
}

/// A key written with a 1 s TTL disappears (polled every 50 ms for up to 5 s).
pub async fn ttl_expiry<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "ttl_expiry";
    let cache = cache_for(make, C).await;
    ok(
        C,
        "set short",
        cache.set("short", "v", Some(Duration::from_secs(1))).await,
    );
    ok(
        C,
        "set long",
        cache.set("long", "v", Some(Duration::from_secs(600))).await,
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if ok(C, "get while waiting", cache.get::<String>("short").await).is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "[{C}] a key with a 1 s TTL was still there after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !ok(C, "exists after expiry", cache.exists("short").await),
        "[{C}] an expired key must not exist"
    );
    assert_eq!(
        ok(C, "ttl after expiry", cache.ttl("short").await),
        None,
        "[{C}] an expired key has no TTL"
    );
    assert_eq!(
        ok(
            C,
            "get of the long-lived key",
            cache.get::<String>("long").await
        )
        .as_deref(),
        Some("v"),
        "[{C}] expiry of one key must not remove another"
    );
}

/// Keys of a pattern test: (local key, matched by `page:*`).
const PAGE_KEYS: &[(&str, bool)] = &[
    ("page:1", true),
    ("page:2", true),
    ("page:10:20", true),
    ("page:", true),
    ("page:[x]", true),
    ("page:*", true),
    ("pages", false),
    ("page", false),
    ("xpage:1", false),
    ("other:page:1", false),
];

/// `delete_pattern` deletes exactly the matching keys of its namespace (or is refused cleanly).
///
/// Covers `*`, `?` (one character, also a multi-byte one), escapes, literal
/// `[`/`]`, and namespaces that contain `*`, `?` and `[`, next to namespaces
/// such a pattern would match if the namespace were not escaped.
pub async fn delete_pattern<F, Fut>(make: &F, caps: Capabilities)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "delete_pattern";
    let base = fresh_namespace(C);
    // (namespace under test, a namespace its unescaped glob would also match)
    let pairs = [
        (format!("{base}a"), format!("{base}b")),
        (format!("{base}*"), format!("{base}zz")),
        (format!("{base}?"), format!("{base}q")),
        (format!("{base}[ab]"), format!("{base}a")),
        (format!(r"{base}\"), format!("{base}x")),
    ];
    for (ns, sibling_ns) in &pairs {
        let cache = make(ns).await;
        let sibling = make(sibling_ns).await;
        for (k, _) in PAGE_KEYS {
            ok(C, "set", cache.set(k, *k, None).await);
            ok(
                C,
                "set in the sibling namespace",
                sibling.set(k, *k, None).await,
            );
        }
        let result = cache.delete_pattern("page:*").await;
        if !caps.patterns {
            match result {
                Err(Error::PatternNotSupported { .. }) => {}
                other => panic!("[{C}] a store without pattern support must return Error::PatternNotSupported, got {other:?}"),
            }
            for (k, _) in PAGE_KEYS {
                assert!(
                    ok(C, "exists", cache.exists(k).await),
                    "[{C}] a refused delete_pattern must delete nothing, but {k:?} is gone"
                );
            }
            return;
        }
        let n = ok(C, "delete_pattern(\"page:*\")", result);
        let expected = PAGE_KEYS.iter().filter(|(_, m)| *m).count() as u64;
        assert_eq!(
            n, expected,
            "[{C}] delete_pattern(\"page:*\") in namespace {ns:?} must report {expected} deletions"
        );
        for (k, matched) in PAGE_KEYS {
            assert_eq!(
                ok(C, "exists", cache.exists(k).await),
                !matched,
                "[{C}] in namespace {ns:?}, key {k:?} {}",
                if *matched {
                    "matches page:* and must be deleted"
                } else {
                    "does not match page:* and must stay"
                }
            );
            assert!(
                ok(C, "exists in the sibling", sibling.exists(k).await),
                "[{C}] delete_pattern in namespace {ns:?} deleted {k:?} of namespace {sibling_ns:?}"
            );
        }
        ok(C, "clear", cache.clear().await);
        ok(C, "clear sibling", sibling.clear().await);
    }
    if !caps.patterns {
        return;
    }
    let cache = cache_for(make, C).await;
    let keys: &[(&str, &[&str])] = &[
        // key, the patterns (below) that match it
        ("user:7", &["user:?", "*:7", "*7"]),
        ("user:17", &["*7"]),
        ("user:я", &["user:?"]),
        ("user:яя", &[]),
        ("a*b", &[r"a\*b"]),
        ("axb", &[]),
        ("q?", &[r"q\?"]),
        ("qx", &[]),
        ("[1]", &["[1]"]),
        ("1", &[]),
    ];
    for pattern in ["user:?", "*:7", "*7", r"a\*b", r"q\?", "[1]"] {
        for (k, _) in keys {
            ok(C, "set", cache.set(k, *k, None).await);
        }
        let n = ok(C, "delete_pattern", cache.delete_pattern(pattern).await);
        let matching: BTreeSet<&str> = keys
            .iter()
            .filter(|(_, pats)| pats.contains(&pattern))
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(
            n,
            matching.len() as u64,
            "[{C}] delete_pattern({pattern:?}) must delete exactly {matching:?}"
        );
        for (k, _) in keys {
            assert_eq!(
                ok(C, "exists", cache.exists(k).await),
                !matching.contains(k),
                "[{C}] after delete_pattern({pattern:?}), key {k:?} is in the wrong state"
            );
        }
    }
}

/// The same key in two namespaces holds two values; deleting one leaves the other.
pub async fn namespaces_isolated<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "namespaces_isolated";
    let a = cache_for(make, C).await;
    let b = cache_for(make, C).await;
    ok(C, "set in a", a.set("k", "in a", None).await);
    ok(C, "set in b", b.set("k", "in b", None).await);
    assert_eq!(
        ok(C, "get from a", a.get::<String>("k").await).as_deref(),
        Some("in a"),
        "[{C}] namespace a must keep its value"
    );
    assert_eq!(
        ok(C, "get from b", b.get::<String>("k").await).as_deref(),
        Some("in b"),
        "[{C}] namespace b must keep its value"
    );
    assert!(
        ok(C, "delete in a", a.delete("k").await),
        "[{C}] delete in a must find the key"
    );
    assert_eq!(
        ok(C, "get from b", b.get::<String>("k").await).as_deref(),
        Some("in b"),
        "[{C}] delete in a must not touch b"
    );
}

/// A namespace that extends another (`app` and `app:eu`) shares nothing with
/// it: `app` cannot read, overwrite, pattern-delete or clear `app:eu`'s entries
/// through a key that starts with `eu:`, and the other way round.
pub async fn nested_namespaces<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "nested_namespaces";
    let base = fresh_namespace(C);
    let outer = make(&base).await;
    let inner = make(&format!("{base}:eu")).await;
    ok(
        C,
        "set in the inner namespace",
        inner.set("widget:7", "eu widget", None).await,
    );
    assert_eq!(
        ok(C, "get from the outer", outer.get::<String>("eu:widget:7").await),
        None,
        "[{C}] namespace {base:?} read the entry of namespace \"{base}:eu\" through key \"eu:widget:7\""
    );
    ok(
        C,
        "set in the outer namespace",
        outer.set("eu:widget:7", "outer widget", None).await,
    );
    assert_eq!(
        ok(
            C,
            "get from the inner",
            inner.get::<String>("widget:7").await
        )
        .as_deref(),
        Some("eu widget"),
        "[{C}] a write in {base:?} under \"eu:widget:7\" overwrote the inner namespace's entry"
    );
    if let Ok(n) = outer.delete_pattern("eu:*").await {
        assert_eq!(
            n, 1,
            "[{C}] delete_pattern(\"eu:*\") in {base:?} must delete only its own key"
        );
    }
    assert!(
        ok(C, "exists in the inner", inner.exists("widget:7").await),
        "[{C}] delete_pattern in {base:?} deleted an entry of \"{base}:eu\""
    );
    ok(
        C,
        "set in the outer namespace",
        outer.set("k", "outer", None).await,
    );
    ok(C, "clear the outer namespace", outer.clear().await);
    assert!(
        ok(C, "exists in the inner", inner.exists("widget:7").await),
        "[{C}] clear() of {base:?} removed the entries of \"{base}:eu\""
    );
    ok(C, "clear the inner namespace", inner.clear().await);
}

/// `clear` empties its namespace and leaves other namespaces alone (also when the namespace holds glob characters).
pub async fn clear_namespace<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "clear_namespace";
    let base = fresh_namespace(C);
    for (ns, other_ns) in [
        (format!("{base}a"), format!("{base}b")),
        (format!("{base}*"), format!("{base}x")),
        (format!("{base}[x]"), format!("{base}x")),
        (format!("{base}?"), format!("{base}y")),
    ] {
        let cache = make(&ns).await;
        let other = make(&other_ns).await;
        for i in 0..30 {
            ok(C, "set", cache.set(&format!("k{i}"), &i, None).await);
            ok(
                C,
                "set in the other namespace",
                other.set(&format!("k{i}"), &i, None).await,
            );
        }
        ok(C, "clear", cache.clear().await);
        for i in 0..30 {
            assert!(
                !ok(C, "exists", cache.exists(&format!("k{i}")).await),
                "[{C}] clear of {ns:?} left k{i}"
            );
            assert!(
                ok(
                    C,
                    "exists in the other",
                    other.exists(&format!("k{i}")).await
                ),
                "[{C}] clear of {ns:?} removed k{i} of namespace {other_ns:?}"
            );
        }
        ok(C, "clear of the other", other.clear().await);
    }
}

/// Bytes with all 256 values, and empty values of several types, round-trip.
pub async fn binary_and_empty_values<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "binary_and_empty_values";
    let cache = cache_for(make, C).await;
    let all: Vec<u8> = (0..=255u8).collect();
    ok(C, "set bytes", cache.set("bytes", &all, None).await);
    assert_eq!(
        ok(C, "get bytes", cache.get::<Vec<u8>>("bytes").await),
        Some(all),
        "[{C}] all 256 byte values must round-trip"
    );
    ok(
        C,
        "set empty bytes",
        cache.set("empty-bytes", &Vec::<u8>::new(), None).await,
    );
    assert_eq!(
        ok(
            C,
            "get empty bytes",
            cache.get::<Vec<u8>>("empty-bytes").await
        ),
        Some(Vec::new()),
        "[{C}] an empty Vec<u8> must read back as Some(empty), not None"
    );
    ok(
        C,
        "set empty string",
        cache.set("empty-string", "", None).await,
    );
    assert_eq!(
        ok(
            C,
            "get empty string",
            cache.get::<String>("empty-string").await
        ),
        Some(String::new()),
        "[{C}] an empty String must read back as Some(\"\")"
    );
    ok(C, "set unit", cache.set("unit", &(), None).await);
    assert_eq!(
        ok(C, "get unit", cache.get::<()>("unit").await),
        Some(()),
        "[{C}] () must read back as Some(())"
    );
    let text = "nul \0, crlf \r\n, high \u{10FFFF}";
    ok(C, "set control text", cache.set("text", text, None).await);
    assert_eq!(
        ok(C, "get control text", cache.get::<String>("text").await).as_deref(),
        Some(text),
        "[{C}] text with NUL and CRLF must round-trip"
    );
}

/// Keys with non-ASCII characters round-trip.
pub async fn unicode_keys<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "unicode_keys";
    let cache = cache_for(make, C).await;
    for (i, key) in ["ключ:🚀", "キー", "clé:é", "e\u{301}"].iter().enumerate() {
        ok(C, "set", cache.set(key, &i, None).await);
    }
    for (i, key) in ["ключ:🚀", "キー", "clé:é", "e\u{301}"].iter().enumerate() {
        assert_eq!(
            ok(C, "get", cache.get::<usize>(key).await),
            Some(i),
            "[{C}] key {key:?} must round-trip"
        );
    }
    assert_eq!(
        ok(C, "get of a similar key", cache.get::<usize>("é").await),
        None,
        "[{C}] keys must be compared exactly (no normalisation)"
    );
}

/// Keys with spaces, CR/LF, glob characters, 300 bytes, or protocol text either
/// round-trip or are refused with [`Error::InvalidKey`]; no other key is touched.
pub async fn hostile_keys<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "hostile_keys";
    let cache = cache_for(make, C).await;
    let long = "k".repeat(300);
    let long2 = format!("{}x", "k".repeat(299));
    let keys: Vec<String> = vec![
        "a b".into(),
        "a_b".into(),
        "a\r\nb".into(),
        "a\r\nflush_all".into(),
        "a\r\nFLUSHALL\r\n".into(),
        "a\r\ndelete sentinel".into(),
        "*".into(),
        "?".into(),
        "[]".into(),
        "[a-z]*?".into(),
        "tab\there".into(),
        "nul\0byte".into(),
        "".into(),
        " ".into(),
        "\\".into(),
        long,
        long2,
    ];
    ok(
        C,
        "set sentinel",
        cache.set("sentinel", "untouched", None).await,
    );
    let mut stored = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        match cache.set(key, &i, None).await {
            Ok(()) => {
                stored.insert(key.clone(), i);
            }
            Err(Error::InvalidKey { .. }) => {}
            Err(e) => panic!(
                "[{C}] set of key {key:?} must succeed or return Error::InvalidKey, got: {e}"
            ),
        }
    }
    for (key, i) in &stored {
        assert_eq!(
            ok(C, "get", cache.get::<usize>(key).await),
            Some(*i),
            "[{C}] key {key:?} was accepted, so must read back its own value (distinct keys must stay distinct)"
        );
    }
    assert_eq!(
        ok(C, "get sentinel", cache.get::<String>("sentinel").await).as_deref(),
        Some("untouched"),
        "[{C}] writing hostile keys must never touch other keys"
    );
    for key in stored.keys() {
        assert!(
            ok(C, "delete", cache.delete(key).await),
            "[{C}] key {key:?} must be deletable"
        );
    }
    assert_eq!(
        ok(C, "get sentinel", cache.get::<String>("sentinel").await).as_deref(),
        Some("untouched"),
        "[{C}] deleting hostile keys must never touch other keys"
    );
}

/// A 1 MiB value round-trips.
pub async fn large_values<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "large_values";
    let cache = cache_for(make, C).await;
    let big: String = (0..1024 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    ok(C, "set of 1 MiB", cache.set("big", &big, None).await);
    let back = ok(C, "get of 1 MiB", cache.get::<String>("big").await);
    assert!(
        back.as_ref() == Some(&big),
        "[{C}] a 1 MiB value must read back unchanged"
    );
}

/// 32 tasks × 50 writes over 8 shared keys; afterwards each key holds one of the values written to it.
pub async fn concurrent_writers<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "concurrent_writers";
    const TASKS: usize = 32;
    const WRITES: usize = 50;
    const KEYS: usize = 8;
    let cache = cache_for(make, C).await;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let cache = cache.clone();
        tasks.spawn(async move {
            for w in 0..WRITES {
                let key = format!("k{}", (t + w) % KEYS);
                cache
                    .set(&key, &format!("{key}/t{t}/w{w}"), None)
                    .await
                    .unwrap_or_else(|e| panic!("[{C}] concurrent set of {key} failed: {e}"));
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap_or_else(|e| panic!("[{C}] a writer task failed: {e}"));
    }
    for k in 0..KEYS {
        let key = format!("k{k}");
        let v = ok(C, "get", cache.get::<String>(&key).await)
            .unwrap_or_else(|| panic!("[{C}] {key} was written 200 times but reads as None"));
        let valid = (0..TASKS)
            .any(|t| (0..WRITES).any(|w| (t + w) % KEYS == k && v == format!("{key}/t{t}/w{w}")));
        assert!(
            valid,
            "[{C}] {key} reads {v:?}, which no writer wrote to it (torn or crossed write)"
        );
    }
}

/// Fenced fills (the local tier's promise across processes): a fill whose
/// read came before another cache's invalidation of the key lands nowhere.
/// Cache A misses and starts a slow body (the value before the mutation),
/// cache B deletes the key, A's body completes: neither A nor B reads A's
/// value afterwards, and `stats().fenced_fills` counts it. `make` must
/// build the two caches over one store (as two processes would share it).
///
/// A store that does not implement [`Backend::get_fenced`]
/// and its siblings fails this check (fills then write unconditionally), so
/// [`run`] leaves it out: call it yourself once your store fences. The
/// built-in stores pass it (the in-memory one through its shared local tier).
pub async fn fenced_fills<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "fenced_fills";
    let a = cache_for(make, C).await;
    let b = make(a.namespace()).await;
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let slow = a.get_or_set("k", None, || async move {
        let before = "before the mutation".to_owned();
        let _ = started_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), held).await;
        before
    });
    let mutate = async {
        let _ = tokio::time::timeout(Duration::from_secs(10), started).await;
        let deleted = b.delete("k").await;
        let _ = release.send(());
        deleted
    };
    let (got, deleted) = tokio::join!(slow, mutate);
    assert_eq!(ok(C, "get_or_set", got), "before the mutation");
    ok(C, "delete", deleted);
    for (name, cache) in [("the writer", &b), ("the slow reader", &a)] {
        assert_eq!(
            ok(C, "get", cache.get::<String>("k").await),
            None,
            "[{C}] {name} reads a value filled from before the invalidation"
        );
    }
    assert!(
        a.stats().fenced_fills >= 1,
        "[{C}] stats().fenced_fills must count the refused fill: {:?}",
        a.stats()
    );
    // After the invalidation, fills land again.
    let fresh = a
        .get_or_set("k", None, || async { "after".to_owned() })
        .await;
    assert_eq!(ok(C, "get_or_set", fresh), "after");
    assert_eq!(
        ok(C, "get", b.get::<String>("k").await).as_deref(),
        Some("after"),
        "[{C}] a fill read after the invalidation must land"
    );

    // The refresh of an entry kept stale for fail-safe is fenced too: it
    // replaces the stale entry only while nothing invalidated it.
    let policy = FailSafe::new(Duration::from_secs(60));
    let refused = a.stats().fenced_fills;
    let first = fail_safe_read(&a, "stale", policy, async { Ok("v1".to_owned()) }).await;
    assert_eq!(first.as_deref(), Ok("v1"));
    wait_until_expired::<String>(C, &a, "stale").await;
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let slow = fail_safe_read(&a, "stale", policy, async move {
        let _ = started_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), held).await;
        Ok("computed before the mutation".to_owned())
    });
    let mutate = async {
        let _ = tokio::time::timeout(Duration::from_secs(10), started).await;
        let deleted = b.delete("stale").await;
        let _ = release.send(());
        deleted
    };
    let (got, deleted) = tokio::join!(slow, mutate);
    assert_eq!(got.as_deref(), Ok("computed before the mutation"));
    ok(C, "delete", deleted);
    assert_eq!(
        ok(C, "get", b.get::<String>("stale").await),
        None,
        "[{C}] a fail-safe refresh landed over an invalidation that came after its read"
    );
    assert!(
        a.stats().fenced_fills > refused,
        "[{C}] the refused refresh must be counted: {:?}",
        a.stats()
    );
}

/// A read through `cache` with fail-safe `policy` and a 1 s TTL (what
/// `#[cache(expire = 1, fail_safe_max = …)]` does).
async fn fail_safe_read<V, Fut>(
    cache: &Cache,
    key: &str,
    policy: FailSafe,
    body: Fut,
) -> Result<V, &'static str>
where
    V: serde::Serialize + serde::de::DeserializeOwned + Send + Sync,
    Fut: Future<Output = Result<V, &'static str>>,
{
    let full = cache.full_key(key).into_owned();
    let (out, _) = cache
        .read_through(
            &full,
            cache_core::codec::Salt::NONE,
            body,
            Policy {
                fail_safe: Some(policy),
                ..Policy::new(Duration::from_secs(1), TierUse::OFF)
            },
        )
        .await;
    out
}

/// Polls until `key` (written with a 1 s TTL) reads as expired; at most 5 s.
/// `T` is the entry's type (a read with another type would delete it).
async fn wait_until_expired<T: serde::de::DeserializeOwned>(check: &str, cache: &Cache, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while ok(check, "get while waiting", cache.get::<T>(key).await).is_some() {
        assert!(
            Instant::now() < deadline,
            "[{check}] a key with a 1 s TTL was still fresh after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A read through `cache` whose entry carries `tags` (what `#[cache(tags = [...])]` does).
async fn tagged_read(cache: &Cache, key: &str, tags: &[&str], value: u32) -> u32 {
    let full = cache.full_key(key).into_owned();
    let stored = tags.iter().map(|t| cache.tag_key(t)).collect();
    let (out, _): (cache_core::Plain<u32>, _) = cache
        .read_through(
            &full,
            cache_core::codec::Salt::NONE,
            async move { cache_core::Plain(value) },
            Policy {
                tags: Some(stored),
                ..Policy::new(Duration::from_secs(600), TierUse::OFF)
            },
        )
        .await;
    out.0
}

/// Tags: invalidating a tag makes every entry carrying it a miss (seen by
/// another cache over the same store too), and leaves the others.
pub async fn tags<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "tags";
    let a = cache_for(make, C).await;
    let b = make(a.namespace()).await;
    assert_eq!(tagged_read(&a, "w:1", &["user:7", "widgets"], 1).await, 1);
    assert_eq!(tagged_read(&a, "w:2", &["user:8", "widgets"], 2).await, 2);
    assert_eq!(tagged_read(&a, "w:3", &["user:7"], 3).await, 3);
    assert_eq!(
        tagged_read(&b, "w:1", &["user:7", "widgets"], 0).await,
        1,
        "[{C}] a hit before"
    );
    ok(C, "invalidate_tag", b.invalidate_tag("user:7").await);
    // Past the invalidation's millisecond (a read in it stores a dead entry).
    tokio::time::sleep(Duration::from_millis(3)).await;
    for cache in [&a, &b] {
        assert_eq!(
            ok(C, "get", cache.get::<u32>("w:1").await),
            None,
            "[{C}] a tagged entry survived its tag"
        );
        assert_eq!(
            ok(C, "get", cache.get::<u32>("w:3").await),
            None,
            "[{C}] a tagged entry survived its tag"
        );
        assert_eq!(
            ok(C, "get", cache.get::<u32>("w:2").await),
            Some(2),
            "[{C}] another tag's entry went too"
        );
    }
    assert_eq!(
        tagged_read(&a, "w:1", &["user:7", "widgets"], 10).await,
        10,
        "[{C}] the body runs again"
    );
    assert_eq!(
        tagged_read(&b, "w:1", &["user:7", "widgets"], 0).await,
        10,
        "[{C}] and its fill lands"
    );
    ok(
        C,
        "invalidate_tags",
        a.invalidate_tags(&["widgets", "nothing-carries-this"])
            .await,
    );
    assert_eq!(
        ok(C, "get", b.get::<u32>("w:2").await),
        None,
        "[{C}] invalidate_tags"
    );
}

/// Fail-safe ([`FailSafe`]): past its TTL an entry answers when the body
/// fails, the failing body is not run again within the throttle, and a
/// deleted entry is never a fallback. Takes about one second (a 1 s TTL).
pub async fn fail_safe<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "fail_safe";
    let cache = cache_for(make, C).await;
    let policy = FailSafe::new(Duration::from_secs(60)).throttle(Duration::from_secs(30));
    let runs = AtomicU64::new(0);
    let counted = |answer: Result<u32, &'static str>| {
        runs.fetch_add(1, Ordering::SeqCst);
        async move { answer }
    };
    assert_eq!(
        fail_safe_read(&cache, "k", policy, counted(Ok(1))).await,
        Ok(1)
    );
    assert_eq!(
        fail_safe_read(&cache, "gone", policy, counted(Ok(2))).await,
        Ok(2)
    );
    ok(C, "delete", cache.delete("gone").await);
    wait_until_expired::<u32>(C, &cache, "k").await;
    let served = cache.stats().stale_served;
    assert_eq!(
        fail_safe_read(&cache, "k", policy, counted(Err("source down"))).await,
        Ok(1),
        "[{C}] the stale value must answer a failing body"
    );
    assert_eq!(
        cache.stats().stale_served,
        served + 1,
        "[{C}] stale_served must count it"
    );
    // Throttled: the next call is answered without the body.
    let before = runs.load(Ordering::SeqCst);
    let throttled = fail_safe_read(&cache, "k", policy, async {
        runs.fetch_add(1, Ordering::SeqCst);
        Err::<u32, _>("source down")
    })
    .await;
    assert_eq!(throttled, Ok(1));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        before,
        "[{C}] the failing body ran again within the throttle"
    );
    assert_eq!(
        fail_safe_read(&cache, "gone", policy, counted(Err("source down"))).await,
        Err::<u32, _>("source down"),
        "[{C}] a deleted entry must never be a fallback"
    );
}

/// 50 concurrent `get_or_set` on one missing key run the body once; the others are coalesced.
pub async fn single_flight<F, Fut>(make: &F)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "single_flight";
    const CALLERS: u64 = 50;
    let cache = cache_for(make, C).await;
    let runs = Arc::new(AtomicU64::new(0));
    let misses_before = cache.stats().misses;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CALLERS {
        let cache = cache.clone();
        let runs = runs.clone();
        tasks.spawn(async move {
            let watch = cache.clone();
            cache
                .get_or_set("hot", None, || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    // Hold the flight open until every caller has missed (and so
                    // joined it), bounded: a slow store cannot hang the suite.
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while watch.stats().misses < misses_before + CALLERS
                        && Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    "computed".to_owned()
                })
                .await
        });
    }
    while let Some(done) = tasks.join_next().await {
        let value = done.unwrap_or_else(|e| panic!("[{C}] a caller task failed: {e}"));
        assert_eq!(
            ok(C, "get_or_set", value),
            "computed",
            "[{C}] every caller must get the computed value"
        );
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "[{C}] {CALLERS} concurrent misses on one key must run the body once"
    );
    let coalesced = cache.stats().coalesced;
    assert!(
        coalesced >= 1,
        "[{C}] stats().coalesced must count the callers that waited, got {coalesced}"
    );
    assert_eq!(
        ok(C, "get after get_or_set", cache.get::<String>("hot").await).as_deref(),
        Some("computed"),
        "[{C}] get_or_set must store the value"
    );
}

/// `increment`: creates at `delta`, adds exactly under concurrency, peeks
/// another counter in the same call, refunds never go below zero nor create a
/// key, the creation TTL applies, and counters of two namespaces stay apart.
/// Counters are read through `increment` (a peek), not `get`/`ttl`/`exists`:
/// a store may keep them apart from cached values (Memcached does). A backend
/// without counters must answer [`Error::Unsupported`].
pub async fn counters<F, Fut>(make: &F, caps: Capabilities)
where
    F: Fn(&str) -> Fut,
    Fut: Future<Output = Cache>,
{
    const C: &str = "counters";
    let cache = cache_for(make, C).await;
    let minute = Duration::from_secs(60);
    if !caps.counters {
        let got = cache.increment("n", 1, minute, None).await;
        assert!(
            matches!(got, Err(Error::Unsupported { .. })),
            "{C}: a backend without counters must answer Error::Unsupported, got {got:?}"
        );
        return;
    }
    let inc = |key: &'static str, delta: i64, peek: Option<&'static str>| {
        let cache = cache.clone();
        async move { cache.increment(key, delta, minute, peek).await.unwrap() }
    };
    assert_eq!(inc("n", 1, None).await, (1, 0), "{C}: created at delta");
    assert_eq!(inc("n", 2, None).await, (3, 0), "{C}: added");
    assert_eq!(
        inc("m", 1, Some("n")).await,
        (1, 3),
        "{C}: peek reads the other counter"
    );
    assert_eq!(inc("n", -1, None).await, (2, 0), "{C}: refund");
    assert_eq!(inc("n", -5, None).await, (0, 0), "{C}: never below zero");
    assert_eq!(
        inc("never", -1, None).await,
        (0, 0),
        "{C}: refund on a missing counter"
    );
    assert_eq!(
        inc("never", 1, None).await.0,
        1,
        "{C}: a refund creates nothing"
    );

    // The TTL given at creation applies: a two-second counter disappears
    // (bounded poll). Not one second: on memcached's once-a-second clock a
    // 1 s item can be gone before the probe below.
    cache
        .increment("short", 5, Duration::from_secs(2), None)
        .await
        .unwrap();
    assert_eq!(
        inc("probe", 0, Some("short")).await.1,
        5,
        "{C}: short-lived counter present"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while inc("probe", 0, Some("short")).await.1 != 0 {
        assert!(
            Instant::now() < deadline,
            "{C}: a counter with a 2 s TTL still there after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Exact under concurrency.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let cache = cache.clone();
        tasks.spawn(async move {
            for _ in 0..10 {
                cache.increment("hot", 1, minute, None).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap_or_else(|e| panic!("{C}: incrementing task failed: {e}"));
    }
    assert_eq!(inc("hot", 0, None).await.0, 320, "{C}: 32 x 10 increments");

    // Namespaces keep counters apart.
    let other = cache_for(make, "counters-other").await;
    assert_eq!(
        other.increment("hot", 1, minute, None).await.unwrap().0,
        1,
        "{C}: another namespace has its own counter"
    );
}

//! The `#[cache]` / `#[invalidate]` behaviour suite, run against every store.
//!
//! Included by `tests/macros.rs` (memory), `tests/macros_redis.rs`,
//! `tests/macros_redis_cluster.rs` and `tests/macros_memcached.rs`; each
//! provides `global()` (the binary's global cache over its store, made by
//! [`global_over`]) and `PATTERNS` (whether the store can delete by pattern).

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use cacheside::{Cache, Error};

use cacheside::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::common::{run, Calls};
use crate::{global, PATTERNS};

/// The global cache of a suite binary: namespace `t` over the store
/// `connect` gives (called once, by the first test that needs it).
pub async fn global_over<B, F, Fut>(connect: F) -> &'static Cache
where
    B: Backend,
    F: FnOnce() -> Fut,
    Fut: Future<Output = B>,
{
    // The stores are healthy here: a slow round trip on a loaded machine is
    // no failure to fail open on (which would change the counts asserted).
    crate::common::global_cache(|| async {
        Cache::builder(connect().await)
            .namespace("t")
            .op_timeout(std::time::Duration::from_secs(2))
            .build()
    })
    .await
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Widget {
    id: u64,
    name: String,
}

#[derive(Debug, PartialEq)]
struct AppError(&'static str);

/// Runs of `get_widget` for widget 7, and for widget 0 (an error): two
/// tests count them while running in parallel.
static GET_WIDGET: OnceLock<Calls> = OnceLock::new();
static GET_NO_WIDGET: OnceLock<Calls> = OnceLock::new();

#[cacheside::cache(key_prefix = "widget", resource_id = "widget_id", expire = 600)]
async fn get_widget(widget_id: u64) -> Result<Widget, AppError> {
    match widget_id {
        0 => &GET_NO_WIDGET,
        _ => &GET_WIDGET,
    }
    .get_or_init(Calls::default)
    .hit();
    if widget_id == 0 {
        return Err(AppError("no widget 0"));
    }
    Ok(Widget {
        id: widget_id,
        name: format!("w{widget_id}"),
    })
}

#[test]
fn miss_then_hit_with_boilerplate_key_and_ttl() {
    run(async {
        let cache = global().await;
        let calls = GET_WIDGET.get_or_init(Calls::default);
        let before = calls.get();
        let w = get_widget(7).await.unwrap();
        assert_eq!(
            w,
            Widget {
                id: 7,
                name: "w7".into()
            }
        );
        assert_eq!(get_widget(7).await.unwrap(), w);
        assert_eq!(calls.get() - before, 1, "second call must be a hit");
        // The provider API reaches the macro's entry under `{key_prefix}:{resource_id}`.
        assert_eq!(
            cache.get::<Widget>("widget:7").await.unwrap(),
            Some(w.clone())
        );
        let ttl = cache
            .ttl("widget:7")
            .await
            .unwrap()
            .expect("entry has a TTL");
        assert!(
            ttl <= Duration::from_secs(600) && ttl > Duration::from_secs(590),
            "{ttl:?}"
        );
        // The typed companion computes the same key and invalidates it.
        let entry = get_widget_cache_entry(7);
        assert_eq!(entry.key(), "widget:7");
        assert_eq!(entry.get().await.unwrap(), Some(w));
        assert!(entry.invalidate().await.unwrap());
        assert!(!cache.exists("widget:7").await.unwrap());
    });
}

#[test]
fn errors_are_not_cached() {
    run(async {
        global().await;
        let calls = GET_NO_WIDGET.get_or_init(Calls::default);
        let before = calls.get();
        assert_eq!(get_widget(0).await, Err(AppError("no widget 0")));
        assert_eq!(get_widget(0).await, Err(AppError("no widget 0")));
        assert_eq!(calls.get() - before, 2);
        assert!(!global().await.exists("widget:0").await.unwrap());
    });
}

static FIND: OnceLock<Calls> = OnceLock::new();

#[cacheside::cache(key = "find:{name}")]
async fn find(name: &str) -> Option<u32> {
    FIND.get_or_init(Calls::default).hit();
    (name == "one").then_some(1)
}

static FIND_NONE: OnceLock<Calls> = OnceLock::new();

#[cacheside::cache(key = "find-none:{name}", cache_none = true)]
async fn find_caching_none(name: &str) -> Option<u32> {
    FIND_NONE.get_or_init(Calls::default).hit();
    (name == "one").then_some(1)
}

#[test]
fn option_caches_some_only_unless_asked() {
    run(async {
        global().await;
        let calls = FIND.get_or_init(Calls::default);
        assert_eq!(find("one").await, Some(1));
        assert_eq!(find("one").await, Some(1));
        assert_eq!(find("zero").await, None);
        assert_eq!(find("zero").await, None);
        assert_eq!(calls.get(), 3, "Some cached once, None never");

        let calls = FIND_NONE.get_or_init(Calls::default);
        assert_eq!(find_caching_none("zero").await, None);
        assert_eq!(find_caching_none("zero").await, None);
        assert_eq!(calls.get(), 1, "None cached with cache_none = true");
    });
}

static UNCACHED: OnceLock<Calls> = OnceLock::new();

#[cacheside::cache(key = "uncached", expire = 0)]
async fn never_cached() -> u32 {
    UNCACHED.get_or_init(Calls::default).hit() as u32
}

#[test]
fn expire_zero_is_not_cached() {
    run(async {
        global().await;
        assert_eq!(never_cached().await, 1);
        assert_eq!(never_cached().await, 2);
        assert!(!global().await.exists("uncached").await.unwrap());
    });
}

#[cacheside::cache(key = "default-ttl")]
async fn default_ttl() -> String {
    "v".into()
}

#[test]
fn absent_expire_uses_the_caches_default_ttl() {
    run(async {
        let cache = global().await;
        default_ttl().await;
        let ttl = cache.ttl("default-ttl").await.unwrap().unwrap();
        assert!(
            ttl > Duration::from_secs(3590) && ttl <= Duration::from_secs(3600),
            "{ttl:?}"
        );
    });
}

// --- argument shapes -------------------------------------------------------

struct Db {
    rows: Vec<&'static str>,
}

/// An extractor-like wrapper, as in axum's `Path(id): Path<u64>`. Its name
/// would make `#[cache]` take the functions below for axum handlers (and add
/// a request method parameter): `handler = false` says they are not.
struct Path<T>(T);

#[derive(Deserialize, Serialize, Hash)]
struct Page {
    page: u32,
    size: u32,
}

struct Query<T>(T);

#[cacheside::cache(key_prefix = "row", resource_id = "id", handler = false)]
async fn row(Path(id): Path<usize>, db: &Db) -> Option<String> {
    db.rows.get(id).map(|s| s.to_string())
}

#[cacheside::cache(key = "rows:page:{q.page}:{q.size}", handler = false)]
async fn rows_page(Query(q): Query<Page>, db: &Db) -> Vec<String> {
    let start = ((q.page - 1) * q.size) as usize;
    db.rows
        .iter()
        .skip(start)
        .take(q.size as usize)
        .map(|s| s.to_string())
        .collect()
}

#[cacheside::cache(key_prefix = "lang:{lang}", resource_id = "id")]
async fn localized(lang: &str, id: u32) -> String {
    format!("{lang}-{id}")
}

#[test]
fn destructured_reference_and_templated_arguments() {
    run(async {
        let cache = global().await;
        let db = Db {
            rows: vec!["a", "b", "c", "d", "e"],
        };
        assert_eq!(row(Path(1), &db).await.as_deref(), Some("b"));
        assert_eq!(
            cache.get::<String>("row:1").await.unwrap().as_deref(),
            Some("b")
        );
        // The companion takes the plain values: the id, the fields the key reads.
        assert_eq!(row_cache_entry(1).key(), "row:1");
        assert_eq!(rows_page_cache_entry(2, 2).key(), "rows:page:2:2");

        let page = rows_page(Query(Page { page: 2, size: 2 }), &db).await;
        assert_eq!(page, vec!["c", "d"]);
        assert_eq!(
            cache.get::<Vec<String>>("rows:page:2:2").await.unwrap(),
            Some(page)
        );

        assert_eq!(localized("fr", 3).await, "fr-3");
        assert!(cache.exists("lang:fr:3").await.unwrap());
    });
}

static HASHED: OnceLock<Calls> = OnceLock::new();

#[cacheside::cache(key_prefix = "search")]
async fn search(term: &str, limit: u8) -> Vec<String> {
    HASHED.get_or_init(Calls::default).hit();
    vec![format!("{term}:{limit}")]
}

#[test]
fn without_resource_id_the_key_hashes_every_argument() {
    run(async {
        global().await;
        let calls = HASHED.get_or_init(Calls::default);
        search("rust", 10).await;
        search("rust", 10).await;
        search("rust", 11).await;
        assert_eq!(calls.get(), 2, "same arguments hit, other arguments miss");
        let a = search_cache_entry("rust", 10);
        let b = search_cache_entry("rust", 11);
        assert!(
            a.key().starts_with("search:") && a.key().len() == "search:".len() + 32,
            "{}",
            a.key()
        );
        assert_ne!(a.key(), b.key());
        // Stable across processes and machines: pinned.
        assert_eq!(a.key(), search_cache_entry("rust", 10).key());
        assert_eq!(
            a.key(),
            format!(
                "search:{}",
                cacheside::backend::hash::stable_hex(&(&"rust", &10u8))
            )
        );
    });
}

struct Repo {
    calls: Calls,
}

impl Repo {
    #[cacheside::cache(key_prefix = "repo-item", resource_id = "id", expire = 60)]
    pub(crate) async fn item(&self, id: u32) -> Result<String, AppError> {
        self.calls.hit();
        Ok(format!("item{id}"))
    }
}

#[cacheside::cache(key = "generic:{id}")]
async fn generic<T: ToString + Send>(id: u32, label: T) -> String {
    format!("{id}:{}", label.to_string())
}

#[test]
fn methods_and_generics() {
    run(async {
        global().await;
        let repo = Repo {
            calls: Calls::default(),
        };
        assert_eq!(repo.item(1).await.unwrap(), "item1");
        assert_eq!(repo.item(1).await.unwrap(), "item1");
        assert_eq!(repo.calls.get(), 1);
        assert_eq!(Repo::item_cache_entry(1).key(), "repo-item:1");

        assert_eq!(generic(5, "x").await, "5:x");
        assert_eq!(
            generic(5, "y").await,
            "5:x",
            "same instantiation, same key: cached"
        );
        // Another instantiation never reads this one's entry (its type
        // parameters are in the fingerprint), even under one key.
        assert_eq!(generic(5, 99).await, "5:99");
        assert_eq!(
            generic(5, 100).await,
            "5:99",
            "and is cached in its own right"
        );
    });
}

// --- one argument tuple, one key -------------------------------------------

static PROFILE: OnceLock<Calls> = OnceLock::new();

#[cacheside::cache(key = "profile:{tenant}:{user}", expire = 60)]
async fn profile(tenant: &str, user: &str) -> String {
    PROFILE.get_or_init(Calls::default).hit();
    format!("{tenant}/{user}")
}

#[test]
fn placeholder_values_that_hold_the_separator_build_distinct_keys() {
    run(async {
        let cache = global().await;
        assert_eq!(profile("acme:admin", "bob").await, "acme:admin/bob");
        assert_eq!(
            profile("acme", "admin:bob").await,
            "acme/admin:bob",
            "another tuple must not be served the first tuple's entry"
        );
        assert_eq!(PROFILE.get().unwrap().get(), 2);
        assert_eq!(
            profile_cache_entry("acme", "admin:bob").key(),
            "profile:acme:admin%3Abob"
        );
        // The provider API reaches the entry with the same encoding.
        let key = format!(
            "profile:{}:{}",
            cacheside::keys::part("acme:admin"),
            cacheside::keys::part("bob")
        );
        assert_eq!(key, "profile:acme%3Aadmin:bob");
        assert_eq!(
            cache.get::<String>(&key).await.unwrap().as_deref(),
            Some("acme:admin/bob")
        );
    });
}

#[cacheside::cache(key = "notes:{owner}:{id}", expire = 60)]
async fn note(owner: &str, id: u32) -> String {
    format!("{owner}#{id}")
}

#[cacheside::invalidate(patterns = ["notes:{owner}:*"])]
async fn drop_notes(owner: &str) -> Result<(), String> {
    let _ = owner;
    Ok(())
}

#[test]
fn values_inside_invalidation_patterns_are_literals() {
    run(async {
        let cache = global().await;
        for owner in ["ana", "*", r"back\slash", "q?", "[x]"] {
            note(owner, 1).await;
        }
        drop_notes("*").await.unwrap();
        let exists = |owner: &'static str| {
            let cache = cache.clone();
            async move {
                cache
                    .exists(note_cache_entry(owner, 1).key())
                    .await
                    .unwrap()
            }
        };
        assert!(
            exists("ana").await,
            "owner `*` must not delete every owner's notes"
        );
        if PATTERNS {
            assert!(!exists("*").await, "owner `*`'s own notes are deleted");
            drop_notes(r"back\slash").await.unwrap();
            assert!(
                !exists(r"back\slash").await,
                "a backslash in the value must not make the pattern miss"
            );
            drop_notes("q?").await.unwrap();
            drop_notes("[x]").await.unwrap();
            assert!(!exists("q?").await && !exists("[x]").await);
            assert!(exists("ana").await);
        }
    });
}

struct Left;
struct Right;

impl Left {
    #[cacheside::cache(expire = 60)]
    async fn side(&self, id: u32) -> String {
        format!("left {id}")
    }
    #[cacheside::cache(resource_id = "id", expire = 60, companion = true)]
    async fn by_id(&self, id: u32) -> String {
        format!("left {id}")
    }
}

impl Right {
    #[cacheside::cache(expire = 60)]
    async fn side(&self, id: u32) -> String {
        format!("right {id}")
    }
    #[cacheside::cache(resource_id = "id", expire = 60, companion = true)]
    async fn by_id(&self, id: u32) -> String {
        format!("right {id}")
    }
}

#[test]
fn one_method_name_in_two_impl_blocks_gets_two_default_keys() {
    run(async {
        global().await;
        assert_eq!(Left.side(1).await, "left 1");
        assert_eq!(Right.side(1).await, "right 1", "hashed default key");
        assert_eq!(Left.by_id(1).await, "left 1");
        assert_eq!(
            Right.by_id(1).await,
            "right 1",
            "resource_id without key_prefix"
        );
        let key = Left::by_id_cache_entry(1).key().to_owned();
        assert!(key.ends_with("Left::by_id:1"), "{key}");
        assert_ne!(key, Right::by_id_cache_entry(1).key());
    });
}

struct Store<T>(std::marker::PhantomData<T>);

impl<T: Send + Sync + 'static> Store<T> {
    #[cacheside::cache(key_prefix = "store", resource_id = "id", expire = 60)]
    pub(crate) async fn kind(&self, id: u32) -> String {
        format!("{id}:{}", std::any::type_name::<T>())
    }
}

#[test]
fn a_generic_impl_does_not_serve_one_instantiation_to_another() {
    run(async {
        global().await;
        let bytes = Store::<u8>(std::marker::PhantomData);
        let words = Store::<u16>(std::marker::PhantomData);
        assert_eq!(bytes.kind(1).await, "1:u8");
        assert_eq!(words.kind(1).await, "1:u16");
        assert_eq!(bytes.kind(1).await, "1:u8");
        // One key, two instantiations: they replace each other's entry
        // (the fingerprint tells them apart), never read it.
        assert_eq!(
            Store::<u8>::kind_cache_entry(1)
                .get()
                .await
                .unwrap()
                .as_deref(),
            Some("1:u8"),
            "the companion reads its own instantiation"
        );
        assert_eq!(
            Store::<u16>::kind_cache_entry(1).get().await.unwrap(),
            None,
            "and not another's"
        );
    });
}

// --- what is cacheable is decided by the type system -----------------------

type ApiResult<T> = Result<T, String>;
type Maybe<T> = Option<T>;

static FLAKY: OnceLock<Calls> = OnceLock::new();

/// Fails on its first call (the database is down), succeeds afterwards.
#[cacheside::cache(key = "flaky:{id}", expire = 60, companion = false)]
async fn flaky(id: u32) -> ApiResult<u32> {
    if FLAKY.get_or_init(Calls::default).hit() == 1 {
        return Err("database down".into());
    }
    Ok(id)
}

static MAYBE: OnceLock<Calls> = OnceLock::new();

#[cacheside::cache(key = "maybe:{id}", expire = 60, companion = false)]
async fn maybe(id: u32) -> Maybe<u32> {
    (MAYBE.get_or_init(Calls::default).hit() > 1).then_some(id)
}

#[test]
fn errors_behind_a_result_alias_are_not_cached() {
    run(async {
        let cache = global().await;
        assert_eq!(flaky(3).await, Err("database down".to_string()));
        assert_eq!(
            flaky(3).await,
            Ok(3),
            "the Err must not be served after recovery"
        );
        assert_eq!(flaky(3).await, Ok(3));
        assert_eq!(FLAKY.get().unwrap().get(), 2, "Ok is cached");
        assert_eq!(
            cache.get::<u32>("flaky:3").await.unwrap(),
            Some(3),
            "the Ok value itself is stored"
        );
        assert_eq!(maybe(4).await, None);
        assert_eq!(
            maybe(4).await,
            Some(4),
            "None behind an alias is not cached"
        );
        assert_eq!(maybe(4).await, Some(4));
        assert_eq!(MAYBE.get().unwrap().get(), 2);
    });
}

// --- the envelope rejects a changed type -----------------------------------

mod deploy_one {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct User {
        pub id: u64,
        pub name: String,
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: Option<String>,
    #[serde(default)]
    is_admin: bool,
}

static USER: OnceLock<Calls> = OnceLock::new();

#[cacheside::cache(key = "deploy-user:{id}", expire = 60)]
async fn user(id: u64) -> User {
    USER.get_or_init(Calls::default).hit();
    User {
        id,
        name: "ana".into(),
        email: Some("ana@example.com".into()),
        is_admin: true,
    }
}

#[cacheside::cache(key = "versioned:{id}", expire = 60, version = 2)]
async fn versioned(id: u64) -> u64 {
    id * 10
}

#[test]
fn bytes_of_the_previous_deploys_struct_are_a_miss() {
    run(async {
        let cache = global().await;
        // The previous deploy cached `User { id, name }` under the key.
        let old = deploy_one::User {
            id: 1,
            name: "old name".into(),
        };
        cache.set("deploy-user:1", &old, None).await.unwrap();
        let now = user(1).await;
        assert_eq!(
            now.email.as_deref(),
            Some("ana@example.com"),
            "decoded old bytes into the new shape: {now:?}"
        );
        assert_eq!(USER.get().unwrap().get(), 1, "the body ran");
        assert_eq!(user(1).await, now, "and its value is cached");
        assert_eq!(USER.get().unwrap().get(), 1);
        // `version = N` separates entries of the same shape.
        cache.set("versioned:3", &7u64, None).await.unwrap();
        assert_eq!(
            versioned(3).await,
            30,
            "an entry without the version is a miss"
        );
        assert_eq!(versioned_cache_entry(3).get().await.unwrap(), Some(30));
    });
}

// --- single-flight ---------------------------------------------------------

static SLOW: OnceLock<Calls> = OnceLock::new();

#[cacheside::cache(key = "slow:{id}")]
async fn slow(id: u32) -> u32 {
    SLOW.get_or_init(Calls::default).hit();
    // Long enough that all callers arrive while the first one runs.
    tokio::time::sleep(Duration::from_millis(200)).await;
    id * 2
}

#[test]
fn concurrent_misses_run_the_body_once() {
    run(async {
        let cache = global().await;
        let before = cache.stats().coalesced;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(50));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    slow(21).await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 42);
        }
        assert_eq!(SLOW.get_or_init(Calls::default).get(), 1);
        assert!(cache.stats().coalesced - before >= 1);
    });
}

// --- invalidation ----------------------------------------------------------

#[cacheside::invalidate(
    key_prefix = "widget",
    resource_id = "widget_id",
    extra = ["widgets:count", "owner:{owner}"],
    patterns = ["widgets:page:*"]
)]
async fn rename_widget(widget_id: u64, owner: &str, fail: bool) -> Result<(), AppError> {
    if fail {
        Err(AppError("rename failed"))
    } else {
        Ok(())
    }
}

pub async fn seed(cache: &Cache, keys: &[&str]) {
    for k in keys {
        cache.set(k, &1u8, None).await.unwrap();
    }
}

#[test]
fn invalidate_deletes_key_extra_and_patterns_after_success_only() {
    run(async {
        let cache = global().await;
        let keys = [
            "widget:9",
            "widgets:count",
            "owner:ana",
            "widgets:page:1",
            "widgets:page:2",
            "widgets:other",
        ];
        seed(cache, &keys).await;

        assert!(rename_widget(9, "ana", true).await.is_err());
        for k in keys {
            assert!(
                cache.exists(k).await.unwrap(),
                "{k} must survive a failed mutation"
            );
        }

        rename_widget(9, "ana", false).await.unwrap();
        for k in &keys[..3] {
            assert!(!cache.exists(k).await.unwrap(), "{k} must be gone");
        }
        for k in &keys[3..5] {
            // Matched by `widgets:page:*`: gone where the store matches
            // patterns, left to expire (and logged) where it cannot.
            assert_eq!(!cache.exists(k).await.unwrap(), PATTERNS, "{k}");
        }
        assert!(
            cache.exists("widgets:other").await.unwrap(),
            "non-matching key stays"
        );
    });
}

static SEEN_BEFORE: OnceLock<std::sync::Mutex<Option<bool>>> = OnceLock::new();

#[cacheside::invalidate(key = "before:{id}", before = true)]
async fn invalidate_first(id: u32) -> Result<(), AppError> {
    let still_there = global()
        .await
        .exists(&format!("before:{id}"))
        .await
        .unwrap();
    *SEEN_BEFORE.get_or_init(Default::default).lock().unwrap() = Some(still_there);
    Err(AppError("even on error, `before` already deleted"))
}

#[test]
fn invalidate_before_runs_ahead_of_the_body() {
    run(async {
        let cache = global().await;
        seed(cache, &["before:1"]).await;
        assert!(invalidate_first(1).await.is_err());
        assert_eq!(*SEEN_BEFORE.get().unwrap().lock().unwrap(), Some(false));
    });
}

#[cacheside::cache(key = "corrupt:{id}")]
async fn corrupt_target(id: u32) -> Widget {
    Widget {
        id: id as u64,
        name: "fresh".into(),
    }
}

#[test]
fn corrupt_or_foreign_bytes_are_a_miss_and_get_replaced() {
    run(async {
        let cache = global().await;
        // A value of another type under the macro's key…
        cache.set("corrupt:1", "not a widget", None).await.unwrap();
        let errors = cache.stats().errors;
        assert_eq!(corrupt_target(1).await.name, "fresh");
        assert!(cache.stats().errors > errors, "counted as an error");
        // …was replaced by the right one.
        assert_eq!(
            cache
                .get::<Widget>("corrupt:1")
                .await
                .unwrap()
                .unwrap()
                .name,
            "fresh"
        );
    });
}

#[cacheside::cache(key = "big:{n}")]
async fn big_value(n: usize) -> Vec<u8> {
    vec![7u8; n]
}

#[test]
fn values_over_the_size_limit_are_skipped_not_errors() {
    run(async {
        let cache = global().await;
        let skipped = cache.stats().skipped;
        let v = big_value(5 * 1024 * 1024).await;
        assert_eq!(v.len(), 5 * 1024 * 1024);
        assert!(!cache
            .exists(&format!("big:{}", 5 * 1024 * 1024))
            .await
            .unwrap());
        assert_eq!(cache.stats().skipped, skipped + 1);
        let err = cache.set("big:direct", &v, None).await.unwrap_err();
        assert!(matches!(err, Error::ValueTooLarge { .. }), "{err}");
    });
}

// --- fail-safe ---------------------------------------------------------------

static PRICE: OnceLock<Calls> = OnceLock::new();
static PRICE_SOURCE_DOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn price_source(id: u64) -> Result<u64, AppError> {
    PRICE.get_or_init(Calls::default).hit();
    if PRICE_SOURCE_DOWN.load(std::sync::atomic::Ordering::SeqCst) {
        Err(AppError("price source down"))
    } else {
        Ok(id * 100)
    }
}

#[cacheside::cache(
    key_prefix = "price",
    resource_id = "id",
    expire = 1,
    fail_safe_max = 60,
    fail_safe_throttle = 30
)]
async fn price(id: u64) -> Result<u64, AppError> {
    price_source(id)
}

#[cacheside::cache(key_prefix = "price-plain", resource_id = "id", expire = 1)]
async fn price_without_fail_safe(id: u64) -> Result<u64, AppError> {
    price_source(id)
}

/// `fail_safe_max`: past `expire` the entry answers a failing body, which is
/// not asked again within `fail_safe_throttle`; without it, the error goes
/// through. Real time: one 1 s TTL to wait out.
#[test]
fn fail_safe_answers_a_failing_body_with_the_stale_value() {
    run(async {
        let cache = global().await;
        let calls = PRICE.get_or_init(Calls::default);
        assert_eq!(price(7).await, Ok(700));
        assert_eq!(price_without_fail_safe(7).await, Ok(700));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while price_cache_entry(7).get().await.unwrap().is_some()
            || price_without_fail_safe_cache_entry(7)
                .get()
                .await
                .unwrap()
                .is_some()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "a 1 s entry was still fresh after 5 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        PRICE_SOURCE_DOWN.store(true, std::sync::atomic::Ordering::SeqCst);
        let served = cache.stats().stale_served;
        assert_eq!(price(7).await, Ok(700), "the stale value answers");
        // At least this one: the soft-timeout test may serve stale in parallel.
        assert!(cache.stats().stale_served > served);
        let runs = calls.get();
        assert_eq!(price(7).await, Ok(700));
        assert_eq!(
            calls.get(),
            runs,
            "the failing body ran again within the throttle"
        );
        assert_eq!(
            price_without_fail_safe(7).await,
            Err(AppError("price source down")),
            "without fail_safe_max the error goes through"
        );
        // An invalidated entry is no fallback.
        price_cache_entry(7).invalidate().await.unwrap();
        assert_eq!(price(7).await, Err(AppError("price source down")));
        PRICE_SOURCE_DOWN.store(false, std::sync::atomic::Ordering::SeqCst);
    });
}

// --- expire_with, jitter ------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Offer {
    id: u64,
    valid_secs: u64,
}

fn offer_ttl(offer: &Offer) -> Duration {
    Duration::from_secs(offer.valid_secs)
}

static OFFER: OnceLock<Calls> = OnceLock::new();

#[cacheside::cache(key_prefix = "offer", resource_id = "id", expire_with = offer_ttl, jitter = 0.1)]
async fn offer(id: u64, valid_secs: u64) -> Result<Offer, AppError> {
    OFFER.get_or_init(Calls::default).hit();
    Ok(Offer { id, valid_secs })
}

/// `expire_with` sets each entry's TTL from its value (then `jitter`
/// spreads it); a zero TTL is not stored.
#[test]
fn expire_with_takes_the_ttl_from_the_value() {
    run(async {
        let cache = global().await;
        let calls = OFFER.get_or_init(Calls::default);
        assert_eq!(
            offer(1, 300).await,
            Ok(Offer {
                id: 1,
                valid_secs: 300
            })
        );
        let ttl = cache
            .ttl("offer:1")
            .await
            .unwrap()
            .expect("stored with a TTL");
        assert!(
            ttl > Duration::from_secs(260) && ttl <= Duration::from_secs(330),
            "300 s ± 10 %: {ttl:?}"
        );
        assert_eq!(
            offer(1, 300).await,
            Ok(Offer {
                id: 1,
                valid_secs: 300
            })
        );
        let before = calls.get();
        assert_eq!(
            offer(2, 0).await,
            Ok(Offer {
                id: 2,
                valid_secs: 0
            })
        );
        assert_eq!(
            offer(2, 0).await,
            Ok(Offer {
                id: 2,
                valid_secs: 0
            })
        );
        assert_eq!(
            calls.get(),
            before + 2,
            "a zero TTL from the value is not stored"
        );
    });
}

// --- early refresh, soft timeout ------------------------------------------------

/// Closed: the body of `hot` (of `lagging`) waits, at most 20 s, until it opens.
static HOT_GATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static LAGGING_GATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static HOT: OnceLock<Calls> = OnceLock::new();
static LAGGING: OnceLock<Calls> = OnceLock::new();

async fn gated(calls: &Calls, gate: &std::sync::atomic::AtomicBool) -> u64 {
    let run = calls.hit() as u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while gate.load(std::sync::atomic::Ordering::SeqCst) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    run
}

#[cacheside::cache(
    key_prefix = "hot",
    resource_id = "id",
    expire = 2,
    refresh_after = 0.5
)]
async fn hot(id: u64) -> u64 {
    id * 1000 + gated(HOT.get_or_init(Calls::default), &HOT_GATE).await
}

#[cacheside::cache(
    key_prefix = "lagging",
    resource_id = "id",
    expire = 1,
    fail_safe_max = 60,
    soft_timeout_ms = 100
)]
async fn lagging(id: u64) -> u64 {
    id * 1000 + gated(LAGGING.get_or_init(Calls::default), &LAGGING_GATE).await
}

/// Polls `read` until it gives `want` (at most 10 s).
async fn eventually<F, Fut>(what: &str, want: Option<u64>, read: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<u64>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = read().await;
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: still {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `refresh_after`: past that share of the TTL a hit still answers at once
/// with the current value, and one refresh per key runs in the background
/// (here its body is held until the test opens the gate: a hit that waited
/// for it would hang, not be slow).
#[test]
fn early_refresh_answers_at_once_and_refreshes_once_in_the_background() {
    run(async {
        let cache = global().await;
        let calls = HOT.get_or_init(Calls::default);
        let first = hot(1).await;
        assert_eq!(first, 1001);
        // Past 50 % of the 2 s TTL.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        HOT_GATE.store(true, std::sync::atomic::Ordering::SeqCst);
        for _ in 0..20 {
            let got = tokio::time::timeout(Duration::from_secs(10), hot(1))
                .await
                .expect("a hit waited for the refresh");
            assert_eq!(
                got, first,
                "the current value answers while the refresh runs"
            );
        }
        // The refresh runs on another task: wait until its body has started.
        eventually("the refresh's body run", Some(2), || async {
            Some(calls.get() as u64)
        })
        .await;
        for _ in 0..20 {
            assert_eq!(hot(1).await, first);
        }
        assert_eq!(calls.get(), 2, "one refresh for forty hits");
        HOT_GATE.store(false, std::sync::atomic::Ordering::SeqCst);
        eventually("the refreshed value", Some(1002), || async {
            hot_cache_entry(1).get().await.unwrap()
        })
        .await;
        assert_eq!(hot(1).await, 1002);
        assert!(cache.stats().refreshes >= 1);
    });
}

/// `soft_timeout_ms` with fail-safe: a stale miss whose body is slow gets the
/// stale value after the soft timeout; the body finishes in the background
/// and its value is stored.
#[test]
fn a_soft_timeout_answers_with_the_stale_value_and_the_body_lands_later() {
    run(async {
        let cache = global().await;
        assert_eq!(lagging(1).await, 1001);
        eventually("expiry", None, || async {
            lagging_cache_entry(1).get().await.unwrap()
        })
        .await;
        LAGGING_GATE.store(true, std::sync::atomic::Ordering::SeqCst);
        let served = cache.stats().stale_served;
        let got = tokio::time::timeout(Duration::from_secs(10), lagging(1))
            .await
            .expect("the caller waited for the body past its soft timeout");
        assert_eq!(got, 1001, "the stale value answers");
        assert!(cache.stats().stale_served > served);
        LAGGING_GATE.store(false, std::sync::atomic::Ordering::SeqCst);
        eventually("the background body's value", Some(1002), || async {
            lagging_cache_entry(1).get().await.unwrap()
        })
        .await;
    });
}

// --- tags ---------------------------------------------------------------------

static TAGGED: OnceLock<Calls> = OnceLock::new();

#[cacheside::cache(key_prefix = "doc", resource_id = "id", tags = ["owner:{owner}", "docs"])]
async fn doc(id: u64, owner: &str) -> String {
    TAGGED.get_or_init(Calls::default).hit();
    format!("doc {id} of {owner}")
}

#[cacheside::invalidate(tags = ["owner:{owner}"])]
async fn rename_owner(owner: &str) {}

/// `tags`: `#[invalidate(tags = [...])]` makes every entry carrying the tag
/// a miss; entries of other tags stay. Placeholder values are encoded as in
/// keys (`a:b` cannot pose as the tag of `a`).
#[test]
fn a_tag_invalidation_misses_every_tagged_entry_and_no_other() {
    run(async {
        let cache = global().await;
        let calls = TAGGED.get_or_init(Calls::default);
        for (id, owner) in [(1, "ann"), (2, "ann"), (3, "bob"), (4, "ann:x")] {
            doc(id, owner).await;
        }
        let before = calls.get();
        rename_owner("ann").await;
        tokio::time::sleep(Duration::from_millis(3)).await;
        for (id, owner) in [(1, "ann"), (2, "ann"), (3, "bob"), (4, "ann:x")] {
            doc(id, owner).await;
        }
        assert_eq!(
            calls.get(),
            before + 2,
            "ann's two entries ran again; bob's and `ann:x`'s did not"
        );
        cache.invalidate_tag("docs").await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
        doc(3, "bob").await;
        assert_eq!(calls.get(), before + 3, "`docs` tags them all");
    });
}

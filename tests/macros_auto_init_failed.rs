//! No `init` called and the environment is broken: the first annotated call
//! cannot build the global cache. Calls keep running uncached (fail open),
//! but not quietly: an ERROR once per 10 s burst, a counter, no password.
//!
//! A test binary of its own: it sets the process environment before the
//! first annotated call, which builds the global cache once per process.

mod common;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static BODY_RUNS: AtomicU32 = AtomicU32::new(0);

#[cacheside::cache(key = "auto-failed:{id}")]
async fn cached(id: u32) -> u32 {
    BODY_RUNS.fetch_add(1, Ordering::SeqCst);
    id * 10
}

#[tokio::test(start_paused = true)]
async fn a_failed_lazy_start_runs_uncached_logs_once_per_burst_and_counts() {
    // A URL that is not a Redis URL, with a password in it.
    std::env::set_var("CACHE_BACKEND", "redis");
    std::env::set_var("CACHE_REDIS_URL", "http://:hunter2-secret@cache:6379/0");
    let (_guard, logs) = common::logs::capture();
    let errors = || logs.lines_with("ERROR");

    assert_eq!(cacheside::auto_init_failures(), 0);
    assert_eq!(cached(1).await, 10);
    assert!(cacheside::global().is_none(), "no cache could be built");
    assert_eq!(cacheside::auto_init_failures(), 1);
    assert_eq!(
        errors().len(),
        1,
        "one ERROR at the failure: {}",
        logs.text()
    );
    assert!(errors()[0].contains("CACHE_REDIS_URL"), "{}", logs.text());

    // Within the burst window: counted, not logged again.
    for id in 2..=6 {
        assert_eq!(cached(id).await, id * 10);
    }
    assert_eq!(cacheside::auto_init_failures(), 6);
    assert_eq!(errors().len(), 1, "{}", logs.text());

    // The next burst logs again, with the count so far.
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(cached(7).await, 70);
    assert_eq!(cacheside::auto_init_failures(), 7);
    let errors = errors();
    assert_eq!(errors.len(), 2, "{}", logs.text());
    assert!(errors[1].contains("uncached_calls=7"), "{}", errors[1]);
    assert!(errors[1].contains("suppressed=5"), "{}", errors[1]);
    assert!(errors[1].contains("CACHE_REDIS_URL"), "{}", errors[1]);

    assert_eq!(
        BODY_RUNS.load(Ordering::SeqCst),
        7,
        "every call ran its body"
    );
    assert!(
        !logs.text().contains("hunter2-secret"),
        "the log shows the password: {}",
        logs.text()
    );
}

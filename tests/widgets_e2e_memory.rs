//! The widgets example end to end with the in-memory store.

use widgets_example::{app, db};
mod common;
mod widgets_e2e;

use cacheside::backends::MemoryBackend;
use cacheside::Cache;
use common::run;

async fn global() -> &'static Cache {
    common::global_cache(|| async { Cache::builder(MemoryBackend::new(10_000)).build() }).await
}

/// The checks share one database and one cache (as replicas do), and count
/// database queries to see hits, so they run in sequence.
#[test]
fn widgets_service_in_memory() {
    run(async {
        widgets_e2e::reads_are_cached_and_writes_invalidate().await;
        widgets_e2e::public_route_hits_and_revalidates().await;
        widgets_e2e::unknown_urls_are_not_cached().await;
        widgets_e2e::callers_are_kept_apart().await;
        widgets_e2e::the_rate_limiter_answers_429().await;
        widgets_e2e::metrics_count_what_was_sent().await;
    });
}

//! The conformance suite against the in-memory store.

use cacheside::backends::MemoryBackend;
use cacheside::testing::conformance::{self, Capabilities};
use cacheside::Cache;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_conforms() {
    // One store; every namespace's Cache shares it (clones share storage).
    let store = MemoryBackend::new(100_000);
    let make = move |namespace: &str| {
        let cache = Cache::builder(store.clone()).namespace(namespace).build();
        async move { cache }
    };
    conformance::run(
        make,
        Capabilities {
            patterns: true,
            counters: true,
        },
    )
    .await;
}

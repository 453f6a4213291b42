//! The conformance suite against the in-memory store, and against the
//! fault-injecting wrapper with no fault in place (it must change nothing).

use cacheside::backends::MemoryBackend;
use cacheside::testing::conformance::{self, Capabilities};
use cacheside::testing::Faulty;
use cacheside::DEFAULT_OP_TIMEOUT;

const CAPABILITIES: Capabilities = Capabilities {
    patterns: true,
    counters: true,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_conforms() {
    // One store; every namespace's Cache shares it (clones share storage).
    let make = conformance::shared_store(MemoryBackend::new(100_000), DEFAULT_OP_TIMEOUT);
    conformance::fenced_fills(&make).await;
    conformance::run(make, CAPABILITIES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_store_without_faults_conforms() {
    let store = Faulty::new(MemoryBackend::new(100_000));
    conformance::run(
        conformance::shared_store(store.clone(), DEFAULT_OP_TIMEOUT),
        CAPABILITIES,
    )
    .await;
    assert!(
        store.total_calls() > 0,
        "the suite went through the wrapper"
    );
}

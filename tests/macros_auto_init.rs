//! No `init` called: the first annotated call builds the global cache from the
//! environment (in-memory by default) and later `init` calls are refused.

use cacheside::Error;

#[cacheside::cache(key = "auto:{id}")]
async fn cached(id: u32) -> u32 {
    id * 10
}

#[tokio::test]
async fn the_first_annotated_call_initialises_from_the_environment() {
    assert!(cacheside::global().is_none(), "nothing initialised yet");
    assert_eq!(cached(4).await, 40);
    let cache = cacheside::global().expect("the call initialised a global cache");
    assert_eq!(cache.backend_name(), "memory");
    assert_eq!(cache.get::<u32>("auto:4").await.unwrap(), Some(40));
    let again = cacheside::init_from_env().await;
    assert!(matches!(again, Err(Error::AlreadyInitialized)), "{again:?}");
}

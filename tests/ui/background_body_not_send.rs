use std::rc::Rc;

// Not `Send`: the body runs on another task once the soft timeout passes.
#[cacheside::cache(key = "rc:{id}", soft_timeout_ms = 100)]
async fn counted(id: u64) -> u64 {
    let here = Rc::new(id);
    tokio::task::yield_now().await;
    *here
}

fn main() {}

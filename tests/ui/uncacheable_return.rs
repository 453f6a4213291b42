#[cacheside::cache(key = "a")]
async fn nothing() {}

#[cacheside::cache(key = "b")]
async fn opaque() -> impl std::fmt::Display {
    5
}

#[cacheside::cache(key = "c", cache_none = true)]
async fn not_an_option() -> u32 {
    5
}

fn main() {}

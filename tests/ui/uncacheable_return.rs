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

struct NotSerde;

#[cacheside::cache(key = "d")]
async fn not_serde() -> Result<NotSerde, String> {
    Ok(NotSerde)
}

fn main() {}

use std::time::Duration;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Offer {
    valid_secs: u64,
}

// Takes the value by value and returns seconds: not `fn(&Offer) -> Duration`.
fn offer_ttl(offer: Offer) -> u64 {
    offer.valid_secs
}

#[cacheside::cache(key = "offer:{id}", expire_with = offer_ttl)]
async fn offer(id: u64) -> Offer {
    Offer { valid_secs: id }
}

#[cacheside::cache(key = "jitter:{id}", jitter = 2, fail_safe_throttle = 0)]
async fn jittery(id: u64) -> u64 {
    let _ = Duration::ZERO;
    id
}

fn main() {}

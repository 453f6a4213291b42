//! Warnings are errors here so that trybuild pins them.
#![deny(deprecated)]

struct Claims {
    sub: String,
}

#[cacheside::cache(key = "profile")]
async fn profile(claims: Claims) -> String {
    claims.sub
}

// Fine: the caller is in the key.
#[cacheside::cache(key = "profile:{claims.sub}")]
async fn own_profile(claims: Claims) -> String {
    claims.sub
}

// Fine: declared the same for every caller.
#[cacheside::cache(key = "news", shared = true)]
async fn news(claims: Claims) -> String {
    claims.sub
}

fn main() {}

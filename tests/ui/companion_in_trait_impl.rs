// A trait impl cannot hold an item of its own: private methods (as every
// trait method is) get no companion unless asked, so this compiles...
trait Repo {
    async fn find(&self, id: u64) -> u64;
    async fn count() -> u64;
}

struct Db;

impl Repo for Db {
    #[cacheside::cache(key = "repo:{id}")]
    async fn find(&self, id: u64) -> u64 {
        id
    }

    // ...but an associated function without `self` would get one (it may
    // be in an inherent impl): rustc then says the companion is no member
    // of the trait, and so is a function whose name is the fix,
    // `companion = false`.
    #[cacheside::cache(key = "repo:count")]
    async fn count() -> u64 {
        0
    }
}

fn main() {}

struct Repo {
    base: u64,
}

impl Repo {
    // The body reads through a borrowed receiver, which cannot outlive the
    // call as a refresh does.
    #[cacheside::cache(key = "repo:{id}", refresh_after = 0.8, companion = false)]
    async fn find(&self, id: u64) -> u64 {
        self.base + id
    }
}

fn main() {
    let _ = Repo { base: 1 };
}

struct Repo;

impl Repo {
    #[cacheside::cache(key = "repo:{id}", handler = true)]
    async fn find(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}

#[cacheside::cache(key = "widget:{widget_id")]
async fn unclosed(widget_id: u64) -> u64 {
    widget_id
}

#[cacheside::cache(key = "widget:{}")]
async fn empty(widget_id: u64) -> u64 {
    widget_id
}

struct Repo;

impl Repo {
    #[cacheside::cache(key = "repo:{self.id}")]
    async fn by_self(&self) -> u64 {
        1
    }
}

#[cacheside::invalidate(extra = ["owner:{owner}"], patterns = ["page:{pge}:*"])]
async fn mutate(owner: &str, page: u32) {}

fn main() {}

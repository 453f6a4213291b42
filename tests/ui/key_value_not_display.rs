struct Id(u64);

#[cacheside::cache(key_prefix = "widget", resource_id = "id")]
async fn by_id(id: Id) -> u64 {
    id.0
}

fn main() {}

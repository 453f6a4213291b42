// Two placeholders with nothing (or no `:`) between them: two argument
// tuples could build one key ("ab" + "c" and "a" + "bc").
#[cacheside::cache(key = "pair:{a}{b}")]
async fn glued(a: String, b: String) -> String {
    a + &b
}

#[cacheside::cache(key_prefix = "pair:{a}-{b}", resource_id = "c")]
async fn dashed(a: String, b: String, c: u32) -> String {
    format!("{a}{b}{c}")
}

fn main() {}

#[cacheside::cache(key_prefix = "widget", resource_id = "id")]
async fn get_widget(widget_id: u64) -> u64 {
    widget_id
}

fn main() {}

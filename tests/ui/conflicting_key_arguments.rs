#[cacheside::cache(key = "widget:{widget_id}", key_prefix = "widget", resource_id = "widget_id")]
async fn get_widget(widget_id: u64) -> u64 {
    widget_id
}

fn main() {}

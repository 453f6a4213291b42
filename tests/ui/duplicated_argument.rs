#[cacheside::cache(key_prefix = "widget", resource_id = "widget_id", expire = 60, expire = 600)]
async fn get_widget(widget_id: u64) -> u64 {
    widget_id
}

fn main() {}

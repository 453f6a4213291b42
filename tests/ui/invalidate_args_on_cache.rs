#[cacheside::cache(key_prefix = "widget", resource_id = "widget_id", extra = ["widgets:count"], patterns = ["widgets:*"])]
async fn get_widget(widget_id: u64) -> u64 {
    widget_id
}

#[cacheside::invalidate(key_prefix = "widget", resource_id = "widget_id", expire = 5)]
async fn rename_widget(widget_id: u64) {}

fn main() {}

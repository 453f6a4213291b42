#[cacheside::cache(key_prefix = widget, resource_id = "widget_id", expire = "600", cache_none = 1)]
async fn get_widget(widget_id: u64) -> Option<u64> {
    Some(widget_id)
}

#[cacheside::invalidate(key = "widget:{widget_id}", extra = "widgets:count", before = "yes")]
async fn rename_widget(widget_id: u64) {}

fn main() {}

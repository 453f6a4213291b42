#[cacheside::invalidate(key_prefix = "widget")]
async fn rename_widget(widget_id: u64) {}

#[cacheside::invalidate()]
async fn nothing_to_delete(widget_id: u64) {}

fn main() {}

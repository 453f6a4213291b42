// `resource_id` alone would delete `module::rename_widget:{id}`, a key no
// #[cache] function writes: the prefix of the cached function is required.
#[cacheside::invalidate(resource_id = "widget_id")]
async fn rename_widget(widget_id: u64) {}

fn main() {}

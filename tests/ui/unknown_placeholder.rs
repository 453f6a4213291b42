#[cacheside::cache(key = "widget:{widgt_id}")]
async fn get_widget(widget_id: u64) -> u64 {
    widget_id
}

fn main() {}

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::Json;

#[cacheside::cache(key_prefix = "widget")]
async fn widget(Path(id): Path<u64>, headers: HeaderMap) -> Json<u64> {
    let _ = headers;
    Json(id)
}

fn main() {}

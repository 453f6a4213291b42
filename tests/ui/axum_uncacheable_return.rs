use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;

#[derive(serde::Serialize, serde::Deserialize)]
struct Widget {
    id: u64,
}

#[cacheside::cache(key = "raw")]
async fn raw() -> Response {
    unimplemented!()
}

#[cacheside::cache(key = "status")]
async fn status_in_result() -> Result<(StatusCode, Json<Widget>), String> {
    unimplemented!()
}

fn main() {}

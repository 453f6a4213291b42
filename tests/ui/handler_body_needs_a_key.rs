use axum::extract::Path;
use axum::Json;

#[derive(serde::Serialize, serde::Deserialize)]
struct Widget {
    id: u64,
}

// A PUT handler with a JSON body and a hashed key: its key would hash the
// body, so it could never delete the entry the GET handler wrote.
#[cacheside::cache(key_prefix = "widget")]
async fn update(Path(id): Path<u64>, Json(w): Json<Widget>) -> Json<Widget> {
    let _ = id;
    Json(w)
}

fn main() {}

//! An axum service over SQLite with cached reads, invalidating writes, a
//! response cache on a public route, client cache headers and a rate limiter.
//!
//! ```text
//! cargo run -p widgets-example --example widgets
//! CACHE_BACKEND=redis cargo run -p widgets-example --example widgets
//! ```
//!
//! Listens on 127.0.0.1:3000 (`WIDGETS_ADDR`), database `widgets.db`
//! (`WIDGETS_DB`, `:memory:` for a throwaway one).

use widgets_example::{app, db};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cache = cacheside::init_from_env().await?;
    let db = db::Db::open(&std::env::var("WIDGETS_DB").unwrap_or_else(|_| "widgets.db".into()))
        .map_err(|e| e.0)?;
    if db.count().await.map_err(|e| e.0)? == 0 {
        for (name, price_cents) in [("spanner", 1299), ("sprocket", 450), ("flange", 799)] {
            db.insert(db::NewWidget {
                name: name.into(),
                price_cents,
            })
            .await
            .map_err(|e| e.0)?;
        }
    }
    let addr = std::env::var("WIDGETS_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let app = app::service(db, cache, &app::ServiceOptions::from_env()?)?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, "widgets service listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await?;
    Ok(())
}

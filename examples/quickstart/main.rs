//! The main example: an in-memory cache in front of a slow "database".
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! No server needed. It shows a miss and a hit, the provider API reading the
//! entry the macro wrote, invalidation, single-flight and the counters.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Widget {
    id: u64,
    name: String,
}

#[derive(Debug)]
struct NotFound(u64);

/// Pretends to be a slow database query.
async fn query_widget(widget_id: u64) -> Result<Widget, NotFound> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    if widget_id == 0 {
        return Err(NotFound(widget_id));
    }
    Ok(Widget {
        id: widget_id,
        name: format!("widget #{widget_id}"),
    })
}

#[cacheside::cache(key_prefix = "widget", resource_id = "widget_id", expire = 600)]
async fn get_widget(widget_id: u64) -> Result<Widget, NotFound> {
    query_widget(widget_id).await
}

#[cacheside::invalidate(key_prefix = "widget", resource_id = "widget_id", extra = ["widgets:count"])]
async fn rename_widget(widget_id: u64, name: &str) -> Result<(), NotFound> {
    println!("  (renaming widget {widget_id} to {name:?} in the database)");
    Ok(())
}

async fn timed<T>(label: &str, f: impl std::future::Future<Output = T>) -> T {
    let start = Instant::now();
    let out = f.await;
    println!(
        "{label:<44} {:>10.3} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    out
}

#[tokio::main]
async fn main() -> Result<(), cacheside::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    // CACHE_BACKEND unset → in-memory store; CACHE_ENABLED=false would turn it all off.
    let cache = cacheside::init_from_env().await?;
    println!("backend: {}\n", cache.backend_name());

    timed("get_widget(7), first call (miss)", get_widget(7))
        .await
        .expect("widget 7");
    let w = timed("get_widget(7), second call (hit)", get_widget(7))
        .await
        .expect("widget 7");
    println!("  -> {w:?}");

    // The provider API reads the entry the macro wrote, under the boilerplate's key format.
    let raw: Option<Widget> = cache.get("widget:7").await?;
    println!("cache.get(\"widget:7\") = {raw:?}");
    println!(
        "cache.ttl(\"widget:7\") = {:?}",
        cache.ttl("widget:7").await?.map(|d| d.as_secs())
    );

    // Errors are never cached.
    if let Err(NotFound(id)) = timed("get_widget(0) (error, not cached)", get_widget(0)).await {
        println!(
            "  -> widget {id} not found; cached: {}",
            cache.exists("widget:0").await?
        );
    }

    // A mutation invalidates; the next read is a miss again.
    rename_widget(7, "sprocket").await.expect("rename");
    println!("after rename, cached: {}", cache.exists("widget:7").await?);
    timed("get_widget(7) after invalidation (miss)", get_widget(7))
        .await
        .expect("widget 7");

    // The typed companion computes the same key from the same arguments.
    let entry = get_widget_cache_entry(7);
    println!("get_widget_cache_entry(7).key() = {:?}", entry.key());

    // Single-flight: 20 concurrent misses on one key run the body once.
    let start = Instant::now();
    let calls: Vec<_> = (0..20).map(|_| tokio::spawn(get_widget(42))).collect();
    for c in calls {
        c.await.expect("task").expect("widget 42");
    }
    println!(
        "20 concurrent first calls of get_widget(42): {:.0} ms in all",
        start.elapsed().as_secs_f64() * 1e3
    );

    let s = cache.stats();
    println!(
        "\nstats: hits={} misses={} coalesced={} errors={} skipped={} (hit ratio {:.2})",
        s.hits,
        s.misses,
        s.coalesced,
        s.errors,
        s.skipped,
        s.hit_ratio()
    );
    Ok(())
}

//! An in-memory hit through `#[cache]` vs the same value read by hand through
//! `Cache::get`, vs a direct moka `get` of the already-decoded value; and the
//! per-hit cost of the type-shape fingerprint lookup.
//!
//! `scripts/bench.sh` runs this and prints the ratios; figures go in BENCHMARKS.md.

use std::sync::Arc;

use cacheside::backends::MemoryBackend;
use cacheside::Cache;
use criterion::{criterion_group, criterion_main, Criterion};
mod common;

use common::{widget, Widget};

#[cacheside::cache(key_prefix = "widget", resource_id = "widget_id", expire = 3600)]
async fn get_widget(widget_id: u64) -> Widget {
    widget(widget_id)
}

fn hits(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cache = Cache::builder(MemoryBackend::new(10_000)).build();
    cacheside::init(cache.clone()).expect("init once");
    let size = rt.block_on(async {
        get_widget(7).await; // warm: the next calls are hits
        assert_eq!(
            cache.get::<Widget>("widget:7").await.expect("get"),
            Some(widget(7))
        );
        cacheside::codec::encode_value(&cacheside::codec::MsgPack, &widget(7))
            .expect("encode")
            .len()
    });
    eprintln!("encoded Widget: {size} bytes (+11 bytes envelope)");

    let moka: moka::future::Cache<String, Arc<Widget>> = moka::future::Cache::new(10_000);
    rt.block_on(moka.insert("widget:7".to_string(), Arc::new(widget(7))));

    let mut group = c.benchmark_group("memory_hit");
    group.bench_function("macro_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { std::hint::black_box(get_widget(std::hint::black_box(7)).await) })
    });
    group.bench_function("cache_get", |b| {
        b.to_async(&rt).iter(|| async {
            let key = format!("widget:{}", std::hint::black_box(7));
            std::hint::black_box(cache.get::<Widget>(&key).await.expect("get"))
        })
    });
    // What the shape fingerprint costs each hit: the lookup that `open`
    // does per read (traced once per type; this is the per-thread memo).
    group.bench_function("fingerprint", |b| {
        b.iter(|| {
            std::hint::black_box(cacheside::codec::fingerprint::<Widget>(
                std::hint::black_box(cacheside::codec::Salt::NONE),
            ))
        })
    });
    group.bench_function("moka_get", |b| {
        b.to_async(&rt).iter(|| async {
            let key = format!("widget:{}", std::hint::black_box(7));
            std::hint::black_box(moka.get(&key).await)
        })
    });
    group.finish();
}

criterion_group!(benches, hits);
criterion_main!(benches);

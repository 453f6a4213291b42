//! In-memory hits through `#[cacheside::cache]` vs the `cached` crate's
//! `#[cached]`, what a user would otherwise put on an `async fn` (its
//! defaults: an unbounded map behind an async `RwLock`, keyed by the
//! arguments, a hit clones the value), in interleaved paired rounds
//! (`common/paired.rs`). Every task reads 100 hot ids, each task in its own order.
//!
//! 1. a `Widget` hit, 1 task, current-thread runtime: cacheside's time per hit
//!    over cached's (target <= 0.8);
//! 2. the same with the cacheside function returning `Arc<Widget>` (a hit is
//!    an `Arc` clone) over cached's `Widget` hit (target <= 0.3);
//! 3. scaling: hits per second of 2 tasks over 1 task on a 2-worker
//!    multi-thread runtime, each task making the same number of calls
//!    (target >= 1.5 for cacheside; cached's figure printed beside it).
//!
//! The cacheside cache is `Cache::builder(MemoryBackend::new(10_000)).build()`
//! (`CACHE_BACKEND=memory`'s defaults), whose local tier is the store: a hit
//! hands out a clone of the decoded value. `scripts/bench.sh` runs this
//! unpinned (scaling needs both cores) and prints each ratio against its target.
//! `MEMORY_BENCH_PROFILE=N` makes only N hits, for callgrind (see `main`);
//! `MEMORY_BENCH_SUBSCRIBER=filtered` installs a subscriber that filters
//! cacheside's spans out (the cost of the instrumentation when it is off).

use std::sync::Arc;

use cacheside::backends::MemoryBackend;
use cacheside::Cache;
mod common;
#[path = "common/paired.rs"]
#[allow(dead_code)] // `compare` serves store_hit
mod paired;

use common::{widget, Widget};
use paired::{pair, rounds, verdict, Paired, Side, HOT_KEYS};

#[cacheside::cache(key_prefix = "widget", resource_id = "widget_id")]
async fn widget_cacheside(widget_id: u64) -> Widget {
    widget(widget_id)
}

#[cacheside::cache(key_prefix = "arc_widget", resource_id = "widget_id")]
async fn arc_widget_cacheside(widget_id: u64) -> Arc<Widget> {
    Arc::new(widget(widget_id))
}

#[cached::macros::cached]
async fn widget_cached(widget_id: u64) -> Widget {
    widget(widget_id)
}

fn line(what: &str, p: &Paired, a: &str, b: &str) {
    println!(
        "  {what:<34} {a:<22} {:7.1} ns/hit  {b:<22} {:7.1} ns/hit  ratio = {:.3} (quartiles {:.3}-{:.3})",
        1e9 / p.a,
        1e9 / p.b,
        p.ratio,
        p.low,
        p.high
    );
}

fn main() {
    // `MEMORY_BENCH_SUBSCRIBER=filtered`: a subscriber that filters every
    // cacheside span and event out (`info`), as a service logging at info has.
    if std::env::var("MEMORY_BENCH_SUBSCRIBER").as_deref() == Ok("filtered") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::io::sink)
            .init();
    }
    let rounds = rounds("MEMORY_BENCH_ROUNDS");
    cacheside::init(Cache::builder(MemoryBackend::new(10_000)).build()).expect("init once");
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    current.block_on(async {
        // Warm: every measured call is a hit.
        for id in 0..HOT_KEYS {
            assert_eq!(widget_cacheside(id).await, widget(id));
            assert_eq!(*arc_widget_cacheside(id).await, widget(id));
            assert_eq!(widget_cached(id).await, widget(id));
        }
        assert_eq!(widget_cacheside(7).await, widget(7));
    });

    // `MEMORY_BENCH_PROFILE=N`: only N cacheside Widget hits (`=arc:N`: of the
    // `Arc<Widget>` function; `=cached:N`: `cached`'s), for `valgrind --tool=callgrind`;
    // the difference of two runs with different N over their difference in N is the count per hit.
    if let Ok(profile) = std::env::var("MEMORY_BENCH_PROFILE") {
        let (which, n) = profile.split_once(':').unwrap_or(("cacheside", &profile));
        let n: u64 = n
            .parse()
            .expect("MEMORY_BENCH_PROFILE=[cacheside:|arc:|cached:]N");
        current.block_on(async {
            for i in 0..n {
                let id = paired::hot_id(0, i);
                if which == "cached" {
                    std::hint::black_box(widget_cached(id).await);
                } else if which == "arc" {
                    std::hint::black_box(arc_widget_cacheside(id).await);
                } else {
                    std::hint::black_box(widget_cacheside(id).await);
                }
            }
        });
        return;
    }

    let cacheside_hit = Side::new("cacheside Widget", |id| async move {
        std::hint::black_box(widget_cacheside(id).await);
    });
    let cacheside_arc = Side::new("cacheside Arc<Widget>", |id| async move {
        std::hint::black_box(arc_widget_cacheside(id).await);
    });
    let cached_hit = Side::new("cached Widget", |id| async move {
        std::hint::black_box(widget_cached(id).await);
    });

    println!("in-memory hits vs cached 4.1 `#[cached]`, {rounds} paired rounds each:");
    // Time per hit a / b = throughput b / a: pair with the sides swapped.
    let one = current.block_on(pair(&cached_hit, 1, &cacheside_hit, 1, rounds, 0.15));
    let one = Paired {
        a: one.b,
        b: one.a,
        ..one
    };
    line(
        "1 task, current-thread",
        &one,
        cacheside_hit.name,
        cached_hit.name,
    );
    let arc = current.block_on(pair(&cached_hit, 1, &cacheside_arc, 1, rounds, 0.15));
    let arc = Paired {
        a: arc.b,
        b: arc.a,
        ..arc
    };
    line(
        "1 task, current-thread",
        &arc,
        cacheside_arc.name,
        cached_hit.name,
    );
    let scale = multi.block_on(pair(&cacheside_hit, 2, &cacheside_hit, 1, rounds, 0.15));
    let scale_cached = multi.block_on(pair(&cached_hit, 2, &cached_hit, 1, rounds, 0.15));
    for (name, p) in [("cacheside", &scale), ("cached", &scale_cached)] {
        println!(
            "  scaling {name:<10} 2 tasks {:9.0} hits/s  1 task {:9.0} hits/s  2 / 1 = {:.3} (quartiles {:.3}-{:.3})  [2-worker runtime]",
            p.a, p.b, p.ratio, p.low, p.high
        );
    }
    println!(
        "target: in-memory Widget hit, cacheside / cached time per hit = {:.3} (<= 0.80: {})",
        one.ratio,
        verdict(one.ratio, 0.8, false)
    );
    println!(
        "target: in-memory Arc<Widget> hit / cached Widget hit = {:.3} (<= 0.30: {})",
        arc.ratio,
        verdict(arc.ratio, 0.3, false)
    );
    println!(
        "target: scaling, cacheside 2 tasks / 1 task = {:.3} (>= 1.50: {}; cached: {:.3})",
        scale.ratio,
        verdict(scale.ratio, 1.5, true),
        scale_cached.ratio
    );
}

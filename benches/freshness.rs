//! What the freshness options cost and buy (issue 12), in-memory store:
//!
//! 1. fail-safe bookkeeping on a hit: a `Widget` hit of a function with
//!    `fail_safe_max = 3600` over the same function without it, 1 task,
//!    current-thread runtime, interleaved paired rounds (`common/paired.rs`);
//!    target <= 1.05 (time per hit);
//! 2. tags on a hit: a function with 2 tags over the same without, the same
//!    way; target <= 1.10;
//! 3. a hot key crossing its expiry: 64 tasks call one key (`expire = 1`, the
//!    body sleeps 50 ms) for 3.5 s, i.e. across three expiries; p50, p99 and
//!    the slowest call, without and with `refresh_after = 0.5`.
//!
//! `scripts/bench.sh` runs it (unpinned) and prints the target line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cacheside::backends::MemoryBackend;
use cacheside::Cache;
mod common;
#[path = "common/paired.rs"]
#[allow(dead_code)] // `compare` serves store_hit
mod paired;

use common::{widget, Widget};
use paired::{pair, quantile, rounds, verdict, Paired, Side, HOT_KEYS};

#[cacheside::cache(key_prefix = "plain", resource_id = "widget_id")]
async fn widget_plain(widget_id: u64) -> Widget {
    widget(widget_id)
}

#[cacheside::cache(
    key_prefix = "fail_safe",
    resource_id = "widget_id",
    fail_safe_max = 3600
)]
async fn widget_fail_safe(widget_id: u64) -> Widget {
    widget(widget_id)
}

#[cacheside::cache(key_prefix = "tagged", resource_id = "widget_id", tags = ["owner:{widget_id}", "widgets"])]
async fn widget_tagged(widget_id: u64) -> Widget {
    widget(widget_id)
}

static RUNS_PLAIN: AtomicU64 = AtomicU64::new(0);
static RUNS_REFRESHED: AtomicU64 = AtomicU64::new(0);
const BODY: Duration = Duration::from_millis(50);

#[cacheside::cache(key_prefix = "hot_plain", resource_id = "id", expire = 1)]
async fn hot_plain(id: u64) -> u64 {
    RUNS_PLAIN.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(BODY).await;
    id
}

#[cacheside::cache(
    key_prefix = "hot_refreshed",
    resource_id = "id",
    expire = 1,
    refresh_after = 0.5
)]
async fn hot_refreshed(id: u64) -> u64 {
    RUNS_REFRESHED.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(BODY).await;
    id
}

/// 64 tasks call `f` for `span`; every call's latency in microseconds, sorted.
async fn latencies<F, Fut>(span: Duration, f: F) -> Vec<f64>
where
    F: Fn() -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    let until = Instant::now() + span;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        tasks.spawn(async move {
            let mut seen = Vec::new();
            while Instant::now() < until {
                let started = Instant::now();
                std::hint::black_box(f().await);
                seen.push(started.elapsed().as_secs_f64() * 1e6);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            seen
        });
    }
    let mut all = Vec::new();
    while let Some(t) = tasks.join_next().await {
        all.extend(t.expect("bench task"));
    }
    all.sort_by(f64::total_cmp);
    all
}

fn main() {
    let rounds = rounds("FRESHNESS_BENCH_ROUNDS");
    cacheside::init(Cache::builder(MemoryBackend::new(10_000)).build()).expect("init once");
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    current.block_on(async {
        for id in 0..HOT_KEYS {
            assert_eq!(widget_plain(id).await, widget(id));
            assert_eq!(widget_fail_safe(id).await, widget(id));
            assert_eq!(widget_tagged(id).await, widget(id));
        }
    });
    let plain = Side::new("Widget hit", |id| async move {
        std::hint::black_box(widget_plain(id).await);
    });
    let fail_safe = Side::new("with fail_safe_max", |id| async move {
        std::hint::black_box(widget_fail_safe(id).await);
    });
    println!("fail-safe bookkeeping on an in-memory hit, {rounds} paired rounds:");
    // Time per hit a / b = throughput b / a.
    let p = current.block_on(pair(&plain, 1, &fail_safe, 1, rounds, 0.15));
    let p = Paired {
        a: p.b,
        b: p.a,
        ..p
    };
    println!(
        "  with fail_safe_max {:7.1} ns/hit  without {:7.1} ns/hit  ratio = {:.3} (quartiles {:.3}-{:.3})",
        1e9 / p.a,
        1e9 / p.b,
        p.ratio,
        p.low,
        p.high
    );

    let tagged = Side::new("with 2 tags", |id| async move {
        std::hint::black_box(widget_tagged(id).await);
    });
    let t = current.block_on(pair(&plain, 1, &tagged, 1, rounds, 0.15));
    let t = Paired {
        a: t.b,
        b: t.a,
        ..t
    };
    println!(
        "  with 2 tags        {:7.1} ns/hit  without {:7.1} ns/hit  ratio = {:.3} (quartiles {:.3}-{:.3})",
        1e9 / t.a,
        1e9 / t.b,
        t.ratio,
        t.low,
        t.high
    );

    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let span = if rounds > 1 {
        Duration::from_millis(3_500)
    } else {
        Duration::from_millis(300)
    };
    println!("a hot key crossing its expiry: 64 tasks, expire = 1 s, body 50 ms, {span:?}:");
    for (name, refreshed) in [("without refresh", false), ("refresh_after = 0.5", true)] {
        let runs_before = if refreshed {
            &RUNS_REFRESHED
        } else {
            &RUNS_PLAIN
        }
        .load(Ordering::Relaxed);
        let lat = multi.block_on(async {
            if refreshed {
                assert_eq!(hot_refreshed(7).await, 7);
                latencies(span, || hot_refreshed(7)).await
            } else {
                assert_eq!(hot_plain(7).await, 7);
                latencies(span, || hot_plain(7)).await
            }
        });
        let runs = if refreshed {
            &RUNS_REFRESHED
        } else {
            &RUNS_PLAIN
        }
        .load(Ordering::Relaxed)
            - runs_before;
        println!(
            "  {name:<20} calls {:7}  p50 {:8.1} us  p99 {:8.1} us  p99.9 {:9.1} us  slowest {:9.1} us  body runs {runs}",
            lat.len(),
            quantile(&lat, 0.5),
            quantile(&lat, 0.99),
            quantile(&lat, 0.999),
            lat.last().copied().unwrap_or(0.0),
        );
    }
    println!(
        "target: fail-safe bookkeeping on a hit, with / without = {:.3} (<= 1.05: {})",
        p.ratio,
        verdict(p.ratio, 1.05, false)
    );
    println!(
        "target: a local-tier hit with 2 tags / without = {:.3} (<= 1.10: {})",
        t.ratio,
        verdict(t.ratio, 1.10, false)
    );
}

//! Interleaved paired rounds: the two sides of a ratio run back to back
//! (alternating which goes first), each round's ratio of their throughputs is
//! one sample, and the figure is the median of those ratios, with quartiles.
//!
//! On this project's 2-core VMs the throughput of identical code drifts by
//! ±20 % within seconds, so ratios between functions measured seconds apart
//! say little; a pair measured within a fraction of a second cancels the drift.
//! Used by `store_hit.rs` and `memory_vs_cached.rs` (each includes this file
//! with `#[path]`, so that `memory_hit.rs` does not build it).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// How many distinct hot keys the benchmarks read (ids `0..HOT_KEYS`).
pub const HOT_KEYS: u64 = 100;

/// The id that task `task` reads at its `i`-th call: every task walks all
/// [`HOT_KEYS`] ids, each task in its own order (a stride coprime with 100).
#[inline]
pub fn hot_id(task: u64, i: u64) -> u64 {
    const STRIDES: [u64; 8] = [1, 37, 13, 71, 3, 59, 17, 91];
    (i * STRIDES[(task % 8) as usize] + task) % HOT_KEYS
}

type Run = dyn Fn(u64, u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// One side of a comparison: a name and one task's loop of hits.
pub struct Side {
    pub name: &'static str,
    run: Arc<Run>,
}

impl Side {
    /// `hit(id)` is one call; the loop around it is built here, monomorphic,
    /// so that a side costs no boxing or dynamic call per hit (only per task).
    pub fn new<F, Fut>(name: &'static str, hit: F) -> Side
    where
        F: Fn(u64) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hit = Arc::new(hit);
        Side {
            name,
            run: Arc::new(move |task, calls| {
                let hit = Arc::clone(&hit);
                Box::pin(async move {
                    for i in 0..calls {
                        hit(std::hint::black_box(hot_id(task, i))).await;
                    }
                })
            }),
        }
    }
}

/// Runs `calls` hits in each of `tasks` concurrent tasks; returns hits per second.
pub async fn throughput(side: &Side, tasks: u64, calls: u64) -> f64 {
    let calls = calls.max(1);
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| tokio::spawn((side.run)(task, calls)))
        .collect();
    for h in handles {
        h.await.expect("bench task");
    }
    (calls * tasks) as f64 / start.elapsed().as_secs_f64()
}

/// The value at quantile `q` of sorted `v`.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// What one comparison measured: medians of each side's throughput and the
/// median (quartiles) of the per-round ratio `a / b`.
pub struct Paired {
    pub a: f64,
    pub b: f64,
    pub ratio: f64,
    pub low: f64,
    pub high: f64,
}

/// `rounds` paired rounds: `a` with `tasks_a` tasks vs `b` with `tasks_b`,
/// each task making the same number of calls, sized to about `seconds` of
/// the slower side after a warm-up.
pub async fn pair(
    a: &Side,
    tasks_a: u64,
    b: &Side,
    tasks_b: u64,
    rounds: usize,
    seconds: f64,
) -> Paired {
    let probe = (1000 / tasks_a.max(tasks_b)).max(4);
    let ta_warm = throughput(a, tasks_a, probe).await;
    let tb_warm = throughput(b, tasks_b, probe).await;
    // Calls per task so that the slower side's round takes about `seconds`.
    let per_task = (ta_warm / tasks_a as f64).min(tb_warm / tasks_b as f64) * seconds;
    let calls = (per_task as u64).max(4);
    let (mut ta, mut tb, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds.max(1) {
        let (x, y) = if round % 2 == 0 {
            let x = throughput(a, tasks_a, calls).await;
            (x, throughput(b, tasks_b, calls).await)
        } else {
            let y = throughput(b, tasks_b, calls).await;
            (throughput(a, tasks_a, calls).await, y)
        };
        ta.push(x);
        tb.push(y);
        ratio.push(x / y);
    }
    for v in [&mut ta, &mut tb, &mut ratio] {
        v.sort_by(f64::total_cmp);
    }
    Paired {
        a: quantile(&ta, 0.5),
        b: quantile(&tb, 0.5),
        ratio: quantile(&ratio, 0.5),
        low: quantile(&ratio, 0.25),
        high: quantile(&ratio, 0.75),
    }
}

/// Paired rounds of `a` vs `b` at the same task count; prints one line with
/// the throughputs and the ratio `a / b`.
pub async fn compare(a: &Side, b: &Side, tasks: u64, rounds: usize, note: &str) -> Paired {
    let p = pair(a, tasks, b, tasks, rounds, 0.15).await;
    println!(
        "  {tasks:>2} tasks {:<24} {:9.0}/s  {:<16} {:9.0}/s  ratio = {:.3} (quartiles {:.3}-{:.3})  {note}",
        a.name, p.a, b.name, p.b, p.ratio, p.low, p.high,
    );
    p
}

/// How many paired rounds: `cargo bench` passes `--bench` (then `var`, default
/// 30); `cargo test --benches` does not (then one quick round).
pub fn rounds(var: &str) -> usize {
    if std::env::args().any(|a| a == "--bench") {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30)
    } else {
        1
    }
}

/// `met` / `NOT MET` for a ratio against a target (`at_least`: `>=`, else `<=`).
pub fn verdict(ratio: f64, target: f64, at_least: bool) -> &'static str {
    let met = if at_least {
        ratio >= target
    } else {
        ratio <= target
    };
    if met {
        "met"
    } else {
        "NOT MET"
    }
}

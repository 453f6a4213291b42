//! Measures `RedisBackend` GET throughput for pool sizes 1/2/4 with
//! `TCP_NODELAY` on and off, 64 concurrent tasks (or TASKS), a 100-byte value.
//!
//! Rounds are interleaved (every configuration once per round, the order
//! rotated each round) and each configuration is compared with
//! "pool 1, nodelay on" of the same round; the median of those paired ratios
//! is what the figures say (the machine's load changes between rounds, much
//! less within one).
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-redis nice cargo run --release -p cache-backends \
//!     --features redis --example redis_pool_nodelay [-- ROUNDS [TASKS]]
//! ```
//!
//! Starts its own `redis-server` on a free port (`REDIS_URL` to use another).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_backends::{RedisBackend, RedisOptions};
use cache_core::{Backend, Bytes, Key};

/// GETs per configuration and round, spread over the tasks.
const GETS_PER_ROUND: usize = 32_000;

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(25);
    let tasks: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64);
    let (_server, url) = match std::env::var("REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server (apt-get install -y redis-server)");
            (Some(Server(child)), format!("redis://127.0.0.1:{port}/0"))
        }
    };
    let configs: Vec<(usize, bool)> = [1, 2, 4]
        .into_iter()
        .flat_map(|pool| [(pool, true), (pool, false)])
        .collect();
    let mut backends = Vec::new();
    for &(pool_size, tcp_nodelay) in &configs {
        let options = RedisOptions {
            pool_size,
            tcp_nodelay,
            ..RedisOptions::default()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let backend = loop {
            match RedisBackend::connect_with(&url, options.clone()).await {
                Ok(b) => break Arc::new(b),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("connect to {url}: {e}"),
            }
        };
        backends.push(backend);
    }
    backends[0]
        .set(
            Key::plain("bench:value"),
            Bytes::from(vec![b'x'; 100]),
            None,
        )
        .await
        .unwrap();
    // Warm-up: one pass of each.
    for b in &backends {
        round(b, tasks).await;
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for r in 0..rounds {
        for i in 0..configs.len() {
            let c = (i + r) % configs.len();
            rates[c].push(round(&backends[c], tasks).await);
        }
    }
    println!(
        "{rounds} rounds, {tasks} tasks x {} GETs of 100 bytes per configuration and round",
        GETS_PER_ROUND / tasks
    );
    println!(
        "pool nodelay   median ops/s   median ratio vs pool 1 nodelay on   vs same pool nodelay on"
    );
    for (c, &(pool, nodelay)) in configs.iter().enumerate() {
        let base = &rates[0];
        let same_pool_on = &rates[c - usize::from(!nodelay)];
        let ratio =
            |against: &Vec<f64>| median(rates[c].iter().zip(against).map(|(x, y)| x / y).collect());
        println!(
            "{pool:>4} {:>7} {:>14.0} {:>14.3} {:>30.3}",
            if nodelay { "on" } else { "off" },
            median(rates[c].clone()),
            ratio(base),
            ratio(same_pool_on),
        );
    }
}

/// One round of one configuration: ops per second.
async fn round(backend: &Arc<RedisBackend>, tasks: usize) -> f64 {
    let per_task = GETS_PER_ROUND / tasks;
    let start = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let backend = backend.clone();
        running.spawn(async move {
            for _ in 0..per_task {
                let v = backend.get(Key::plain("bench:value")).await.unwrap();
                assert_eq!(v.map(|v| v.len()), Some(100));
            }
        });
    }
    while let Some(done) = running.join_next().await {
        done.unwrap();
    }
    (tasks * per_task) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// The redis-server this run started, stopped on exit.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

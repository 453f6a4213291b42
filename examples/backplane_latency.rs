//! How long an invalidation takes to reach another process's local tier over
//! the Redis backplane (pub/sub), on loopback: p50 and p99.
//!
//!     cargo run --release -p cacheside --example backplane_latency --features testing,redis
//!
//! Starts its own redis-server on a free loopback port. Two backplanes with
//! their own connections stand for two processes; the time measured is from
//! the `publish` call in one to the message callback in the other (the tier
//! drops the entry in that callback, in microseconds).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cacheside::backend::{Backplane, BackplaneEvents};
use cacheside::backends::RedisBackplane;
use cacheside::testing::RedisServer;

struct Recorder {
    seen: Mutex<Vec<Instant>>,
    up: Mutex<bool>,
}

impl BackplaneEvents for Recorder {
    fn message(&self, _payload: &[u8]) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(Instant::now());
        }
    }
    fn disconnected(&self) {}
    fn connected(&self) {
        if let Ok(mut up) = self.up.lock() {
            *up = true;
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), cacheside::Error> {
    let server = RedisServer::start();
    let timeout = Duration::from_millis(250);
    let sender = RedisBackplane::new(&server.url(), "latency", timeout)?;
    let receiver = RedisBackplane::new(&server.url(), "latency", timeout)?;
    let recorder = Arc::new(Recorder {
        seen: Mutex::new(Vec::new()),
        up: Mutex::new(false),
    });
    receiver.subscribe(recorder.clone());
    let until = Instant::now() + Duration::from_secs(10);
    while !*recorder.up.lock().expect("lock") {
        assert!(Instant::now() < until, "the backplane did not subscribe");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    const N: usize = 2_000;
    let mut latencies = Vec::with_capacity(N);
    for i in 0..N {
        let before = recorder.seen.lock().expect("lock").len();
        let sent = Instant::now();
        sender
            .publish(format!("cs1 0000000000000001 K app:item:{i}").as_bytes())
            .await?;
        loop {
            if let Some(&at) = recorder.seen.lock().expect("lock").get(before) {
                latencies.push(at.duration_since(sent));
                break;
            }
            tokio::task::yield_now().await;
            assert!(sent.elapsed() < Duration::from_secs(5), "message {i} lost");
        }
    }
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "invalidation seen by another process's tier ({N} messages, loopback): p50 {:?}, p99 {:?}, max {:?}",
        p(0.50),
        p(0.99),
        latencies[latencies.len() - 1]
    );
    Ok(())
}

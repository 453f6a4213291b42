//! Helpers shared by `rate_limit.rs` and `rate_limit_stores.rs`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use axum::routing::get;
use axum::Router;
use cacheside::http::RateLimitLayer;
use tower::ServiceExt;

/// A router whose handler counts its calls.
pub fn app(layer: RateLimitLayer) -> (Router, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let router = Router::new()
        .route(
            "/",
            get(move || {
                let calls = counted.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }
            }),
        )
        .layer(layer);
    (router, calls)
}

pub fn from_ip(ip: [u8; 4]) -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40_000))));
    req
}

pub async fn send(app: &Router, req: Request<Body>) -> Response<Body> {
    app.clone().oneshot(req).await.unwrap()
}

pub fn header(res: &Response<Body>, name: &str) -> Option<u64> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().parse().unwrap())
}

/// What the `tracing` subscriber installed by [`capture_logs`] printed.
#[derive(Clone, Default)]
pub struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Lines at `level` (`"WARN"`, `"ERROR"`, …) that contain `needle`.
    pub fn lines(&self, level: &str, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(level) && l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

struct LogWriter(Logs);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 .0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every log line of this thread (every level) until the guard drops.
/// Use it in current-thread runtimes, so that spawned tasks log here too.
pub fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    use tracing_subscriber::util::SubscriberInitExt;
    let logs = Logs::default();
    let writer = logs.clone();
    let guard = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_ansi(false)
        .with_writer(move || LogWriter(writer.clone()))
        .finish()
        .set_default();
    // A callsite first hit by a test thread without this subscriber may
    // have cached "never interested": ask every callsite again.
    tracing::callsite::rebuild_interest_cache();
    (logs, guard)
}

/// Lets spawned tasks of a current-thread runtime run until `done` holds (bounded).
pub async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..1_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the condition did not hold after 1000 yields");
}

/// Polls `done` every 10 ms until it holds, for at most `limit` of real time
/// (for background work that waits on a real socket).
pub async fn eventually(limit: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "the condition did not hold within {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

//! Single-flight across real OS processes (`CACHE_LEASE_MS`): this test
//! binary re-executes itself as workers (`worker_process`) sharing one real
//! `redis-server`, Redis Cluster or `memcached`.
//!
//! Pinned: 4 processes × 250 concurrent first calls of one key run the body
//! once; the leader killed (SIGKILL) mid-body: another process takes over
//! once its lease expires, and no caller waits longer than the lease plus
//! the body (and scheduling slack).
//!
//! A worker waits for a `go` file, makes its calls, and reports on stdout
//! (`@@ …`) how many times its body ran and how long its slowest call took.
//! A `hold` file makes a body wait (after it reported `reading`) until it is removed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cacheside::testing::{MemcachedServer, RedisCluster, RedisServer};

const ROLE: &str = "CACHESIDE_FLEET_ROLE";
const DIR: &str = "CACHESIDE_FLEET_DIR";
const CALLS: &str = "CACHESIDE_FLEET_CALLS";
const GO: &str = "CACHESIDE_FLEET_GO";
const LIMIT: Duration = Duration::from_secs(30);
/// What the body takes when not held.
const BODY: Duration = Duration::from_millis(300);
/// Long enough that memcached's whole-second, once-a-second clock (a 3 s
/// lease lives 2-3 s there) leaves a takeover well inside a waiter's
/// patience of twice the lease.
const LEASE_MS: u64 = 3000;

// ---------------------------------------------------------------- worker

static BODY_RUNS: AtomicU64 = AtomicU64::new(0);

fn dir() -> PathBuf {
    PathBuf::from(std::env::var(DIR).expect("the parent sets the directory"))
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ {line}").expect("stdout");
    out.flush().expect("stdout");
}

#[cacheside::cache(key_prefix = "report", resource_id = "id", expire = 600)]
async fn report(id: u64) -> String {
    BODY_RUNS.fetch_add(1, Ordering::SeqCst);
    let hold = dir().join("hold");
    if hold.exists() {
        say("reading");
        let until = Instant::now() + LIMIT;
        while hold.exists() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tokio::time::sleep(BODY).await;
    format!("report-{id}-by-{}", std::process::id())
}

/// The worker: runs only when re-executed by a parent test.
#[test]
fn worker_process() {
    if std::env::var(ROLE).is_err() {
        return;
    }
    let calls: usize = std::env::var(CALLS)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        if let Err(e) = cacheside::init_from_env().await {
            return say(&format!("error {e}"));
        }
        say("ready");
        let go = dir().join(std::env::var(GO).unwrap_or_else(|_| "go".into()));
        let until = Instant::now() + LIMIT;
        while !go.exists() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..calls {
            tasks.spawn(async {
                let started = Instant::now();
                let value = report(1).await;
                (value, started.elapsed())
            });
        }
        let (mut values, mut slowest) = (std::collections::BTreeSet::new(), Duration::ZERO);
        while let Some(done) = tasks.join_next().await {
            let (value, took) = done.expect("a call panicked");
            values.insert(value);
            slowest = slowest.max(took);
        }
        say(&format!(
            "done runs={} values={} slowest_ms={}",
            BODY_RUNS.load(Ordering::SeqCst),
            values.into_iter().collect::<Vec<_>>().join("|"),
            slowest.as_millis()
        ));
    });
}

// ---------------------------------------------------------------- parent

struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Worker {
    /// A worker making `calls` concurrent calls once the file `go` appears in `dir`.
    fn start(env: &[(&str, String)], dir: &Path, calls: usize, go: &str) -> Worker {
        let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
        cmd.args([
            "worker_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, "worker")
        .env(DIR, dir)
        .env(CALLS, calls.to_string())
        .env(GO, go)
        .env("CACHE_NAMESPACE", "fleet")
        .env("CACHE_LEASE_MS", LEASE_MS.to_string())
        // The stores are healthy: a slow round trip on a loaded machine
        // must not count as a failure (which runs the body without a lease).
        .env("CACHE_OP_TIMEOUT_MS", "2000")
        // Leases are about the store: no local tier to hide behind.
        .env("CACHE_LOCAL_MAX_ENTRIES", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn a worker");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest's "test worker_process ... " has no newline: look inside the line.
                if let Some(at) = line.find("@@ ") {
                    if tx.send(line[at + 3..].to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let mut w = Worker { child, lines };
        let first = w.next();
        assert_eq!(first, "ready", "a worker did not start: {first}");
        w
    }

    fn next(&mut self) -> String {
        self.lines
            .recv_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("a worker said nothing within {LIMIT:?}"))
    }

    /// `done runs=… values=… slowest_ms=…`, parsed.
    fn done(&mut self) -> (u64, String, u64) {
        let line = loop {
            let line = self.next();
            if line.starts_with("done") {
                break line;
            }
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {name} in {line}"))
                .to_owned()
        };
        let runs = field("runs").parse().expect("runs");
        let slowest = field("slowest_ms").parse().expect("slowest_ms");
        (runs, field("values"), slowest)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("cacheside-fleet-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn once_across_four_processes(name: &str, store: &[(&str, String)]) {
    let dir = TempDir::new(name);
    let mut workers: Vec<Worker> = (0..4)
        .map(|_| Worker::start(store, &dir.0, 250, "go"))
        .collect();
    std::fs::write(dir.0.join("go"), "").expect("go");
    let results: Vec<_> = workers.iter_mut().map(Worker::done).collect();
    let runs: u64 = results.iter().map(|r| r.0).sum();
    assert_eq!(
        runs, 1,
        "{name}: 4 × 250 first calls ran the body {runs} times: {results:?}"
    );
    let values: std::collections::BTreeSet<_> = results.iter().map(|r| r.1.clone()).collect();
    assert_eq!(
        values.len(),
        1,
        "{name}: every caller gets the one value: {values:?}"
    );
}

fn a_dead_leader_is_taken_over_within_its_lease(name: &str, store: &[(&str, String)]) {
    let dir = TempDir::new(name);
    std::fs::write(dir.0.join("hold"), "").expect("hold");
    let mut leader = Worker::start(store, &dir.0, 1, "go");
    let mut others: Vec<Worker> = (0..2)
        .map(|_| Worker::start(store, &dir.0, 50, "go-others"))
        .collect();
    // The leader starts first and holds the lease in its body...
    std::fs::write(dir.0.join("go"), "").expect("go");
    assert_eq!(leader.next(), "reading", "{name}: the first worker leads");
    // ...the others call and wait on its lease...
    std::fs::write(dir.0.join("go-others"), "").expect("go");
    std::thread::sleep(Duration::from_millis(200));
    // ...and it dies with the lease held.
    let killed = Instant::now();
    let _ = leader.child.kill();
    let _ = leader.child.wait();
    std::fs::remove_file(dir.0.join("hold")).expect("release the hold");
    let results: Vec<_> = others.iter_mut().map(Worker::done).collect();
    let took = killed.elapsed();
    let runs: u64 = results.iter().map(|r| r.0).sum();
    assert_eq!(runs, 1, "{name}: one survivor took over: {results:?}");
    let values: std::collections::BTreeSet<_> = results.iter().map(|r| r.1.clone()).collect();
    assert_eq!(values.len(), 1, "{name}: {values:?}");
    // Bounded by the lease (counted from before the kill) plus the body, and slack for a loaded machine.
    let bound = Duration::from_millis(LEASE_MS) * 2 + BODY + Duration::from_secs(2);
    assert!(
        took < bound,
        "{name}: the takeover took {took:?} (bound {bound:?})"
    );
    let slowest = results.iter().map(|r| r.2).max().unwrap_or(0);
    assert!(
        Duration::from_millis(slowest) < bound + Duration::from_millis(LEASE_MS),
        "{name}: a caller waited {slowest} ms"
    );
}

#[test]
fn redis_runs_the_body_once_across_processes_and_survives_a_dead_leader() {
    let server = RedisServer::start();
    let store = [
        ("CACHE_BACKEND", "redis".to_owned()),
        ("CACHE_REDIS_URL", server.url()),
    ];
    once_across_four_processes("redis", &store);
    let store = [
        ("CACHE_BACKEND", "redis".to_owned()),
        ("CACHE_REDIS_URL", server.url()),
        ("CACHE_NAMESPACE", "fleet-dead".to_owned()),
    ];
    a_dead_leader_is_taken_over_within_its_lease("redis-dead", &store);
}

#[test]
fn cluster_runs_the_body_once_across_processes_and_survives_a_dead_leader() {
    let cluster = RedisCluster::start(3);
    let nodes = cluster.node_urls().join(",");
    let store = [
        ("CACHE_BACKEND", "redis-cluster".to_owned()),
        ("CACHE_REDIS_CLUSTER_NODES", nodes.clone()),
    ];
    once_across_four_processes("cluster", &store);
    let store = [
        ("CACHE_BACKEND", "redis-cluster".to_owned()),
        ("CACHE_REDIS_CLUSTER_NODES", nodes),
        ("CACHE_NAMESPACE", "fleet-dead".to_owned()),
    ];
    a_dead_leader_is_taken_over_within_its_lease("cluster-dead", &store);
}

#[test]
fn memcached_runs_the_body_once_across_processes_and_survives_a_dead_leader() {
    let server = MemcachedServer::start();
    let store = [
        ("CACHE_BACKEND", "memcached".to_owned()),
        ("CACHE_MEMCACHED_SERVERS", server.addr()),
    ];
    once_across_four_processes("memcached", &store);
    let store = [
        ("CACHE_BACKEND", "memcached".to_owned()),
        ("CACHE_MEMCACHED_SERVERS", server.addr()),
        ("CACHE_NAMESPACE", "fleet-dead".to_owned()),
    ];
    a_dead_leader_is_taken_over_within_its_lease("memcached-dead", &store);
}

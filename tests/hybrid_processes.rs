//! The local tier across real OS processes sharing one real store: this
//! test binary re-executes itself as replicas (`replica_process`, driven
//! line by line over stdin/stdout), each with its own local tier, on one
//! `redis-server`, one Redis Cluster, and one `memcached` (with the Redis
//! server as backplane).
//!
//! Pinned: an invalidation in one process is seen by the others' local
//! tiers; the fenced-fill race (A starts a slow read of v1, B writes v2 and
//! invalidates, A's read completes: no process serves v1 afterwards); the
//! backplane killed and restarted: no stale local entry survives it; a tag
//! invalidated in one process is a miss for its entries in every process.
//!
//! The "database" is a directory of files, one per id; a `hold-{id}` file
//! makes a body wait (after it read the database) until it is removed.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cacheside::testing::{MemcachedServer, RedisCluster, RedisServer};

const ROLE: &str = "CACHESIDE_HYBRID_ROLE";
const DB: &str = "CACHESIDE_HYBRID_DB";
const LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- replica

static BODY_RUNS: AtomicU64 = AtomicU64::new(0);

fn db_dir() -> PathBuf {
    PathBuf::from(std::env::var(DB).expect("the parent sets the database directory"))
}

/// The body of the cached function: reads the database, then waits while
/// the parent holds this id.
async fn db_read(id: u64) -> String {
    BODY_RUNS.fetch_add(1, Ordering::SeqCst);
    let dir = db_dir();
    let value = std::fs::read_to_string(dir.join(id.to_string())).unwrap_or_default();
    let hold = dir.join(format!("hold-{id}"));
    if hold.exists() {
        say(&format!("reading {id} {value}"));
        let until = Instant::now() + LIMIT;
        while hold.exists() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    value
}

#[cacheside::cache(key_prefix = "item", resource_id = "id", expire = 600)]
async fn item(id: u64) -> String {
    db_read(id).await
}

#[cacheside::invalidate(key_prefix = "item", resource_id = "id")]
async fn update_item(id: u64, value: &str) {
    std::fs::write(db_dir().join(id.to_string()), value).expect("write the database");
}

/// An item tagged with its owner.
#[cacheside::cache(key_prefix = "owned", resource_id = "id", expire = 600, tags = ["owner:{owner}"])]
async fn owned(id: u64, owner: u64) -> String {
    format!("{owner}:{}", db_read(id).await)
}

/// Writes every listed item, then invalidates the owner's tag.
#[cacheside::invalidate(tags = ["owner:{owner}"])]
async fn update_owner(owner: u64, ids: &[u64], value: &str) {
    for id in ids {
        std::fs::write(db_dir().join(id.to_string()), value).expect("write the database");
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ {line}").expect("stdout");
    out.flush().expect("stdout");
}

/// The replica: runs only when re-executed by a parent test.
#[test]
fn replica_process() {
    if std::env::var(ROLE).is_err() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let cache = match cacheside::init_from_env().await {
            Ok(c) => c,
            Err(e) => return say(&format!("error {e}")),
        };
        say("ready");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(line) = rx.recv().await {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["get", id] => {
                    let id: u64 = id.parse().expect("id");
                    say(&format!("value {}", item(id).await));
                }
                ["slow", id] => {
                    let id: u64 = id.parse().expect("id");
                    tokio::spawn(async move { say(&format!("slow {}", item(id).await)) });
                }
                ["owned", id, owner] => {
                    let (id, owner) = (id.parse().expect("id"), owner.parse().expect("owner"));
                    say(&format!("value {}", owned(id, owner).await));
                }
                ["write-owner", owner, ids, value] => {
                    let ids: Vec<u64> = ids.split(',').map(|i| i.parse().expect("id")).collect();
                    update_owner(owner.parse().expect("owner"), &ids, value).await;
                    say("written");
                }
                ["write", id, value] => {
                    update_item(id.parse().expect("id"), value).await;
                    say("written");
                }
                ["stats"] => {
                    let s = cache.stats();
                    say(&format!(
                        "stats local_hits={} body_runs={} local_flushes={} backplane_disconnects={} fenced_fills={}",
                        s.local_hits,
                        BODY_RUNS.load(Ordering::SeqCst),
                        s.local_flushes,
                        s.backplane_disconnects,
                        s.fenced_fills
                    ));
                }
                ["quit"] => break,
                other => say(&format!("error unknown command {other:?}")),
            }
        }
    });
}

// ---------------------------------------------------------------- parent

/// One replica process and the lines it says.
struct Replica {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Replica {
    fn start(name: &'static str, env: &[(&str, String)], db: &Path) -> Replica {
        let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
        cmd.args([
            "replica_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, name)
        .env(DB, db)
        .env("CACHE_NAMESPACE", "hp")
        // Startup waits for the backplane's subscription this long: on a
        // loaded machine 1 s (the default) can pass first, and the late
        // subscription then flushes the tier between two reads of a test.
        .env("CACHE_CONNECT_TIMEOUT_MS", "5000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn a replica");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest's "test replica_process ... " has no newline: look inside the line.
                if let Some(at) = line.find("@@ ") {
                    if tx.send(line[at + 3..].to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let mut r = Replica {
            name,
            child,
            stdin,
            lines,
        };
        let first = r.next();
        assert_eq!(first, "ready", "{name} did not start: {first}");
        r
    }

    fn next(&mut self) -> String {
        self.lines
            .recv_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("{} said nothing within {LIMIT:?}", self.name))
    }

    /// The next line starting with `prefix` (others are kept for later? no:
    /// the protocol is one answer per command, plus asynchronous `slow`/`reading`).
    fn expect(&mut self, prefix: &str) -> String {
        let line = self.next();
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{}: expected `{prefix}…`, got `{line}`", self.name))
            .trim()
            .to_owned()
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("replica stdin");
        self.stdin.flush().expect("replica stdin");
    }

    fn get(&mut self, id: u64) -> String {
        self.send(&format!("get {id}"));
        self.expect("value")
    }

    fn write(&mut self, id: u64, value: &str) {
        self.send(&format!("write {id} {value}"));
        assert_eq!(self.next(), "written");
    }

    fn stat(&mut self, name: &str) -> u64 {
        self.send("stats");
        let line = self.expect("stats");
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    }

    /// Asks `get id` until it answers `want` (an invalidation crossing the
    /// backplane takes a moment); bounded.
    fn eventually_gets(&mut self, id: u64, want: &str) {
        let until = Instant::now() + LIMIT;
        loop {
            let got = self.get(id);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < until,
                "{} still serves {got:?}, not {want:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn database() -> tempdir::Dir {
    tempdir::Dir::new()
}

/// A temporary directory, removed at the end.
mod tempdir {
    use std::path::{Path, PathBuf};
    pub struct Dir(PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let p =
                std::env::temp_dir().join(format!("cacheside-hybrid-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).expect("temp dir");
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
        pub fn put(&self, name: &str, value: &str) {
            std::fs::write(self.0.join(name), value).expect("write");
        }
        pub fn remove(&self, name: &str) {
            let _ = std::fs::remove_file(self.0.join(name));
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// An invalidation in one process reaches the other processes' tiers, and
/// their hits were local before it.
fn invalidation_is_seen_everywhere(env: &[(&str, String)]) {
    let db = database();
    db.put("1", "v1");
    let mut r: Vec<Replica> = ["a", "b", "c"]
        .into_iter()
        .map(|n| Replica::start(n, env, db.path()))
        .collect();
    for p in r.iter_mut() {
        assert_eq!(p.get(1), "v1");
        assert_eq!(p.get(1), "v1");
        assert!(
            p.stat("local_hits") >= 1,
            "{}: the second read is local",
            p.name
        );
    }
    let runs: u64 = r.iter_mut().map(|p| p.stat("body_runs")).sum();
    assert_eq!(
        runs, 1,
        "one body run for three processes: the others read the store"
    );
    r[1].write(1, "v2");
    assert_eq!(
        r[1].get(1),
        "v2",
        "the writer itself sees its write at once"
    );
    for p in r.iter_mut() {
        p.eventually_gets(1, "v2");
    }
}

/// A tag invalidated in one process: every entry carrying it misses in
/// every process, local tiers included, and entries of other tags stay.
fn tag_is_seen_everywhere(env: &[(&str, String)]) {
    let db = database();
    for id in [11, 12, 13] {
        db.put(&id.to_string(), "v1");
    }
    let mut r: Vec<Replica> = ["a", "b", "c"]
        .into_iter()
        .map(|n| Replica::start(n, env, db.path()))
        .collect();
    let read = |p: &mut Replica, id: u64, owner: u64| {
        p.send(&format!("owned {id} {owner}"));
        p.expect("value")
    };
    for p in r.iter_mut() {
        assert_eq!(read(p, 11, 1), "1:v1");
        assert_eq!(read(p, 12, 1), "1:v1");
        assert_eq!(read(p, 13, 2), "2:v1");
        // Read twice: the second is a local hit, which the tag must reach too.
        assert_eq!(read(p, 11, 1), "1:v1");
        assert!(
            p.stat("local_hits") >= 1,
            "{}: the entries are in its local tier",
            p.name
        );
    }
    // Owner 2's item changes in the database behind the cache's back: it must stay cached.
    db.put("13", "changed-behind");
    r[0].send("write-owner 1 11,12 v2");
    assert_eq!(r[0].next(), "written");
    for p in r.iter_mut() {
        let until = Instant::now() + LIMIT;
        loop {
            let (a, b) = (read(p, 11, 1), read(p, 12, 1));
            if (a.as_str(), b.as_str()) == ("1:v2", "1:v2") {
                break;
            }
            assert!(Instant::now() < until, "{} still serves {a} / {b}", p.name);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            read(p, 13, 2),
            "2:v1",
            "{}: another tag's entry was dropped",
            p.name
        );
    }
}

/// The fenced-fill race across processes.
fn fenced_fill_race(env: &[(&str, String)]) {
    let db = database();
    db.put("7", "v1");
    let mut a = Replica::start("a", env, db.path());
    let mut b = Replica::start("b", env, db.path());
    let mut c = Replica::start("c", env, db.path());
    db.put("hold-7", "");
    a.send("slow 7");
    assert_eq!(a.expect("reading"), "7 v1", "A's body read v1 and waits");
    b.write(7, "v2");
    db.remove("hold-7");
    assert_eq!(
        a.expect("slow"),
        "v1",
        "A's own caller gets what its body read"
    );
    // A's fill came after B's invalidation: it landed nowhere.
    for p in [&mut a, &mut b, &mut c] {
        assert_eq!(
            p.get(7),
            "v2",
            "{} serves the value from before the write",
            p.name
        );
    }
    assert!(a.stat("fenced_fills") >= 1);
}

/// The backplane killed and restarted: no stale local entry survives.
fn backplane_restart(env: &[(&str, String)], kill: impl FnOnce(), restart: impl FnOnce()) {
    let db = database();
    db.put("3", "v1");
    let mut a = Replica::start("a", env, db.path());
    let mut b = Replica::start("b", env, db.path());
    assert_eq!(a.get(3), "v1");
    assert_eq!(a.get(3), "v1");
    let flushes = a.stat("local_flushes");
    kill();
    // Changed while the backplane is down: A cannot hear of it.
    b.write(3, "v2");
    restart();
    let until = Instant::now() + LIMIT;
    while a.stat("local_flushes") == flushes {
        assert!(
            Instant::now() < until,
            "A's tier was not flushed after the backplane came back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(a.stat("backplane_disconnects") >= 1);
    assert_eq!(
        a.get(3),
        "v2",
        "a stale local entry survived the backplane's restart"
    );
}

fn redis_env(server: &RedisServer) -> Vec<(&'static str, String)> {
    vec![
        ("CACHE_BACKEND", "redis".into()),
        ("CACHE_REDIS_URL", server.url()),
    ]
}

fn cluster_env(cluster: &RedisCluster) -> Vec<(&'static str, String)> {
    vec![
        ("CACHE_BACKEND", "redis-cluster".into()),
        ("CACHE_REDIS_CLUSTER_NODES", cluster.node_urls().join(",")),
    ]
}

fn memcached_env(mc: &MemcachedServer, backplane: &RedisServer) -> Vec<(&'static str, String)> {
    vec![
        ("CACHE_BACKEND", "memcached".into()),
        ("CACHE_MEMCACHED_SERVERS", mc.addr()),
        ("CACHE_BACKPLANE", backplane.url()),
    ]
}

#[test]
fn redis_invalidation_reaches_every_process() {
    let server = RedisServer::start();
    invalidation_is_seen_everywhere(&redis_env(&server));
}

#[test]
fn redis_tag_invalidation_reaches_every_process() {
    let server = RedisServer::start();
    tag_is_seen_everywhere(&redis_env(&server));
}

#[test]
fn cluster_tag_invalidation_reaches_every_process() {
    let cluster = RedisCluster::start(3);
    tag_is_seen_everywhere(&cluster_env(&cluster));
}

#[test]
fn memcached_tag_invalidation_reaches_every_process() {
    let (mc, backplane) = (MemcachedServer::start(), RedisServer::start());
    tag_is_seen_everywhere(&memcached_env(&mc, &backplane));
}

#[test]
fn redis_fenced_fill_race() {
    let server = RedisServer::start();
    fenced_fill_race(&redis_env(&server));
}

#[test]
fn redis_backplane_killed_and_restarted() {
    let server = std::cell::RefCell::new(RedisServer::start());
    let env = redis_env(&server.borrow());
    backplane_restart(
        &env,
        || server.borrow_mut().kill(),
        || server.borrow_mut().restart(),
    );
}

#[test]
fn cluster_invalidation_reaches_every_process() {
    let cluster = RedisCluster::start(3);
    invalidation_is_seen_everywhere(&cluster_env(&cluster));
}

#[test]
fn cluster_fenced_fill_race() {
    let cluster = RedisCluster::start(3);
    fenced_fill_race(&cluster_env(&cluster));
}

#[test]
fn cluster_backplane_killed_and_restarted() {
    let cluster = std::cell::RefCell::new(RedisCluster::start(3));
    let env = cluster_env(&cluster.borrow());
    backplane_restart(
        &env,
        || cluster.borrow_mut().kill_all(),
        || cluster.borrow_mut().restart_all(),
    );
}

#[test]
fn memcached_invalidation_reaches_every_process() {
    let (mc, backplane) = (MemcachedServer::start(), RedisServer::start());
    invalidation_is_seen_everywhere(&memcached_env(&mc, &backplane));
}

#[test]
fn memcached_fenced_fill_race() {
    let (mc, backplane) = (MemcachedServer::start(), RedisServer::start());
    fenced_fill_race(&memcached_env(&mc, &backplane));
}

#[test]
fn memcached_backplane_killed_and_restarted() {
    let mc = MemcachedServer::start();
    let backplane = std::cell::RefCell::new(RedisServer::start());
    let env = memcached_env(&mc, &backplane.borrow());
    backplane_restart(
        &env,
        || backplane.borrow_mut().kill(),
        || backplane.borrow_mut().restart(),
    );
}

/// Without a backplane and without `CACHE_LOCAL_TTL`, Memcached gets no
/// local tier: another process's invalidation is seen at once.
#[test]
fn memcached_without_backplane_has_no_local_tier_unless_asked() {
    let mc = MemcachedServer::start();
    let env = vec![
        ("CACHE_BACKEND", "memcached".into()),
        ("CACHE_MEMCACHED_SERVERS", mc.addr()),
    ];
    let db = database();
    db.put("1", "v1");
    let mut a = Replica::start("a", &env, db.path());
    let mut b = Replica::start("b", &env, db.path());
    assert_eq!(a.get(1), "v1");
    assert_eq!(a.get(1), "v1");
    assert_eq!(a.stat("local_hits"), 0);
    b.write(1, "v2");
    assert_eq!(a.get(1), "v2");
}

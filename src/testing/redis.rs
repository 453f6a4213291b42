//! Real `redis-server` processes for tests: one server ([`RedisServer`]), a
//! cluster ([`RedisCluster`]), or a master, a replica and three Sentinels ([`RedisSentinelGroup`]).
//!
//! Over 600 lines: starting one server and starting a cluster share the
//! process, port and readiness code here; splitting them would split that.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::process::{free_port, require_binary, ServerProcess};

/// How long a launcher waits for a server or a cluster to become ready.
const READY_LIMIT: Duration = Duration::from_secs(30);

/// One reply of the Redis protocol (RESP2), as read by [`redis_command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR …`
    Error(String),
    /// `:42`
    Int(i64),
    /// `$…`: `None` for the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*…`: `None` for the null array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The payload of a status or bulk reply as text (lossy), else `None`.
    ///
    /// ```
    /// use cacheside::testing::Reply;
    /// assert_eq!(Reply::Status("PONG".into()).as_text().as_deref(), Some("PONG"));
    /// assert_eq!(Reply::Bulk(Some(b"v".to_vec())).as_text().as_deref(), Some("v"));
    /// assert_eq!(Reply::Int(1).as_text(), None);
    /// ```
    pub fn as_text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// Sends one command to the Redis server on `127.0.0.1:port` over a fresh
/// connection and reads its reply. For test set-up and inspection: it
/// bypasses cacheside entirely (e.g. to plant bytes that do not decode).
///
/// ```no_run
/// use cacheside::testing::{redis_command, Reply};
/// let reply = redis_command(6379, &[b"SET", b"raw", b"\xff\x00"]).unwrap();
/// assert_eq!(reply, Reply::Status("OK".into()));
/// ```
pub fn redis_command(port: u16, args: &[&[u8]]) -> io::Result<Reply> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg);
        request.extend_from_slice(b"\r\n");
    }
    stream.write_all(&request)?;
    read_reply(&mut BufReader::new(stream))
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") {
        return Err(invalid("connection closed in the middle of a reply"));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| invalid("reply header is not UTF-8"))
}

fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(line.len().min(1));
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| invalid(format!("bad length {rest:?}")))
    };
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(number()?),
        "$" => match usize::try_from(number()?) {
            Err(_) => Reply::Bulk(None),
            Ok(len) => {
                let mut buf = vec![0; len + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(len);
                Reply::Bulk(Some(buf))
            }
        },
        "*" => match usize::try_from(number()?) {
            Err(_) => Reply::Array(None),
            Ok(len) => {
                let mut items = Vec::with_capacity(len.min(1024));
                for _ in 0..len {
                    items.push(read_reply(r)?);
                }
                Reply::Array(Some(items))
            }
        },
        other => return Err(invalid(format!("unknown reply type {other:?}"))),
    })
}

/// Waits until the server on `port` answers `PING` with `PONG`.
fn wait_for_pong(port: u16, what: &str) {
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        match redis_command(port, &[b"PING"]) {
            Ok(Reply::Status(s)) if s == "PONG" => return,
            other => assert!(
                Instant::now() < deadline,
                "{what} on port {port} did not answer PING within {READY_LIMIT:?}; last answer: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn base_args(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A real `redis-server` on a free loopback port, stopped on drop.
///
/// Started with `--bind 127.0.0.1 --save "" --appendonly no`: nothing is
/// written to disk, so [`restart`](RedisServer::restart) comes back empty,
/// like a crashed cache server. Panics with the `apt-get` command when
/// `redis-server` is not installed.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
/// let server = cacheside::testing::RedisServer::start();
/// let redis = cacheside::backends::RedisBackend::connect(&server.url()).await?;
/// let cache = cacheside::Cache::builder(redis).build();
/// cache.set("k", &1u8, None).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisServer {
    process: ServerProcess,
    /// With [`start_tls`](RedisServer::start_tls): the CA certificate (PEM) and the directory of the key material.
    tls: Option<(Vec<u8>, TempDir)>,
    /// Whether an unauthenticated plain-text `PING` tells that the server is ready.
    plain_ping: bool,
}

impl RedisServer {
    /// Starts a server and waits (bounded) until it answers `PING`.
    pub fn start() -> RedisServer {
        Self::start_with_args(&[])
    }

    /// Like [`start`](RedisServer::start), with extra `redis-server` arguments
    /// (e.g. `["--requirepass", "secret"]`; [`url`](RedisServer::url) does not add the password).
    ///
    /// Readiness is then checked by the TCP port only.
    pub fn start_with_args(extra: &[&str]) -> RedisServer {
        let program = require_binary("redis-server", "redis-server");
        let port = free_port();
        let mut args = base_args(port);
        args.extend(extra.iter().map(|s| s.to_string()));
        let process = ServerProcess::spawn("redis-server", program, args, port);
        if extra.is_empty() {
            wait_for_pong(port, "redis-server");
        }
        RedisServer {
            process,
            tls: None,
            plain_ping: extra.is_empty(),
        }
    }

    /// A server that requires `password` (`--requirepass`); ready once it
    /// answers `PING` (with `NOAUTH`). [`url`](RedisServer::url) has no
    /// password, [`url_with_password`](RedisServer::url_with_password) adds one.
    ///
    /// ```no_run
    /// let server = cacheside::testing::RedisServer::start_with_password("s3cret");
    /// assert!(server.url_with_password("s3cret").starts_with("redis://:s3cret@127.0.0.1:"));
    /// ```
    pub fn start_with_password(password: &str) -> RedisServer {
        let server = Self::start_with_args(&["--requirepass", password]);
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            match redis_command(server.port(), &[b"PING"]) {
                Ok(Reply::Error(e)) if e.starts_with("NOAUTH") => return server,
                other => assert!(
                    Instant::now() < deadline,
                    "redis-server with a password on port {} did not answer PING with NOAUTH within {READY_LIMIT:?}; last answer: {other:?}",
                    server.port()
                ),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://:PASSWORD@127.0.0.1:PORT/0` (the password percent-encoded).
    pub fn url_with_password(&self, password: &str) -> String {
        let mut encoded = String::new();
        for b in password.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                encoded.push(b as char);
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        self.url().replacen("://", &format!("://:{encoded}@"), 1)
    }

    /// A server that speaks only TLS, with a certificate for `127.0.0.1` signed
    /// by a fresh test CA ([`tls_ca_pem`](RedisServer::tls_ca_pem)); clients
    /// need not present a certificate. Needs the `openssl` command.
    ///
    /// [`url`](RedisServer::url) is then `rediss://…`, and
    /// [`command`](RedisServer::command) does not work (it speaks plain TCP).
    ///
    /// ```no_run
    /// # #[cfg(feature = "tls")]
    /// # async fn demo() -> Result<(), cacheside::Error> {
    /// use cacheside::backends::{RedisBackend, RedisOptions};
    /// let server = cacheside::testing::RedisServer::start_tls();
    /// let options = RedisOptions { tls_root_cert: server.tls_ca_pem().map(<[u8]>::to_vec), ..Default::default() };
    /// let redis = RedisBackend::connect_with(&server.url(), options).await?;
    /// # let _ = redis; Ok(()) }
    /// # fn main() {}
    /// ```
    pub fn start_tls() -> RedisServer {
        let program = require_binary("redis-server", "redis-server");
        let openssl = require_binary("openssl", "openssl");
        let dir = TempDir::new("cacheside-redis-tls");
        let path = |name: &str| dir.0.join(name).to_string_lossy().into_owned();
        std::fs::write(
            path("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write the certificate extensions file");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let steps: [Vec<String>; 3] = [
            ["req", "-x509"]
                .iter()
                .chain(&ec)
                .map(|s| s.to_string())
                .chain([
                    "-keyout".into(),
                    path("ca.key"),
                    "-out".into(),
                    path("ca.crt"),
                    "-days".into(),
                    "2".into(),
                    "-subj".into(),
                    "/CN=cacheside test CA".into(),
                ])
                .collect(),
            ["req"]
                .iter()
                .chain(&ec)
                .map(|s| s.to_string())
                .chain([
                    "-keyout".into(),
                    path("server.key"),
                    "-out".into(),
                    path("server.csr"),
                    "-subj".into(),
                    "/CN=localhost".into(),
                ])
                .collect(),
            [
                "x509",
                "-req",
                "-in",
                &path("server.csr"),
                "-CA",
                &path("ca.crt"),
                "-CAkey",
                &path("ca.key"),
                "-CAcreateserial",
                "-out",
                &path("server.crt"),
                "-days",
                "2",
                "-extfile",
                &path("server.ext"),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ];
        for args in &steps {
            let out = Command::new(&openssl)
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("could not run openssl: {e}"));
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let ca_pem = std::fs::read(path("ca.crt")).expect("read the test CA certificate");
        let port = free_port();
        let mut args = base_args(port);
        args.extend(
            [
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                &path("server.crt"),
                "--tls-key-file",
                &path("server.key"),
                "--tls-ca-cert-file",
                &path("ca.crt"),
                "--tls-auth-clients",
                "no",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let process = ServerProcess::spawn("redis-server (TLS)", program, args, port);
        RedisServer {
            process,
            tls: Some((ca_pem, dir)),
            plain_ping: false,
        }
    }

    /// `redis://127.0.0.1:PORT/0` (`rediss://` for [`start_tls`](RedisServer::start_tls)).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port())
    }

    /// The PEM certificate of the CA that signed a TLS server's certificate; `None` for plain servers.
    pub fn tls_ca_pem(&self) -> Option<&[u8]> {
        self.tls.as_ref().map(|(pem, _)| pem.as_slice())
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Sends one raw command to this server (see [`redis_command`]).
    pub fn command(&self, args: &[&[u8]]) -> io::Result<Reply> {
        redis_command(self.port(), args)
    }

    /// SIGKILL: the server vanishes with its data, as in a crash.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGSTOP: connections stay open but nothing is answered.
    pub fn pause(&self) {
        self.process.pause();
    }

    /// SIGCONT after [`pause`](RedisServer::pause).
    pub fn resume(&self) {
        self.process.resume();
    }

    /// Kills (if running) and starts an empty server on the same port; waits until it answers.
    pub fn restart(&mut self) {
        self.process.restart();
        if self.plain_ping {
            wait_for_pong(self.port(), "restarted redis-server");
        }
    }
}

/// A temporary directory under [`std::env::temp_dir`], removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

/// True when no process has id `pid` (any more).
fn is_gone(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

impl TempDir {
    /// Removes `{prefix}-{pid}-…` directories of test processes that have exited
    /// (servers kept in statics are never dropped, so their directories stay behind).
    fn sweep_stale(prefix: &str) {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
                continue;
            };
            let pid = rest.strip_prefix('-').and_then(|r| r.split('-').next());
            if pid.and_then(|p| p.parse::<u32>().ok()).is_some_and(is_gone) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    fn new(prefix: &str) -> TempDir {
        Self::sweep_stale(prefix);
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("could not create {}: {e}", path.display()));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A real Redis Cluster of primaries on free loopback ports, stopped (and its files removed) on drop.
///
/// Each node runs with `--cluster-enabled yes`, its `nodes.conf` and working
/// directory in a temporary directory; the cluster is formed with
/// `redis-cli --cluster create … --cluster-replicas 0` and is ready when every
/// node reports `cluster_state:ok`.
///
/// ```no_run
/// # #[cfg(feature = "redis-cluster")]
/// # async fn demo() -> Result<(), cacheside::Error> {
/// let cluster = cacheside::testing::RedisCluster::start(3);
/// let backend = cacheside::backends::RedisClusterBackend::connect(&cluster.node_urls()).await?;
/// let cache = cacheside::Cache::builder(backend).build();
/// cache.set("k", &1u8, None).await?;
/// # Ok(()) }
/// # fn main() {}
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<ServerProcess>,
    _dir: TempDir,
}

impl RedisCluster {
    /// Starts `primaries` nodes (at least 3, as Redis requires) and forms the cluster.
    ///
    /// # Panics
    /// When a binary is missing, a node does not start, `redis-cli --cluster create`
    /// fails, or the cluster is not `ok` on every node within 30 s.
    pub fn start(primaries: usize) -> RedisCluster {
        assert!(
            primaries >= 3,
            "a Redis Cluster needs at least 3 primaries, {primaries} were asked for"
        );
        let server = require_binary("redis-server", "redis-server");
        let cli = require_binary("redis-cli", "redis-tools");
        let dir = TempDir::new("cacheside-redis-cluster");
        let mut ports: Vec<u16> = Vec::new();
        // Each node needs a client port and a cluster-bus port; all distinct.
        let mut fresh = || loop {
            let p = free_port();
            if !ports.contains(&p) {
                ports.push(p);
                return p;
            }
        };
        let pairs: Vec<(u16, u16)> = (0..primaries).map(|_| (fresh(), fresh())).collect();
        let mut nodes = Vec::with_capacity(primaries);
        for &(port, bus) in &pairs {
            let mut args = base_args(port);
            let conf = dir.0.join(format!("nodes-{port}.conf"));
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf.to_string_lossy(),
                    "--cluster-port",
                    &bus.to_string(),
                    "--cluster-node-timeout",
                    "5000",
                    "--dir",
                    &dir.0.to_string_lossy(),
                ]
                .iter()
                .map(|s| s.to_string()),
            );
            nodes.push(ServerProcess::spawn(
                "redis-server (cluster node)",
                server.clone(),
                args,
                port,
            ));
        }
        let cluster = RedisCluster { nodes, _dir: dir };
        for node in &cluster.nodes {
            wait_for_pong(node.port(), "redis cluster node");
        }
        let mut create = Command::new(cli);
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = create
            .output()
            .unwrap_or_else(|e| panic!("could not run redis-cli --cluster create: {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_ok();
        cluster
    }

    /// Waits until every node says `cluster_state:ok` and knows all the others.
    fn wait_ok(&self) {
        let deadline = Instant::now() + READY_LIMIT;
        for node in &self.nodes {
            loop {
                let info = redis_command(node.port(), &[b"CLUSTER", b"INFO"])
                    .ok()
                    .and_then(|r| r.as_text())
                    .unwrap_or_default();
                let known = format!("cluster_known_nodes:{}", self.nodes.len());
                if info.contains("cluster_state:ok") && info.contains(&known) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the Redis Cluster on ports {:?} did not reach cluster_state:ok within {READY_LIMIT:?}; CLUSTER INFO of port {}:\n{info}",
                    self.ports(),
                    node.port()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// SIGKILL to every node: the whole cluster is gone (its `nodes.conf` files stay).
    pub fn kill_all(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }

    /// Starts every node again on its port (after [`kill_all`](RedisCluster::kill_all));
    /// the nodes read their `nodes.conf`, so the same cluster forms again, empty.
    /// Waits until it is `ok` on every node.
    ///
    /// ```no_run
    /// let mut cluster = cacheside::testing::RedisCluster::start(3);
    /// cluster.kill_all();
    /// cluster.restart_all();
    /// ```
    pub fn restart_all(&mut self) {
        for node in &mut self.nodes {
            node.restart();
        }
        for node in &self.nodes {
            wait_for_pong(node.port(), "restarted redis cluster node");
        }
        self.wait_ok();
    }

    /// `redis://127.0.0.1:PORT` of every node.
    pub fn node_urls(&self) -> Vec<String> {
        self.ports()
            .into_iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The client port of every node.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(ServerProcess::port).collect()
    }

    /// Sends one raw command to the node on `port` (see [`redis_command`]; no redirection is followed).
    pub fn command(&self, port: u16, args: &[&[u8]]) -> io::Result<Reply> {
        redis_command(port, args)
    }

    /// Total number of keys over all nodes (`DBSIZE` of each).
    pub fn key_count(&self) -> u64 {
        self.ports()
            .into_iter()
            .map(|p| match redis_command(p, &[b"DBSIZE"]) {
                Ok(Reply::Int(n)) => u64::try_from(n).unwrap_or(0),
                other => panic!("DBSIZE on cluster node {p} answered {other:?}"),
            })
            .sum()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        // Stop the servers before their directory goes away.
        self.nodes.clear();
    }
}

/// The service name [`RedisSentinelGroup`] monitors its master under.
pub const SENTINEL_MASTER_NAME: &str = "cacheside";

/// A Redis master, one replica and three Sentinels (quorum 2) on free
/// loopback ports, stopped (and their files removed) on drop.
///
/// The Sentinels run as `redis-server <conf> --sentinel`, each with its
/// config in a temporary directory, `down-after-milliseconds` 1000 and
/// `failover-timeout` 2000. [`start`](RedisSentinelGroup::start) returns
/// once every Sentinel names the master and knows the replica and the other
/// two Sentinels, so that a failover can run at once.
///
/// ```no_run
/// # #[cfg(feature = "redis-sentinel")]
/// # async fn demo() -> Result<(), cacheside::Error> {
/// use cache_backends::RedisSentinel;
/// use cacheside::backends::{RedisBackend, RedisOptions};
/// use cacheside::testing::{RedisSentinelGroup, SENTINEL_MASTER_NAME};
/// let group = RedisSentinelGroup::start();
/// let target = RedisSentinel::new(&group.sentinel_addrs(), SENTINEL_MASTER_NAME);
/// let redis = RedisBackend::connect_sentinel(&target, RedisOptions::default()).await?;
/// let new_master = group.failover();
/// # let _ = (redis, new_master); Ok(()) }
/// # fn main() {}
/// ```
#[derive(Debug)]
pub struct RedisSentinelGroup {
    data: Vec<RedisServer>,
    sentinels: Vec<ServerProcess>,
    _dir: TempDir,
}

impl RedisSentinelGroup {
    /// Starts the master, the replica and the Sentinels, and waits (bounded) until they know each other.
    ///
    /// # Panics
    /// When `redis-server` is missing or the group is not ready within 30 s.
    pub fn start() -> RedisSentinelGroup {
        let program = require_binary("redis-server", "redis-server");
        let dir = TempDir::new("cacheside-redis-sentinel");
        // Replication moves RDB files: they go to the temporary directory, not the working one.
        let data_dir = dir.0.to_string_lossy().into_owned();
        let master =
            RedisServer::start_with_args(&["--dir", &data_dir, "--dbfilename", "first.rdb"]);
        wait_for_pong(master.port(), "redis-server (master)");
        let replica = RedisServer::start_with_args(&[
            "--dir",
            &data_dir,
            "--dbfilename",
            "second.rdb",
            "--replicaof",
            "127.0.0.1",
            &master.port().to_string(),
        ]);
        wait_for_pong(replica.port(), "redis-server (replica)");
        let mut sentinels = Vec::with_capacity(3);
        for i in 0..3 {
            let port = free_port();
            let conf = dir.0.join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {name} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {name} 1000\n\
                     sentinel failover-timeout {name} 2000\n\
                     sentinel parallel-syncs {name} 1\n",
                    dir = dir.0.display(),
                    name = SENTINEL_MASTER_NAME,
                    master = master.port(),
                ),
            )
            .expect("write a sentinel config");
            sentinels.push(ServerProcess::spawn(
                "redis-server --sentinel",
                program.clone(),
                vec![conf.to_string_lossy().into_owned(), "--sentinel".into()],
                port,
            ));
        }
        let group = RedisSentinelGroup {
            data: vec![master, replica],
            sentinels,
            _dir: dir,
        };
        group.wait_until(
            READY_LIMIT,
            "every Sentinel knows the master, its replica and the other Sentinels",
            |g| {
                g.sentinels.iter().all(|s| {
                    let info = g.sentinel_master_info(s.port());
                    info.get("num-slaves").map(String::as_str) == Some("1")
                        && info.get("num-other-sentinels").map(String::as_str) == Some("2")
                        && info.get("flags").map(String::as_str) == Some("master")
                }) && g.role(g.data[1].port()).as_deref() == Some("slave")
                    && g.replica_link_up(g.data[1].port())
                    // The replica's side can be up before the master puts it
                    // online; the store counts the replicas the master's
                    // `ROLE` lists (online ones) when it finds the master.
                    && g.online_replicas(g.data[0].port()) == 1
            },
        );
        group
    }

    /// Polls `ready` every 50 ms until it holds; panics naming `what` after `limit`.
    fn wait_until(&self, limit: Duration, what: &str, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "Sentinel group: {what} did not happen within {limit:?}; sentinels {:?}, data nodes {:?}",
                self.sentinel_ports(),
                self.data_ports()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `SENTINEL MASTER <name>` of the Sentinel on `port`, as field → value (empty when it does not answer).
    fn sentinel_master_info(&self, port: u16) -> std::collections::HashMap<String, String> {
        let reply = redis_command(
            port,
            &[b"SENTINEL", b"MASTER", SENTINEL_MASTER_NAME.as_bytes()],
        );
        let mut out = std::collections::HashMap::new();
        if let Ok(Reply::Array(Some(items))) = reply {
            for pair in items.chunks(2) {
                if let [k, v] = pair {
                    if let (Some(k), Some(v)) = (k.as_text(), v.as_text()) {
                        out.insert(k, v);
                    }
                }
            }
        }
        out
    }

    /// The first field of `ROLE` on the data node on `port` (`master`, `slave`), if it answers.
    pub fn role(&self, port: u16) -> Option<String> {
        match redis_command(port, &[b"ROLE"]) {
            Ok(Reply::Array(Some(items))) => items.first().and_then(Reply::as_text),
            _ => None,
        }
    }

    /// How many replicas the master on `port` lists in `ROLE` (the online ones); 0 if it is no master.
    fn online_replicas(&self, port: u16) -> usize {
        match redis_command(port, &[b"ROLE"]) {
            Ok(Reply::Array(Some(items)))
                if items.first().and_then(Reply::as_text).as_deref() == Some("master") =>
            {
                match items.get(2) {
                    Some(Reply::Array(Some(replicas))) => replicas.len(),
                    _ => 0,
                }
            }
            _ => 0,
        }
    }

    /// Whether the replica on `port` reports its link to the master up.
    fn replica_link_up(&self, port: u16) -> bool {
        redis_command(port, &[b"INFO", b"replication"])
            .ok()
            .and_then(|r| r.as_text())
            .is_some_and(|info| info.contains("master_link_status:up"))
    }

    /// The port of the data node the Sentinel on `sentinel` names as master.
    fn named_master(&self, sentinel: u16) -> Option<u16> {
        let reply = redis_command(
            sentinel,
            &[
                b"SENTINEL",
                b"GET-MASTER-ADDR-BY-NAME",
                SENTINEL_MASTER_NAME.as_bytes(),
            ],
        );
        match reply {
            Ok(Reply::Array(Some(items))) => items.get(1)?.as_text()?.parse().ok(),
            _ => None,
        }
    }

    /// The port of the current master, as the first Sentinel names it.
    pub fn master_port(&self) -> u16 {
        self.named_master(self.sentinels[0].port())
            .expect("the first Sentinel names a master")
    }

    /// `SENTINEL FAILOVER <name>` on the first Sentinel; returns the new
    /// master's port once every Sentinel names it, it says `ROLE` master and
    /// the old master has been turned into its replica with the link up
    /// (Sentinel disconnects the old master's clients when it does so).
    ///
    /// # Panics
    /// When that has not all happened within 30 s.
    pub fn failover(&self) -> u16 {
        let old = self.master_port();
        let new = self
            .data_ports()
            .into_iter()
            .find(|p| *p != old)
            .expect("two data nodes");
        // A Sentinel refuses while a previous failover's timeout runs: retried within the limit.
        self.wait_until(READY_LIMIT, "SENTINEL FAILOVER accepted", |g| {
            matches!(
                redis_command(
                    g.sentinels[0].port(),
                    &[b"SENTINEL", b"FAILOVER", SENTINEL_MASTER_NAME.as_bytes()]
                ),
                Ok(Reply::Status(_))
            )
        });
        self.wait_until(READY_LIMIT, "the failover completing", |g| {
            g.sentinels
                .iter()
                .all(|s| g.named_master(s.port()) == Some(new))
                && g.role(new).as_deref() == Some("master")
                && g.role(old).as_deref() == Some("slave")
                && g.replica_link_up(old)
                && g.online_replicas(new) == 1
        });
        new
    }

    /// `host:port` of each Sentinel, as `CACHE_REDIS_SENTINELS` takes them (comma-joined).
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinel_ports()
            .into_iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// The Sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(ServerProcess::port).collect()
    }

    /// The ports of the two data nodes (the first started as master).
    pub fn data_ports(&self) -> Vec<u16> {
        self.data.iter().map(RedisServer::port).collect()
    }

    /// Sends one raw command to the data node on `port` (see [`redis_command`]).
    pub fn command(&self, port: u16, args: &[&[u8]]) -> io::Result<Reply> {
        redis_command(port, args)
    }

    /// The data node on `port` (to [`pause`](RedisServer::pause) it, say).
    ///
    /// # Panics
    /// When no data node of the group listens on `port`.
    pub fn data_node(&self, port: u16) -> &RedisServer {
        self.data
            .iter()
            .find(|s| s.port() == port)
            .unwrap_or_else(|| panic!("no data node of the group on port {port}"))
    }
}

impl Drop for RedisSentinelGroup {
    fn drop(&mut self) {
        // Stop the processes before their directory goes away.
        self.sentinels.clear();
        self.data.clear();
    }
}

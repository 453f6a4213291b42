//! A real `memcached` for tests (features `testing` + `memcached`).

use crate::testing::{free_port, require_binary, ServerProcess};

/// A `memcached` process on a free loopback port, stopped on drop.
///
/// Started as `memcached -l 127.0.0.1 -p <port> -U 0 -m 64` (plus `-u root`
/// when the tests run as root, which memcached otherwise refuses). Panics with
/// the install command when the binary is missing.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), cacheside::Error> {
/// use cache_backends::MemcachedBackend;
/// use cacheside::testing::MemcachedServer;
///
/// let mut server = MemcachedServer::start();
/// let backend = MemcachedBackend::connect(&[server.addr()]).await?;
/// let cache = cacheside::Cache::builder(backend).build();
/// cache.set("k", &1u32, None).await?;
/// server.pause();   // SIGSTOP: sockets open, no answers
/// server.resume();  // SIGCONT
/// server.restart(); // SIGKILL, then a fresh (empty) server on the same port
/// server.kill();    // SIGKILL; dropping the server does this too
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MemcachedServer {
    process: ServerProcess,
}

impl MemcachedServer {
    /// Starts a server and waits until it accepts connections.
    ///
    /// ```no_run
    /// let server = cacheside::testing::MemcachedServer::start();
    /// assert_eq!(server.addr(), format!("127.0.0.1:{}", server.port()));
    /// ```
    pub fn start() -> MemcachedServer {
        Self::start_with_args(&[])
    }

    /// Starts a server with extra command-line arguments (e.g. `["-I", "2m"]`).
    ///
    /// ```no_run
    /// let server = cacheside::testing::MemcachedServer::start_with_args(&["-I", "2m"]);
    /// # let _ = server;
    /// ```
    pub fn start_with_args(extra: &[&str]) -> MemcachedServer {
        let program = require_binary("memcached", "memcached");
        let port = free_port();
        let mut args: Vec<String> = [
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            "64",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // SAFETY: geteuid(2) has no preconditions and touches no memory.
        if unsafe { libc::geteuid() } == 0 {
            args.extend(["-u".to_string(), "root".to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        MemcachedServer {
            process: ServerProcess::spawn("memcached", program, args, port),
        }
    }

    /// `"127.0.0.1:<port>"`, as `MemcachedBackend::connect` takes it.
    ///
    /// ```no_run
    /// let server = cacheside::testing::MemcachedServer::start();
    /// let servers = [server.addr()]; // MemcachedBackend::connect(&servers)
    /// # let _ = servers;
    /// ```
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.process.port())
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// SIGKILL: the server vanishes mid-flight, as in a crash.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGSTOP: connections stay open but nothing is answered.
    pub fn pause(&self) {
        self.process.pause();
    }

    /// SIGCONT after [`pause`](MemcachedServer::pause).
    pub fn resume(&self) {
        self.process.resume();
    }

    /// Kills (if running) and starts an empty server on the same port.
    pub fn restart(&mut self) {
        self.process.restart();
    }

    /// The underlying process handle (pid, liveness).
    ///
    /// ```no_run
    /// let mut server = cacheside::testing::MemcachedServer::start();
    /// assert!(server.process().is_running());
    /// ```
    pub fn process(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}

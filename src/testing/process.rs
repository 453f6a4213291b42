//! Launching, signalling and stopping a server process for tests.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` so that the child dies with this process, even when the
/// process panics, aborts or keeps the server in a `static` that is never dropped.
///
/// Linux delivers `PR_SET_PDEATHSIG` when the spawning *thread* exits, so every
/// child is spawned from one long-lived thread rather than from the test thread.
fn spawn_tied_to_process(mut cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("cacheside-test-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    // SAFETY: prctl(2) is async-signal-safe; the closure touches no memory
                    // shared with the parent and only asks for SIGKILL on parent death.
                    unsafe {
                        cmd.pre_exec(|| {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the test-server spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    cmd.stdin(Stdio::null());
    sender
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("test-server spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("test-server spawner thread is gone"))?
}

/// A free TCP port on 127.0.0.1, below the range the OS picks outgoing
/// ports from, and never handed out twice by this process.
///
/// Below that range, no client connection of the suite (it makes many) can
/// be given the port between this check and the server's bind, and a client
/// reconnecting to a killed server cannot connect to itself on it. The
/// search starts at an offset from the process id, so that test binaries
/// run at the same time mostly look in different places; a port is free
/// when it can be bound.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (low, high) = unassigned_ports();
    let span = u32::from(high - low);
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    for step in 0..span {
        let port = low + ((start + step) % span) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
    // Every port of that range is taken: whatever the OS gives.
    loop {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
        let port = listener
            .local_addr()
            .expect("local address of a bound listener")
            .port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// Ports `[low, high)` below the OS's range for outgoing connections
/// (`/proc/sys/net/ipv4/ip_local_port_range`, 32768 by default; assumed
/// where it cannot be read), at most 12,000 of them and none below 10,000.
/// A range that starts lower than 10,100 leaves 10,000..10,100, inside it:
/// there the first guarantee of [`free_port`] does not hold.
fn unassigned_ports() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let high = ephemeral_low.max(10_100);
    let low = high.saturating_sub(12_000).max(10_000).min(high - 100);
    (low, high)
}

/// Panics with the install command when `binary` is not on `PATH`.
///
/// A test that needs a server must fail loudly without it: a skipped test
/// would hide that the backend was never exercised.
pub fn require_binary(binary: &str, apt_package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(binary);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{binary}` is not installed, and these tests need a real server. \
         Install it with: apt-get install -y {apt_package} (scripts/test.sh does this for you)"
    );
}

/// A server process on a fixed loopback port: killed on drop, and in any case
/// when the test process exits.
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    port: u16,
    child: Option<Child>,
}

impl ServerProcess {
    /// Spawns `program args…` and waits (up to 10 s) until `port` on 127.0.0.1 accepts connections.
    pub fn spawn(name: &str, program: PathBuf, args: Vec<String>, port: u16) -> ServerProcess {
        let mut p = ServerProcess {
            name: name.to_owned(),
            program,
            args,
            port,
            child: None,
        };
        p.launch();
        p
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_tied_to_process(cmd)
            .unwrap_or_else(|e| panic!("could not start {}: {e}", self.name));
        self.child = Some(child);
        self.wait_accepting(Duration::from_secs(10));
    }

    /// Blocks until the port accepts a TCP connection, or panics after `limit`.
    pub fn wait_accepting(&mut self, limit: Duration) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + limit;
        loop {
            // Exited first: then whatever answers on the port is not ours.
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{} exited before accepting connections (is port {} taken?): {status}",
                        self.name, self.port
                    );
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not accept connections on port {} within {limit:?}",
                self.name,
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) with a pid we spawned and own; no memory is involved.
            let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
            assert_eq!(rc, 0, "kill({pid}, {sig}) failed for {}", self.name);
        }
    }

    /// SIGKILL and reap: the server vanishes mid-flight, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGCONT first, in case it is paused, so that the kill is reaped promptly.
            // SAFETY: as in `signal`.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) };
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server keeps its sockets open but answers nothing.
    ///
    /// Returns once the kernel reports the process stopped (state `T` in
    /// `/proc/<pid>/stat`, at most 2 s): the signal is asynchronous, and a
    /// worker thread could otherwise still answer a request sent right after.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
        let Some(pid) = self.pid() else { return };
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state follows the parenthesised command name: "pid (comm) T ...".
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            if matches!(state, Some('T' | 't')) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} (pid {pid}) did not stop within 2 s of SIGSTOP (state {state:?})",
                self.name
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGCONT after [`pause`](ServerProcess::pause).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills (if running) and starts again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        // The port may linger briefly after the kill; `launch` waits for the new process.
        self.launch();
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_bindable_and_below_the_outgoing_range() {
        let (low, high) = unassigned_ports();
        assert!(low >= 10_000 && low < high, "{low}..{high}");
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            ports.len(),
            "a port handed out twice: {ports:?}"
        );
        for port in ports {
            assert!((low..high).contains(&port), "{port} outside {low}..{high}");
            TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        }
    }
}

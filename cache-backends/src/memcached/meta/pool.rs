//! Per server, a pool of connections; [`MetaClient`] checks one out for
//! each exchange, replaces a pooled one the server closed, and runs a
//! command on every server at once.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use super::command::Cmd;
use super::connection::{Conn, Failure};
use super::reply::{Code, Reply};
use super::MetaError;

/// Pooled connections idle this long are closed instead of reused: a NAT
/// or firewall may have dropped them silently, and such a connection would
/// swallow a request until the op timeout.
const MAX_IDLE: Duration = Duration::from_secs(90);

/// One server's pool.
struct Server {
    addr: String,
    /// `addr` resolved once, when the client was made.
    resolved: Vec<SocketAddr>,
    /// Idle connections, each with the time it was returned.
    idle: Mutex<Vec<(Conn, Instant)>>,
    slots: Semaphore,
}

/// A connection taken from a pool, holding one of its slots. Dropped
/// (cancelled, failed) it closes; [`Checkout::put_back`] returns it.
struct Checkout<'a> {
    server: &'a Server,
    conn: Conn,
    pooled: bool,
    _slot: SemaphorePermit<'a>,
}

impl Checkout<'_> {
    fn put_back(mut self) {
        self.conn.shrink();
        let now = Instant::now();
        let mut idle = self.server.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.push((self.conn, now));
    }
}

/// Pooled connections to each server, and pipelined exchanges on them.
pub(crate) struct MetaClient {
    servers: Box<[Server]>,
    connect_timeout: Duration,
    /// [`MAX_IDLE`], or less in tests.
    max_idle: Duration,
}

impl std::fmt::Debug for MetaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaClient")
            .field(
                "servers",
                &self.servers.iter().map(|s| &s.addr).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl MetaClient {
    /// A client for `addrs` (`host:port` each, resolved now, each within
    /// `connect_timeout`; nothing is dialled until used), with at most
    /// `pool_size` connections per server, each dialled within `connect_timeout`.
    pub(crate) async fn resolve(
        addrs: &[String],
        pool_size: usize,
        connect_timeout: Duration,
    ) -> Result<MetaClient, MetaError> {
        let mut servers = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let failed = |source| MetaError::Resolve {
                addr: addr.clone(),
                source,
            };
            let resolved: Vec<SocketAddr> =
                tokio::time::timeout(connect_timeout, tokio::net::lookup_host(addr.as_str()))
                    .await
                    .map_err(|_| failed(io::ErrorKind::TimedOut.into()))?
                    .map_err(failed)?
                    .collect();
            if resolved.is_empty() {
                return Err(failed(io::ErrorKind::NotFound.into()));
            }
            servers.push(Server {
                addr: addr.clone(),
                resolved,
                idle: Mutex::new(Vec::new()),
                slots: Semaphore::new(pool_size.clamp(1, Semaphore::MAX_PERMITS)),
            });
        }
        Ok(MetaClient {
            servers: servers.into(),
            connect_timeout,
            max_idle: MAX_IDLE,
        })
    }

    async fn checkout(&self, server: usize) -> Result<Checkout<'_>, MetaError> {
        let server = &self.servers[server];
        let slot = match server.slots.try_acquire() {
            Ok(slot) => slot,
            Err(_) => tokio::time::timeout(self.connect_timeout, server.slots.acquire())
                .await
                .map_err(|_| MetaError::PoolExhausted(self.connect_timeout))?
                .map_err(|_| MetaError::Protocol("connection pool closed"))?,
        };
        loop {
            let conn = server.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match conn {
                Some((conn, since)) if since.elapsed() < self.max_idle && conn.is_reusable() => {
                    return Ok(Checkout {
                        server,
                        conn,
                        pooled: true,
                        _slot: slot,
                    })
                }
                Some(_) => continue,
                None => break,
            }
        }
        let conn = Conn::dial(&server.resolved, self.connect_timeout).await?;
        Ok(Checkout {
            server,
            conn,
            pooled: false,
            _slot: slot,
        })
    }

    /// Sends `cmds` to `server` as one pipelined batch; one reply per
    /// command, in order. Fails when there is no connection, the stream
    /// breaks or desynchronises, a key is invalid (then nothing was
    /// written), or the server answers a command with `SERVER_ERROR` (the
    /// first such [`MetaError::Server`]; the connection stays usable).
    pub(crate) async fn exchange(
        &self,
        server: usize,
        cmds: &[Cmd<'_>],
    ) -> Result<Vec<Reply>, MetaError> {
        let mut checkout = self.checkout(server).await?;
        checkout.conn.write.clear();
        for cmd in cmds {
            if let Err(invalid) = cmd.encode(&mut checkout.conn.write) {
                // Nothing was written: the connection is still in step.
                checkout.put_back();
                return Err(invalid);
            }
        }
        loop {
            match checkout.conn.round_trip(cmds.len()).await {
                Ok(replies) => {
                    checkout.put_back();
                    return replies;
                }
                // The server closed this pooled connection while it was idle
                // (the probe can miss a close that is still in flight): sent
                // once more on a new connection, when that cannot repeat an
                // effect: nothing had been written, or every command is
                // repeatable (a count or a delete that ran before the
                // connection broke must not run twice).
                Err(Failure {
                    error,
                    written,
                    answered,
                }) if checkout.pooled
                    && !answered
                    && error.is_stale()
                    && (!written || cmds.iter().all(Cmd::repeatable)) =>
                {
                    let mut fresh =
                        Conn::dial(&checkout.server.resolved, self.connect_timeout).await?;
                    std::mem::swap(&mut fresh.write, &mut checkout.conn.write);
                    checkout.conn = fresh;
                    checkout.pooled = false;
                }
                Err(Failure { error, .. }) => return Err(error),
            }
        }
    }

    /// One command on `server`.
    pub(crate) async fn one(&self, server: usize, cmd: Cmd<'_>) -> Result<Reply, MetaError> {
        self.exchange(server, std::slice::from_ref(&cmd))
            .await?
            .pop()
            .ok_or(MetaError::Protocol("missing reply"))
    }

    /// `mn` on `server`.
    pub(crate) async fn noop(&self, server: usize) -> Result<(), MetaError> {
        match self.one(server, Cmd::Noop).await?.code {
            Code::Noop => Ok(()),
            _ => Err(MetaError::Protocol("mn was not answered with MN")),
        }
    }

    /// One command per server, all servers at once (one round trip in total).
    pub(crate) async fn on_every_server<'c>(
        &self,
        cmd: impl Fn(usize) -> Cmd<'c>,
    ) -> Vec<Result<Reply, MetaError>> {
        join_all(
            (0..self.servers.len())
                .map(|server| self.one(server, cmd(server)))
                .collect(),
        )
        .await
    }
}

/// Polls every future until all are done; outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => done = false,
                }
            }
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A fake server on loopback: per accepted connection, reads one request
    /// of `mn\r\n` and either answers `MN` or (when `script` says so) closes.
    async fn fake_server(script: Vec<bool>) -> String {
        fake_server_counting(script, Arc::default()).await
    }

    /// A one-connection client of a [`fake_server`] with this script.
    async fn client_of_fake(script: Vec<bool>) -> MetaClient {
        let addr = fake_server(script).await;
        MetaClient::resolve(&[addr], 1, Duration::from_secs(1))
            .await
            .unwrap()
    }

    /// [`fake_server`], counting the connections it accepts in `accepted`.
    async fn fake_server_counting(script: Vec<bool>, accepted: Arc<AtomicUsize>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut script = script.into_iter();
            while let Ok((mut socket, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                // Answer requests on this connection until the script says close.
                let mut buf = [0u8; 4];
                loop {
                    if socket.read_exact(&mut buf).await.is_err() {
                        break;
                    }
                    match script.next() {
                        Some(true) => socket.write_all(b"MN\r\n").await.unwrap(),
                        _ => break,
                    }
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_pooled_connection_closed_before_answering_is_redialled_once() {
        // Answer, then close the (now pooled) connection on the next request,
        // then answer on the new connection.
        let client = client_of_fake(vec![true, false, true]).await;
        client.noop(0).await.expect("first exchange");
        client.noop(0).await.expect("resent on a fresh connection");
    }

    #[tokio::test]
    async fn a_fresh_connection_that_fails_is_an_error_not_a_retry() {
        let client = client_of_fake(vec![false, true]).await;
        let err = client.noop(0).await.expect_err("closed without an answer");
        assert!(err.is_stale(), "{err}");
    }

    #[tokio::test]
    async fn a_count_or_delete_written_to_a_connection_that_then_closes_is_not_repeated() {
        // Answer `mn`, close on the `md` (after reading it), then answer on a new connection.
        let client = client_of_fake(vec![true, false, true]).await;
        client.noop(0).await.expect("first exchange");
        let delete = Cmd::Delete {
            key: "k".into(),
            cas: None,
        };
        let err = client
            .one(0, delete)
            .await
            .expect_err("may have run: not resent");
        assert!(err.is_stale(), "{err}");
        client.noop(0).await.expect("the next call dials afresh");
    }

    #[tokio::test]
    async fn connections_idle_past_the_limit_are_dialled_afresh() {
        let accepted = Arc::new(AtomicUsize::new(0));
        let addr = fake_server_counting(vec![true; 6], Arc::clone(&accepted)).await;
        let mut client = MetaClient::resolve(&[addr], 1, Duration::from_secs(1))
            .await
            .unwrap();
        for _ in 0..3 {
            client.noop(0).await.unwrap();
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "reused within the limit"
        );
        client.max_idle = Duration::ZERO;
        for _ in 0..3 {
            client.noop(0).await.unwrap();
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            4,
            "one dial per call past the limit"
        );
    }
}

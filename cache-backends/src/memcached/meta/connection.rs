//! One TCP connection to a server, its buffers, and one pipelined round
//! trip on it (write every command, read one reply per command).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::reply::{parse, Parsed, Reply};
use super::MetaError;

/// Initial read buffer of a connection; grows for large values.
const READ_CHUNK: usize = 8 * 1024;

/// Most the read buffer grows by per read: memory follows the bytes that
/// arrive, not the size a reply announces.
const MAX_GROWTH: usize = 1024 * 1024;

/// A pooled connection's buffers are shrunk back when a large value grew them past this.
const KEEP_BUFFER: usize = 64 * 1024;

/// One TCP connection with its buffers.
pub(super) struct Conn {
    stream: TcpStream,
    read: BytesMut,
    /// The request bytes of the current exchange.
    pub(super) write: Vec<u8>,
}

/// How an exchange on a connection failed: the error, whether any request
/// byte had left, and whether any reply byte had arrived.
pub(super) struct Failure {
    pub(super) error: MetaError,
    pub(super) written: bool,
    pub(super) answered: bool,
}

impl Conn {
    pub(super) async fn dial(addrs: &[SocketAddr], timeout: Duration) -> Result<Conn, MetaError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addrs))
            .await
            .map_err(|_| MetaError::ConnectTimeout(timeout))??;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            read: BytesMut::with_capacity(READ_CHUNK),
            write: Vec::with_capacity(256),
        })
    }

    /// An idle connection is quiet: a readable byte or EOF means it is out
    /// of step or closed by the server. A non-blocking probe, no round trip.
    pub(super) fn is_reusable(&self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Large values leave large buffers: shrink them before the connection is pooled.
    pub(super) fn shrink(&mut self) {
        if self.write.capacity() > KEEP_BUFFER {
            self.write = Vec::with_capacity(256);
        }
        if self.read.capacity() > KEEP_BUFFER && self.read.is_empty() {
            self.read = BytesMut::with_capacity(READ_CHUNK);
        }
    }

    /// Writes `self.write`, then reads `count` replies. The inner error is
    /// the first `SERVER_ERROR` among them: the stream is read to the end
    /// all the same, so the connection stays in step.
    pub(super) async fn round_trip(
        &mut self,
        count: usize,
    ) -> Result<Result<Vec<Reply>, MetaError>, Failure> {
        let mut sent = 0;
        while sent < self.write.len() {
            match self.stream.write(&self.write[sent..]).await {
                Ok(0) => {
                    return Err(Failure {
                        error: io::Error::from(io::ErrorKind::WriteZero).into(),
                        written: sent > 0,
                        answered: false,
                    })
                }
                Ok(n) => sent += n,
                Err(e) => {
                    return Err(Failure {
                        error: e.into(),
                        written: sent > 0,
                        answered: false,
                    })
                }
            }
        }
        let mut replies = Vec::with_capacity(count);
        let mut refused = None;
        let mut parsed = 0;
        let mut answered = false;
        while parsed < count {
            match parse(&self.read) {
                Ok(Parsed::Reply(reply, taken)) => {
                    self.read.advance(taken);
                    parsed += 1;
                    match reply {
                        Ok(reply) => replies.push(reply),
                        Err(error) => {
                            refused.get_or_insert(error);
                        }
                    }
                }
                Ok(Parsed::Incomplete(need)) => {
                    let free = self.read.capacity() - self.read.len();
                    let want = need
                        .saturating_sub(self.read.len())
                        .clamp(READ_CHUNK / 2, MAX_GROWTH);
                    if free < want {
                        self.read.reserve(want.max(READ_CHUNK));
                    }
                    match self.stream.read_buf(&mut self.read).await {
                        Ok(0) => {
                            return Err(Failure {
                                error: io::Error::from(io::ErrorKind::UnexpectedEof).into(),
                                written: true,
                                answered,
                            })
                        }
                        Ok(_) => answered = true,
                        Err(e) => {
                            return Err(Failure {
                                error: e.into(),
                                written: true,
                                answered,
                            })
                        }
                    }
                }
                Err(error) => {
                    return Err(Failure {
                        error,
                        written: true,
                        answered,
                    })
                }
            }
        }
        Ok(match refused {
            Some(error) => Err(error),
            None => Ok(replies),
        })
    }
}

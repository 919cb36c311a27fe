//! The echo tier: every byte a client sends comes back, over streams (TCP,
//! Unix) and datagrams (UDP, Unix datagram).
//!
//! A stream connection reads a chunk and writes it back before reading again,
//! so at most one buffer per connection is in flight: a client that sends
//! without reading fills its socket buffers, our write waits, and we stop
//! reading from it (backpressure), up to the idle timeout. Idle connections
//! hold no buffer; bulk transfers get large reads while the server-wide input
//! budget has room. On a plain socket (not TLS, no debug log of the bytes)
//! a bulk transfer moves through a pipe with `splice(2)` instead: socket →
//! pipe → the same socket, the bytes never copied into our memory.
//!
//! Datagrams are where an echo server can hurt others: see [`datagram`].

pub mod datagram;

use bytes::BytesMut;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::deadline::{sleep_for, within};
use crate::limited;
use crate::python_repr::BytesRepr;
use crate::server::log_limit::{PEER_WARNINGS, REQUEST_LINES};
use crate::server::{CloseReason, Connection, ConnectionHandler, DRAIN_GRACE, close_gracefully, metrics};
use crate::transport::splice::{PIPE_DESCRIPTORS, SocketRef, Splice, Splicer};

/// Size of the in-task array that takes small reads.
const SMALL_READ: usize = 512;
/// First heap buffer of a connection once it sends in bulk.
const INITIAL_BUFFER: usize = 16 * 1024;
/// Largest read buffer of a connection: what one client can hold in memory.
pub const MAX_BUFFER: usize = 256 * 1024;

/// Echoes a plain socket to itself through `splicer`'s pipe, one pipe's
/// worth at a time (so a client that does not read stops being read from,
/// as with the copy loop), with the same deadlines and shutdown. Returns
/// why the connection ends, or `None` once a read is small again: the
/// caller then drops the pipe (two descriptors, and kernel memory while
/// bytes are in it) and echoes by copy, as an idle connection should cost.
async fn splice_echo(
    splicer: &Splicer,
    socket: SocketRef<'_>,
    shutdown: &tokio_util::sync::CancellationToken,
    idle: Option<std::time::Duration>,
    draining: &mut bool,
) -> Option<CloseReason> {
    loop {
        let fill = splicer.fill(socket);
        let read = if *draining {
            // Shutting down: echo what has arrived, wait for nothing more.
            tokio::task::yield_now().await;
            match fill.now_or_never() {
                Some(read) => read,
                None => return Some(CloseReason::Shutdown),
            }
        } else {
            tokio::select! {
                read = fill => read,
                () = shutdown.cancelled() => {
                    *draining = true;
                    continue;
                }
                () = sleep_for(idle) => return Some(CloseReason::IdleTimeout(idle.unwrap_or_default())),
            }
        };
        let n = match read {
            Ok(0) => return Some(CloseReason::PeerClosed),
            Ok(n) => n,
            Err(error) => return Some(CloseReason::Io(error)),
        };
        match within(idle, splicer.drain(socket, n, |_| ())).await {
            None => return Some(CloseReason::WriteStalled(idle.unwrap_or_default())),
            Some(Err(error)) => return Some(CloseReason::Io(error)),
            Some(Ok(())) => metrics::bytes(n as u64, n as u64),
        }
        if n < SMALL_READ {
            return None;
        }
    }
}

/// Echoes streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoHandler;

impl ConnectionHandler for EchoHandler {
    async fn handle<S>(&self, connection: Connection<S>) -> CloseReason
    where
        S: AsyncRead + AsyncWrite + Splice + Unpin + Send + 'static,
    {
        let Connection {
            mut stream,
            peer,
            shutdown,
            limits,
            mut budget,
            tls,
            descriptors,
        } = connection;
        let idle = limits.idle_timeout;
        // Small reads land in an array inside the task, so an idle or chatty
        // connection holds no heap buffer. A read that fills the array switches
        // to a heap buffer that doubles while reads keep filling it (a bulk
        // transfer), up to MAX_BUFFER, and is released when traffic turns small.
        // The heap buffer is charged to the input budget; when the budget is
        // short, the connection keeps echoing through the small array.
        let mut small = [0u8; SMALL_READ];
        let mut bulk = BytesMut::new();
        let mut draining = false;
        let mut received_any = false;
        let reason = loop {
            let bulk_mode = bulk.capacity() > 0;
            let read = async {
                if bulk_mode {
                    stream.read_buf(&mut bulk).await
                } else {
                    stream.read(&mut small).await
                }
            };
            let read = if draining && !received_any {
                // A new client's first bytes are on their way: they get the grace.
                match within(Some(DRAIN_GRACE), read).await {
                    Some(read) => read,
                    None => break CloseReason::Shutdown,
                }
            } else if draining {
                // Shutting down: echo what has arrived, wait for nothing more
                // (after a yield, so that the runtime has seen the sockets).
                tokio::task::yield_now().await;
                match read.now_or_never() {
                    Some(read) => read,
                    None => break CloseReason::Shutdown,
                }
            } else {
                tokio::select! {
                    read = read => read,
                    () = shutdown.cancelled() => {
                        draining = true;
                        continue;
                    }
                    () = sleep_for(idle) => break CloseReason::IdleTimeout(idle.unwrap_or_default()),
                }
            };
            let n = match read {
                Ok(0) => break CloseReason::PeerClosed,
                Ok(n) => n,
                Err(error) => return CloseReason::Io(error),
            };
            received_any = true;
            let data = if bulk_mode { &bulk[..] } else { &small[..n] };
            limited!(
                REQUEST_LINES,
                DEBUG,
                "Echoing {n} bytes to {peer}: {}",
                BytesRepr(&data[..n.min(64)])
            );
            match within(idle, stream.write_all(data)).await {
                None => return CloseReason::WriteStalled(idle.unwrap_or_default()),
                Some(Err(error)) => return CloseReason::Io(error),
                Some(Ok(())) => metrics::bytes(n as u64, n as u64),
            }
            if bulk_mode {
                let capacity = bulk.capacity();
                bulk.clear();
                if n == capacity && capacity < MAX_BUFFER && budget.try_set(capacity * 2) {
                    bulk.reserve(capacity * 2);
                } else if n < SMALL_READ {
                    bulk = BytesMut::new();
                    budget.try_set(0);
                }
            } else if n == SMALL_READ {
                // A bulk transfer begins. A plain socket whose bytes we need
                // not see (nobody asked for them in the log) echoes from now
                // on through a pipe: the bytes never enter our memory.
                // The pipe's two descriptors count against the connection
                // limit: with no room, the copy loop does without.
                if let Some(socket) = stream.socket().filter(|_| !tracing::enabled!(tracing::Level::DEBUG)) {
                    match descriptors
                        .try_take(PIPE_DESCRIPTORS)
                        .map(|held| (held, Splicer::new()))
                    {
                        Some((_held, Ok(splicer))) => {
                            match splice_echo(&splicer, socket, &shutdown, idle, &mut draining).await {
                                Some(reason) => break reason,
                                // Traffic turned small: the pipe goes, the copy loop resumes.
                                None => continue,
                            }
                        }
                        Some((_, Err(error))) => limited!(
                            PEER_WARNINGS,
                            WARN,
                            "No pipe for splice ({error}); echoing {peer} by copy"
                        ),
                        None => {}
                    }
                }
                if budget.try_set(INITIAL_BUFFER) {
                    bulk.reserve(INITIAL_BUFFER);
                }
            }
        };
        close_gracefully(&mut stream, &reason, tls).await;
        reason
    }
}

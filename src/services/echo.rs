//! The echo tier: every byte a client sends comes back, over streams (TCP,
//! Unix) and datagrams (UDP, Unix datagram).
//!
//! A stream connection reads a chunk and writes it back before reading again,
//! so at most one buffer per connection is in flight: a client that sends
//! without reading fills its socket buffers, our write waits, and we stop
//! reading from it (backpressure), up to the idle timeout. Idle connections
//! hold no buffer; bulk transfers get large reads.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::close_gracefully;
use super::log_limit::{Admit, LineBudget, REQUEST_LINES_PER_SECOND};
use crate::python_repr::BytesRepr;
use crate::server::{CloseReason, Connection, Service};
use crate::transport::datagram::DatagramSocket;

/// Size of the in-task array that takes small reads.
const SMALL_READ: usize = 512;
/// First heap buffer of a connection once it sends in bulk.
const INITIAL_BUFFER: usize = 16 * 1024;
/// Largest read buffer of a connection: what one client can hold in memory.
pub const MAX_BUFFER: usize = 256 * 1024;
/// Largest datagram we receive (UDP's maximum payload is 65,507 bytes).
pub const MAX_DATAGRAM: usize = 64 * 1024;

/// Echoes streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoService;

impl Service for EchoService {
    async fn serve<S>(&self, connection: Connection<S>) -> CloseReason
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            mut stream,
            peer,
            shutdown,
            idle_timeout,
        } = connection;
        // Small reads land in an array inside the task, so an idle or chatty
        // connection holds no heap buffer. A read that fills the array switches
        // to a heap buffer that doubles while reads keep filling it (a bulk
        // transfer), up to MAX_BUFFER, and is released when traffic turns small.
        let mut small = [0u8; SMALL_READ];
        let mut bulk = BytesMut::new();
        let reason = loop {
            let bulk_mode = bulk.capacity() > 0;
            let read = tokio::select! {
                read = async {
                    if bulk_mode { stream.read_buf(&mut bulk).await } else { stream.read(&mut small).await }
                } => read,
                () = shutdown.cancelled() => break CloseReason::Shutdown,
                () = tokio::time::sleep(idle_timeout) => break CloseReason::Idle(idle_timeout),
            };
            let n = match read {
                Ok(0) => break CloseReason::PeerClosed,
                Ok(n) => n,
                Err(error) => return CloseReason::Io(error),
            };
            let data = if bulk_mode { &bulk[..] } else { &small[..n] };
            debug!("Echoing {n} bytes to {peer}: {}", BytesRepr(&data[..n.min(64)]));
            match tokio::time::timeout(idle_timeout, stream.write_all(data)).await {
                Err(_) => return CloseReason::WriteStalled(idle_timeout),
                Ok(Err(error)) => return CloseReason::Io(error),
                Ok(Ok(())) => {}
            }
            if bulk_mode {
                let capacity = bulk.capacity();
                bulk.clear();
                if n == capacity && capacity < MAX_BUFFER {
                    bulk.reserve(capacity * 2);
                } else if n < SMALL_READ {
                    bulk = BytesMut::new();
                }
            } else if n == SMALL_READ {
                bulk.reserve(INITIAL_BUFFER);
            }
        };
        close_gracefully(&mut stream, &reason).await;
        reason
    }
}

/// Per-datagram info lines, capped like the application server's request lines.
static DATAGRAM_LINES: LineBudget = LineBudget::new(REQUEST_LINES_PER_SECOND);

/// Echoes every datagram to its sender until `shutdown` is cancelled.
/// Datagrams larger than [`MAX_DATAGRAM`] are dropped with a warning rather
/// than echoed cut short.
pub async fn serve_datagrams<D: DatagramSocket>(socket: &D, shutdown: CancellationToken) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            () = shutdown.cancelled() => break,
        };
        let received = match received {
            Ok(received) => received,
            Err(error) => {
                // An ICMP error from an earlier reply, for instance: not fatal.
                debug!("receiving a datagram failed: {error}");
                continue;
            }
        };
        let Some(peer) = D::peer(&received.from) else {
            warn!(
                "Dropped a {}-byte datagram from an unnamed socket: there is no address to echo to",
                received.full_len
            );
            continue;
        };
        if received.truncated() {
            warn!(
                "Dropped a {}-byte datagram from {peer}: larger than the {MAX_DATAGRAM}-byte buffer",
                received.full_len
            );
            continue;
        }
        if let Admit::Write { suppressed_before } = DATAGRAM_LINES.admit() {
            if suppressed_before > 0 {
                info!("({suppressed_before} datagrams not logged: at most {REQUEST_LINES_PER_SECOND} lines a second)");
            }
            info!("Echoing {} bytes to {peer}", received.len);
        }
        if let Err(error) = socket.send_to(&buf[..received.len], &received.from).await {
            warn!("Echo to {peer} failed: {error}");
        }
    }
}

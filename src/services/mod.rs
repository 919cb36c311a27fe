//! Connection loops: what a server does on one connection, generic over the
//! stream so TCP, Unix sockets and TLS share them. Each drives a handler
//! from [`crate::handlers`] and reports a [`crate::server::CloseReason`].

pub mod app;
pub mod echo;
pub mod log_limit;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::server::CloseReason;

/// How long a closing connection keeps reading (and discarding) what the
/// client still sends, so that our last response is not destroyed by a reset.
const LINGER: Duration = Duration::from_secs(1);
/// At most this much is read and discarded while lingering.
const LINGER_MAX_BYTES: usize = 256 * 1024;

/// Closes our side of `stream` without losing what we already wrote.
///
/// Closing a TCP socket that still has unread input makes the kernel send a
/// reset, and a reset can discard our final response before the client reads
/// it (this matters after a framing error, when the client is still sending).
/// So: send FIN, then read and drop input until the client closes too, for at
/// most [`LINGER`] and [`LINGER_MAX_BYTES`].
pub async fn close_gracefully<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, reason: &CloseReason) {
    // The client closed first: its input is exhausted, so dropping the socket
    // cannot reset anything, and the FIN goes out with the close.
    if matches!(reason, CloseReason::PeerClosed) {
        return;
    }
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        // On the heap, not in the future: an array here would make every
        // connection's task 4 KiB larger for its whole life.
        let mut scratch = vec![0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_MAX_BYTES {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

//! The application server's connection loop (PROTOCOL.md §4–§5).
//!
//! Requests are answered in order, several per connection, pipelined or not.
//! Responses to requests that arrived together are written together: the loop
//! only flushes when no further request is ready without waiting.
//!
//! Memory per connection is bounded whatever the client does: the read buffer
//! holds at most one message (the codec's limits), and the write buffer is
//! flushed once it passes [`OUTPUT_HIGH_WATER`]; while that flush waits for a
//! client that does not read, we read nothing more from it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;
use tracing::{Level, debug, enabled, info, trace};

use super::close_gracefully;
use crate::handlers::app::{SearchTable, framing_error_response, respond};
use crate::protocol::{Message, MessageCodec, ProtocolError};
use crate::python_repr::BytesRepr;
use crate::server::{CloseReason, Connection, Service};

/// Unsent output above which the connection stops reading and waits for the
/// client to take its responses.
pub const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// Initial read buffer; it grows with the messages actually received.
const READ_BUFFER_INITIAL: usize = 4 * 1024;

/// Serves the guide's application protocol.
#[derive(Debug, Clone)]
pub struct AppService {
    pub table: Arc<SearchTable>,
    pub max_content_len: usize,
    /// Close after the first response, as the guide's server does.
    pub one_shot: bool,
}

impl Service for AppService {
    async fn serve<S>(&self, connection: Connection<S>) -> CloseReason
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            stream,
            peer,
            shutdown,
            idle_timeout,
        } = connection;
        let codec = MessageCodec::new().with_max_content_len(self.max_content_len);
        let mut framed = Framed::with_capacity(stream, codec, READ_BUFFER_INITIAL);
        framed.set_backpressure_boundary(OUTPUT_HIGH_WATER);

        let reason = loop {
            // A request that is already here is answered without flushing first,
            // so pipelined requests get their responses in one write.
            let next = match framed.next().now_or_never() {
                Some(next) => next,
                None => {
                    if let Err(reason) = flush(&mut framed, idle_timeout).await {
                        break reason;
                    }
                    let between_messages = framed.read_buffer().is_empty() && !framed.codec().is_mid_message();
                    if shutdown.is_cancelled() && between_messages {
                        break CloseReason::Shutdown;
                    }
                    tokio::select! {
                        biased;
                        next = framed.next() => next,
                        // Look again at what has arrived: a half-received request
                        // is still awaited during shutdown.
                        () = shutdown.cancelled(), if !shutdown.is_cancelled() => continue,
                        () = tokio::time::sleep(idle_timeout) => break CloseReason::Idle(idle_timeout),
                    }
                }
            };
            let (response, close) = match next {
                None => break CloseReason::PeerClosed,
                Some(Ok(request)) => {
                    log_request(&request, &peer);
                    let response = respond(&self.table, &request);
                    (response, self.one_shot.then_some(CloseReason::ResponseSent))
                }
                Some(Err(ProtocolError::Io(error))) => break CloseReason::Io(error),
                Some(Err(error)) => (framing_error_response(&error), Some(CloseReason::BadStream(error))),
            };
            if enabled!(Level::TRACE) {
                trace!(
                    "Sending response to {peer}: {} {}",
                    response.content_type,
                    BytesRepr(&response.content)
                );
            }
            match tokio::time::timeout(idle_timeout, framed.feed(response)).await {
                Err(_) => break CloseReason::WriteStalled(idle_timeout),
                Ok(Err(error)) => break CloseReason::Io(into_io(error)),
                Ok(Ok(())) => {}
            }
            if let Some(reason) = close {
                break reason;
            }
        };
        if matches!(reason, CloseReason::Io(_) | CloseReason::WriteStalled(_)) {
            return reason;
        }
        if let Err(reason) = flush(&mut framed, idle_timeout).await {
            return reason;
        }
        close_gracefully(framed.get_mut(), &reason).await;
        reason
    }
}

/// Writes out every buffered response, giving the client `limit` to take them.
async fn flush<S>(framed: &mut Framed<S, MessageCodec>, limit: Duration) -> Result<(), CloseReason>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(limit, SinkExt::<Message>::flush(framed)).await {
        Err(_) => Err(CloseReason::WriteStalled(limit)),
        Ok(Err(error)) => Err(CloseReason::Io(into_io(error))),
        Ok(Ok(())) => Ok(()),
    }
}

/// A failed write: an I/O error, or (a bug) a response we could not encode.
fn into_io(error: ProtocolError) -> std::io::Error {
    match error {
        ProtocolError::Io(io) => io,
        other => std::io::Error::other(other.to_string()),
    }
}

fn log_request(request: &Message, peer: &impl fmt::Display) {
    if request.is_json() {
        info!(
            "Received request {} from {peer}",
            String::from_utf8_lossy(&request.content)
        );
    } else {
        info!(
            "Received binary request ({} bytes, {}) from {peer}",
            request.content.len(),
            request.content_type
        );
    }
    debug!(
        "Request header from {peer}: byteorder {:?}, content-type {:?}, content-encoding {:?}, content-length {}",
        request.byteorder,
        request.content_type,
        request.content_encoding,
        request.content.len()
    );
    if enabled!(Level::TRACE) {
        trace!("Request content from {peer}: {}", BytesRepr(&request.content));
    }
}

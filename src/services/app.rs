//! The application server's connection loop (PROTOCOL.md §4–§5).
//!
//! Requests are answered in order, several per connection, pipelined or not.
//! Every request already received is answered before anything is written,
//! so the responses to pipelined requests go out in one write.
//!
//! Memory per connection is bounded whatever the client does: the input
//! buffer holds at most one message plus one read (the codec checks every
//! length first), and output is written out once it passes
//! [`OUTPUT_HIGH_WATER`]; while that write waits for a client that does not
//! read, nothing more is read from it. An idle connection holds no buffer at
//! all: both are released before waiting, and the next read lands in a small
//! array inside the task.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};
use tracing::{Level, debug, enabled, info, trace};

use super::close_gracefully;
use super::log_limit::{Admit, LineBudget, REQUEST_LINES_PER_SECOND};
use crate::handlers::app::{SearchTable, framing_error_response, respond};
use crate::protocol::{Message, MessageCodec, ProtocolError};
use crate::python_repr::BytesRepr;
use crate::server::{CloseReason, Connection, Service};
use crate::transport::PeerAddr;

/// Unsent output above which the connection stops reading and waits for the
/// client to take its responses.
pub const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// Free space ensured in the input buffer before each read while a client is sending.
const READ_CHUNK: usize = 4 * 1024;
/// Size of the in-task array that takes the first read after an idle wait;
/// large enough for a typical request.
const FIRST_READ: usize = 512;

/// Serves the guide's application protocol.
#[derive(Debug, Clone)]
pub struct AppService {
    pub table: Arc<SearchTable>,
    pub max_content_len: usize,
    /// Close after the first response, as the guide's server does.
    pub one_shot: bool,
}

/// One connection's state.
struct Session<'a, S> {
    stream: S,
    peer: &'a PeerAddr,
    codec: MessageCodec,
    input: BytesMut,
    output: BytesMut,
    idle_timeout: Duration,
    /// When the connection counts as idle: the idle timeout after the last
    /// complete request, however many bytes of the next one trickle in.
    idle_deadline: Instant,
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
        let mut session = Session {
            stream,
            peer: &peer,
            codec: MessageCodec::new().with_max_content_len(self.max_content_len),
            input: BytesMut::new(),
            output: BytesMut::new(),
            idle_timeout,
            idle_deadline: deadline_after(idle_timeout),
        };
        let reason = self.converse(&mut session, &shutdown).await;
        if matches!(reason, CloseReason::Io(_) | CloseReason::WriteStalled(_)) {
            return reason;
        }
        // A final response (one-shot, or the explanation of a framing error).
        if let Err(reason) = session.write_out().await {
            return reason;
        }
        close_gracefully(&mut session.stream, &reason).await;
        reason
    }
}

impl AppService {
    /// Reads requests and answers them until the connection should close.
    async fn converse<S>(
        &self,
        session: &mut Session<'_, S>,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> CloseReason
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            // Answer every complete request already received.
            let mut answered = false;
            loop {
                let response = match session.codec.decode(&mut session.input) {
                    Ok(Some(request)) => {
                        answered = true;
                        log_request(&request, session.peer);
                        respond(&self.table, &request)
                    }
                    Ok(None) => break,
                    Err(error) => {
                        session.queue(&framing_error_response(&error));
                        return CloseReason::BadStream(error);
                    }
                };
                session.queue(&response);
                if self.one_shot {
                    return CloseReason::ResponseSent;
                }
                if session.output.len() >= OUTPUT_HIGH_WATER {
                    // Backpressure: nothing more is read until the client takes these.
                    if let Err(reason) = session.write_out().await {
                        return reason;
                    }
                }
            }
            if answered {
                session.idle_deadline = deadline_after(session.idle_timeout);
            }
            if let Err(reason) = session.write_out().await {
                return reason;
            }
            let between_messages = session.input.is_empty() && !session.codec.is_mid_message();
            let read = if between_messages {
                if shutdown.is_cancelled() {
                    return CloseReason::Shutdown;
                }
                session.read_after_idle(shutdown).await
            } else {
                // A half-received request is awaited even during shutdown.
                session.read_more().await
            };
            match read {
                Ok(0) if between_messages => return CloseReason::PeerClosed,
                Ok(0) => {
                    let error = match session.codec.decode_eof(&mut session.input) {
                        Err(error) => error,
                        Ok(_) => ProtocolError::Truncated {
                            buffered: session.input.len(),
                        },
                    };
                    session.queue(&framing_error_response(&error));
                    return CloseReason::BadStream(error);
                }
                Ok(_) => {}
                Err(reason) => return reason,
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    /// Encodes `response` into the output buffer.
    fn queue(&mut self, response: &Message) {
        if enabled!(Level::TRACE) {
            trace!(
                "Sending response to {}: {} {}",
                self.peer,
                response.content_type,
                BytesRepr(&response.content)
            );
        }
        // Our responses' headers are a few dozen bytes: encoding cannot exceed the u16.
        self.codec.encode(response, &mut self.output).expect("responses encode");
    }

    /// Writes all queued output, giving the client the idle timeout to take it.
    async fn write_out(&mut self) -> Result<(), CloseReason> {
        if self.output.is_empty() {
            return Ok(());
        }
        match tokio::time::timeout(self.idle_timeout, self.stream.write_all(&self.output)).await {
            Err(_) => Err(CloseReason::WriteStalled(self.idle_timeout)),
            Ok(Err(error)) => Err(CloseReason::Io(error)),
            Ok(Ok(())) => {
                self.output.clear();
                Ok(())
            }
        }
    }

    /// Reads the rest of a message that has begun.
    async fn read_more(&mut self) -> Result<usize, CloseReason> {
        self.input.reserve(READ_CHUNK);
        match tokio::time::timeout_at(self.idle_deadline, self.stream.read_buf(&mut self.input)).await {
            Err(_) => Err(CloseReason::Idle(self.idle_timeout)),
            Ok(result) => result.map_err(CloseReason::Io),
        }
    }

    /// Reads the next message's first bytes. If none are waiting, the buffers
    /// are released and the wait happens with no heap memory held.
    async fn read_after_idle(&mut self, shutdown: &tokio_util::sync::CancellationToken) -> Result<usize, CloseReason> {
        if self.input.capacity() > 0 {
            if let Some(result) = self.stream.read_buf(&mut self.input).now_or_never() {
                return result.map_err(CloseReason::Io);
            }
            self.input = BytesMut::new();
            self.output = BytesMut::new();
        }
        let mut first = [0u8; FIRST_READ];
        let n = tokio::select! {
            biased;
            read = self.stream.read(&mut first) => read.map_err(CloseReason::Io)?,
            () = shutdown.cancelled() => return Err(CloseReason::Shutdown),
            () = tokio::time::sleep_until(self.idle_deadline) => return Err(CloseReason::Idle(self.idle_timeout)),
        };
        self.input.reserve(READ_CHUNK);
        self.input.extend_from_slice(&first[..n]);
        if n == FIRST_READ {
            // A burst (pipelined requests): take what else is already here, so
            // the whole burst is answered with one write.
            if let Some(more) = self.stream.read_buf(&mut self.input).now_or_never() {
                return Ok(n + more.map_err(CloseReason::Io)?);
            }
        }
        Ok(n)
    }
}

/// `idle` from now; "never" for a timeout too large to add.
fn deadline_after(idle: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(idle)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Per-request info lines, shared by every connection of the process.
static REQUEST_LINES: LineBudget = LineBudget::new(REQUEST_LINES_PER_SECOND);

fn log_request(request: &Message, peer: &impl fmt::Display) {
    if enabled!(Level::INFO) {
        match REQUEST_LINES.admit() {
            Admit::Suppress => {}
            Admit::Write { suppressed_before } => {
                if suppressed_before > 0 {
                    info!(
                        "({suppressed_before} requests not logged: at most {REQUEST_LINES_PER_SECOND} request lines a second)"
                    );
                }
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
            }
        }
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

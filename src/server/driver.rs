//! The connection driver: reads whole messages off a stream and writes
//! responses back, for any framed protocol (a codec in, messages out).
//!
//! It owns everything about a connection that is not the protocol's meaning,
//! as mini-redis's `Connection` does, so that a protocol's loop is a short
//! read → respond → queue (see [`crate::app::serve`]):
//!
//! - **Batching.** [`Driver::next_request`] decodes every message already
//!   buffered before it reads again, and writes the queued responses only
//!   when it must wait for input: pipelined requests are answered in one write.
//! - **Backpressure.** Once more than [`OUTPUT_HIGH_WATER`] bytes of responses
//!   are queued they are written out before anything else is decoded; while a
//!   client does not read, nothing more is read from it.
//! - **Deadlines.** Between messages, the client has the idle timeout to send
//!   a first byte; a message that has begun must arrive whole within the
//!   request timeout (slowloris); a write that makes no progress for the idle
//!   timeout ends the connection.
//! - **Memory.** Input is charged to the server-wide [`InputBudget`]; an idle
//!   connection holds no buffer at all: both are released before waiting
//!   (the input buffer to its thread's spares) and the next read lands in
//!   the thread's scratch array (see [`super::thread_buffers`]).
//! - **Shutdown.** Once shutdown is requested, what has already arrived is
//!   read without waiting for more and answered; a message already begun is
//!   awaited; then the connection ends. A connection that has received
//!   nothing yet waits up to [`DRAIN_GRACE`] for its first request.
//! - **Counting.** With `--metrics`, bytes, and answers queued with
//!   [`Driver::queue_answer`], are counted once per write of responses,
//!   each answer with its time from the read that completed its request.
//!   Without, a connection carries nothing for it and reads no clock.
//!
//! [`InputBudget`]: super::budget::InputBudget

use std::fmt;
use std::io;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;

use super::budget::{BudgetShare, Evicted};
use super::metrics;
use super::thread_buffers::{FIRST_READ, READ_CHUNK, give_back, read_via_scratch};
use super::{CloseReason, Connection, DRAIN_GRACE, close_gracefully};
use crate::deadline::ReusableTimer;
use crate::transport::PeerAddr;
use crate::transport::splice::Splice;

/// Unsent output above which the connection stops decoding (and so reading)
/// until the client takes its responses.
pub const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// Answers counted between two writes; past this, counted at once.
const ANSWERS_PER_BATCH: usize = 32;
const _: () = assert!(ANSWERS_PER_BATCH <= u8::MAX as usize, "counted in a u8");

/// A decoder that can tell whether it is in the middle of a message, so the
/// driver knows whether the stream is between messages (idle timeout, clean
/// EOF) or inside one (request timeout, truncation).
pub trait FramedDecoder: Decoder {
    /// Whether part of a message has been consumed from the buffer.
    fn is_mid_message(&self) -> bool;

    /// How many more bytes complete the message begun in `buffered`, if
    /// known; the driver then never grows its buffer past the message.
    fn bytes_to_complete(&self, _buffered: &[u8]) -> Option<usize> {
        None
    }
}

/// Why [`Driver::next_request`] has no request to give.
#[derive(Debug)]
pub enum End<E> {
    /// The client closed between messages: every request was answered.
    PeerClosed,
    /// The bytes are not a valid message (including a stream that ended
    /// inside one); the protocol may tell the client why before closing.
    Decode(E),
    /// No first byte of a new message within the idle timeout.
    IdleTimeout(Duration),
    /// A message that had begun did not arrive whole within the request timeout.
    RequestTimeout(Duration),
    /// The client took none of our output within the idle timeout.
    WriteStalled(Duration),
    /// The server-wide input budget ran out and this connection held the most.
    Evicted(Evicted),
    /// The server is shutting down and nothing more had arrived.
    Shutdown,
    /// The connection failed (reset, broken pipe, ...).
    Io(io::Error),
}

impl<E: fmt::Display> From<End<E>> for CloseReason {
    fn from(end: End<E>) -> CloseReason {
        match end {
            End::PeerClosed => CloseReason::PeerClosed,
            End::Decode(error) => CloseReason::BadFrame(error.to_string()),
            End::IdleTimeout(after) => CloseReason::IdleTimeout(after),
            End::RequestTimeout(after) => CloseReason::RequestTimeout(after),
            End::WriteStalled(after) => CloseReason::WriteStalled(after),
            End::Evicted(evicted) => CloseReason::OverBudget(evicted),
            End::Shutdown => CloseReason::Shutdown,
            End::Io(error) => CloseReason::Io(error),
        }
    }
}

/// Reads messages from, and writes messages to, one connection.
#[derive(Debug)]
pub struct Driver<S, C> {
    stream: S,
    codec: C,
    input: BytesMut,
    output: BytesMut,
    /// The connection's idle and request timeouts.
    idle_timeout: Millis,
    request_timeout: Millis,
    shutdown: CancellationToken,
    budget: BudgetShare,
    /// When the message now arriving must be complete; `None` between messages.
    message_deadline: Option<Instant>,
    /// The stream is TLS (see [`close_gracefully`]).
    tls: bool,
    /// Only while metrics count (`--metrics`): otherwise no connection
    /// carries it (it would be in every idle connection's memory).
    counting: Option<Box<Counting>>,
    /// Whether any byte has arrived yet (see [`DRAIN_GRACE`]).
    received_any: bool,
    /// The connection's one timer, for its idle, request and write-stall
    /// deadlines alike (see [`ReusableTimer`]).
    timer: ReusableTimer,
}

/// A time limit in whole milliseconds (rounded up), 0 for none: a driver
/// keeps its two in 8 bytes rather than the 32 of two `Option<Duration>`,
/// in every idle connection's memory. Up to 49 days.
#[derive(Debug, Clone, Copy)]
struct Millis(u32);

impl Millis {
    fn of(limit: Option<Duration>) -> Millis {
        Millis(limit.map_or(0, |limit| {
            let millis = limit.as_nanos().div_ceil(1_000_000).max(1);
            u32::try_from(millis).unwrap_or(u32::MAX)
        }))
    }

    fn get(self) -> Option<Duration> {
        (self.0 > 0).then(|| Duration::from_millis(u64::from(self.0)))
    }
}

/// What a connection counts for the metrics between two writes.
#[derive(Debug)]
struct Counting {
    /// When the driver was made. Times below are microseconds since, in a
    /// u32 (wrapping: an answer is counted well within the 71 minutes a
    /// u32 of them spans).
    born: Instant,
    /// When the last read completed: when the requests it completed arrived.
    last_read: u32,
    /// Answers queued since the last write: each one's label and arrival.
    answers: [(u16, u32); ANSWERS_PER_BATCH],
    /// How many of `answers` are queued, at most [`ANSWERS_PER_BATCH`].
    answered: u8,
    bytes_in: u64,
    bytes_out: u64,
}

impl Counting {
    fn new() -> Counting {
        Counting {
            born: Instant::now(),
            last_read: 0,
            answers: [(0, 0); ANSWERS_PER_BATCH],
            answered: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// `at` as microseconds since `born`, wrapping.
    fn micros(&self, at: Instant) -> u32 {
        at.saturating_duration_since(self.born).as_micros() as u32
    }

    fn read(&mut self, bytes: usize) {
        self.bytes_in += bytes as u64;
        self.last_read = self.micros(Instant::now());
    }

    fn answer(&mut self, label: usize) {
        if usize::from(self.answered) == ANSWERS_PER_BATCH {
            self.hand_over(Instant::now());
        }
        self.answers[usize::from(self.answered)] = (u16::try_from(label).unwrap_or(u16::MAX), self.last_read);
        self.answered += 1;
    }

    /// Hands the answers and bytes counted so far to the metrics.
    fn hand_over(&mut self, written_at: Instant) {
        let written = self.micros(written_at);
        metrics::requests(
            self.answers[..usize::from(self.answered)]
                .iter()
                .map(|&(label, arrived)| {
                    let waited = Duration::from_micros(u64::from(written.wrapping_sub(arrived)));
                    (usize::from(label), waited)
                }),
        );
        metrics::bytes(self.bytes_in, self.bytes_out);
        self.answered = 0;
        self.bytes_in = 0;
        self.bytes_out = 0;
    }
}

impl<S, C> Driver<S, C>
where
    S: AsyncRead + AsyncWrite + Splice + Unpin,
    C: FramedDecoder,
    C::Error: fmt::Display,
{
    /// A driver for an accepted connection, decoding with `codec`: with
    /// the connection's limits, shutdown, budget share and TLS flag; and
    /// who the peer is, for the handler's logs.
    pub fn for_connection(connection: Connection<S>, codec: C) -> (Driver<S, C>, PeerAddr) {
        let Connection {
            stream,
            peer,
            shutdown,
            limits,
            budget,
            tls,
            descriptors: _,
        } = connection;
        let driver = Driver {
            stream,
            codec,
            input: BytesMut::new(),
            output: BytesMut::new(),
            idle_timeout: Millis::of(limits.idle_timeout),
            request_timeout: Millis::of(limits.request_timeout),
            shutdown,
            budget,
            message_deadline: None,
            tls,
            counting: metrics::is_enabled().then(|| Box::new(Counting::new())),
            received_any: false,
            timer: ReusableTimer::default(),
        };
        (driver, peer)
    }

    /// Queues the answer to the request last returned by
    /// [`Driver::next_request`], counted under `label` (see
    /// [`metrics::set_request_labels`]) with its time from the request's
    /// arrival to the answer's write.
    ///
    /// # Errors
    /// The codec's error for a message it cannot encode.
    pub fn queue_answer<M>(&mut self, message: M, label: usize) -> Result<(), <C as Encoder<M>>::Error>
    where
        C: Encoder<M>,
    {
        if let Some(counting) = &mut self.counting {
            counting.answer(label);
        }
        self.queue(message)
    }

    /// Hands what was counted so far to the metrics.
    fn count_answers(&mut self) {
        if let Some(counting) = &mut self.counting {
            counting.hand_over(Instant::now());
        }
    }

    /// The next message from the client. Queued responses are written
    /// before waiting for more input.
    ///
    /// # Errors
    /// [`End`] says why there is no next message.
    ///
    /// # Cancel safety
    /// Cancel safe: bytes read stay buffered, bytes written are removed from
    /// the output, so a later call continues where this one stopped.
    pub async fn next_request(&mut self) -> Result<C::Item, End<C::Error>> {
        loop {
            if self.output.len() >= OUTPUT_HIGH_WATER {
                self.flush().await?;
            }
            match self.codec.decode(&mut self.input) {
                Ok(Some(message)) => {
                    self.message_deadline = None;
                    return Ok(message);
                }
                Ok(None) => {}
                Err(error) => return Err(End::Decode(error)),
            }
            // Nothing complete is buffered: send the answers so far, then wait.
            self.flush().await?;
            let between_messages = self.input.is_empty() && !self.codec.is_mid_message();
            // The budget counts memory held for unfinished input, not just bytes.
            let held = if between_messages { 0 } else { self.input.capacity() };
            self.budget.set(held).map_err(End::Evicted)?;
            let read = if between_messages {
                self.message_deadline = None;
                clean_eof(self.read_first().await)?
            } else {
                self.read_more().await?
            };
            if let Some(counting) = &mut self.counting {
                counting.read(read);
            }
            self.received_any |= read > 0;
            if read == 0 {
                if between_messages {
                    return Err(End::PeerClosed);
                }
                return match self.codec.decode_eof(&mut self.input) {
                    Ok(Some(message)) => Ok(message),
                    Ok(None) => Err(End::PeerClosed),
                    Err(error) => Err(End::Decode(error)),
                };
            }
        }
    }

    /// Encodes `message` into the output; it is written by the next
    /// [`Driver::next_request`] that has to wait, or by [`Driver::flush`].
    ///
    /// # Errors
    /// The codec's error for a message it cannot encode.
    pub fn queue<M>(&mut self, message: M) -> Result<(), <C as Encoder<M>>::Error>
    where
        C: Encoder<M>,
    {
        self.codec.encode(message, &mut self.output)
    }

    /// Queues messages already encoded (made once for many connections,
    /// as a broker's published messages are), growing the output once.
    pub fn queue_encoded(&mut self, messages: &[bytes::Bytes]) {
        self.output.reserve(messages.iter().map(bytes::Bytes::len).sum());
        for message in messages {
            self.output.extend_from_slice(message);
        }
    }

    /// Bytes queued and not yet written.
    pub fn pending_output(&self) -> usize {
        self.output.len()
    }

    /// Writes all queued output. A write that makes no progress for the
    /// idle timeout ends the connection.
    ///
    /// # Errors
    /// [`End::WriteStalled`] or [`End::Io`].
    ///
    /// # Cancel safety
    /// Cancel safe: what was written is removed from the output.
    pub async fn flush(&mut self) -> Result<(), End<C::Error>> {
        let stalled = self.idle_timeout.get();
        if self.output.is_empty() {
            return Ok(());
        }
        // Each write is tried at once first, and the timer is set (a clock
        // read) only if it has to wait: nearly every write to a socket
        // completes at once. The wait uses the connection's one timer, not
        // a timer of its own in every connection's task. (The try is
        // written out twice: a helper would have to make the write twice
        // from a closure, which cannot lend out what it borrows, or pin
        // it, which kept it twice in every task.)
        while !self.output.is_empty() {
            let written = 'write: {
                if let Some(written) = self.stream.write_buf(&mut self.output).now_or_never() {
                    break 'write Some(written);
                }
                self.timer
                    .within(stalled, self.stream.write_buf(&mut self.output))
                    .await
            };
            match written {
                None => return Err(End::WriteStalled(stalled.unwrap_or_default())),
                Some(Ok(0)) => return Err(End::Io(io::ErrorKind::WriteZero.into())),
                Some(Ok(n)) => {
                    if let Some(counting) = &mut self.counting {
                        counting.bytes_out += n as u64;
                    }
                }
                Some(Err(error)) => return Err(End::Io(error)),
            }
        }
        // Streams that buffer (TLS) write out here; plain sockets return at once.
        let flushed = 'flush: {
            if let Some(flushed) = self.stream.flush().now_or_never() {
                break 'flush Some(flushed);
            }
            self.timer.within(stalled, self.stream.flush()).await
        };
        match flushed {
            None => Err(End::WriteStalled(stalled.unwrap_or_default())),
            Some(result) => {
                result.map_err(End::Io)?;
                self.count_answers();
                Ok(())
            }
        }
    }

    /// Writes what is queued and closes the connection without losing it
    /// (see [`close_gracefully`]). Returns `reason`, or why writing failed.
    /// (Not an `async fn`, which would keep its arguments twice in every
    /// connection's task.)
    #[allow(clippy::manual_async_fn, reason = "an async fn would store its arguments twice")]
    pub fn close(&mut self, reason: CloseReason) -> impl Future<Output = CloseReason> + '_ {
        async move {
            // Unread input is no longer needed: give it back before lingering,
            // so an evicted connection frees its share at once.
            give_back(&mut self.input);
            let _ = self.budget.set(0);
            // A peer that cannot take what is queued is not waited for.
            if matches!(
                reason,
                CloseReason::Io(_) | CloseReason::WriteStalled(_) | CloseReason::OutputLimit(_)
            ) {
                self.count_answers();
                return reason;
            }
            let flushed = self.flush().await;
            self.count_answers();
            if let Err(end) = flushed {
                return end.into();
            }
            close_gracefully(&mut self.stream, &reason, self.tls).await;
            reason
        }
    }

    /// Reads the first bytes of the next message. What has already arrived
    /// is taken at once, with no timer set; if nothing has, the buffers are
    /// released and the wait happens with no heap memory held.
    /// The caller applies [`clean_eof`] to the result (not a wrapping async
    /// fn: each level of them is stored in every idle connection's task).
    async fn read_first(&mut self) -> Result<usize, End<C::Error>> {
        let n = 'read: {
            // (Not a `match` on the result: its scrutinee would be kept
            // across the wait below, in every idle connection's task.)
            if let Some(read) = read_via_scratch(&mut self.stream, &mut self.input).now_or_never() {
                break 'read read.map_err(End::Io)?;
            }
            give_back(&mut self.input);
            self.output = BytesMut::new();
            // Only the deadline is kept across the wait (every byte kept here
            // is in every idle connection): the error reads the limit again.
            let deadline = self.idle_timeout.get().map(|idle| Instant::now() + idle);
            loop {
                let first = read_via_scratch(&mut self.stream, &mut self.input);
                if self.shutdown.is_cancelled() && !self.received_any {
                    // A new client's first request is on its way: it gets the grace.
                    tokio::select! {
                        biased;
                        read = first => break read.map_err(End::Io)?,
                        () = tokio::time::sleep(DRAIN_GRACE) => return Err(End::Shutdown),
                    }
                }
                if self.shutdown.is_cancelled() {
                    // Answer what the client sent before shutdown, wait for
                    // nothing more. Yield first: a busy runtime may not have
                    // polled the sockets lately, and a request that has
                    // arrived must be seen.
                    tokio::task::yield_now().await;
                    match first.now_or_never() {
                        Some(read) => break read.map_err(End::Io)?,
                        None => return Err(End::Shutdown),
                    }
                }
                tokio::select! {
                    biased;
                    read = first => break read.map_err(End::Io)?,
                    () = self.shutdown.cancelled() => continue,
                    () = self.timer.expiry(deadline) => {
                        return Err(End::IdleTimeout(self.idle_timeout.get().unwrap_or_default()));
                    }
                }
            }
        };
        if n == FIRST_READ {
            // A burst (pipelined requests): take what else is already here, so
            // the whole burst is answered with one write.
            if let Some(more) = self.stream.read_buf(&mut self.input).now_or_never() {
                return Ok(n + more.map_err(End::Io)?);
            }
        }
        Ok(n)
    }

    /// Reads more of a message that has begun, within its deadline. A
    /// message already begun is awaited even during shutdown.
    async fn read_more(&mut self) -> Result<usize, End<C::Error>> {
        // The request timeout bounds a message from its first byte; without
        // one, the idle timeout does.
        let (limit, is_request_limit) = match (self.request_timeout.get(), self.idle_timeout.get()) {
            (Some(request), _) => (Some(request), true),
            (None, idle) => (idle, false),
        };
        // Without a limit there is no deadline to keep, and no clock to read.
        let deadline = limit.map(|limit| *self.message_deadline.get_or_insert_with(|| Instant::now() + limit));
        self.make_room();
        tokio::select! {
            biased;
            read = self.stream.read_buf(&mut self.input) => read.map_err(End::Io),
            evicted = self.budget.evicted() => Err(End::Evicted(evicted)),
            () = self.timer.expiry(deadline) => {
                let limit = limit.unwrap_or_default();
                Err(if is_request_limit { End::RequestTimeout(limit) } else { End::IdleTimeout(limit) })
            }
        }
    }
}

impl<S, C: FramedDecoder> Driver<S, C> {
    /// Ensures free space for the next read. Growth is geometric, so a large
    /// message costs few copies, but never past the end of the message when
    /// the decoder knows where it ends: a 1 MiB message takes 1 MiB, not the
    /// 2 MiB that doubling would reach. Nothing is reserved for content that
    /// has only been announced.
    fn make_room(&mut self) {
        let len = self.input.len();
        if self.input.capacity() - len >= READ_CHUNK {
            return;
        }
        let wanted = len.max(READ_CHUNK);
        let wanted = match self.codec.bytes_to_complete(&self.input) {
            Some(missing) => wanted.min(missing.max(1)),
            None => wanted,
        };
        if self.input.capacity() - len >= wanted {
            return;
        }
        let mut grown = BytesMut::with_capacity(len + wanted);
        grown.extend_from_slice(&self.input);
        self.input = grown;
    }
}

/// A TLS peer that closes without `close_notify` between messages has sent
/// every request it meant to (each is delimited): that is an ordinary close,
/// as most TLS clients end. Inside a message it stays a truncation.
fn clean_eof<E>(read: Result<usize, End<E>>) -> Result<usize, End<E>> {
    match read {
        Err(End::Io(error)) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_keep_their_meaning_in_milliseconds() {
        assert_eq!(Millis::of(None).get(), None);
        for (limit, kept) in [(1.5, 1.5), (0.0004, 0.001), (2.0001, 2.001), (86_400.0, 86_400.0)] {
            assert_eq!(
                Millis::of(Some(Duration::from_secs_f64(limit))).get(),
                Some(Duration::from_secs_f64(kept)),
                "{limit} s"
            );
        }
        // Past 49 days: capped, still a limit.
        let huge = Millis::of(Some(Duration::from_secs(100 * 86_400))).get().unwrap();
        assert_eq!(huge, Duration::from_millis(u64::from(u32::MAX)));
    }
}

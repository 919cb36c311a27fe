//! Load for the application protocol: oneshot (a new connection per request,
//! the guide's way) or persistent connections with pipelining, optionally at
//! a constant rate.
//!
//! Every response is checked against the answer the protocol requires
//! ([`crate::app::respond`] on the table the server is meant to have), never
//! against what the server happens to say: a server that answers wrongly
//! fails the run. The expected response is encoded up front (for either
//! byte order, which the server picks), so a correct response costs a
//! comparison of a few dozen bytes, not a JSON parse; only a response that
//! differs is decoded, to tell an equivalent encoding from a wrong answer
//! from a broken frame.
//!
//! With `--rate`, requests are scheduled at fixed intervals. A request the
//! server held back (every slot of its connection was taken by earlier
//! requests while it was due) is charged that wait, the coordinated-omission
//! correction of wrk2; the rest of its lateness (our own timer waking late,
//! which on an idle server is all of it) is not the server's, and is not
//! charged. Both the corrected and the uncorrected latencies are reported.
//!
//! Time and memory are bounded whatever the server does: responses are
//! decoded with a content limit, every wait has the timeout, and the run
//! stops at its duration plus one timeout even if the server trickles bytes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::{Budget, Counters, ErrorCounts, ErrorKind, Limit, halt_token, new_histogram, record};
use crate::app::Reply;
use crate::deadline::{within, within_io};
use crate::escape::Escaped;
use crate::protocol::codec::encode_message;
use crate::protocol::{ByteOrder, Message, MessageCodec, ProtocolError};
use crate::python_repr::BytesRepr;
use crate::transport::tls::{Side, describe_io};
use crate::transport::{ClientStream, Connector, Endpoint, TransportError};

/// How requests reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Connect, send one request, read one response, close.
    Oneshot,
    /// Long-lived connections, each keeping `pipeline` requests in flight.
    Persistent,
}

/// One load run's settings.
#[derive(Debug, Clone)]
pub struct AppBench {
    /// Where to connect, each wait's limit, TLS.
    pub connector: Connector,
    pub mode: Mode,
    /// Connections (persistent) or concurrent workers (oneshot).
    pub connections: usize,
    /// Requests in flight per persistent connection.
    pub pipeline: usize,
    pub limit: Limit,
    /// Total requests per second across all connections; `None` = as fast as possible.
    pub rate: Option<f64>,
    pub request: Message,
    /// The response the protocol requires for `request`.
    pub expected: Message,
    /// Largest response content accepted.
    pub max_content_len: usize,
}

/// What a run measured.
#[derive(Debug)]
pub struct AppOutcome {
    /// Latency of each correct response, in nanoseconds; with a rate,
    /// corrected for coordinated omission.
    pub latency: Histogram<u64>,
    /// With a rate: latency from when each request was actually sent.
    pub latency_uncorrected: Option<Histogram<u64>>,
    pub errors: ErrorCounts,
    /// Correct responses.
    pub completed: u64,
    /// Requests sent whose response never came because their connection failed.
    pub unanswered: u64,
    /// Requests sent again because the server closed their connection
    /// cleanly before answering them (a server stopping gracefully).
    pub retried: u64,
    /// Requests the probe sent on its own connection before the run (not
    /// in `completed`): a server's counters see them too.
    pub probe_requests: u64,
    /// Bytes sent and received.
    pub bytes: u64,
    pub elapsed: Duration,
    /// The first wrong answer, described, if there was one.
    pub first_wrong: Option<String>,
    /// Ended early by the caller (Ctrl-C).
    pub interrupted: bool,
    /// TLS handshakes made, when connecting with TLS.
    pub handshakes: Handshakes,
}

/// TLS handshakes by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Handshakes {
    pub full: u64,
    pub resumed: u64,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("the probe request to {endpoint} failed: {reason}")]
    Probe { endpoint: Endpoint, reason: String },
    #[error(
        "{endpoint} answered one request and closed the connection: it serves one request per connection \
         (as the guide's server does); use --mode oneshot"
    )]
    OneRequestPerConnection { endpoint: Endpoint },
    #[error("interrupted before the run started")]
    Interrupted,
}

/// The expected response, encoded for either byte order.
#[derive(Debug)]
struct Expected {
    wires: [Bytes; 2],
    message: Message,
    reply: Option<Reply>,
}

impl Expected {
    fn new(message: Message) -> Expected {
        let encode = |byteorder| {
            let message = Message {
                byteorder,
                ..message.clone()
            };
            encode_message(&message).expect("the expected response encodes")
        };
        Expected {
            wires: [encode(ByteOrder::Little), encode(ByteOrder::Big)],
            reply: Reply::from_message(&message).ok(),
            message,
        }
    }

    /// Whether `got` gives the same answer, however it is encoded.
    fn same_answer(&self, got: &Message) -> bool {
        got.content_type == self.message.content_type
            && match (&self.reply, Reply::from_message(got)) {
                (Some(Reply::Result(want)), Ok(Reply::Result(have))) => *want == have,
                _ => got.content == self.message.content,
            }
    }
}

/// What each worker shares.
struct Shared {
    config: AppBench,
    request: Bytes,
    expected: Expected,
    budget: Budget,
    counters: Arc<Counters>,
    /// Cancelled by the caller (Ctrl-C) or at the hard deadline.
    halt: CancellationToken,
    /// Cancelled by the caller only.
    stop: CancellationToken,
}

/// One worker's tallies, merged at the end.
struct Tally {
    latency: Histogram<u64>,
    uncorrected: Option<Histogram<u64>>,
    errors: ErrorCounts,
    completed: u64,
    unanswered: u64,
    /// Requests sent again on a new connection (see [`Ended::ServerClosed`]).
    retried: u64,
    bytes: u64,
    first_wrong: Option<String>,
    handshakes: Handshakes,
}

impl Tally {
    fn new(rate: bool) -> Tally {
        Tally {
            latency: new_histogram(),
            uncorrected: rate.then(new_histogram),
            errors: ErrorCounts::default(),
            completed: 0,
            unanswered: 0,
            retried: 0,
            bytes: 0,
            first_wrong: None,
            handshakes: Handshakes::default(),
        }
    }

    /// Counts a TLS handshake, full or resumed.
    fn handshake(&mut self, stream: &ClientStream) {
        if let tokio_util::either::Either::Right(tls) = stream {
            if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                self.handshakes.resumed += 1;
            } else {
                self.handshakes.full += 1;
            }
        }
    }

    /// Records a batch of responses that arrived at `now` with one update of
    /// the shared counters.
    fn successes(&mut self, counters: &Counters, now: Instant, sent: &[InFlight]) {
        for request in sent {
            record(&mut self.latency, now.saturating_duration_since(request.charged_from));
            if let Some(uncorrected) = &mut self.uncorrected {
                record(uncorrected, now.saturating_duration_since(request.sent_at));
            }
        }
        self.completed += sent.len() as u64;
        counters.completed.fetch_add(sent.len() as u64, Ordering::Relaxed);
    }

    fn error(&mut self, counters: &Counters, kind: ErrorKind) {
        self.errors.add(kind);
        counters.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn wrong(&mut self, counters: &Counters, expected: &Expected, got: &Message) {
        self.error(counters, ErrorKind::WrongAnswer);
        if self.first_wrong.is_none() {
            self.first_wrong = Some(format!(
                "expected {}, got {}",
                describe(&expected.message),
                describe(got)
            ));
        }
    }

    fn transferred(&mut self, counters: &Counters, bytes: usize) {
        self.bytes += bytes as u64;
        counters.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn merge(&mut self, other: Tally) {
        self.latency.add(&other.latency).expect("histograms share bounds");
        if let (Some(mine), Some(theirs)) = (&mut self.uncorrected, &other.uncorrected) {
            mine.add(theirs).expect("histograms share bounds");
        }
        self.errors.merge(&other.errors);
        self.completed += other.completed;
        self.unanswered += other.unanswered;
        self.retried += other.retried;
        self.bytes += other.bytes;
        self.first_wrong = self.first_wrong.take().or(other.first_wrong);
        self.handshakes.full += other.handshakes.full;
        self.handshakes.resumed += other.handshakes.resumed;
    }
}

/// A message described for a person: its `result`, or its bytes, escaped and cut.
fn describe(message: &Message) -> String {
    match Reply::from_message(message) {
        Ok(Reply::Result(result)) => format!("result \"{}\"", Escaped::str(&result)),
        _ => format!(
            "{} {}",
            Escaped::str(&message.content_type),
            BytesRepr(&message.content[..message.content.len().min(64)])
        ),
    }
}

/// Runs the load described by `config`, bumping `counters` as it goes,
/// until the limit is reached or `stop` is cancelled.
///
/// # Errors
/// [`BenchError::Probe`] when the server cannot be reached at all;
/// [`BenchError::OneRequestPerConnection`] for persistent load on a server
/// that closes after each response.
pub async fn run(config: AppBench, counters: Arc<Counters>, stop: CancellationToken) -> Result<AppOutcome, BenchError> {
    let request = encode_message(&config.request).expect("the request encodes");
    // The probe is bounded as a whole (a trickling server resets every
    // per-read limit) and stops at Ctrl-C like the run.
    let limit = config.connector.timeout();
    let probe_requests = tokio::select! {
        probed = within(limit, probe(&config, &request)) => match probed {
            Some(result) => result?,
            None => {
                return Err(BenchError::Probe {
                    endpoint: config.connector.endpoint().clone(),
                    reason: format!("no whole response within {}", show_limit(limit)),
                });
            }
        },
        () = stop.cancelled() => return Err(BenchError::Interrupted),
    };
    let started = Instant::now();
    let workers = config.connections.max(1);
    let interval = config.rate.map(|rate| Duration::from_secs_f64(workers as f64 / rate));
    let halt = halt_token(&stop, config.limit, config.connector.timeout());
    let shared = Arc::new(Shared {
        budget: Budget::new(config.limit, started),
        expected: Expected::new(config.expected.clone()),
        config,
        request,
        counters,
        halt,
        stop: stop.clone(),
    });
    let mut tasks = JoinSet::new();
    for index in 0..workers {
        let shared = Arc::clone(&shared);
        // Spread the workers' schedules evenly over one interval.
        let first = started + interval.map_or(Duration::ZERO, |i| i.mul_f64(index as f64 / workers as f64));
        tasks.spawn(async move {
            match shared.config.mode {
                Mode::Persistent => persistent_worker(&shared, interval, first).await,
                Mode::Oneshot => oneshot_worker(&shared, interval, first).await,
            }
        });
    }
    let mut total = Tally::new(interval.is_some());
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.expect("bench workers do not panic"));
    }
    shared.halt.cancel();
    Ok(AppOutcome {
        latency: total.latency,
        latency_uncorrected: total.uncorrected,
        errors: total.errors,
        completed: total.completed,
        unanswered: total.unanswered,
        retried: total.retried,
        probe_requests,
        bytes: total.bytes,
        elapsed: started.elapsed(),
        first_wrong: total.first_wrong,
        interrupted: stop.is_cancelled(),
        handshakes: total.handshakes,
    })
}

/// Checks the server can be reached before the run starts. For persistent
/// load it sends two requests at once: a server that answers one and closes
/// (the guide's) is told apart from one that keeps connections, so the user
/// hears "use --mode oneshot" instead of thousands of resets. Returns the
/// requests it sent, which the report shows apart from the run's.
async fn probe(config: &AppBench, request: &[u8]) -> Result<u64, BenchError> {
    let endpoint = config.connector.endpoint();
    let fail = |reason: String| BenchError::Probe {
        endpoint: endpoint.clone(),
        reason,
    };
    let timeout = config.connector.timeout();
    let mut stream = config.connector.connect().await.map_err(|e| fail(format!("{e:#}")))?;
    let twice = config.mode == Mode::Persistent;
    let wire = if twice {
        [request, request].concat()
    } else {
        request.to_vec()
    };
    within_io(timeout, stream.write_all(&wire))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut buf = BytesMut::new();
    let mut answered = 0;
    loop {
        match take_message(&mut buf, config.max_content_len) {
            Ok(Some(_)) => {
                answered += 1;
                if answered == 1 + usize::from(twice) {
                    return Ok(answered as u64);
                }
                continue;
            }
            Ok(None) => {}
            Err(error) => return Err(fail(format!("malformed response: {error}"))),
        }
        let read = match within(timeout, stream.read_buf(&mut buf)).await {
            None => return Err(fail(format!("no response within {}", show_limit(timeout)))),
            Some(read) => read,
        };
        match read {
            Ok(n) if n > 0 => {}
            // Closed (or reset) after exactly one answer to two requests.
            _ if answered == 1 => {
                return Err(BenchError::OneRequestPerConnection {
                    endpoint: endpoint.clone(),
                });
            }
            Ok(_) if !buf.is_empty() => {
                return Err(fail(format!(
                    "the server sent {} bytes that are not a whole message ({}), then closed the connection",
                    buf.len(),
                    BytesRepr(&buf[..buf.len().min(32)])
                )));
            }
            Ok(_) => return Err(fail("the server closed the connection without responding".into())),
            Err(error) => return Err(fail(describe_io(&error, Side::Client))),
        }
    }
}

fn show_limit(limit: Option<Duration>) -> String {
    crate::display_duration(limit.unwrap_or_default())
}

/// What the front of the receive buffer holds.
#[derive(Debug, PartialEq, Eq)]
enum Front {
    /// The expected response (now consumed).
    Expected,
    /// A whole message that is not the expected one (now consumed).
    Wrong(Message),
    /// Not enough bytes yet.
    Incomplete,
    /// Bytes that are not a message (or over the content limit).
    Bad,
}

fn take_response(buf: &mut BytesMut, expected: &Expected, max_content_len: usize) -> Front {
    for wire in &expected.wires {
        let n = buf.len().min(wire.len());
        if buf[..n] == wire[..n] {
            if n < wire.len() {
                return Front::Incomplete;
            }
            buf.advance(n);
            return Front::Expected;
        }
    }
    // Rare: decode to see what arrived instead.
    match take_message(buf, max_content_len) {
        Ok(Some(message)) if expected.same_answer(&message) => Front::Expected,
        Ok(Some(message)) => Front::Wrong(message),
        Ok(None) => Front::Incomplete,
        Err(_) => Front::Bad,
    }
}

/// Takes one whole message off the front of `buf`; leaves `buf` as it was
/// when the message is incomplete or malformed. The decoder consumes a
/// header before its content arrives, so it works on a copy; this runs for
/// the probe and for responses that differ from the expected bytes.
fn take_message(buf: &mut BytesMut, max_content_len: usize) -> Result<Option<Message>, ProtocolError> {
    let mut attempt = buf.clone();
    let Some(message) = MessageCodec::new()
        .with_max_content_len(max_content_len)
        .decode(&mut attempt)?
    else {
        return Ok(None);
    };
    buf.advance(buf.len() - attempt.len());
    Ok(Some(message))
}

fn transport_error_kind(error: &TransportError) -> ErrorKind {
    match error {
        TransportError::Connect { failures, .. } => failures.last().map_or(ErrorKind::Other, |(_, e)| ErrorKind::of(e)),
        TransportError::ConnectUnix { source, .. } => ErrorKind::of(source),
        _ => ErrorKind::Other,
    }
}

/// Pause before reconnecting after a failed connection, so a dead server
/// is not hammered in a tight loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);
/// With a request count and no time limit, how long a worker keeps failing
/// to connect before it gives up on the server.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// A request on its way: when it was sent, and when its latency counts from.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    sent_at: Instant,
    charged_from: Instant,
}

/// When the server last held every slot of a connection (a pipeline full,
/// a oneshot worker's exchange): the only waits charged to the server
/// besides a request's own time.
#[derive(Debug, Clone, Copy, Default)]
struct HeldBack {
    /// The current busy spell's start, while it lasts.
    since: Option<Instant>,
    /// The last finished busy spell.
    last: Option<(Instant, Instant)>,
}

impl HeldBack {
    /// A busy spell begins at `at`, with a request that was due at `due`.
    /// If that request was already due while the last spell lasted, the
    /// server has held the connection all along: the spells are one.
    fn start(&mut self, at: Instant, due: Instant) {
        if self.since.is_none() {
            self.since = Some(match self.last {
                Some((start, end)) if due <= end => start,
                _ => at,
            });
        }
    }

    fn end(&mut self, at: Instant) {
        if let Some(since) = self.since.take() {
            self.last = Some((since, at));
        }
    }

    /// When a request due at `due` and sent at `sent` counts from: its send
    /// time, less the part of its lateness during which the server held
    /// every slot. Lateness of our own (a timer that woke late) is not charged.
    fn charged_from(&self, due: Instant, sent: Instant) -> Instant {
        let held = match self.last {
            Some((start, end)) => sent.min(end).saturating_duration_since(due.max(start)),
            None => Duration::ZERO,
        };
        sent - held
    }
}

/// Why a connection's loop ended early.
enum Ended {
    Failed(ErrorKind),
    Halted,
    /// The server closed the connection cleanly between responses, after
    /// answering some: it is stopping (a graceful shutdown, a rolling
    /// restart) or limits its connections' lives. The requests it had not
    /// answered are sent again on a new connection, as HTTP clients do with
    /// idempotent requests (RFC 9110 §9.2.2); both kinds here are.
    ServerClosed(Vec<InFlight>),
}

async fn persistent_worker(shared: &Shared, interval: Option<Duration>, first: Instant) -> Tally {
    let mut tally = Tally::new(interval.is_some());
    let mut next_at = first;
    let mut failing_since: Option<Instant> = None;
    let mut carried = Vec::new();
    loop {
        // Requests carried over from a closed connection are owed even
        // when the budget is spent.
        let done = shared.budget.expired() && carried.is_empty();
        if done || shared.halt.is_cancelled() {
            break;
        }
        let connected = tokio::select! {
            connected = shared.config.connector.connect() => connected,
            () = shared.halt.cancelled() => break,
        };
        let stream = match connected {
            Ok(stream) => {
                failing_since = None;
                tally.handshake(&stream);
                stream
            }
            Err(error) => {
                tally.error(&shared.counters, transport_error_kind(&error));
                let since = *failing_since.get_or_insert_with(Instant::now);
                if shared.budget.deadline().is_none() && since.elapsed() > GIVE_UP_AFTER {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT_PAUSE) => continue,
                    () = shared.halt.cancelled() => break,
                }
            }
        };
        match drive(
            stream,
            shared,
            &mut tally,
            interval,
            &mut next_at,
            std::mem::take(&mut carried),
        )
        .await
        {
            Ok(()) => break,
            Err(Ended::Failed(kind)) => tally.error(&shared.counters, kind),
            Err(Ended::ServerClosed(unanswered)) => {
                tally.retried += unanswered.len() as u64;
                carried = unanswered;
            }
            Err(Ended::Halted) => break,
        }
    }
    tally
}

/// Keeps up to `pipeline` requests in flight on one connection until the
/// budget is spent and every outstanding response has arrived. `carried`
/// requests, left unanswered by a connection the server closed, go first.
async fn drive<S>(
    mut stream: S,
    shared: &Shared,
    tally: &mut Tally,
    interval: Option<Duration>,
    next_at: &mut Instant,
    carried: Vec<InFlight>,
) -> Result<(), Ended>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = &shared.config;
    let pipeline = config.pipeline.max(1);
    let timeout = config.connector.timeout();
    let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(pipeline);
    let mut out = Vec::with_capacity(pipeline * shared.request.len());
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut answered = Vec::with_capacity(pipeline);
    let mut sending = true;
    let mut held = HeldBack::default();
    let mut answered_here = 0usize;
    for request in &carried {
        out.extend_from_slice(&shared.request);
        in_flight.push_back(*request);
    }
    let result = loop {
        if sending {
            let now = Instant::now();
            while in_flight.len() < pipeline {
                if interval.is_some() && *next_at > now {
                    break;
                }
                if !shared.budget.take() {
                    sending = false;
                    break;
                }
                out.extend_from_slice(&shared.request);
                let charged_from = match interval {
                    Some(interval) => {
                        let due = *next_at;
                        *next_at += interval;
                        held.charged_from(due, now)
                    }
                    None => now,
                };
                in_flight.push_back(InFlight {
                    sent_at: now,
                    charged_from,
                });
            }
            if in_flight.len() == pipeline {
                let due = in_flight.back().map_or(now, |last| last.charged_from);
                held.start(now, due);
            }
            if !out.is_empty() {
                let written = tokio::select! {
                    written = within_io(timeout, stream.write_all(&out)) => written,
                    () = shared.halt.cancelled() => break Err(Ended::Halted),
                };
                match written {
                    Err(error) => break Err(Ended::Failed(ErrorKind::of(&error))),
                    Ok(()) => tally.transferred(&shared.counters, out.len()),
                }
                out.clear();
            }
        }
        if in_flight.is_empty() {
            if !sending {
                break Ok(());
            }
            tokio::select! {
                () = tokio::time::sleep_until((*next_at).into()) => continue,
                () = shared.halt.cancelled() => break Err(Ended::Halted),
            }
        }
        let can_send_more = sending && interval.is_some() && in_flight.len() < pipeline;
        let read = tokio::select! {
            read = within_io(timeout, stream.read_buf(&mut buf)) => read,
            () = tokio::time::sleep_until((*next_at).into()), if can_send_more => continue,
            () = shared.halt.cancelled() => break Err(Ended::Halted),
        };
        match read {
            Err(error) => break Err(Ended::Failed(ErrorKind::of(&error))),
            Ok(0) if buf.is_empty() && answered_here > 0 => {
                break Err(Ended::ServerClosed(in_flight.drain(..).collect()));
            }
            Ok(0) => break Err(Ended::Failed(ErrorKind::Closed)),
            Ok(n) => tally.transferred(&shared.counters, n),
        }
        // Responses that arrived in one read share its timestamp.
        let now = Instant::now();
        let was_full = in_flight.len() == pipeline;
        answered.clear();
        let mut bad = false;
        while !in_flight.is_empty() {
            match take_response(&mut buf, &shared.expected, config.max_content_len) {
                Front::Expected => answered.push(in_flight.pop_front().expect("checked non-empty")),
                Front::Wrong(message) => {
                    in_flight.pop_front();
                    tally.wrong(&shared.counters, &shared.expected, &message);
                }
                Front::Incomplete => break,
                Front::Bad => {
                    bad = true;
                    break;
                }
            }
        }
        tally.successes(&shared.counters, now, &answered);
        answered_here += answered.len();
        if was_full && in_flight.len() < pipeline {
            held.end(now);
        }
        if bad {
            break Err(Ended::Failed(ErrorKind::BadFrame));
        }
    };
    if let Err(ended) = &result {
        // Requests abandoned at the user's request are not the server's fault.
        if matches!(ended, Ended::Failed(_)) || !shared.stop.is_cancelled() {
            tally.unanswered += in_flight.len() as u64;
        }
        if matches!(ended, Ended::Halted) && !shared.stop.is_cancelled() && !in_flight.is_empty() {
            // Halted at the hard deadline with responses outstanding.
            return Err(Ended::Failed(ErrorKind::Timeout));
        }
    }
    result
}

async fn oneshot_worker(shared: &Shared, interval: Option<Duration>, first: Instant) -> Tally {
    let mut tally = Tally::new(interval.is_some());
    let mut next_at = first;
    let mut held = HeldBack::default();
    loop {
        if interval.is_some() {
            tokio::select! {
                () = tokio::time::sleep_until(next_at.into()) => {}
                () = shared.halt.cancelled() => return tally,
            }
        }
        if shared.halt.is_cancelled() || !shared.budget.take() {
            return tally;
        }
        let now = Instant::now();
        let (due, charged_from) = match interval {
            Some(interval) => {
                let due = next_at;
                next_at += interval;
                (due, held.charged_from(due, now))
            }
            None => (now, now),
        };
        held.start(now, due);
        let request = InFlight {
            sent_at: now,
            charged_from,
        };
        let exchanged = tokio::select! {
            exchanged = oneshot(shared, &mut tally) => exchanged,
            () = shared.halt.cancelled() => return tally,
        };
        match exchanged {
            Ok(None) => tally.successes(&shared.counters, Instant::now(), &[request]),
            Ok(Some(wrong)) => tally.wrong(&shared.counters, &shared.expected, &wrong),
            Err((kind, sent)) => {
                tally.error(&shared.counters, kind);
                tally.unanswered += u64::from(sent);
            }
        }
        held.end(Instant::now());
    }
}

/// One connection, one request, one response: `None` when it was the
/// expected one, the message when it was not; on failure, its kind and
/// whether the request had been sent.
async fn oneshot(shared: &Shared, tally: &mut Tally) -> Result<Option<Message>, (ErrorKind, bool)> {
    let timeout = shared.config.connector.timeout();
    let mut stream = shared
        .config
        .connector
        .connect()
        .await
        .map_err(|error| (transport_error_kind(&error), false))?;
    tally.handshake(&stream);
    within_io(timeout, stream.write_all(&shared.request))
        .await
        .map_err(|e| (ErrorKind::of(&e), false))?;
    tally.transferred(&shared.counters, shared.request.len());
    let mut buf = BytesMut::with_capacity(shared.expected.wires[0].len().max(256));
    loop {
        match within_io(timeout, stream.read_buf(&mut buf)).await {
            Ok(0) => return Err((ErrorKind::Closed, true)),
            Ok(n) => tally.transferred(&shared.counters, n),
            Err(error) => return Err((ErrorKind::of(&error), true)),
        }
        match take_response(&mut buf, &shared.expected, shared.config.max_content_len) {
            Front::Expected => return Ok(None),
            Front::Wrong(message) => return Ok(Some(message)),
            Front::Bad => return Err((ErrorKind::BadFrame, true)),
            Front::Incomplete => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{client_request, result_message};

    fn encoded(message: &Message) -> BytesMut {
        BytesMut::from(&encode_message(message).unwrap()[..])
    }

    #[test]
    fn responses_are_told_apart() {
        let rabbit = result_message("Follow the white rabbit. 🐰");
        let expected = Expected::new(rabbit.clone());
        let mut buf = encoded(&rabbit);
        buf.extend_from_slice(&encoded(&result_message("something else"))[..]);
        buf.extend_from_slice(&encoded(&rabbit)[..10]);
        assert_eq!(take_response(&mut buf, &expected, 1 << 20), Front::Expected);
        assert!(matches!(take_response(&mut buf, &expected, 1 << 20), Front::Wrong(_)));
        assert_eq!(take_response(&mut buf, &expected, 1 << 20), Front::Incomplete);
        assert_eq!(buf.len(), 10);
        let mut garbage = BytesMut::from(&b"\x00\x03abc"[..]);
        assert_eq!(take_response(&mut garbage, &expected, 1 << 20), Front::Bad);
        // A shorter wrong answer is recognized without waiting for more bytes.
        let mut short = encoded(&client_request("search", "x"));
        assert!(matches!(take_response(&mut short, &expected, 1 << 20), Front::Wrong(_)));
    }

    #[test]
    fn the_same_answer_in_another_encoding_or_byte_order_is_right() {
        let rabbit = result_message("Follow the white rabbit. 🐰");
        let expected = Expected::new(rabbit.clone());
        let big = Message {
            byteorder: ByteOrder::Big,
            ..rabbit.clone()
        };
        let mut buf = encoded(&big);
        assert_eq!(take_response(&mut buf, &expected, 1 << 20), Front::Expected);
        // Python's json.dumps with ensure_ascii=True escapes the emoji.
        let ascii = Message {
            content: Bytes::from_static(br#"{"result": "Follow the white rabbit. \ud83d\udc30"}"#),
            ..rabbit
        };
        let mut buf = encoded(&ascii);
        assert_eq!(take_response(&mut buf, &expected, 1 << 20), Front::Expected);
    }

    #[test]
    fn only_the_wait_the_server_caused_is_charged() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut held = HeldBack::default();
        // Never held back: a late timer is our own lateness.
        assert_eq!(held.charged_from(ms(10), ms(11)), ms(11));
        // The slot was busy from 12 to 20; a request due at 15 and sent at
        // 20 waited 5 ms for the server.
        held.start(ms(12), ms(12));
        held.end(ms(20));
        assert_eq!(held.charged_from(ms(15), ms(20)), ms(15));
        // Due at 21, sent at 22: the busy spell was over before it was due.
        assert_eq!(held.charged_from(ms(21), ms(22)), ms(22));
        // Due at 5, sent at 25: only the 8 ms of the busy spell count.
        assert_eq!(held.charged_from(ms(5), ms(25)), ms(17));
        // A spell begun by a request due before the last one ended
        // continues it: a backlog waits through every spell.
        held.start(ms(20), ms(18));
        held.end(ms(30));
        assert_eq!(held.charged_from(ms(18), ms(30)), ms(18));
    }

    #[test]
    fn a_response_over_the_content_limit_is_a_bad_frame() {
        let expected = Expected::new(result_message("short"));
        let mut huge = encoded(&result_message(&"x".repeat(5000)));
        huge.truncate(150);
        assert_eq!(take_response(&mut huge, &expected, 1000), Front::Bad);
    }
}

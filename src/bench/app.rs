//! Load for the application protocol: oneshot (a new connection per request,
//! the guide's way) or persistent connections with pipelining, optionally at
//! a constant rate.
//!
//! Every response is checked. The server's answer to the request is learnt
//! once, from a probe before the run, and every response must then equal it
//! byte for byte: a comparison of a few dozen bytes instead of a JSON parse
//! keeps the load generator cheap, which matters when it shares the machine
//! with the server. Only a response that differs is decoded, to tell a wrong
//! answer from a broken frame.
//!
//! With `--rate`, requests are scheduled at fixed intervals and latency is
//! measured from when a request *should* have been sent, not when it was:
//! a server that stalls is charged for every request the stall delayed
//! (the coordinated-omission correction of wrk2).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_util::codec::{Decoder, Encoder};

use super::{Budget, Counters, ErrorCounts, ErrorKind, Limit, new_histogram, record};
use crate::protocol::{Message, MessageCodec};
use crate::transport::{Endpoint, TransportError, connect_stream};

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
    pub endpoint: Endpoint,
    pub mode: Mode,
    /// Connections (persistent) or concurrent workers (oneshot).
    pub connections: usize,
    /// Requests in flight per persistent connection.
    pub pipeline: usize,
    pub limit: Limit,
    /// Total requests per second across all connections; `None` = as fast as possible.
    pub rate: Option<f64>,
    pub request: Message,
    /// Limit for connecting and for each wait for a response.
    pub timeout: Duration,
}

/// What a run measured.
#[derive(Debug)]
pub struct AppOutcome {
    /// Latency of each correct response, in nanoseconds.
    pub latency: Histogram<u64>,
    pub errors: ErrorCounts,
    /// Correct responses.
    pub completed: u64,
    /// Bytes sent and received.
    pub bytes: u64,
    pub elapsed: Duration,
    /// The response every request was checked against.
    pub expected: Message,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("the probe request to {endpoint} failed: {reason}")]
    Probe { endpoint: Endpoint, reason: String },
}

/// What each worker shares.
struct Shared {
    config: AppBench,
    request: Bytes,
    expected: Bytes,
    budget: Budget,
    counters: Arc<Counters>,
}

/// One worker's tallies, merged at the end.
struct Tally {
    latency: Histogram<u64>,
    errors: ErrorCounts,
    completed: u64,
    bytes: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: new_histogram(),
            errors: ErrorCounts::default(),
            completed: 0,
            bytes: 0,
        }
    }

    fn success(&mut self, counters: &Counters, latency: Duration) {
        self.successes(counters, &[latency]);
    }

    /// Records a batch of responses with one update of the shared counters.
    fn successes(&mut self, counters: &Counters, latencies: &[Duration]) {
        for latency in latencies {
            record(&mut self.latency, *latency);
        }
        self.completed += latencies.len() as u64;
        counters.completed.fetch_add(latencies.len() as u64, Ordering::Relaxed);
    }

    fn error(&mut self, counters: &Counters, kind: ErrorKind) {
        self.errors.add(kind);
        counters.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn transferred(&mut self, counters: &Counters, bytes: usize) {
        self.bytes += bytes as u64;
        counters.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Runs the load described by `config`, bumping `counters` as it goes.
///
/// # Errors
/// [`BenchError::Probe`] when the server cannot answer the probe request.
pub async fn run(config: AppBench, counters: Arc<Counters>) -> Result<AppOutcome, BenchError> {
    let mut request = BytesMut::new();
    MessageCodec::new()
        .encode(&config.request, &mut request)
        .expect("the request encodes");
    let request = request.freeze();
    let (expected, expected_message) = probe(&config, &request).await?;
    let started = Instant::now();
    let workers = config.connections.max(1);
    let interval = config
        .rate
        .filter(|r| *r > 0.0)
        .map(|rate| Duration::from_secs_f64(workers as f64 / rate));
    let shared = Arc::new(Shared {
        budget: Budget::new(config.limit, started),
        config,
        request,
        expected,
        counters,
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
    let mut total = Tally::new();
    while let Some(joined) = tasks.join_next().await {
        let tally = joined.expect("bench workers do not panic");
        total.latency.add(&tally.latency).expect("histograms share bounds");
        total.errors.merge(&tally.errors);
        total.completed += tally.completed;
        total.bytes += tally.bytes;
    }
    Ok(AppOutcome {
        latency: total.latency,
        errors: total.errors,
        completed: total.completed,
        bytes: total.bytes,
        elapsed: started.elapsed(),
        expected: expected_message,
    })
}

/// Sends the request once and returns the response's exact bytes.
async fn probe(config: &AppBench, request: &[u8]) -> Result<(Bytes, Message), BenchError> {
    let fail = |reason: String| BenchError::Probe {
        endpoint: config.endpoint.clone(),
        reason,
    };
    let exchange = async {
        let mut stream = connect_stream(&config.endpoint, config.timeout)
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(request).await.map_err(|e| e.to_string())?;
        let mut buf = BytesMut::new();
        loop {
            match take_message(&mut buf) {
                Ok(Some(taken)) => return Ok(taken),
                Ok(None) => {}
                Err(error) => return Err(format!("malformed response: {error}")),
            }
            if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                return Err("the server closed the connection without responding".into());
            }
        }
    };
    match tokio::time::timeout(config.timeout, exchange).await {
        Ok(result) => result.map_err(fail),
        Err(_) => Err(fail(format!(
            "no response within {}",
            crate::display_duration(config.timeout)
        ))),
    }
}

/// What the front of the receive buffer holds.
#[derive(Debug, PartialEq, Eq)]
enum Front {
    /// The expected response (now consumed).
    Expected,
    /// A whole message that is not the expected one (now consumed).
    Wrong,
    /// Not enough bytes yet.
    Incomplete,
    /// Bytes that are not a message.
    Bad,
}

fn take_response(buf: &mut BytesMut, expected: &[u8]) -> Front {
    let n = buf.len().min(expected.len());
    if buf[..n] == expected[..n] {
        if n < expected.len() {
            return Front::Incomplete;
        }
        buf.advance(n);
        return Front::Expected;
    }
    // Rare: decode to see what arrived instead.
    match take_message(buf) {
        Ok(Some(_)) => Front::Wrong,
        Ok(None) => Front::Incomplete,
        Err(_) => Front::Bad,
    }
}

/// Takes one whole message, and its exact bytes, off the front of `buf`;
/// leaves `buf` as it was when the message is incomplete or malformed. The
/// decoder consumes a header before its content arrives, so it works on a
/// copy; this runs once per run (the probe) and once per wrong response.
fn take_message(buf: &mut BytesMut) -> Result<Option<(Bytes, Message)>, crate::protocol::ProtocolError> {
    let mut attempt = buf.clone();
    let Some(message) = MessageCodec::new()
        .with_max_content_len(usize::MAX)
        .decode(&mut attempt)?
    else {
        return Ok(None);
    };
    let raw = buf.split_to(buf.len() - attempt.len()).freeze();
    Ok(Some((raw, message)))
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

async fn persistent_worker(shared: &Shared, interval: Option<Duration>, first: Instant) -> Tally {
    let mut tally = Tally::new();
    let mut next_at = first;
    while !shared.budget.expired() {
        let stream = match connect_stream(&shared.config.endpoint, shared.config.timeout).await {
            Ok(stream) => stream,
            Err(error) => {
                tally.error(&shared.counters, transport_error_kind(&error));
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        match drive(stream, shared, &mut tally, interval, &mut next_at).await {
            Ok(()) => break,
            Err(kind) => tally.error(&shared.counters, kind),
        }
    }
    tally
}

/// Keeps up to `pipeline` requests in flight on one connection until the
/// budget is spent and every outstanding response has arrived.
async fn drive<S>(
    mut stream: S,
    shared: &Shared,
    tally: &mut Tally,
    interval: Option<Duration>,
    next_at: &mut Instant,
) -> Result<(), ErrorKind>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = &shared.config;
    let pipeline = config.pipeline.max(1);
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(pipeline);
    let mut out = Vec::with_capacity(pipeline * shared.request.len());
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut latencies = Vec::with_capacity(pipeline);
    let mut sending = true;
    loop {
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
                match interval {
                    Some(interval) => {
                        in_flight.push_back(*next_at);
                        *next_at += interval;
                    }
                    None => in_flight.push_back(now),
                }
            }
            if !out.is_empty() {
                match tokio::time::timeout(config.timeout, stream.write_all(&out)).await {
                    Err(_) => return Err(ErrorKind::Timeout),
                    Ok(Err(error)) => return Err(ErrorKind::of(&error)),
                    Ok(Ok(())) => tally.transferred(&shared.counters, out.len()),
                }
                out.clear();
            }
        }
        if in_flight.is_empty() {
            if !sending {
                return Ok(());
            }
            tokio::time::sleep_until((*next_at).into()).await;
            continue;
        }
        let can_send_more = sending && interval.is_some() && in_flight.len() < pipeline;
        let read = tokio::select! {
            read = tokio::time::timeout(config.timeout, stream.read_buf(&mut buf)) => read,
            () = tokio::time::sleep_until((*next_at).into()), if can_send_more => continue,
        };
        match read {
            Err(_) => return Err(ErrorKind::Timeout),
            Ok(Err(error)) => return Err(ErrorKind::of(&error)),
            Ok(Ok(0)) => return Err(ErrorKind::Closed),
            Ok(Ok(n)) => tally.transferred(&shared.counters, n),
        }
        // Responses that arrived in one read share its timestamp.
        let now = Instant::now();
        latencies.clear();
        while !in_flight.is_empty() {
            match take_response(&mut buf, &shared.expected) {
                Front::Expected => {
                    let sent = in_flight.pop_front().expect("checked non-empty");
                    latencies.push(now.saturating_duration_since(sent));
                }
                Front::Wrong => {
                    in_flight.pop_front();
                    tally.error(&shared.counters, ErrorKind::WrongAnswer);
                }
                Front::Incomplete => break,
                Front::Bad => return Err(ErrorKind::BadFrame),
            }
        }
        tally.successes(&shared.counters, &latencies);
    }
}

async fn oneshot_worker(shared: &Shared, interval: Option<Duration>, first: Instant) -> Tally {
    let mut tally = Tally::new();
    let mut next_at = first;
    loop {
        if interval.is_some() {
            tokio::time::sleep_until(next_at.into()).await;
        }
        if !shared.budget.take() {
            return tally;
        }
        let start = match interval {
            Some(interval) => {
                let scheduled = next_at;
                next_at += interval;
                scheduled
            }
            None => Instant::now(),
        };
        match tokio::time::timeout(shared.config.timeout, oneshot(shared, &mut tally)).await {
            Ok(Ok(())) => tally.success(&shared.counters, start.elapsed()),
            Ok(Err(kind)) => tally.error(&shared.counters, kind),
            Err(_) => tally.error(&shared.counters, ErrorKind::Timeout),
        }
    }
}

/// One connection, one request, one response.
async fn oneshot(shared: &Shared, tally: &mut Tally) -> Result<(), ErrorKind> {
    let mut stream = connect_stream(&shared.config.endpoint, shared.config.timeout)
        .await
        .map_err(|error| transport_error_kind(&error))?;
    stream.write_all(&shared.request).await.map_err(|e| ErrorKind::of(&e))?;
    tally.transferred(&shared.counters, shared.request.len());
    let mut buf = BytesMut::with_capacity(shared.expected.len().max(256));
    loop {
        match stream.read_buf(&mut buf).await {
            Ok(0) => return Err(ErrorKind::Closed),
            Ok(n) => tally.transferred(&shared.counters, n),
            Err(error) => return Err(ErrorKind::of(&error)),
        }
        match take_response(&mut buf, &shared.expected) {
            Front::Expected => return Ok(()),
            Front::Wrong => return Err(ErrorKind::WrongAnswer),
            Front::Bad => return Err(ErrorKind::BadFrame),
            Front::Incomplete => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::app::{client_request, result_message};

    fn encoded(message: &Message) -> BytesMut {
        let mut out = BytesMut::new();
        MessageCodec::new().encode(message, &mut out).unwrap();
        out
    }

    #[test]
    fn responses_are_told_apart() {
        let expected = encoded(&result_message("Follow the white rabbit. 🐰"));
        let mut buf = expected.clone();
        buf.extend_from_slice(&encoded(&result_message("something else"))[..]);
        buf.extend_from_slice(&expected[..10]);
        assert_eq!(take_response(&mut buf, &expected), Front::Expected);
        assert_eq!(take_response(&mut buf, &expected), Front::Wrong);
        assert_eq!(take_response(&mut buf, &expected), Front::Incomplete);
        assert_eq!(buf.len(), 10);
        let mut garbage = BytesMut::from(&b"\x00\x03abc"[..]);
        assert_eq!(take_response(&mut garbage, &expected), Front::Bad);
        // A shorter wrong answer is recognized without waiting for more bytes.
        let mut short = encoded(&client_request("search", "x"));
        assert_eq!(take_response(&mut short, &expected), Front::Wrong);
    }
}
